"""Our rows beside the paper's: numbers for the full profile, directions for demo and smoke.

The full profile evaluates the released LongVU checkpoints on TVBench, so its rows sit beside
the paper's per task under the paper's model names (``beside_paper``). The demo and smoke
profiles evaluate tiny LongVU-shaped models on MiniTVBench (six synthetic tasks): their
accuracies say nothing about the paper's numbers, only the direction of an effect carries
over. ``directions`` therefore lines up signed differences of the average (video-trained minus
image-trained, normal minus shuffled frames, each ablation row minus the table's first row),
the paper's beside ours, and names our side "tiny demo model on MiniTVBench", never with a
real model's name. ``profile_of`` tells a tvbench.csv row's profile from its paths when
the row has none recorded (the eval CLI's rows; notebooks 01 and 04 record PROFILE).

Used by ``lib.ablations`` and ``lib.plots`` (notebook 05).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from lib import paper
from lib.tables import paper_frame

TINY = "tiny demo model on MiniTVBench"
TINY_PROFILES = ("demo", "smoke")
FAMILIES = {name: key for key, name in paper.LLM_NAMES.items()}  # "Qwen2-7B" -> "qwen"
ABLATION_LLM = "Llama3.2-3B"  # the paper's Tables 5-8 ablate LongVU Llama3.2-3B only
DIRECTION_COLUMNS = ["ours model", "paper diff", "ours diff", "paper direction", "ours direction",
                     "same direction"]  # index: (paper model, comparison)


def profile_of(model: str, data: str = "") -> str:
    """The profile a tvbench.csv row was evaluated in, from its ``model`` and ``data`` paths.

    demo or smoke when the benchmark is MiniTVBench (``.../<profile>/minitvbench``) or the
    model (or an adapter's start, ``base+adapter``) lies under ``.../models/<profile>/``; full
    only when neither holds and the row names its benchmark. A row that names no benchmark
    counts as demo: a model of unknown origin is never labelled with a real model's name."""
    data = "" if pd.isna(data) else str(data)
    for path in [data, *str(model).split("+")]:
        parts = [p.lower() for p in re.split(r"[\\/]+", path) if p]
        if "minitvbench" in parts:
            i = parts.index("minitvbench")
            return parts[i - 1] if i and parts[i - 1] in TINY_PROFILES else "demo"
        for a, b in zip(parts, parts[1:]):
            if a == "models" and b in TINY_PROFILES:
                return b
    return "full" if data.strip() else "demo"


def is_tiny(profile: str) -> bool:
    return str(profile) in TINY_PROFILES


def paper_label(llm: str) -> str:
    return f"paper: LongVU {llm} on TVBench"


def tiny_label(llm: str | None = None) -> str:
    """Our side of a demo/smoke comparison: the tiny model, shaped like the paper's LLM."""
    family = FAMILIES.get(str(llm))
    return f"ours: {TINY}" + (f" ({family}-shaped)" if family else "")


# ---------------------------------------------------------------------------------------------
# The full profile: numbers beside numbers


def paper_key(table: str, paper_row: str) -> tuple | str:
    """A sweep row's ``paper_row`` string as a key of lib.paper.TABLES[table]."""
    key = tuple(s.strip() for s in paper_row.split(" | ")) if " | " in paper_row else paper_row
    if key not in paper.TABLES[str(table)]:
        raise KeyError(f"paper_row {paper_row!r} is not a row of the paper's Table {table} "
                       f"(lib/paper.py); known: {list(paper.TABLES[str(table)])}")
    return key


def beside_paper(ours: pd.DataFrame, table: str) -> pd.DataFrame:
    """Ours and the paper's numbers interleaved: index (paper row, source), columns tasks + Avg.

    ``ours`` is indexed by ``paper_row`` strings; its columns may be a subset of the paper's
    (MiniTVBench has six tasks), the rest stay empty."""
    ref = paper_frame(table)
    lines = {}
    for pr, r in ours.iterrows():
        key = paper_key(table, pr)
        name = " | ".join(key) if isinstance(key, tuple) else key
        lines[(name, "paper")] = ref.loc[key].to_dict()
        lines[(name, "ours")] = {c: r.get(c, np.nan) for c in paper.COLUMNS}
    df = pd.DataFrame.from_dict(lines, orient="index", columns=paper.COLUMNS)
    if len(df):
        df.index = pd.MultiIndex.from_tuples(df.index, names=["paper row", "source"])
    return df


# ---------------------------------------------------------------------------------------------
# Demo and smoke: directions of effects


def _pairs(table: str, keys: list) -> list[tuple[str, str, object, object]]:
    """(comparison, paper LLM, key a, key b): the effects ``a - b`` that ``keys`` (ours, as
    lib.paper keys) allow. Table 3: video- minus image-trained and normal minus shuffled per
    LLM; Table 4: each pseudo-video row minus "videos" per LLM; Tables 5-8: every row minus
    the first of ours in the paper's order."""
    have = set(keys)
    if table == "3":
        cands = [(llm, "video-trained - image-trained, normal order",
                  ("video-trained", llm, "normal"), ("image-trained", llm, "normal"))
                 for llm in paper.LLM_NAMES.values()]
        cands += [(llm, f"{t}: normal - shuffled frames", (t, llm, "normal"), (t, llm, "shuffled"))
                  for llm in paper.LLM_NAMES.values() for t in ("video-trained", "image-trained")]
    elif table == "4":
        cands = [(llm, f"{d} - videos", (d, llm), ("videos", llm))
                 for llm in paper.LLM_NAMES.values()
                 for d in ("pseudo-videos", "videos + pseudo-videos")]
    else:
        ordered = [k for k in paper.TABLES[str(table)] if k in have]
        cands = [(ABLATION_LLM, f"{k} - {ordered[0]}", k, ordered[0]) for k in ordered[1:]]
    return [(name, llm, a, b) for llm, name, a, b in cands if a in have and b in have]


def _direction(d: float) -> str:
    return "up" if d > 0 else "down" if d < 0 else "no change"


def directions(ours: pd.DataFrame, table: str) -> pd.DataFrame:
    """Signed differences of the average (points), the paper's beside ours, one line per
    comparison ``_pairs`` finds, with each side's direction and whether they agree.

    ``ours`` is indexed by ``paper_row`` strings (``lib.ablations.table3_ours`` or
    ``ours_for_paper`` of a demo/smoke sweep) with an ``Avg`` column; the index of the result
    is (paper model, comparison) and no label of ours carries a real model's name."""
    if "Avg" not in ours.columns:
        raise KeyError(f"our Table {table} rows lack an 'Avg' column; they come from "
                       "lib.ablations.table3_ours or ours_for_paper")
    ref = paper_frame(table)["Avg"]
    avg = {paper_key(table, str(k)): float(v) for k, v in ours["Avg"].items() if pd.notna(v)}
    lines = {}
    for name, llm, a, b in _pairs(table, list(avg)):
        # Directions at the table's 0.1-point resolution; "+ 0.0" turns -0.0 into 0.0.
        p, o = round(ref.loc[a] - ref.loc[b], 1) + 0.0, round(avg[a] - avg[b], 1) + 0.0
        lines[(paper_label(llm), name)] = {
            "ours model": tiny_label(llm if table in ("3", "4") else None),
            "paper diff": p, "ours diff": o, "paper direction": _direction(p),
            "ours direction": _direction(o), "same direction": bool(np.sign(p) == np.sign(o))}
    df = pd.DataFrame.from_dict(lines, orient="index", columns=DIRECTION_COLUMNS)
    if len(df):
        df.index = pd.MultiIndex.from_tuples(df.index, names=["paper model", "comparison"])
    return df


def compare(ours: pd.DataFrame, table: str, profile: str) -> pd.DataFrame:
    """What notebook 05 puts beside the paper: ``beside_paper`` for full, ``directions`` for the
    demo and smoke profiles."""
    return directions(ours, table) if is_tiny(profile) else beside_paper(ours, table)


def caption(table: str, profile: str, what: str = "ours") -> str:
    """The caption of a ``compare`` table (``what``: the name of our rows)."""
    if is_tiny(profile):
        return (f"Table {table}, directions of effects ({profile}): change in the average "
                f"(points), {TINY} beside LongVU on TVBench; magnitudes are not comparable")
    return f"{what} beside the paper's Table {table}"
