"""TVBench-layout benchmarks: tasks, loading, frame sampling, conditions, metrics and the CLI.

Used by notebook 00 (checks real TVBench and the generated MiniTVBench with the same code),
01 and 04 (evaluation, through ``lib.evaluate`` which runs models). The on-disk layout is
TVBench's (MVBench format)::

    DIR/json/<task>.json      list of {video, question, candidates, answer[, start, end]}
    DIR/video/<task>/<video>  .mp4 / .MP4 / .avi

Frames: ``Sampler("paper")`` is the protocol of the paper (LongVU's MVBench script retargeted to
TVBench): every ``round(fps/2)``-th frame of the clip, or of the [start, end] window for the
bounded tasks; ``Sampler("uniform", n)`` takes n segment midpoints. Conditions (normal, shuffled
with a seed, reversed, static, blind) are applied to the sampled stack. Metrics work on
predictions alone (``score``): per-task, micro and macro accuracy, data-derived chance,
video-clustered bootstrap CIs, paired comparisons and letter-bias baselines.

CLI::

    python -m lib.tvbench eval --model PATH_OR_ID --data DIR --condition normal --scoring paper \\
        --out RUN_DIR [--limit N]
    python -m lib.tvbench score --data DIR --predictions FILE_OR_RUN_DIR [--json OUT]
    python -m lib.tvbench compare --data DIR A.jsonl B.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lib.paper import TABLE3 as _T3  # the paper's numbers live in one place


@dataclass(frozen=True)
class Task:
    key: str  # file stem: json/<key>.json and video/<key>/
    name: str
    abbr: str
    bound: bool  # questions carry start/end (seconds) and only that window is shown
    n: int | None = None  # questions in the known release
    num_options: int | None = None


# The revised TVBench release (25 Oct 2024, 2,525 questions); eval_anchors.md 1.3.
TVBENCH_TASKS = [
    Task("action_count", "Action Count", "AC", False, 536, 4),
    Task("object_count", "Object Count", "OC", False, 148, 4),
    Task("action_sequence", "Action Sequence", "AS", True, 437, 2),
    Task("object_shuffle", "Object Shuffle", "OS", False, 225, 3),
    Task("scene_transition", "Scene Transition", "ST", False, 185, 2),
    Task("action_localization", "Action Localization", "AL", True, 160, 4),
    Task("action_antonym", "Action Antonym", "AA", False, 320, 2),
    Task("unexpected_action", "Unexpected Action", "UA", False, 82, 4),
    Task("egocentric_sequence", "Egocentric Sequence", "ES", False, 200, 4),
    Task("moving_direction", "Moving Direction", "MD", False, 232, 4),
]
RELEASES = {"tvbench-2525": TVBENCH_TASKS}
# The tasks whose answer is an order of events: where pseudo-video training should help and frame
# shuffling should hurt (the paper's headline; MiniTVBench has the first two).
ORDERING_TASKS = ("scene_transition", "action_sequence", "egocentric_sequence")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # option letters, in candidate order
VIDEO_EXTENSIONS = (".mp4", ".MP4", ".avi")

TVBENCH_DOWNLOAD = (
    "TVBench is on the Hugging Face hub (dataset FunAILab/TVBench):\n"
    "  hf download FunAILab/TVBench --repo-type dataset --local-dir {root}\n"
    "  cd {root}/video && for z in *.zip; do unzip -q \"$z\"; done\n"
    "The Action Antonym videos (NTU RGB+D) are not on the hub: request the TVBench subset from\n"
    "NTU ROSE (https://rose1.ntu.edu.sg/dataset/actionRecognition/) and unpack it into\n"
    "{root}/video/action_antonym/, or evaluate with --on-missing skip and report the skip count."
)


class BenchmarkError(ValueError):
    """A benchmark folder, json file or item is missing or malformed."""


@dataclass(frozen=True)
class Question:
    task: str
    index: int  # position in json/<task>.json
    video: str
    video_path: Path
    question: str
    candidates: tuple[str, ...]
    answer_index: int
    start: float | None = None
    end: float | None = None


@dataclass
class BenchmarkReport:
    root: Path
    tasks: dict[str, int] = field(default_factory=dict)  # task -> questions
    videos: dict[str, int] = field(default_factory=dict)  # task -> distinct video files present
    missing_videos: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    release: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and not self.missing_videos

    @property
    def num_questions(self) -> int:
        return sum(self.tasks.values())


def task_table(root: Path | str) -> list[Task]:
    """The tasks present under ``root/json``, with known metadata where the task is TVBench's."""
    known = {t.key: t for t in TVBENCH_TASKS}
    json_dir = Path(root) / "json"
    if not json_dir.is_dir():
        raise BenchmarkError(f"{json_dir}: folder not found; a TVBench-layout benchmark has "
                             "json/<task>.json and video/<task>/.\n"
                             + TVBENCH_DOWNLOAD.format(root=Path(root)))
    meta_file = Path(root) / "tasks.json"  # optional: written by lib.assets for MiniTVBench
    extra = {}
    if meta_file.exists():
        for t in json.loads(meta_file.read_text()):
            extra[t["key"]] = Task(**t)
    tasks = []
    for f in sorted(json_dir.glob("*.json")):
        tasks.append(extra.get(f.stem) or known.get(f.stem) or Task(f.stem, f.stem, f.stem, False))
    if not tasks:
        raise BenchmarkError(f"{json_dir}: no <task>.json files.")
    return tasks


