"""Notebook hygiene (clean, one parameters cell, twin in sync) and a papermill smoke run of each."""

from __future__ import annotations

import ast
import json

import jupytext
import pytest

from lib import paths, pipeline

NOTEBOOKS = pipeline.notebooks()


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def test_there_are_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].stem == "00_assets"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_clean_and_parameterised(nb):
    d = json.loads(nb.read_text())
    ks = d["metadata"].get("kernelspec", {})
    assert ks.get("name") == "python3" and ks.get("language") == "python", "kernelspec missing"
    code = [c for c in d["cells"] if c["cell_type"] == "code"]
    dirty = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count")]
    assert not dirty, f"{nb.name}: clear outputs (code cells {dirty})"
    params = [c for c in code if "parameters" in _tags(c)]
    assert len(params) == 1, f"{nb.name}: {len(params)} cells tagged 'parameters' (want 1)"
    tree = ast.parse("".join(params[0]["source"]))
    names = []
    for stmt in tree.body:
        assert isinstance(stmt, (ast.Assign, ast.AnnAssign)), \
            f"{nb.name}: only assignments in the parameters cell"
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) else stmt.target
        assert isinstance(target, ast.Name) and target.id.isupper(), \
            f"{nb.name}: parameter names are UPPER_CASE ({ast.unparse(target)})"
        ast.literal_eval(stmt.value)  # literals only: papermill cannot recompute derived values
        names.append(target.id)
    assert {"RUN_NAME", "SEED", "PROFILE"} <= set(names), f"{nb.name}: standard parameters"
    assert d["cells"][0]["cell_type"] == "markdown" and "".join(
        d["cells"][0]["source"]).startswith("# "), f"{nb.name}: open with a title cell"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_py_twin_in_sync(nb):
    twin = nb.with_suffix(".py")
    assert twin.exists(), f"{nb.name}: no py:percent twin (jupytext --sync {nb})"
    a = jupytext.read(nb)
    b = jupytext.read(twin)
    sa = [(c.cell_type, c.source.strip(), _tags(c)) for c in a.cells]
    sb = [(c.cell_type, c.source.strip(), _tags(c)) for c in b.cells]
    assert sa == sb, f"{nb.name} and {twin.name} differ: run `jupytext --sync {twin}`"


@pytest.mark.notebook
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_smoke_run(nb):
    """Each notebook runs under papermill with the smoke preset (in order: 00 builds the data)."""
    preset = pipeline.load_preset("smoke")
    params = pipeline.notebook_parameters(preset, nb)
    params["RUN_NAME"] = "smoke"
    out = pipeline.run_notebook(nb, params, "smoke")
    assert out.exists()
    run = paths.outputs_dir() / nb.stem / "smoke"
    for f in ("params.json", "env.json", "metrics.json"):
        assert (run / f).exists(), f"{nb.stem} did not write {f}"


_FIGURE_NAMES = {"plt", "ax", "axes", "fig", "sns", "matplotlib", "seaborn"}


def _thinness_problems(source: str) -> list[str]:
    """Loops, functions and classes longer than 5 lines, and figure code, in one code cell."""
    # IPython magics and shell escapes are not Python
    code = "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln
                     for ln in source.splitlines())
    out = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, (ast.For, ast.AsyncFor, ast.While, ast.FunctionDef,
                             ast.AsyncFunctionDef, ast.ClassDef)):
            n = node.end_lineno - node.lineno + 1
            if n > 5:
                out.append(f"line {node.lineno}: {type(node).__name__} of {n} lines")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            if any(m.split(".")[0] in _FIGURE_NAMES for m in mods):
                out.append(f"line {node.lineno}: imports plotting ({ast.unparse(node)})")
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id in _FIGURE_NAMES):
            out.append(f"line {node.lineno}: figure code {node.value.id}.{node.attr}")
    return out


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_cells_are_thin(nb):
    """Notebooks are narratives over lib/: no loop or function longer than 5 lines and no
    figure code in a code cell (figures come from lib.plots functions)."""
    d = json.loads(nb.read_text())
    code = [c for c in d["cells"] if c["cell_type"] == "code"]
    problems = [f"code cell {i}, {p}" for i, c in enumerate(code)
                for p in _thinness_problems("".join(c["source"]))]
    assert not problems, f"{nb.name}: move to lib/:\n  " + "\n  ".join(problems)
