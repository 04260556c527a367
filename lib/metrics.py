"""Metrics from predictions alone: accuracy, chance, CIs, paired tests, frame and match counts.

Everything here works on ``predictions.jsonl`` records (written by ``lib.evaluate``, or by
another harness: ``lib.predictions`` reads and matches them) plus, optionally, the ``Benchmark``
they answer (option counts, expected questions): per-task, micro and macro accuracy, data-derived
chance, video-clustered bootstrap CIs, letter-bias baselines, paired comparisons with exact
McNemar tests, and the paper's effect on the ordering tasks (``ordering_effect``). Each group
also counts how records were matched (``matched_by``), identical repeats (``duplicate_records``)
and questions evaluated on short video frames (``short_video``, ``frame_notes``). No model, no
torch. Used by ``lib.evaluate`` (``finalize`` and the ``score``/``compare`` CLI), notebooks 01
and 04, and ``tables``/``plots`` through their inputs.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lib.predictions import (PredictionSet, check_unmatched, match, method_counts,
                             read_prediction_set, read_predictions)
from lib.conditions import CONDITIONS, unit_label
from lib.tvbench import (LETTERS, ORDERING_TASKS, TVBENCH_TASKS, Benchmark, BenchmarkError,
                         Question, open_benchmark, sample_id)
from lib.video import is_short, note_kinds

# Scorer names a prediction record can carry, in report order (``lib.evaluate`` runs them).
SCORINGS = ("paper", "strict", "letter", "option")


def group_label(condition: str, seed, scoring: str) -> str:
    """``condition[@seed]/scoring``, e.g. ``shuffled@0/paper``: how results are keyed."""
    s = None if seed is None or (isinstance(seed, float) and math.isnan(seed)) else int(seed)
    return f"{unit_label(condition, s)}/{scoring}"


def group_records(source: Path | str | list[dict], group: str,
                  questions: Sequence[Question] | None = None) -> list[dict]:
    """The records of one ``condition[@seed]/scoring`` group, e.g. ``shuffled@0/paper``;
    with ``questions``, only theirs (a shared folder may hold more, from a larger LIMIT)."""
    recs = read_predictions(source) if not isinstance(source, list) else source
    keep = None if questions is None else {sample_id(q) for q in questions}
    return [r for r in recs if group_label(r.get("condition", "normal"), r.get("seed"),
                                           r.get("scoring", "paper")) == group
            and (keep is None or r.get("sample_id") in keep)]


# ---------------------------------------------------------------------------------------------
# Accuracy, chance, CIs


def _prediction_set(source: Path | str | Sequence[dict] | PredictionSet) -> PredictionSet:
    if isinstance(source, PredictionSet):
        return source
    if isinstance(source, (str, Path)):
        return read_prediction_set(source)
    return PredictionSet.of(source)


def match_frame(source: Path | str | Sequence[dict] | PredictionSet, bench: Benchmark | None
                ) -> tuple[pd.DataFrame, list[str]]:
    """Records -> (DataFrame with task, video, num_options, sample_id, matched_by, correct; the
    group label of every identical repeat dropped). With ``bench`` every record is matched to a
    question (``lib.predictions.match``: its option count, its sample_id, a check that its answer
    is the data's)."""
    pset = _prediction_set(source)
    if bench is not None:
        pset, qs, how = match(pset, bench)
        df = pd.DataFrame(pset.records)
        df["num_options"] = [len(q.candidates) for q in qs]
        df["sample_id"] = [sample_id(q) for q in qs]
        df["matched_by"] = how
    else:
        check_unmatched(pset)
        df = pd.DataFrame(pset.records)
        if "num_options" not in df:
            raise BenchmarkError("predictions lack num_options; pass --data DIR to score them")
    if "sample_id" not in df:
        df["sample_id"] = df["task"] + "|" + df["video"] + "|" + df["question"]
    for col, default in (("condition", "normal"), ("seed", None), ("scoring", "paper")):
        if col not in df:
            df[col] = default
    pred = df["pred_index"]
    df["correct"] = (pred.notna()
                     & (pred.fillna(-1).astype(int) == df["answer_index"].astype(int)))
    return df, pset.duplicates


def predictions_frame(records: Sequence[dict] | PredictionSet, bench: Benchmark | None
                      ) -> pd.DataFrame:
    """``match_frame`` without the repeat counts."""
    return match_frame(records, bench)[0]


def _cluster_arrays(df) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """task -> (correct per video, questions per video)."""
    out = {}
    for task, g in df.groupby("task", sort=False):
        agg = g.groupby("video", sort=True)["correct"].agg(["sum", "count"])
        out[task] = (agg["sum"].to_numpy(float), agg["count"].to_numpy(float))
    return out


def _boot_weights(n_clusters: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    return rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=n_boot)


def bootstrap(df, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05,
              tasks: Sequence[str] | None = None) -> dict:
    """Percentile CIs for per-task, micro and macro accuracy: resample videos with replacement
    within each task (stratified by task, clustered by video: ES has 200 questions on 41)."""
    rng = np.random.default_rng(seed)
    arr = _cluster_arrays(df)
    tasks = [t for t in (tasks or list(arr)) if t in arr]
    corr = np.zeros((n_boot, len(tasks)))
    cnt = np.zeros((n_boot, len(tasks)))
    for j, t in enumerate(tasks):
        c, n = arr[t]
        w = _boot_weights(len(c), n_boot, rng)
        corr[:, j], cnt[:, j] = w @ c, w @ n
    q = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    per_task = 100 * corr / np.maximum(cnt, 1)
    micro = 100 * corr.sum(1) / cnt.sum(1)
    macro = per_task.mean(1)
    return {"tasks": {t: np.percentile(per_task[:, j], q).tolist() for j, t in enumerate(tasks)},
            "micro": np.percentile(micro, q).tolist(), "macro": np.percentile(macro, q).tolist(),
            "n_boot": n_boot, "seed": seed}


def letter_baselines(df) -> dict:
    """What answering without looking scores: always letter X (micro), and the per-task
    majority gold letter (an oracle on the label distribution, the bias ceiling)."""
    out = {}
    k = df["num_options"].to_numpy()
    gold = df["answer_index"].to_numpy().astype(int)
    for i in range(int(k.max())):
        out[f"always_{LETTERS[i]}"] = 100 * float((gold == i).mean())
    maj = 0
    for _, g in df.groupby("task"):
        maj += int(g["answer_index"].value_counts().iloc[0])
    out["majority_letter"] = 100 * maj / len(df)
    return out


def mcnemar_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value (binomial on the discordant pairs)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    p = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * p)


