"""Rows of the result tables that evaluation writes: ``outputs/results/tvbench.csv`` (one row
per evaluated model x condition group x scorer) and ``tvbench_effects.csv`` (the ordering-task
comparisons of notebook 04).

These CSVs are the only interface between notebooks 01-04 and notebook 05 (``lib.ablations``
reads them); every path in a row is relative to the repository root (``lib.paths.relative``).
Used by ``lib.evaluate`` (the ``eval`` CLI) and notebooks 01 and 04.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lib import paths, recipes, runs

if TYPE_CHECKING:  # type hints only: lib.models imports torch
    from lib.models import ModelSpec


def result_row(label: str, m: dict, run_dir: Path | str, model: str, data: Path | str,
               group: str, settings: Mapping[str, Any] | None = None,
               profile: str | None = None) -> dict:
    """A row for outputs/results/tvbench.csv (``model``: a name, or ``model_source``;
    ``settings``: the evaluation recipe's columns, ``lib.recipes.eval_record``; ``profile``:
    the notebook's PROFILE, empty for the CLI, which does not know one)."""
    cond, _, scoring = group.partition("/")
    row = {"label": label, "model": model, "data": paths.relative(data),
           "profile": profile or "", "group": group,
           "condition": cond, "scoring": scoring, "n": m["n"],
           "skipped_missing_video": m.get("skipped_missing_video", 0),
           "micro": round(m["micro"], 2), "macro": round(m["macro"], 2),
           "micro_lo": round(m["micro_ci"][0], 2) if m.get("micro_ci") else "",
           "micro_hi": round(m["micro_ci"][1], 2) if m.get("micro_ci") else "",
           "chance_micro": round(m["chance_micro"], 2),
           "chance_macro": round(m["chance_macro"], 2), "run_dir": paths.relative(run_dir)}
    for t in m["tasks"].values():
        row[t["abbr"]] = round(t["acc"], 2)
        # Per-task 95% CIs (clustered bootstrap) and chance, so notebook 05 plots from the CSV.
        row[f"{t['abbr']}_lo"] = round(t["ci"][0], 2) if t.get("ci") else ""
        row[f"{t['abbr']}_hi"] = round(t["ci"][1], 2) if t.get("ci") else ""
        row[f"{t['abbr']}_chance"] = round(t["chance"], 2)
        row[f"{t['abbr']}_n"] = t["n"]
    p = m.get("parse", {})
    row["parse_fail"] = sum(v for k, v in p.items() if k != "ok")
    # Questions evaluated on short video frames (counted, never silent; lib.video.SHORT_NOTES).
    row["short_video"] = m.get("short_video", 0)
    row.update(settings or {})
    return row


def record(res: dict[str, dict], label: str, run_dir: Path | str, model: str,
           data: Path | str, settings: Mapping[str, Any] | None = None,
           profile: str | None = None, key: Sequence[str] = ("label", "run_dir")) -> Path:
    """One row per group in outputs/results/tvbench.csv, replacing every earlier row with this
    row's ``key`` columns (a rerun with fewer groups leaves none of the old ones)."""
    where = {"label": label, "run_dir": paths.relative(run_dir)}
    return runs.replace_results("tvbench", [result_row(label, m, run_dir, model, data, group,
                                                       settings, profile)
                                            for group, m in res.items()],
                                {k: where[k] for k in key})


def model_source(ms: ModelSpec) -> str:
    """tvbench.csv's ``model`` for a ``ModelSpec``: ``checkpoint[+adapter]``, each path
    relative to the repository when inside it."""
    return paths.relative(ms.checkpoint) + (f"+{paths.relative(ms.adapter)}" if ms.adapter
                                            else "")


def record_models(results: Mapping[str, dict[str, dict]], models: Sequence[ModelSpec],
                  run_dirs: Mapping[str, Path | str], prefix: str, data: Path | str,
                  recipe: str = "ours", profile: str | None = None) -> Path | None:
    """``record`` every model's groups with the label ``<prefix>/<model label>``, the
    evaluation settings it ran with under ``recipe`` and the notebook's ``profile``. A
    notebook's label names one model of one notebook run, so its rows replace that label's
    earlier ones wherever they were evaluated (a start checkpoint's shared run dir is named by
    its weights, so a rebuilt start writes to a new one)."""
    f = None
    for ms in models:
        f = record(results[ms.label], f"{prefix}/{ms.label}", run_dirs[ms.label],
                   model_source(ms), data, recipes.eval_record(recipe, ms.dtype,
                                                               ms.drop_threshold), profile,
                   key=("label",))
    return f


def record_effect(effect: dict[str, dict], label: str, run_dir: Path | str) -> Path:
    """One row per comparison in outputs/results/tvbench_effects.csv (read by notebook 05),
    replacing every earlier row of this ``label`` and ``run_dir`` (several adapters of one
    notebook-04 run keep their own rows)."""
    rel = paths.relative(run_dir)
    return runs.replace_results("tvbench_effects", [
        {"label": label, "comparison": name, "run_dir": rel, **row}
        for name, row in effect.items()], {"label": label, "run_dir": rel})