def video_path(root: Path | str, task: str, video: str) -> Path:
    """Where a task's video lives in the layout: ``root/video/<task>/<video>``."""
    return Path(root) / "video" / task / video


def write_benchmark(root: Path | str, tasks: Sequence[Task], items: dict[str, list[dict]]
                    ) -> dict[str, int]:
    """The one TVBench-layout writer (MiniTVBench in ``lib.assets``, held-out pseudo-videos in
    ``lib.pseudo_video``): ``json/<task>.json`` with ``items[task.key]`` in the given order and
    ``tasks.json`` with the task table. Videos go to ``video_path`` (written by the caller with
    ``lib.video.write_video`` as they are generated). Returns questions per task."""
    root = Path(root)
    (root / "json").mkdir(parents=True, exist_ok=True)
    for t in tasks:
        (root / "json" / f"{t.key}.json").write_text(json.dumps(items[t.key], indent=1))
    (root / "tasks.json").write_text(json.dumps([asdict(t) for t in tasks], indent=1))
    return {t.key: len(items[t.key]) for t in tasks}


def resolve_video(root: Path, task: str, video: str) -> Path | None:
    """The video file, accepting the extensions TVBench uses (ES videos are upper-case .MP4)."""
    p = video_path(root, task, video)
    if p.exists():
        return p
    stem = p.with_suffix("")
    for ext in VIDEO_EXTENSIONS:
        if stem.with_suffix(ext).exists():
            return stem.with_suffix(ext)
    return None


def load_task(root: Path | str, task: Task, problems: list[str] | None = None,
              missing: list[str] | None = None) -> list[Question]:
    """Read and check one ``json/<task>.json``; problems and missing videos are appended, not raised."""
    root = Path(root)
    path = root / "json" / f"{task.key}.json"
    problems = [] if problems is None else problems
    missing = [] if missing is None else missing
    try:
        items = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        problems.append(f"{path}: not valid JSON ({e}); re-download the annotations.")
        return []
    if not isinstance(items, list):
        problems.append(f"{path}: expected a JSON list of questions, got {type(items).__name__}.")
        return []
    out = []
    for i, it in enumerate(items):
        where = f"{path} item {i}"
        need = ["video", "question", "candidates", "answer"] + (["start", "end"] if task.bound else [])
        lacking = [k for k in need if k not in it]
        if lacking:
            problems.append(f"{where}: missing field(s) {lacking}" + (
                " (bounded tasks need start/end in seconds)" if {"start", "end"} & set(lacking)
                else ""))
            continue
        cands = it["candidates"]
        if not isinstance(cands, list) or len(cands) < 2:
            problems.append(f"{where}: 'candidates' must be a list of at least 2 options.")
            continue
        hits = [j for j, c in enumerate(cands) if c == it["answer"]]
        if len(hits) != 1:
            problems.append(f"{where}: answer {it['answer']!r} appears {len(hits)} times among "
                            f"candidates {cands}; it must equal exactly one candidate.")
            continue
        start = end = None
        if task.bound:
            start, end = it["start"], it["end"]
            if not (isinstance(start, (int, float)) and isinstance(end, (int, float))
                    and 0 <= start < end):
                problems.append(f"{where}: bounds start={start!r} end={end!r} are not "
                                "0 <= start < end (seconds).")
                continue
            start, end = float(start), float(end)
        video = resolve_video(root, task.key, it["video"])
        if video is None:
            missing.append(f"video/{task.key}/{it['video']}")
            video = root / "video" / task.key / it["video"]
        out.append(Question(task.key, i, it["video"], video, it["question"], tuple(cands),
                            hits[0], start, end))
    return out


