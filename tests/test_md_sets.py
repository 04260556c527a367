"""Checklist item 30: the paper code's Moving-Direction sets (easy/medium/hard distractors by
angular distance, all 8 directions, perm_K) built by ``lib.md_sets``.

The expected options below are the output of the fork's own set builder
(VisualComputingInstitute/videollm-pseudovideo-training at 0bf2d48,
longvu/custom_datasets/val_set_creation/motion_val_set_creation.py L290-348, seed 0) on
tests/fixtures/real_tvbench_excerpt/json/moving_direction.json, run once outside this repository
and written out here as data.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from lib import md_sets, tvbench
from lib.tvbench import BenchmarkError

EXCERPT = Path(__file__).parent / "fixtures" / "real_tvbench_excerpt"
U, D, L, R = "Up.", "Down.", "Left.", "Right."
UL, UR, DL, DR = ("Up and to the left.", "Up and to the right.", "Down and to the left.",
                  "Down and to the right.")
FORK = {  # set -> the candidates of the excerpt's 3 questions, as the fork writes them
    "easy": [[UL, R, DR, D], [UR, D, DL, L], [UR, U, R, DL]],
    "medium": [[L, U, DR, UL], [UR, R, U, DL], [DL, D, UR, L]],
    "hard": [[U, L, UR, UL], [R, UR, DR, U], [UL, L, DL, D]],
    "all_8_choices": [[R, UR, U, UL, DL, DR, D, L], [UL, UR, R, U, DL, DR, D, L],
                      [U, R, DR, L, UR, DL, D, UL]],
    "perm_1": [[DL, UR, DR, UL], [UL, UR, DR, DL], [UR, UL, DL, DR]],
    "perm_2": [[UL, UR, DL, DR], [DR, UL, UR, DL], [UR, DR, UL, DL]],
    "perm_3": [[DL, UL, UR, DR], [DL, UL, DR, UR], [DL, UR, UL, DR]],
}


def _items():
    return json.loads((EXCERPT / "json" / "moving_direction.json").read_text())


def test_sets_equal_the_forks_output():
    items = _items()
    built = md_sets.build_sets(items, seed=0)
    assert list(built) == list(md_sets.SETS)
    for name, want in FORK.items():
        assert [q["candidates"] for q in built[name]] == want, name
        assert [q["answer"] for q in built[name]] == [it["answer"] for it in items]
    assert built["movement_direction"] == items
    assert md_sets.build_sets(items, seed=0)["hard"] == built["hard"]  # seeded


def test_difficulty_by_angular_distance():
    """Over many draws: hard takes the nearest directions, easy the farthest, medium
    alternates; ties are broken at random (both 45-degree neighbours appear)."""
    dirs = list(md_sets.DIRECTION_DEGREES)
    items = [{"video": "v.mp4", "question": "q", "answer": md_sets._fmt(d, True),
              "candidates": [md_sets._fmt(d, True), U if d != "up" else D]}
             for d in dirs for _ in range(20)]
    built = md_sets.build_sets(items, seed=3)
    for name, want in (("hard", [45, 45, 90]), ("easy", [135, 135, 180]),
                       ("medium", [45, 45, 180])):
        for q in built[name]:
            gt = md_sets.direction_of(q["answer"], "t")
            ang = sorted(md_sets.angle_between(gt, md_sets.direction_of(c, "t"))
                         for c in q["candidates"] if c != q["answer"])
            assert ang == want, (name, q)
            assert len(q["candidates"]) == 4 and q["answer"] in q["candidates"]
    assert all(sorted(q["candidates"]) == sorted(md_sets._fmt(d, True) for d in dirs)
               for q in built["all_8_choices"])
    # the answer sits at every position: the options are shuffled
    assert {q["candidates"].index(q["answer"]) for q in built["hard"]} == {0, 1, 2, 3}
    assert md_sets.pick_order("medium", 7) == [0, 6, 1, 5, 2, 4, 3]
    assert len({tuple(md_sets.others_by_angle("up", random.Random(s))[:2])
                for s in range(20)}) == 2


def test_cli_writes_a_valid_benchmark(tmp_path, smoke_assets, capsys):
    out = tmp_path / "md"
    assert md_sets.main(["--data", str(EXCERPT), "--out", str(out)]) == 0
    bench = tvbench.open_benchmark(out, release=None)  # opens every linked video
    assert {t.key for t in bench.tasks} == set(md_sets.SETS)
    by_task = {t: [q for q in bench.questions if q.task == t] for t in md_sets.SETS}
    assert [list(q.candidates) for q in by_task["hard"]] == FORK["hard"]
    assert {t.num_options for t in bench.tasks if t.key == "all_8_choices"} == {8}
    assert json.loads((out / "md_sets.json").read_text())["seed"] == 0
    # MiniTVBench's bare style ("up"): options stay in that style
    mini = tmp_path / "mini"
    assert md_sets.main(["--data", str(smoke_assets / "minitvbench"), "--out", str(mini),
                         "--set", "hard", "all_8_choices"]) == 0
    q8 = tvbench.open_benchmark(mini, release=None).questions
    assert any("up and to the left" in q.candidates for q in q8)
    assert all(c == c.lower() and not c.endswith(".") for q in q8 for c in q.candidates)


def test_bad_input_is_named(tmp_path, capsys):
    with pytest.raises(BenchmarkError, match=r"item 1: 'sideways' is not one of the 8 compass"):
        md_sets.build_sets([_items()[0], {**_items()[1], "answer": "sideways"}])
    assert md_sets.main(["--data", str(EXCERPT), "--task", "action_count", "--out",
                         str(tmp_path / "x")]) == 2
    assert "is not one of the 8 compass directions" in capsys.readouterr().err