def score_frame(df, bench: Benchmark | None = None, n_boot: int = 2000, seed: int = 0) -> dict:
    """All metrics for one (condition, seed, scoring) group of predictions."""
    order = [t.key for t in bench.tasks] if bench is not None else list(dict.fromkeys(df["task"]))
    order = [t for t in order if t in set(df["task"])]
    meta = {t.key: t for t in (bench.tasks if bench is not None else TVBENCH_TASKS)}
    ci = bootstrap(df, n_boot, seed, tasks=order) if n_boot else None
    tasks = {}
    for t in order:
        g = df[df["task"] == t]
        tasks[t] = {
            "abbr": meta[t].abbr if t in meta else t, "n": int(len(g)),
            "correct": int(g["correct"].sum()), "acc": 100 * float(g["correct"].mean()),
            "chance": 100 * float((1 / g["num_options"]).mean()),
            "videos": int(g["video"].nunique()),
            "ci": ci["tasks"][t] if ci else None,
        }
    n = int(len(df))
    out = {
        "n": n, "correct": int(df["correct"].sum()),
        "micro": 100 * float(df["correct"].mean()),
        "macro": float(np.mean([v["acc"] for v in tasks.values()])),
        "chance_micro": 100 * float((1 / df["num_options"]).mean()),
        "chance_macro": float(np.mean([v["chance"] for v in tasks.values()])),
        "micro_ci": ci["micro"] if ci else None, "macro_ci": ci["macro"] if ci else None,
        "tasks": tasks, "baselines": letter_baselines(df),
        "pred_letters": {LETTERS[int(i)]: int(c) for i, c in df["pred_index"].dropna()
                         .astype(int).value_counts().sort_index().items()},
        "gold_letters": {LETTERS[int(i)]: int(c) for i, c in
                         df["answer_index"].astype(int).value_counts().sort_index().items()},
        "unanswered": int(df["pred_index"].isna().sum()),
    }
    if "parse" in df:
        out["parse"] = {str(k): int(v) for k, v in df["parse"].value_counts().items()}
        out["parse_by_task"] = {t: {str(k): int(v) for k, v in
                                    df[df["task"] == t]["parse"].value_counts().items()}
                                for t in order}
    if bench is not None:
        out["expected"] = len(bench.questions)
        out["missing_predictions"] = len(bench.questions) - n
        out["skipped_missing_video"] = len(bench.skipped)
        out["skipped_videos"] = bench.skipped_videos
    if "matched_by" in df:
        out["matched_by"] = method_counts(df["matched_by"].tolist())
    out.update(frame_counts(df))
    return out


