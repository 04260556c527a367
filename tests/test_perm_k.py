"""Checklist item 29: the paper code's diagnostics. perm_k (``lib.diagnostics``, ``--perm-k`` on
``python -m lib.tvbench eval|score``), the repeated first frame (condition ``static``) and the
single black frame (condition ``blind``), on the real TVBench excerpt.

The fork: VisualComputingInstitute/videollm-pseudovideo-training at 0bf2d48;
longvu/custom_datasets/val_set_creation/motion_val_set_creation.py L163-180 (perm_k) and
eval/eval_tvbench_format.py L224-238 (repeated first frame), L275-285 (one black frame).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lib import conditions, diagnostics, eval_cli, tvbench, video
from lib.tvbench import BenchmarkError

EXCERPT = Path(__file__).parent / "fixtures" / "real_tvbench_excerpt"


def test_permute_gt_is_the_forks_cyclic_swap():
    opts = ["a", "b", "c", "d"]
    assert diagnostics.permute_gt(opts, 1, 1) == (["a", "c", "b", "d"], 2)
    assert diagnostics.permute_gt(opts, 1, 2) == (["a", "d", "c", "b"], 3)
    assert diagnostics.permute_gt(opts, 3, 1) == (["d", "b", "c", "a"], 0)  # cyclic
    assert diagnostics.permute_gt(opts, 2, 3) == (["a", "c", "b", "d"], 1)
    assert opts == ["a", "b", "c", "d"]  # the input is not changed
    for k in (0, 4):
        with pytest.raises(ValueError, match="needs 1 <= k < 4"):
            diagnostics.permute_gt(opts, 0, k)


def test_perm_k_benchmark():
    bench = tvbench.open_benchmark(EXCERPT, ["moving_direction", "action_sequence"],
                                   release=None)
    p = diagnostics.perm_k_benchmark(bench, 1)
    assert diagnostics.perm_k_benchmark(bench, 0) is bench
    for a, b in zip(bench.questions, p.questions):
        n = len(a.candidates)
        assert b.answer_index == (a.answer_index + 1) % n
        assert b.candidates[b.answer_index] == a.candidates[a.answer_index]
        assert sorted(b.candidates) == sorted(a.candidates)
    assert p.json_sha256.keys() == bench.json_sha256.keys()
    assert all(p.json_sha256[t] != h for t, h in bench.json_sha256.items())
    with pytest.raises(BenchmarkError, match=r"--perm-k 2 needs more than 2 options.*"
                       r"action_sequence: 5"):
        diagnostics.perm_k_benchmark(bench, 2)


def _eval(out, *extra):
    return eval_cli.main(["eval", "--model", "fake:hash", "--data", str(EXCERPT), "--release",
                          "none", "--out", str(out), "--no-record", "--workers", "0", "--quiet",
                          "--n-boot", "20", *extra])


def test_eval_and_score_with_perm_k(tmp_path, capsys):
    out = tmp_path / "run"
    assert _eval(out, "--tasks", "moving_direction", "action_sequence", "--perm-k", "1") == 0
    recs = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    base = {tvbench.sample_id(q): q for q in tvbench.load(EXCERPT)}
    assert len(recs) == 8
    for r in recs:  # the model was asked with the answer one option later
        q = base[r["sample_id"]]
        assert r["answer_index"] == (q.answer_index + 1) % len(q.candidates)
    assert json.loads((out / "config.json").read_text())["spec"]["perm_k"] == 1
    capsys.readouterr()
    assert eval_cli.main(["score", "--data", str(EXCERPT), "--predictions", str(out),
                          "--n-boot", "20"]) == 0  # the run dir's own perm_k
    assert eval_cli.main(["score", "--data", str(EXCERPT), "--predictions", str(out),
                          "--perm-k", "0"]) == 2  # against unpermuted answers: refused
    assert "has answer_index" in capsys.readouterr().err
    # the same folder under another k refuses to resume
    assert _eval(out, "--tasks", "moving_direction", "--perm-k", "2") == 2
    assert "different ['json_sha256']" in capsys.readouterr().err
    assert _eval(tmp_path / "r2", "--perm-k", "2") == 2  # action_sequence has 2 options
    assert "--perm-k 2 needs more than 2 options" in capsys.readouterr().err


def test_static_repeats_frame_zero_as_often_as_the_2fps_sampler():
    q = tvbench.load(EXCERPT, ["moving_direction"])[0]
    clip = video.read_clip(q, video.Sampler("paper"))
    n, fps = video.probe(q.video_path)
    assert clip.indices == list(range(0, n, round(fps / 2)))  # the fork's L224-233
    st, order = conditions.apply_condition(clip.frames, "static")
    frame0, _ = video.decode_frames(q.video_path, [0])
    assert st.shape[0] == len(clip.indices) == math.ceil(n / round(fps / 2)) > 1
    assert order == [0] * len(clip.indices)
    assert (st == frame0[0]).all()
    bl, order = conditions.apply_condition(clip.frames, "blind")
    assert bl.shape == (1, 1024, 1024, 3) and bl.dtype == np.uint8 and not bl.any()
    assert order is None
