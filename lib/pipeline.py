"""Run the numbered notebooks headlessly with papermill, in order, for a preset.

Used by ``make demo`` and the notebook smoke tests. A preset is ``notebooks/params/<preset>.yaml``:
an ``_all:`` section given to every notebook plus one section per notebook stem::

    _all: {PROFILE: smoke, RUN_NAME: smoke}
    02_pseudo_videos: {N: 16}

Only parameters a notebook declares in its ``parameters`` cell are injected. Each executed copy
is written to ``outputs/<notebook>/<RUN_NAME>/<notebook>.ipynb``; sources are never run in place.

CLI: ``python -m lib.pipeline --preset demo|smoke|full [--only 02,04]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from lib import paths, runs


class NotebookFailed(RuntimeError):
    def __init__(self, notebook: str, executed: Path, cause: BaseException):
        super().__init__(f"notebook {notebook} failed ({type(cause).__name__}); the executed copy "
                         f"with the traceback is at {executed}")
        self.notebook = notebook
        self.executed = executed


def load_preset(preset: str, params_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    import yaml

    f = (params_dir or paths.PARAMS_DIR) / f"{preset}.yaml"
    if not f.exists():
        known = sorted(p.stem for p in (params_dir or paths.PARAMS_DIR).glob("*.yaml"))
        raise FileNotFoundError(f"no preset {preset!r}: {f} does not exist; known: {known}")
    data = yaml.safe_load(f.read_text()) or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{f}: expected sections mapping names to parameter dicts")
    return data


def notebooks(notebooks_dir: Path | None = None) -> list[Path]:
    """The numbered notebooks present (``NN_name.ipynb``), in order."""
    d = notebooks_dir or paths.NOTEBOOKS_DIR
    return sorted(p for p in d.glob("[0-9][0-9]_*.ipynb"))


def select(nbs: list[Path], only: str | None) -> list[Path]:
    if not only:
        return nbs
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    picked = [nb for nb in nbs if any(nb.stem == w or nb.stem.startswith(w + "_") for w in wanted)]
    unknown = [w for w in wanted if not any(nb.stem == w or nb.stem.startswith(w + "_")
                                            for nb in nbs)]
    if unknown:
        raise ValueError(f"--only {only}: no notebook for {unknown}; present: "
                         f"{[nb.stem for nb in nbs]}")
    return picked


def notebook_parameters(preset: dict[str, dict[str, Any]], nb: Path) -> dict[str, Any]:
    """The preset's values for the parameters this notebook declares."""
    import papermill as pm

    declared = pm.inspect_notebook(str(nb))
    merged = {**preset.get("_all", {}), **preset.get(nb.stem, {})}
    return {k: v for k, v in merged.items() if k in declared}


def run_notebook(nb: Path, params: dict[str, Any], run_name: str) -> Path:
    """Execute one notebook into its run dir; raises NotebookFailed naming it."""
    import papermill as pm

    out = runs.run_dir(nb.stem, run_name) / nb.name
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        pm.execute_notebook(str(nb), str(out), parameters=params, kernel_name="python3",
                            language="python", cwd=str(nb.parent), progress_bar=False,
                            log_output=False)
    except Exception as e:  # papermill raises PapermillExecutionError and kernel errors
        raise NotebookFailed(nb.stem, out, e) from e
    return out


def run_preset(preset: str, only: str | None = None, notebooks_dir: Path | None = None,
               params_dir: Path | None = None) -> list[Path]:
    data = load_preset(preset, params_dir)
    nbs = select(notebooks(notebooks_dir), only)
    if not nbs:
        raise FileNotFoundError(f"no numbered notebooks in {notebooks_dir or paths.NOTEBOOKS_DIR}")
    done = []
    for i, nb in enumerate(nbs, 1):
        params = notebook_parameters(data, nb)
        # The executed copy and the notebook's own outputs share one run dir.
        run_name = str(params.get("RUN_NAME", preset))
        params["RUN_NAME"] = run_name
        t0 = time.perf_counter()
        print(f"[{i}/{len(nbs)}] {nb.stem} (preset {preset}, run {run_name}) ...", flush=True)
        out = run_notebook(nb, params, run_name)
        print(f"[{i}/{len(nbs)}] {nb.stem} ok in {time.perf_counter() - t0:.1f} s -> "
              f"{out.relative_to(paths.ROOT) if out.is_relative_to(paths.ROOT) else out}",
              flush=True)
        done.append(out)
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lib.pipeline", description=__doc__.split("\n")[0])
    ap.add_argument("--preset", required=True,
                    help="notebooks/params/<preset>.yaml, e.g. demo, smoke, full")
    ap.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 02,04")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        done = run_preset(args.preset, args.only)
    except NotebookFailed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"pipeline {args.preset}: {len(done)} notebook(s) ok in "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
