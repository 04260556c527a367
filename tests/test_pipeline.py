"""The papermill runner: presets, --only, progress lines and a failing notebook named."""

import json
import shutil

import pytest

from lib import paths, pipeline


def _notebook(path, code):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                 "display_name": "Python 3"}
    p = nbformat.v4.new_code_cell('RUN_NAME = "dev"\nX = 1')
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, str(path))


def test_only_selects_by_number():
    nbs = [paths.NOTEBOOKS_DIR / n for n in ("00_a.ipynb", "02_b.ipynb", "04_c.ipynb")]
    assert [p.stem for p in pipeline.select(nbs, "02,04")] == ["02_b", "04_c"]
    with pytest.raises(ValueError, match="no notebook for"):
        pipeline.select(nbs, "07")


def test_failing_notebook_is_named(tmp_path, capsys):
    nbdir, pdir = tmp_path / "nb", tmp_path / "params"
    nbdir.mkdir()
    pdir.mkdir()
    _notebook(nbdir / "01_ok.ipynb", "assert X == 5")
    _notebook(nbdir / "02_bad.ipynb", "raise RuntimeError('boom')")
    (pdir / "p.yaml").write_text("_all: {X: 5, UNDECLARED: 1}\n02_bad: {X: 2}\n")
    with pytest.raises(pipeline.NotebookFailed, match="02_bad") as e:
        pipeline.run_preset("p", notebooks_dir=nbdir, params_dir=pdir)
    out = capsys.readouterr().out
    assert "[1/2] 01_ok ok" in out and "[2/2] 02_bad" in out
    assert "boom" in e.value.executed.read_text()
    ok = json.loads((paths.outputs_dir() / "01_ok" / "p" / "01_ok.ipynb").read_text())
    injected = [c for c in ok["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert "X = 5" in "".join(injected[0]["source"])
    assert "UNDECLARED" not in "".join(injected[0]["source"])
    shutil.rmtree(paths.outputs_dir() / "01_ok")


def test_cli_exit_codes():
    assert pipeline.main(["--preset", "no-such-preset"]) == 2


def test_sweep_runs_rows_once(tmp_path, capsys):
    nbdir, pdir = tmp_path / "nb", tmp_path / "params"
    nbdir.mkdir()
    pdir.mkdir()
    _notebook(nbdir / "03_train.ipynb",
              "import pathlib, os\nassert X in (2, 3)\n"
              "pathlib.Path(os.environ['WORKBOOK_OUTPUTS_DIR'], RUN_NAME + '.txt').write_text(str(X))")
    _notebook(nbdir / "04_eval.ipynb", "assert RUN_NAME.startswith('tbl-smoke-')")
    (pdir / "smoke.yaml").write_text("_all: {X: 1}\n")
    (pdir / "tbl.yaml").write_text(
        "sweep: {notebooks: ['03', '04']}\n"
        "rows: {smoke: {a: {X: 2}, b: {X: 3}}}\n")
    assert pipeline.run_sweep("tbl", "smoke", notebooks_dir=nbdir, params_dir=pdir) == ["a", "b"]
    assert (paths.outputs_dir() / "tbl-smoke-b.txt").read_text() == "3"
    assert (paths.outputs_dir() / "04_eval" / "tbl-smoke-a" / "04_eval.ipynb").exists()
    assert pipeline.run_sweep("tbl", "smoke", notebooks_dir=nbdir, params_dir=pdir) == []
    assert "already done" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no rows for profile 'full'"):
        pipeline.run_sweep("tbl", "full", notebooks_dir=nbdir, params_dir=pdir)
