"""TVBench-layout benchmarks: tasks, questions, loading and validation, the writer.

Used by notebook 00 (checks real TVBench and the generated MiniTVBench with the same code),
notebook 02 (the held-out pseudo-video export), and by notebooks 01 and 04 through
``lib.evaluate`` (which runs models) and ``lib.metrics`` (which scores predictions). The
on-disk layout is TVBench's (MVBench format)::

    DIR/json/<task>.json      list of {video, question, candidates, answer[, start, end]}
                              (real TVBench adds question_id, accurate_start/accurate_end)
    DIR/video/<task>/<video>  .mp4 / .MP4 / .avi

Every item is checked (types, distinct candidates, at most 26, the answer equal to exactly one,
finite bounds, unique question_ids), every video name must stay inside its task folder, and
``validate`` / ``open_benchmark`` open every video once (``lib.video.probe``) so an empty or
corrupt file is named before a model loads.

``write_benchmark`` is the one writer of that layout (MiniTVBench, pseudo-video export).
Conditions (normal, shuffled with a seed, reversed, static, blind) live in ``lib.conditions``;
sampling is ``lib.video``'s.

CLI (its body is ``lib.eval_cli.main``)::

    python -m lib.tvbench eval --model PATH_OR_ID --data DIR --condition normal --scoring paper \\
        --out RUN_DIR [--limit N]
    python -m lib.tvbench score --data DIR --predictions FILE_OR_RUN_DIR [--json OUT]
    python -m lib.tvbench compare --data DIR A.jsonl B.jsonl
"""

from __future__ import annotations

import hashlib
import json
import math
import runpy
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from lib.video import WINDOW_TOLERANCE_S, VideoError, probe


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
    question_id: str | None = None  # real TVBench's action_sequence ids (Sequence_T3_1983)
    accurate_start: float | None = None  # real action_localization: the action inside the window
    accurate_end: float | None = None


@dataclass
class BenchmarkReport:
    root: Path
    tasks: dict[str, int] = field(default_factory=dict)  # task -> questions
    videos: dict[str, int] = field(default_factory=dict)  # task -> distinct video files present
    missing_videos: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    release: str | None = None
    # bounded items whose window ends after their video (evaluation counts them as short video)
    window_overruns: list[str] = field(default_factory=list)

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
    """Where a task's video lives in the layout: ``root/video/<task>/<video>``. A name that
    would leave that folder (absolute, ``..``, empty) raises ``BenchmarkError``."""
    folder = Path(root) / "video" / task
    parts = PurePosixPath(video).parts if isinstance(video, str) else ()
    if (not isinstance(video, str) or "\x00" in video or video.startswith(("/", "\\"))
            or not parts or ".." in parts or parts == (".",)):
        raise BenchmarkError(f"video name {video!r} points outside {folder}/; a video must be a "
                             f"file name inside video/{task}/ (fix the json item)")
    return folder / video


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


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _item_problem(root: Path, it, task: Task) -> str | None:
    """What is wrong with one json item (None if nothing), with the fix."""
    if not isinstance(it, dict):
        return f"expected an object, got {type(it).__name__}"
    need = ["video", "question", "candidates", "answer"] + (["start", "end"] if task.bound else [])
    lacking = [k for k in need if k not in it]
    if lacking:
        return f"missing field(s) {lacking}" + (
            " (bounded tasks need start/end in seconds)" if {"start", "end"} & set(lacking)
            else "")
    for k in ("video", "question", "answer"):
        if not isinstance(it[k], str) or not it[k].strip():
            return f"{k!r} must be a non-empty string, got {it[k]!r}"
    try:
        video_path(root, task.key, it["video"])
    except BenchmarkError as e:
        return str(e)
    cands = it["candidates"]
    if not isinstance(cands, list) or not 2 <= len(cands) <= len(LETTERS):
        return (f"'candidates' must be a list of 2 to {len(LETTERS)} options (at most "
                f"{len(LETTERS)}: one letter each), got "
                + (f"{len(cands)}" if isinstance(cands, list) else type(cands).__name__))
    if not all(isinstance(c, str) and c.strip() for c in cands):
        return f"'candidates' must all be non-empty strings, got {cands}"
    seen: dict[str, int] = {}
    for j, c in enumerate(cands):
        if c.strip() in seen:
            return (f"repeats candidate {c!r} (options {seen[c.strip()]} and {j}); chance and "
                    "the letters would be wrong: remove the repeat")
        seen[c.strip()] = j
    hits = [j for j, c in enumerate(cands) if c == it["answer"]]
    if len(hits) != 1:
        return (f"answer {it['answer']!r} appears {len(hits)} times among candidates {cands}; "
                "it must equal exactly one candidate.")
    if task.bound and not (_number(it["start"]) and _number(it["end"])
                           and 0 <= it["start"] < it["end"]):
        return (f"bounds start={it['start']!r} end={it['end']!r} are not finite numbers with "
                "0 <= start < end (seconds).")
    acc = [it.get("accurate_start"), it.get("accurate_end")]
    for k, v in zip(("accurate_start", "accurate_end"), acc):
        if v is not None and not _number(v):
            return f"{k}={v!r} is not a finite number of seconds"
    if None not in acc and acc[0] > acc[1]:
        return f"accurate_start {acc[0]} is after accurate_end {acc[1]}"
    qid = it.get("question_id")
    if qid is not None and (not isinstance(qid, str) or not qid.strip()):
        return f"question_id must be a non-empty string, got {qid!r}"
    return None


