"""Run directories, their JSON sidecars, and the cross-run result tables.

Every notebook (00-05) starts a run with ``start`` and ends it with ``save_metrics``; notebooks
that produce comparable numbers append a row to ``outputs/results/<table>.csv`` with
``append_result``, which replaces the row with the same key so reruns never duplicate it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from lib import paths

TRACKED_PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "numpy",
                    "av", "pycocotools", "papermill", "opencv-python-headless")


@dataclass(frozen=True)
class Run:
    notebook: str
    name: str
    dir: Path

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)


def notebook_params(namespace: dict[str, Any]) -> dict[str, Any]:
    """The UPPER_CASE names of a notebook's globals: its papermill parameters (nanoGPT style)."""
    return {k: v for k, v in namespace.items()
            if k.isupper() and not k.startswith("_") and _jsonable(v)}


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except TypeError:
        return False


def run_dir(notebook: str, run_name: str) -> Path:
    return paths.outputs_dir() / notebook / run_name


def start(notebook: str, run_name: str, params: dict[str, Any]) -> Run:
    """Create ``outputs/<notebook>/<run_name>/`` with params.json and env.json."""
    d = run_dir(notebook, run_name)
    d.mkdir(parents=True, exist_ok=True)
    write_json(d / "params.json", params)
    write_json(d / "env.json", env_report())
    return Run(notebook, run_name, d)


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)  # atomic, so a killed run never leaves half a file


def save_metrics(run: Run, metrics: dict[str, Any]) -> Path:
    """Merge ``metrics`` into the run's metrics.json."""
    f = run.path("metrics.json")
    old = json.loads(f.read_text()) if f.exists() else {}
    old.update(metrics)
    write_json(f, old)
    return f


def env_report() -> dict[str, Any]:
    """Versions, device and git commit: enough to tell two runs' environments apart."""
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "git_commit": _git_commit(),
        "packages": {},
    }
    for p in TRACKED_PACKAGES:
        try:
            env["packages"][p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            env["packages"][p] = None
    if "torch" in sys.modules:  # never import torch just to report on it
        import torch

        env["cuda"] = torch.cuda.is_available()
        if env["cuda"]:
            env["gpu"] = torch.cuda.get_device_name(0)
    return env


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=paths.ROOT,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _portable(v: Any) -> Any:
    """Paths as the table stores them: relative to the repository root when inside it."""
    if isinstance(v, Path) or (isinstance(v, str) and os.path.isabs(v)):
        return paths.relative(v)
    return v


def append_result(table: str, row: dict[str, Any], key: list[str]) -> Path:
    """Append ``row`` to ``outputs/results/<table>.csv``, replacing a row with the same key.
    Absolute paths inside the repository are stored relative to it, so the tracked tables read
    the same on every machine (``paths.absolute`` turns them back)."""
    missing = [k for k in key if k not in row]
    if missing:
        raise KeyError(f"result row for {table}.csv lacks key column(s) {missing}")
    return _rewrite(table, [row], {k: row[k] for k in key})


def replace_results(table: str, rows: Sequence[dict[str, Any]], where: dict[str, Any]) -> Path:
    """Write ``rows`` to ``outputs/results/<table>.csv`` after dropping every old row whose
    ``where`` columns equal these values: a rerun of one evaluation replaces all of its rows,
    so groups it no longer runs (fewer conditions or scorers) do not linger. Paths are stored
    as ``append_result`` stores them."""
    missing = [k for k in where if rows and any(k not in r for r in rows)]
    if missing:
        raise KeyError(f"result rows for {table}.csv lack the column(s) {missing}")
    want = {k: str(_portable(v)) for k, v in where.items()}
    if any(str(_portable(r[k])) != v for r in rows for k, v in want.items()):
        raise ValueError(f"result rows for {table}.csv must all have {want}")
    return _rewrite(table, rows, where)


def _rewrite(table: str, rows: Sequence[dict[str, Any]], drop: dict[str, Any]) -> Path:
    """The table without its rows whose ``drop`` columns equal these values, plus ``rows``
    (paths made portable), written atomically."""
    drop = {k: str(_portable(v)) for k, v in drop.items()}
    new = pd.DataFrame([{k: _portable(v) for k, v in r.items()} for r in rows])
    f = paths.results_dir() / f"{table}.csv"
    f.parent.mkdir(parents=True, exist_ok=True)
    out = new
    if f.exists():
        old = pd.read_csv(f, dtype=str, keep_default_na=False)
        if set(drop) <= set(old.columns):
            old = old[~(old[list(drop)] == pd.Series(drop)).all(axis=1)]
        out = pd.concat([old, new.astype(str)], ignore_index=True)
    tmp = f.with_suffix(".csv.tmp")
    out.to_csv(tmp, index=False)
    os.replace(tmp, f)
    return f


def read_results(table: str):
    """A result table as a DataFrame (empty if nothing was recorded yet)."""
    f = paths.results_dir() / f"{table}.csv"
    return pd.read_csv(f) if f.exists() else pd.DataFrame()


def has_result(table: str, match: dict[str, Any]) -> bool:
    """Whether a row with these key values exists (resumable sweeps skip it)."""
    df = read_results(table)
    if df.empty or not set(match) <= set(df.columns):
        return False
    sel = (df[list(match)].astype(str) == [str(v) for v in match.values()]).all(axis=1)
    return bool(sel.any())