def validate(root: Path | str, release: str | None = None,
             raise_on_error: bool = True) -> BenchmarkReport:
    """Check every task file and video; with ``release`` also the known per-task counts.

    Raises ``BenchmarkError`` listing every problem and every missing video (all of them, so one
    download fixes the lot) unless ``raise_on_error`` is False.
    """
    root = Path(root)
    report = BenchmarkReport(root=root, release=release)
    tasks = task_table(root)
    for task in tasks:
        qs = load_task(root, task, report.problems, report.missing_videos)
        report.tasks[task.key] = len(qs)
        report.videos[task.key] = len({q.video_path for q in qs if q.video_path.exists()})
    if release is not None:
        if release not in RELEASES:
            raise BenchmarkError(f"unknown release {release!r}; known: {sorted(RELEASES)}")
        for t in RELEASES[release]:
            got = report.tasks.get(t.key)
            if got is None:
                report.problems.append(f"{root}/json/{t.key}.json: missing ({release} has it)")
            elif got != t.n:
                report.problems.append(f"{root}/json/{t.key}.json: {got} valid questions, "
                                       f"{release} has {t.n}; wrong version or broken items.")
    report.missing_videos = sorted(set(report.missing_videos))
    if raise_on_error and not report.ok:
        lines = list(report.problems)
        if report.missing_videos:
            lines.append(f"{len(report.missing_videos)} video file(s) missing under {root}:\n    "
                         + "\n    ".join(report.missing_videos))
            lines.append(TVBENCH_DOWNLOAD.format(root=root))
        raise BenchmarkError(f"{root}: benchmark is not usable:\n  " + "\n  ".join(lines))
    return report


# ---------------------------------------------------------------------------------------------
# Loading with a missing-video policy


ON_MISSING = ("error", "skip")


@dataclass
class Benchmark:
    """The questions to evaluate plus what was left out and why (reported in every result)."""

    root: Path
    tasks: list[Task]
    questions: list[Question]
    skipped: list[Question] = field(default_factory=list)  # missing video, on_missing="skip"
    release: str | None = None
    json_sha256: dict[str, str] = field(default_factory=dict)

    def task(self, key: str) -> Task:
        return next(t for t in self.tasks if t.key == key)

    @property
    def skipped_videos(self) -> list[str]:
        return sorted({f"video/{q.task}/{q.video}" for q in self.skipped})


def detect_release(root: Path | str) -> str | None:
    """``tvbench-2525`` when ``root/json`` holds exactly TVBench's 10 task files (and no
    MiniTVBench ``tasks.json``), else None (no count check)."""
    root = Path(root)
    if (root / "tasks.json").exists():
        return None
    have = {p.stem for p in (root / "json").glob("*.json")}
    return "tvbench-2525" if have == {t.key for t in TVBENCH_TASKS} else None