def frame_counts(df: pd.DataFrame) -> dict:
    """Questions evaluated on short video frames (``lib.video.SHORT_NOTES``) and every note kind
    (``frame_notes``), from the records' ``frame_note``."""
    notes = (df["frame_note"].fillna("").astype(str).tolist() if "frame_note" in df
             else [""] * len(df))
    short = sorted({sid for sid, note in zip(df["sample_id"], notes) if is_short(note)})
    kinds = Counter(k for note in notes for k in dict.fromkeys(note_kinds(note)))
    return {"short_video": len(short), "short_video_questions": short,
            "frame_notes": dict(sorted(kinds.items()))}


def _groups(df):
    """(label, sub-frame) per (condition, seed, scoring), normal/paper first."""
    rank = {c: i for i, c in enumerate(CONDITIONS)}
    keys = df[["condition", "seed", "scoring"]].astype(object).where(
        df[["condition", "seed", "scoring"]].notna(), None)
    df = df.assign(_c=keys["condition"], _s=keys["seed"], _m=keys["scoring"])
    out = []
    for (c, s, m), g in df.groupby(["_c", "_s", "_m"], dropna=False, sort=False):
        s = None if s is None or (isinstance(s, float) and math.isnan(s)) else int(s)
        out.append(((rank.get(c, 99), c, -1 if s is None else s, m != "paper", m),
                    group_label(c, s, m), g.drop(columns=["_c", "_s", "_m"])))
    return [(lab, g) for _, lab, g in sorted(out, key=lambda x: x[0])]


def score(predictions: Path | str | list[dict] | PredictionSet,
          data: Path | str | Benchmark | None = None, n_boot: int = 2000, seed: int = 0,
          on_missing: str = "skip") -> dict[str, dict]:
    """Metrics per (condition, seed, scoring) group: ``{"normal/paper": {...}, ...}``.

    ``data`` (a folder or a ``Benchmark``) supplies option counts and the list of expected
    questions, and lets records from another harness be matched (``matched_by``); videos need
    not be present. Identical repeats are counted once (``duplicate_records``).
    """
    pset = _prediction_set(predictions)
    if not pset.records:
        raise BenchmarkError(f"{predictions if isinstance(predictions, (str, Path)) else 'input'}"
                             ": no predictions")
    bench = data if isinstance(data, Benchmark) or data is None else open_benchmark(
        data, on_missing=on_missing, release=None, require_videos=False)
    df, dups = match_frame(pset, bench)
    dups_by_group = Counter(dups)
    res = {lab: score_frame(g, bench, n_boot, seed) for lab, g in _groups(df)}
    for lab, m in res.items():
        m["duplicate_records"] = dups_by_group.get(lab, 0)
    cfg = Path(predictions) / "config.json" if isinstance(predictions, (str, Path)) else None
    if cfg is not None and cfg.exists() and not isinstance(data, Benchmark):
        run_cfg = json.loads(cfg.read_text())  # a run dir remembers what it skipped
        for m in res.values():
            m["skipped_missing_video"] = run_cfg.get("skipped_missing_video", 0)
            m["skipped_videos"] = run_cfg.get("skipped_videos", [])
    return res