def load_task(root: Path | str, task: Task, problems: list[str] | None = None,
              missing: list[str] | None = None) -> list[Question]:
    """Read and check one ``json/<task>.json``; problems and missing videos are appended, not
    raised."""
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
    if not items:
        problems.append(f"{path}: holds no questions; re-download the annotations, or delete "
                        "the file to leave the task out.")
        return []
    out = []
    ids: dict[str, int] = {}
    for i, it in enumerate(items):
        where = f"{path} item {i}"
        problem = _item_problem(root, it, task)
        if problem:
            problems.append(f"{where}: {problem}")
            continue
        video = resolve_video(root, task.key, it["video"])
        qid = it.get("question_id")
        if qid is not None and qid in ids:
            problems.append(f"{where}: question_id {qid!r} repeats item {ids[qid]}; "
                            "question_ids must be unique within a task.")
            continue
        if qid is not None:
            ids[qid] = i
        if video is None:
            missing.append(f"video/{task.key}/{it['video']}")
            video = video_path(root, task.key, it["video"])
        start, end = (float(it["start"]), float(it["end"])) if task.bound else (None, None)
        acc = [None if it.get(k) is None else float(it[k])
               for k in ("accurate_start", "accurate_end")]
        out.append(Question(task.key, i, it["video"], video, it["question"], tuple(it[
            "candidates"]), it["candidates"].index(it["answer"]), start, end, qid, *acc))
    return out


def probe_videos(questions: Sequence[Question]) -> tuple[list[str], dict[str, str]]:
    """Open every present video once: (problems: files PyAV cannot read, short windows:
    sample_id -> why, for bounded items whose end lies more than ``WINDOW_TOLERANCE_S`` after
    their video's and for 1-frame videos)."""
    problems: list[str] = []
    overruns: dict[str, str] = {}
    info: dict[Path, tuple[int, float] | None] = {}
    for q in questions:
        if q.video_path not in info and q.video_path.exists():
            try:
                info[q.video_path] = probe(q.video_path)
            except VideoError as e:
                info[q.video_path] = None
                problems.append(f"{q.task}.json item {q.index}: {e}")
        got = info.get(q.video_path)
        where = f"json/{q.task}.json item {q.index} (video/{q.task}/{q.video})"
        if got and q.end is not None and q.end - got[0] / got[1] > WINDOW_TOLERANCE_S:
            overruns[sample_id(q)] = (f"{where}: end {q.end:g} s is past the video's "
                                      f"{got[0] / got[1]:.2f} s")
        elif got and got[0] == 1:
            overruns[sample_id(q)] = f"{where}: the video has 1 frame"
    return problems, overruns


def validate(root: Path | str, release: str | None = None,
             raise_on_error: bool = True) -> BenchmarkReport:
    """Check every task file and video (each is opened once); with ``release`` also the known
    per-task counts. Windows that end after their video and 1-frame videos are listed in
    ``window_overruns`` (not a problem here: evaluation counts them and, by default, refuses
    them).

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
        bad, overruns = probe_videos(qs)
        report.problems.extend(bad)
        report.window_overruns.extend(overruns.values())
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
    # sample_id -> why its frames will fall short (window past the video's end, 1-frame video)
    short_windows: dict[str, str] = field(default_factory=dict)

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
    another version. ``require_videos=False`` (scoring from predictions) ignores videos;
    otherwise every present video is opened once: an unreadable one is a problem, and windows
    past a video's end and 1-frame videos are listed in ``Benchmark.short_windows``.
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
    short: dict[str, str] = {}
    if require_videos:
        bad, short = probe_videos(questions)
        problems.extend(bad)
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
    return Benchmark(root, table, questions, skipped, release, sha, short)


def load(root: Path | str, tasks: list[str] | None = None, on_missing: str = "error"
         ) -> list[Question]:
    """All questions of a validated benchmark (optionally a subset of tasks), in task order."""
    return open_benchmark(root, tasks, on_missing, release=None).questions


def select(questions: list[Question], limit: int | None) -> list[Question]:
    """The first ``limit`` questions of each task (all with None)."""
    if limit is None:
        return list(questions)
    seen: dict[str, int] = {}
    out = []
    for q in questions:
        if seen.get(q.task, 0) < limit:
            out.append(q)
            seen[q.task] = seen.get(q.task, 0) + 1
    return out


def sample_id(q: Question) -> str:
    """Stable id of a question within a benchmark: ``<task>/<position in the json>``."""
    return f"{q.task}/{q.index}"


if __name__ == "__main__":
    # `python -m lib.tvbench ...` runs the CLI module as the program (lib.eval_cli imports this
    # module, so this module never imports it).
    runpy.run_module("lib.eval_cli", run_name="__main__", alter_sys=True)
