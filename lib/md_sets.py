"""The paper code's Moving-Direction diagnostic sets (checklist item 30): TVBench's
moving_direction questions with other options, written as a TVBench-layout benchmark.

Read from the fork VisualComputingInstitute/videollm-pseudovideo-training at 0bf2d48,
``longvu/custom_datasets/val_set_creation/motion_val_set_creation.py`` (cited by line):

* ``easy`` / ``medium`` / ``hard``: three distractor directions chosen by angular distance from
  the answer among the 8 compass directions (ties in random order, L101-112): farthest first
  (L114-118), alternating nearest and farthest (L120-132), nearest first (L134-138); the answer
  is added and the four options shuffled (L156-160).
* ``all_8_choices``: the missing directions appended in compass order, then shuffled (L315-321).
* ``perm_1..3``: the answer swapped with the option k places later (``lib.diagnostics``).
* ``movement_direction``: the questions unchanged (the fork's reference file).

One ``random.Random(seed)`` (the fork seeds 0, L292) is drawn from in the fork's order (all
questions for all_8_choices, then easy, medium, hard), so every set is the same whichever sets
are asked for. Options keep the source's style: TVBench's "Up and to the left." (the fork's
``common.py`` L1-6) or MiniTVBench's bare "up". Each set is a task of its own (json/<set>.json)
whose video folder links to the source's, so one evaluation run scores all of them.

Used from the command line (``python -m lib.md_sets --data D --out O [--set hard ...]``) and by
``tests/test_md_sets.py``; notebook 04 evaluates the written folder like any benchmark.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import shutil
import sys
from pathlib import Path

from lib import diagnostics, paths, tvbench
from lib.tvbench import BenchmarkError, Task

# The fork's angles (L20-29); its order is the order of ties and of all_8_choices' additions.
DIRECTION_DEGREES = {"right": 0, "up and to the right": 45, "up": 90, "up and to the left": 135,
                     "left": 180, "down and to the left": 225, "down": 270,
                     "down and to the right": 315}
DIFFICULTIES = ("easy", "medium", "hard")
SETS = ("movement_direction", *DIFFICULTIES, "all_8_choices", "perm_1", "perm_2", "perm_3")
NUM_DISTRACTORS = 3  # the fork's difficulty sets (L327-329)


def angle_between(a: str, b: str) -> float:
    """Smallest angle between two compass directions, degrees (L31-40)."""
    d = (DIRECTION_DEGREES[a] - DIRECTION_DEGREES[b]) % 360
    return min(d, 360 - d)


def others_by_angle(gt: str, rng: random.Random) -> list[str]:
    """The 7 other directions, nearest first, ties in random order (L42-45, L101-112)."""
    groups: dict[float, list[str]] = {}
    for d in sorted(DIRECTION_DEGREES, key=lambda d: angle_between(gt, d)):
        if d != gt:
            groups.setdefault(angle_between(gt, d), []).append(d)
    return [d for a in sorted(groups) for d in rng.sample(groups[a], len(groups[a]))]


def pick_order(difficulty: str, n: int) -> list[int]:
    """Positions in ``others_by_angle`` to take, in order, per difficulty (L114-138)."""
    if difficulty == "hard":
        return list(range(n))
    if difficulty == "easy":
        return list(range(n - 1, -1, -1))
    order = [i for j in range(n // 2) for i in (j, n - j - 1)]
    return order + ([n // 2] if n % 2 else [])


def _style(answer: str) -> bool:
    """True for TVBench's style ("Up and to the left."), False for a bare direction ("up")."""
    return answer.endswith(".")


def _fmt(direction: str, tvbench_style: bool) -> str:
    return (direction + ".").capitalize() if tvbench_style else direction


def direction_of(text: str, where: str) -> str:
    d = text.strip().lower().removesuffix(".")
    if d not in DIRECTION_DEGREES:
        raise BenchmarkError(f"{where}: {text!r} is not one of the 8 compass directions "
                             f"{sorted(DIRECTION_DEGREES)} (with or without TVBench's capital and"
                             " period); fix: pass the moving_direction task (--task)")
    return d