def open_benchmark(root: Path | str, tasks: Sequence[str] | None = None,
                   on_missing: str = "error", release: str | None = "auto",
                   require_videos: bool = True) -> Benchmark:
    """Load and validate a TVBench-layout folder.

    Malformed items always raise (``BenchmarkError`` listing every problem). A missing video
    raises listing every missing file unless ``on_missing="skip"``, which drops those questions
    and keeps them in ``Benchmark.skipped``; no frame is ever substituted. ``release="auto"``
    checks the revised TVBench counts when the folder looks like TVBench; pass None to evaluate
    another version. ``require_videos=False`` (scoring from predictions) ignores videos.
    """
    if on_missing not in ON_MISSING:
        raise ValueError(f"on_missing must be one of {ON_MISSING}, got {on_missing!r}")
    root = Path(root)
    if release == "auto":
        release = detect_release(root)
    table = [t for t in task_table(root) if tasks is None or t.key in tasks]
    if tasks is not None:
        unknown = sorted(set(tasks) - {t.key for t in table})
        if unknown:
            raise BenchmarkError(f"{root}/json: no task file(s) for {unknown}; have "
                                 f"{[t.key for t in task_table(root)]}")
    problems: list[str] = []
    missing: list[str] = []
    questions: list[Question] = []
    sha = {}
    for t in table:
        f = root / "json" / f"{t.key}.json"
        sha[t.key] = hashlib.sha256(f.read_bytes()).hexdigest()
        questions.extend(load_task(root, t, problems, missing))
    if release is not None:
        if release not in RELEASES:
            raise BenchmarkError(f"unknown release {release!r}; known: {sorted(RELEASES)}")
        counts = Counter(q.task for q in questions)
        for t in RELEASES[release]:
            if tasks is not None and t.key not in tasks:
                continue
            if counts.get(t.key, 0) != t.n:
                problems.append(f"{root}/json/{t.key}.json: {counts.get(t.key, 0)} valid questions"
                                f", {release} has {t.n}; wrong version or broken items (pass "
                                "release=None / --release none to evaluate another version).")
    if problems:
        raise BenchmarkError(f"{root}: benchmark is not usable:\n  " + "\n  ".join(problems))
    skipped: list[Question] = []
    if require_videos and missing:
        missing = sorted(set(missing))
        if on_missing == "error":
            raise BenchmarkError(
                f"{root}: {len(missing)} video file(s) missing (no frame is substituted):\n    "
                + "\n    ".join(missing) + "\n" + TVBENCH_DOWNLOAD.format(root=root))
        skipped = [q for q in questions if not q.video_path.exists()]
        questions = [q for q in questions if q.video_path.exists()]
    return Benchmark(root, table, questions, skipped, release, sha)


def load(root: Path | str, tasks: list[str] | None = None, on_missing: str = "error"
         ) -> list[Question]:
    """All questions of a validated benchmark (optionally a subset of tasks), in task order."""
    return open_benchmark(root, tasks, on_missing, release=None).questions


def sample_id(q: Question) -> str:
    """Stable id of a question within a benchmark: ``<task>/<position in the json>``."""
    return f"{q.task}/{q.index}"


# ---------------------------------------------------------------------------------------------
# Conditions


CONDITIONS = ("normal", "shuffled", "reversed", "static", "blind")
BLIND_SIZE = 1024  # the paper's "single black frame" control is one 1024x1024 black frame


def condition_units(conditions: Iterable[str], seeds: Sequence[int] = (0,)
                    ) -> list[tuple[str, int | None]]:
    """(condition, seed) pairs to run: every seed for ``shuffled``, seed None otherwise."""
    out: list[tuple[str, int | None]] = []
    for c in conditions:
        if c not in CONDITIONS:
            raise ValueError(f"unknown condition {c!r}; choose from {CONDITIONS}")
        out.extend([(c, int(s)) for s in seeds] if c == "shuffled" else [(c, None)])
    return list(dict.fromkeys(out))


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def apply_condition(frames: np.ndarray, condition: str, seed: int | None = None,
                    key: str = "") -> tuple[np.ndarray, list[int] | None]:
    """The frames a model sees under ``condition`` and the order used (None for blind).

    shuffled: a permutation drawn from (seed, key), so every question gets its own order, the
    same one on every run and process (the paper's shuffle was unseeded).
    """
    t = len(frames)
    if condition == "normal":
        return frames, list(range(t))
    if condition == "shuffled":
        if seed is None:
            raise ValueError("the shuffled condition needs a seed")
        perm = np.random.default_rng([int(seed), _stable_int(key)]).permutation(t)
        return frames[perm], perm.tolist()
    if condition == "reversed":
        return frames[::-1].copy(), list(range(t - 1, -1, -1))
    if condition == "static":
        return np.repeat(frames[:1], t, axis=0), [0] * t
    if condition == "blind":
        return np.zeros((1, BLIND_SIZE, BLIND_SIZE, 3), np.uint8), None
    raise ValueError(f"unknown condition {condition!r}; choose from {CONDITIONS}")


def unit_label(condition: str, seed: int | None) -> str:
    return condition if seed is None else f"{condition}@{seed}"


# ---------------------------------------------------------------------------------------------
# Predictions files


REQUIRED_FIELDS = ("task", "video", "question", "pred_index", "answer_index")