def paired(a: list[dict] | Path | str, b: list[dict] | Path | str,
           data: Path | str | Benchmark | None = None, n_boot: int = 2000, seed: int = 0) -> dict:
    """Run B minus run A on the questions both answered (e.g. shuffled - normal): the
    difference in micro/macro/per-task accuracy with a paired, video-clustered bootstrap CI,
    and exact McNemar p-values. Each input must hold one (condition, seed, scoring) group."""
    bench = data if isinstance(data, Benchmark) or data is None else open_benchmark(
        data, release=None, require_videos=False)
    fa = predictions_frame(read_predictions(a) if not isinstance(a, list) else a, bench)
    fb = predictions_frame(read_predictions(b) if not isinstance(b, list) else b, bench)
    for name, f in (("A", fa), ("B", fb)):
        if len(_groups(f)) != 1:
            raise BenchmarkError(f"paired: input {name} holds {len(_groups(f))} condition/"
                                 "scoring groups; filter to one first")
    m = fa[["sample_id", "task", "video", "correct"]].merge(
        fb[["sample_id", "correct"]], on="sample_id", suffixes=("_a", "_b"))
    if m.empty:
        raise BenchmarkError("paired: the two runs share no question")
    tasks = list(dict.fromkeys(m["task"]))
    rng = np.random.default_rng(seed)
    da = np.zeros((n_boot, len(tasks)))
    db = np.zeros((n_boot, len(tasks)))
    dn = np.zeros((n_boot, len(tasks)))
    per_task = {}
    for j, t in enumerate(tasks):
        g = m[m["task"] == t]
        agg = g.groupby("video")[["correct_a", "correct_b"]].agg(["sum", "count"])
        ca = agg[("correct_a", "sum")].to_numpy(float)
        cb = agg[("correct_b", "sum")].to_numpy(float)
        n = agg[("correct_a", "count")].to_numpy(float)
        w = _boot_weights(len(n), n_boot, rng)
        da[:, j], db[:, j], dn[:, j] = w @ ca, w @ cb, w @ n
        bb = int((g["correct_a"] & ~g["correct_b"]).sum())
        cc = int((~g["correct_a"] & g["correct_b"]).sum())
        diff = 100 * (g["correct_b"].mean() - g["correct_a"].mean())
        lo, hi = np.percentile(100 * (db[:, j] - da[:, j]) / np.maximum(dn[:, j], 1), [2.5, 97.5])
        per_task[t] = {"n": int(len(g)), "a": 100 * float(g["correct_a"].mean()),
                       "b": 100 * float(g["correct_b"].mean()), "diff": float(diff),
                       "ci": [float(lo), float(hi)], "a_only": bb, "b_only": cc,
                       "mcnemar_p": mcnemar_p(bb, cc)}
    micro_b = 100 * (db.sum(1) - da.sum(1)) / dn.sum(1)
    macro_b = (100 * (db - da) / np.maximum(dn, 1)).mean(1)
    a_only = int((m["correct_a"] & ~m["correct_b"]).sum())
    b_only = int((~m["correct_a"] & m["correct_b"]).sum())
    micro_a, micro_b_ = 100 * m["correct_a"].mean(), 100 * m["correct_b"].mean()
    return {
        "n": int(len(m)), "micro_a": float(micro_a), "micro_b": float(micro_b_),
        "micro_diff": float(micro_b_ - micro_a),
        "micro_ci": np.percentile(micro_b, [2.5, 97.5]).tolist(),
        "macro_diff": float(np.mean([v["diff"] for v in per_task.values()])),
        "macro_ci": np.percentile(macro_b, [2.5, 97.5]).tolist(),
        "a_only": a_only, "b_only": b_only, "mcnemar_p": mcnemar_p(a_only, b_only),
        "flip_rate": 100 * float((m["correct_a"] != m["correct_b"]).mean()),
        "tasks": per_task,
    }


def paired_differences(sources: Mapping[str, Path | str], bench: Benchmark,
                       scorings: Sequence[str], units: Sequence[str] = (),
                       questions: Sequence[Question] | None = None, base: str | None = None,
                       n_boot: int = 2000, seed: int = 0,
                       name: str = "{label} [{scoring}]: {unit} - normal") -> dict[str, dict]:
    """``paired`` for every model (label -> predictions source) and scorer: each condition unit
    (``shuffled@0``, ``reversed``, ...; ``normal`` itself is skipped) minus normal order, keyed
    by ``name``; with ``base`` (a label of ``sources``) also every other model minus the base
    under normal order ("<label> - base [<scoring>], normal"). ``questions`` restricts both
    sides (a shared folder may hold more)."""
    out = {}
    for label, src in sources.items():
        for sc in scorings:
            for unit in [u for u in units if u != "normal"]:
                out[name.format(label=label, scoring=sc, unit=unit)] = paired(
                    group_records(src, f"normal/{sc}", questions),
                    group_records(src, f"{unit}/{sc}", questions), bench, n_boot=n_boot,
                    seed=seed)
    for label in [k for k in sources if base is not None and k != base]:
        for sc in scorings:
            out[f"{label} - base [{sc}], normal"] = paired(
                group_records(sources[base], f"normal/{sc}", questions),
                group_records(sources[label], f"normal/{sc}", questions), bench,
                n_boot=n_boot, seed=seed)
    return out


