"""Run the numbered notebooks headlessly with papermill, in order, for a preset.

Used by ``make demo`` and the notebook smoke tests. A preset is ``notebooks/params/<preset>.yaml``:
an ``_all:`` section given to every notebook plus one section per notebook stem::

    _all: {PROFILE: smoke, RUN_NAME: smoke}
    02_pseudo_videos: {N: 16}

Only parameters a notebook declares in its ``parameters`` cell are injected. Each executed copy
is written to ``outputs/<notebook>/<RUN_NAME>/<notebook>.ipynb``; sources are never run in place.

A sweep preset (e.g. ``paper-table6.yaml``) has a ``sweep:`` block instead: the notebooks to
run per row and, per profile, the rows and the settings common to them::

    sweep: {notebooks: ["03", "04"]}
    common: {demo: {03_qlora_finetune: {N: 800}}}
    rows: {demo: {F2: {F: 2}, F4: {F: 4}}}

Each row runs on top of the profile's own preset (``demo.yaml`` ...) with
``RUN_NAME = <preset>-<profile>-<row>`` (strings may use ``{RUN_NAME}``), and is recorded in
``outputs/results/sweeps.csv`` once all its notebooks succeed; a rerun skips recorded rows.

CLI: ``python -m lib.pipeline --preset demo|smoke|full [--only 02,04]``
     ``python -m lib.pipeline --preset paper-table6 --profile demo|smoke|full [--force]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from lib import paths, profiles, runs


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


def notebook_parameters(preset: dict[str, dict[str, Any]], nb: Path,
                        *overrides: dict[str, Any]) -> dict[str, Any]:
    """The preset's values for the parameters this notebook declares.

    ``overrides`` are further preset-shaped dicts (``_all`` / per-notebook sections) or flat
    parameter dicts, applied in order.
    """
    import papermill as pm

    declared = pm.inspect_notebook(str(nb))
    merged = {**preset.get("_all", {}), **preset.get(nb.stem, {})}
    for o in overrides:
        flat = {k: v for k, v in o.items() if not isinstance(v, dict)}
        merged.update({**flat, **o.get("_all", {}), **o.get(nb.stem, {})})
    return {k: v for k, v in merged.items() if k in declared}


def _format_run_name(params: dict[str, Any], run_name: str) -> dict[str, Any]:
    def fmt(v: Any) -> Any:
        if isinstance(v, str):
            return v.replace("{RUN_NAME}", run_name)
        if isinstance(v, list):
            return [fmt(x) for x in v]
        return v

    return {k: fmt(v) for k, v in params.items()}


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


def run_sweep(preset: str, profile: str, force: bool = False,
              notebooks_dir: Path | None = None, params_dir: Path | None = None) -> list[str]:
    """Run every row of a sweep preset for a profile; rows already recorded are skipped."""
    spec = load_preset(preset, params_dir)
    if "sweep" not in spec:
        raise ValueError(f"{preset}.yaml has no 'sweep:' block; run it without --profile")
    rows = spec.get("rows", {}).get(profile)
    if not rows:
        raise ValueError(f"{preset}.yaml has no rows for profile {profile!r}; it has "
                         f"{sorted(spec.get('rows', {}))}")
    base = load_preset(profile, params_dir)
    common = spec.get("common", {}).get(profile, {})
    nbs = select(notebooks(notebooks_dir), ",".join(spec["sweep"]["notebooks"]))
    finished = []
    for r, (row, row_params) in enumerate(rows.items(), 1):
        key = {"sweep": preset, "profile": profile, "row": row}
        run_name = f"{preset}-{profile}-{row}"
        if not force and runs.has_result("sweeps", key):
            print(f"[row {r}/{len(rows)}] {row}: already done (outputs/results/sweeps.csv), "
                  "skipped", flush=True)
            continue
        t0 = time.perf_counter()
        for i, nb in enumerate(nbs, 1):
            params = _format_run_name(notebook_parameters(base, nb, common, row_params), run_name)
            params["RUN_NAME"] = run_name
            print(f"[row {r}/{len(rows)}] {row} [{i}/{len(nbs)}] {nb.stem} ...", flush=True)
            run_notebook(nb, params, run_name)
        runs.append_result("sweeps", {**key, "run_name": run_name,
                                      "params": json.dumps(row_params, sort_keys=True),
                                      "seconds": round(time.perf_counter() - t0, 1)},
                           key=list(key))
        print(f"[row {r}/{len(rows)}] {row} ok in {time.perf_counter() - t0:.1f} s", flush=True)
        finished.append(row)
    return finished


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lib.pipeline", description=__doc__.split("\n")[0])
    ap.add_argument("--preset", required=True,
                    help="notebooks/params/<preset>.yaml, e.g. demo, smoke, full")
    ap.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 02,04")
    ap.add_argument("--profile", default=None, choices=profiles.PROFILES,
                    help="for sweep presets (paper-table*): the scale to run the rows at")
    ap.add_argument("--force", action="store_true", help="sweeps: rerun rows already recorded")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        if args.profile is not None:
            rows = run_sweep(args.preset, args.profile, args.force)
            print(f"sweep {args.preset} ({args.profile}): {len(rows)} row(s) run in "
                  f"{time.perf_counter() - t0:.1f} s")
            return 0
        if "sweep" in load_preset(args.preset):
            raise ValueError(f"{args.preset} is a sweep: add --profile demo|smoke|full")
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