def prediction_key(rec: dict) -> tuple:
    """One prediction per (question, condition, seed, scoring)."""
    return (rec.get("sample_id") or f"{rec['task']}|{rec['video']}|{rec['question']}",
            rec.get("condition", "normal"), rec.get("seed"), rec.get("scoring", "paper"))


def prediction_files(path: Path | str) -> list[Path]:
    """A file, or a run dir's predictions.jsonl plus any per-rank shard files."""
    p = Path(path)
    if p.is_dir():
        return sorted(p.glob("predictions*.jsonl"))
    return [p]


def read_predictions(path: Path | str) -> list[dict]:
    """All complete records (a torn last line from a killed run is ignored), de-duplicated by
    ``prediction_key`` (first occurrence wins, so a resumed run never counts twice)."""
    files = prediction_files(path)
    if not files or not all(f.exists() for f in files):
        raise FileNotFoundError(f"{path}: no predictions file (expected predictions.jsonl)")
    seen, out = set(), []
    for f in files:
        for n, line in enumerate(f.read_text().splitlines()):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # torn write; the question is redone on resume
            lacking = [k for k in REQUIRED_FIELDS if k not in rec]
            if lacking:
                raise BenchmarkError(f"{f} line {n + 1}: missing field(s) {lacking}; a "
                                     f"prediction needs {list(REQUIRED_FIELDS)}")
            k = prediction_key(rec)
            if k not in seen:
                seen.add(k)
                out.append(rec)
    return out


# ---------------------------------------------------------------------------------------------
# Metrics



def _frame(records: list[dict], bench: Benchmark | None):
    """Records -> DataFrame with task, video, num_options, correct (joined to the benchmark
    when given: it supplies option counts and checks that every record is a known question)."""
    import pandas as pd

    df = pd.DataFrame(records)
    if bench is not None:
        by_id = {sample_id(q): q for q in bench.questions + bench.skipped}
        by_text = {(q.task, q.video, q.question): q for q in bench.questions + bench.skipped}
        qs = []
        for r in records:
            q = by_id.get(r.get("sample_id")) if r.get("sample_id") else None
            q = q or by_text.get((r["task"], r["video"], r["question"]))
            if q is None:
                raise BenchmarkError(f"prediction for task {r['task']!r} video {r['video']!r} "
                                     f"question {r['question'][:60]!r} matches no question in "
                                     f"{bench.root}; wrong --data?")
            if int(r["answer_index"]) != q.answer_index:
                raise BenchmarkError(f"prediction for {sample_id(q)} has answer_index "
                                     f"{r['answer_index']} but the data says {q.answer_index}")
            qs.append(q)
        df["num_options"] = [len(q.candidates) for q in qs]
        df["sample_id"] = [sample_id(q) for q in qs]
    elif "num_options" not in df:
        raise BenchmarkError("predictions lack num_options; pass --data DIR to score them")
    if "sample_id" not in df:
        df["sample_id"] = df["task"] + "|" + df["video"] + "|" + df["question"]
    for col, default in (("condition", "normal"), ("seed", None), ("scoring", "paper")):
        if col not in df:
            df[col] = default
    pred = df["pred_index"]
    df["correct"] = (pred.notna() & (pred.fillna(-1).astype(int) == df["answer_index"].astype(int)))
    return df


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


def _exact_binom_p(b: int, c: int) -> float:
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
        "pred_letters": {LETTERS[int(i)]: int(c) for i, c in
                         df["pred_index"].dropna().astype(int).value_counts().sort_index().items()},
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
    return out


def group_label(condition: str, seed, scoring: str) -> str:
    s = None if seed is None or (isinstance(seed, float) and math.isnan(seed)) else int(seed)
    return f"{unit_label(condition, s)}/{scoring}"


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