def seed_spread(res: dict[str, dict], condition: str = "shuffled", scoring: str = "paper"
                ) -> dict | None:
    """Mean and sd of micro accuracy over the shuffle seeds of a run."""
    vals = [m["micro"] for g, m in res.items()
            if g.startswith(condition + "@") and g.endswith("/" + scoring)]
    if not vals:
        return None
    return {"mean": float(np.mean(vals)), "sd": float(np.std(vals, ddof=1)) if len(vals) > 1
            else 0.0, "seeds": len(vals)}


def scorer_agreement(source: Path | str | list[dict], condition: str = "normal",
                     seed: int | None = None):
    """How often the scorers pick the same option on the same questions (pairwise %)."""
    recs = read_predictions(source) if not isinstance(source, list) else source
    picks: dict[str, dict[str, Any]] = {}
    for r in recs:
        if r.get("condition", "normal") == condition and r.get("seed") == seed:
            picks.setdefault(r.get("scoring", "paper"), {})[r["sample_id"]] = r["pred_index"]
    names = [s for s in SCORINGS if s in picks]
    out = pd.DataFrame(index=names, columns=names, dtype=float)
    for a in names:
        for b in names:
            shared = picks[a].keys() & picks[b].keys()
            out.loc[a, b] = 100 * np.mean([picks[a][k] == picks[b][k] for k in shared]) \
                if shared else np.nan
    return out


# ---------------------------------------------------------------------------------------------
# The paper's phenomenon in one table: does pseudo-video training help on ordering tasks, and
# does the help vanish when the frame order is destroyed?


def ordering_effect(base_src: Path | str, tuned_src: Path | str, bench: Benchmark,
                    scoring: str, shuffle_seed: int = 0, tasks: Sequence[str] = ORDERING_TASKS,
                    n_boot: int = 2000, seed: int = 0) -> dict[str, dict]:
    """Paired effects on the ordering tasks present: tuned - base under normal order (the gain),
    the same under shuffled frames (what survives without order), and tuned shuffled - normal."""
    present = [t for t in tasks if t in {q.task for q in bench.questions}]
    if not present:
        raise ValueError(f"none of the ordering tasks {list(tasks)} is in {bench.root}")
    shuf = f"shuffled@{shuffle_seed}/{scoring}"

    def recs(src, group):
        out = [r for r in group_records(src, group) if r["task"] in present]
        if not out:
            raise ValueError(f"{src}: no {group} predictions on {present}; evaluate that "
                             "condition and scorer first")
        return out

    pairs = {
        "gain_normal": (recs(base_src, f"normal/{scoring}"), recs(tuned_src, f"normal/{scoring}")),
        "gain_shuffled": (recs(base_src, shuf), recs(tuned_src, shuf)),
        "tuned_shuffled_minus_normal": (recs(tuned_src, f"normal/{scoring}"),
                                        recs(tuned_src, shuf)),
    }
    out = {}
    for name, (a, b) in pairs.items():
        p = paired(a, b, bench, n_boot=n_boot, seed=seed)
        out[name] = {"tasks": "+".join(present), "scoring": scoring, "n": p["n"],
                     "a": p["micro_a"], "b": p["micro_b"], "diff": p["micro_diff"],
                     "ci_lo": p["micro_ci"][0], "ci_hi": p["micro_ci"][1],
                     "mcnemar_p": p["mcnemar_p"]}
    g, s = out["gain_normal"]["diff"], out["gain_shuffled"]["diff"]
    out["gain_normal"]["gain_kept_when_shuffled"] = (s / g) if g > 0 else None
    return out


def ordering_effects(sources: Mapping[str, Path | str], bench: Benchmark, scoring: str,
                     shuffle_seed: int = 0, n_boot: int = 2000, seed: int = 0
                     ) -> dict[str, dict[str, dict]]:
    """``ordering_effect`` of every model after the first (the start checkpoint) against it:
    label -> the three comparisons (notebook 04; recorded by ``lib.results.record_effect``)."""
    base = next(iter(sources.values()))
    return {label: ordering_effect(base, src, bench, scoring, shuffle_seed=shuffle_seed,
                                   n_boot=n_boot, seed=seed)
            for label, src in list(sources.items())[1:]}