def build_sets(items: list[dict], seed: int = 0, where: str = "moving_direction") -> dict[
        str, list[dict]]:
    """Every set of ``SETS`` from the source items (a task's JSON list), drawn in the fork's
    order from ``random.Random(seed)``. perm_K is left out when a question has K or fewer
    options."""
    rng = random.Random(seed)
    gts = [direction_of(it["answer"], f"{where} item {i}") for i, it in enumerate(items)]
    for i, it in enumerate(items):
        for c in it["candidates"]:
            direction_of(c, f"{where} item {i} candidate")
    out: dict[str, list[dict]] = {"movement_direction": copy.deepcopy(items), "all_8_choices": []}
    for it in items:
        q = copy.deepcopy(it)
        q["candidates"] += [f for f in (_fmt(d, _style(it["answer"])) for d in DIRECTION_DEGREES)
                            if f not in q["candidates"]]
        rng.shuffle(q["candidates"])
        out["all_8_choices"].append(q)
    for k in (1, 2, 3):
        if all(len(it["candidates"]) > k for it in items):
            out[f"perm_{k}"] = [_permuted(it, k) for it in items]
    for difficulty in DIFFICULTIES:
        out[difficulty] = []
        for it, gt in zip(items, gts):
            dirs = others_by_angle(gt, rng)
            picks = [dirs[j] for j in pick_order(difficulty, len(dirs))[:NUM_DISTRACTORS]]
            q = copy.deepcopy(it)
            cands = [_fmt(d, _style(it["answer"])) for d in picks] + [it["answer"]]
            q["candidates"] = rng.sample(cands, len(cands))
            out[difficulty].append(q)
    return {name: out[name] for name in SETS if name in out}


def _permuted(it: dict, k: int) -> dict:
    q = copy.deepcopy(it)
    q["candidates"], _ = diagnostics.permute_gt(it["candidates"],
                                                it["candidates"].index(it["answer"]), k)
    return q


def write_sets(data: Path | str, out: Path | str, sets: list[str] | None = None,
               task: str = "moving_direction", seed: int = 0) -> dict[str, int]:
    """Write the asked sets of ``data``'s ``task`` as tasks of a TVBench-layout folder ``out``
    (videos linked, or copied where links fail); returns questions per set."""
    data, out = Path(data), Path(out)
    bench = tvbench.open_benchmark(data, [task], release=None, require_videos=False)
    items = json.loads((data / "json" / f"{task}.json").read_text())
    built = build_sets(items, seed, str(data / "json" / f"{task}.json"))
    wanted = list(SETS) if not sets else sets
    missing = [s for s in wanted if s not in built]
    if missing:
        raise BenchmarkError(f"{data}/json/{task}.json: cannot build {missing} (perm_K needs "
                             "more than K options per question)")
    src_videos = (data / "video" / task).resolve()
    if not src_videos.is_dir():
        raise BenchmarkError(f"{data}/video/{task}: folder not found; the sets reuse its videos")
    tasks = []
    for name in wanted:
        n_opt = max(len(q["candidates"]) for q in built[name])
        tasks.append(Task(name, f"{bench.tasks[0].name} ({name})", name, False,
                          len(built[name]), n_opt))
        link = out / "video" / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            raise BenchmarkError(f"{link}: exists; fix: write the sets to an empty --out")
        try:
            os.symlink(src_videos, link, target_is_directory=True)
        except OSError:  # a file system without links: a copy shows the same frames
            shutil.copytree(src_videos, link)
    counts = tvbench.write_benchmark(out, tasks, {name: built[name] for name in wanted})
    (out / "md_sets.json").write_text(json.dumps({
        "source": str(data.resolve()), "task": task, "seed": seed, "sets": wanted,
        "fork": "longvu/custom_datasets/val_set_creation/motion_val_set_creation.py@0bf2d48"},
        indent=1) + "\n")
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lib.md_sets", description=(
        "The paper code's Moving-Direction diagnostic sets (easy/medium/hard distractors, all 8 "
        "directions, perm_K) as a TVBench-layout folder, one task per set."))
    ap.add_argument("--data", type=Path, required=True, help="TVBench-layout folder (TVBench or "
                    "MiniTVBench)")
    ap.add_argument("--out", type=Path, required=True, help="new folder for the sets")
    ap.add_argument("--set", dest="sets", nargs="+", choices=SETS, default=None,
                    help="sets to write (default: all)")
    ap.add_argument("--task", default="moving_direction")
    ap.add_argument("--seed", type=int, default=0, help="the fork seeds 0")
    a = ap.parse_args(argv)
    try:
        paths.writable_dir(a.out, "--out", error=BenchmarkError)
        counts = write_sets(a.data, a.out, a.sets, a.task, a.seed)
        tvbench.open_benchmark(a.out, release=None)  # the written folder passes the validator
    except BenchmarkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {sum(counts.values())} questions to {a.out}: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