def score(predictions: Path | str | list[dict], data: Path | str | Benchmark | None = None,
          n_boot: int = 2000, seed: int = 0, on_missing: str = "skip") -> dict[str, dict]:
    """Metrics per (condition, seed, scoring) group: ``{"normal/paper": {...}, ...}``.

    ``data`` (a folder or a ``Benchmark``) supplies option counts and the list of expected
    questions; videos need not be present.
    """
    records = read_predictions(predictions) if not isinstance(predictions, list) else predictions
    if not records:
        raise BenchmarkError(f"{predictions}: no predictions")
    bench = data if isinstance(data, Benchmark) or data is None else open_benchmark(
        data, on_missing=on_missing, release=None, require_videos=False)
    df = _frame(records, bench)
    res = {lab: score_frame(g, bench, n_boot, seed) for lab, g in _groups(df)}
    cfg = Path(predictions) / "config.json" if not isinstance(predictions, list) else None
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
    fa = _frame(read_predictions(a) if not isinstance(a, list) else a, bench)
    fb = _frame(read_predictions(b) if not isinstance(b, list) else b, bench)
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
        ca, cb = agg[("correct_a", "sum")].to_numpy(float), agg[("correct_b", "sum")].to_numpy(float)
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
                       "mcnemar_p": _exact_binom_p(bb, cc)}
    micro_b = 100 * (db.sum(1) - da.sum(1)) / dn.sum(1)
    macro_b = (100 * (db - da) / np.maximum(dn, 1)).mean(1)
    a_only = int((m["correct_a"] & ~m["correct_b"]).sum())
    b_only = int((~m["correct_a"] & m["correct_b"]).sum())
    micro_a, micro_b_ = 100 * m["correct_a"].mean(), 100 * m["correct_b"].mean()
    return {
        "n": int(len(m)), "micro_a": float(micro_a), "micro_b": float(micro_b_),
        "micro_diff": float(micro_b_ - micro_a), "micro_ci": np.percentile(micro_b, [2.5, 97.5]).tolist(),
        "macro_diff": float(np.mean([v["diff"] for v in per_task.values()])),
        "macro_ci": np.percentile(macro_b, [2.5, 97.5]).tolist(),
        "a_only": a_only, "b_only": b_only, "mcnemar_p": _exact_binom_p(a_only, b_only),
        "flip_rate": 100 * float((m["correct_a"] != m["correct_b"]).mean()),
        "tasks": per_task,
    }


# ---------------------------------------------------------------------------------------------
# The paper's numbers and a Table 3 layout


TABLE_COLUMNS = [t.abbr for t in TVBENCH_TASKS]


def paper_table3():
    """The paper's Table 3 as a DataFrame (index: training, LLM, condition; columns: the ten
    task abbreviations and Avg)."""
    import pandas as pd

    idx = pd.MultiIndex.from_tuples(list(_T3), names=["training", "LLM", "condition"])
    return pd.DataFrame(list(_T3.values()), index=idx, columns=TABLE_COLUMNS + ["Avg"])


def table_row(metrics: dict, ci: bool = False) -> dict[str, Any]:
    """One Table-3-style row (task abbreviations + Avg = micro) from ``score_frame`` output;
    with ``ci`` each cell is 'acc [lo, hi]'."""
    row: dict[str, Any] = {}
    for t in metrics["tasks"].values():
        row[t["abbr"]] = (f"{t['acc']:.1f} [{t['ci'][0]:.0f}, {t['ci'][1]:.0f}]"
                          if ci and t["ci"] else round(t["acc"], 1))
    lo_hi = metrics.get("micro_ci")
    row["Avg"] = (f"{metrics['micro']:.1f} [{lo_hi[0]:.1f}, {lo_hi[1]:.1f}]" if ci and lo_hi
                  else round(metrics["micro"], 1))
    row["macro"] = round(metrics["macro"], 1)
    row["n"] = metrics["n"]
    return row


def results_table(rows: dict[str, dict], paper: Sequence[tuple[str, str, str]] = (),
                  ci: bool = False):
    """Our rows (label -> ``score_frame`` metrics) under the paper's chosen Table 3 rows, plus a
    chance row computed from the data of the first of ours."""
    import pandas as pd

    out = []
    t3 = paper_table3()
    for key in paper:
        r = t3.loc[key].to_dict()
        r["macro"] = round(float(np.mean([r[c] for c in TABLE_COLUMNS])), 1)
        out.append({"row": "paper: " + " / ".join(key), **r})
    for label, m in rows.items():
        out.append({"row": label, **table_row(m, ci)})
    if rows:
        m = next(iter(rows.values()))
        chance = {t["abbr"]: round(t["chance"], 1) for t in m["tasks"].values()}
        out.append({"row": "chance (from data)", **chance, "Avg": round(m["chance_micro"], 1),
                    "macro": round(m["chance_macro"], 1)})
    df = pd.DataFrame(out).set_index("row")
    cols = [c for c in TABLE_COLUMNS if c in df.columns]
    cols += [c for c in df.columns if c not in cols and c not in ("Avg", "macro", "n")]
    return df[cols + [c for c in ("Avg", "macro", "n") if c in df.columns]]


