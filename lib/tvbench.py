"""TVBench-layout benchmarks: task table, loading and validation.

Used by notebook 00 (checks real TVBench and the generated MiniTVBench with the same code),
01 and 04 (evaluation). The on-disk layout is TVBench's (MVBench format)::

    DIR/json/<task>.json      list of {video, question, candidates, answer[, start, end]}
    DIR/video/<task>/<video>  .mp4 / .MP4 / .avi
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


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


def resolve_video(root: Path, task: str, video: str) -> Path | None:
    """The video file, accepting the extensions TVBench uses (ES videos are upper-case .MP4)."""
    base = Path(root) / "video" / task
    p = base / video
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
            lines.append(f"{len(report.missing_videos)} video file(s) missing under {root}: "
                         + ", ".join(report.missing_videos[:10])
                         + (" ..." if len(report.missing_videos) > 10 else ""))
            lines.append(TVBENCH_DOWNLOAD.format(root=root))
        raise BenchmarkError(f"{root}: benchmark is not usable:\n  " + "\n  ".join(lines))
    return report


def load(root: Path | str, tasks: list[str] | None = None) -> list[Question]:
    """All questions of a validated benchmark (optionally a subset of tasks), in task order."""
    validate(root)
    out = []
    for task in task_table(root):
        if tasks is None or task.key in tasks:
            out.extend(load_task(root, task))
    return out