def format_table(metrics: dict) -> str:
    """Plain-text per-task table for one group."""
    lines = [f"{'task':<22}{'n':>6}{'acc':>8}{'95% CI':>16}{'chance':>8}"]
    for key, t in metrics["tasks"].items():
        ci = f"[{t['ci'][0]:.1f}, {t['ci'][1]:.1f}]" if t["ci"] else ""
        lines.append(f"{key:<22}{t['n']:>6}{t['acc']:>8.2f}{ci:>16}{t['chance']:>8.1f}")
    ci = metrics.get("micro_ci")
    ci_s = f"[{ci[0]:.1f}, {ci[1]:.1f}]" if ci else ""
    lines.append(f"{'micro (paper Avg.)':<22}{metrics['n']:>6}{metrics['micro']:>8.2f}{ci_s:>16}"
                 f"{metrics['chance_micro']:>8.1f}")
    ci = metrics.get("macro_ci")
    ci_s = f"[{ci[0]:.1f}, {ci[1]:.1f}]" if ci else ""
    lines.append(f"{'macro':<22}{'':>6}{metrics['macro']:>8.2f}{ci_s:>16}"
                 f"{metrics['chance_macro']:>8.1f}")
    b = metrics["baselines"]
    lines.append("baselines: " + ", ".join(f"{k} {v:.1f}" for k, v in b.items()))
    if metrics.get("parse"):
        lines.append("parse: " + ", ".join(f"{k} {v}" for k, v in sorted(metrics["parse"].items())))
    if metrics.get("skipped_missing_video") or metrics.get("missing_predictions"):
        lines.append(f"skipped (missing video): {metrics.get('skipped_missing_video', 0)}; "
                     f"questions without a prediction: {metrics.get('missing_predictions', 0)}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# CLI


def _cmd_score(args) -> int:
    res = score(args.predictions, args.data, n_boot=args.n_boot, seed=args.seed)
    if args.group:
        if args.group not in res:
            print(f"no group {args.group!r}; have {list(res)}", file=sys.stderr)
            return 2
        res = {args.group: res[args.group]}
    for label, m in res.items():
        print(f"== {label}")
        print(format_table(m))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    first = next(iter(res.values()))
    print(f"micro {first['micro']:.2f} macro {first['macro']:.2f} n {first['n']}")
    return 0


def _cmd_compare(args) -> int:
    res = paired(args.a, args.b, args.data, n_boot=args.n_boot, seed=args.seed)
    for t, v in res["tasks"].items():
        print(f"{t:<22}{v['n']:>6}{v['a']:>8.1f}{v['b']:>8.1f}{v['diff']:>+8.1f} "
              f"[{v['ci'][0]:+.1f}, {v['ci'][1]:+.1f}] p={v['mcnemar_p']:.3g}")
    print(f"micro B-A {res['micro_diff']:+.2f} [{res['micro_ci'][0]:+.2f}, "
          f"{res['micro_ci'][1]:+.2f}] macro B-A {res['macro_diff']:+.2f} McNemar p "
          f"{res['mcnemar_p']:.3g} n {res['n']}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lib.tvbench", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("eval", help="run a model on a TVBench-layout folder (resumable)")
    from lib import evaluate  # the model side lives there; scoring needs no torch

    evaluate.add_eval_args(e)
    s = sub.add_parser("score", help="all metrics from a predictions file, no model")
    s.add_argument("--data", required=True, help="TVBench-layout folder (videos not needed)")
    s.add_argument("--predictions", required=True, help="predictions .jsonl or a run dir")
    s.add_argument("--json", help="write all metrics here")
    s.add_argument("--group", help="only this condition/scoring group, e.g. normal/paper")
    s.add_argument("--n-boot", type=int, default=2000)
    s.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("compare", help="paired difference B - A on shared questions")
    c.add_argument("--data", default=None)
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--json")
    c.add_argument("--n-boot", type=int, default=2000)
    c.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "score":
            return _cmd_score(args)
        if args.cmd == "compare":
            return _cmd_compare(args)
        return evaluate.cli_eval(args)
    except BenchmarkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # Run the imported module's main so classes are shared with lib.evaluate (no second copy).
    from lib.tvbench import main as _main

    sys.exit(_main())
