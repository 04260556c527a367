"""lib.tvbench (loader edge cases, conditions), lib.video (frame sampling), lib.metrics
(metrics), lib.tables (the Table 3 layout), the score CLI and the paper-Table-3 reproduction.
No model is involved (see test_evaluate.py for the runner)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from lib import conditions, metrics, paper, paths, predictions, tables, tvbench, video
from lib.video import write_video


# --- a hand-made TVBench-layout fixture with the edge cases -----------------------------------


def _ramp(n: int, size: int = 32) -> np.ndarray:
    """Frame i is uniformly grey at level 8*i, so decoded frames reveal their index."""
    return np.stack([np.full((size, size, 3), 8 * i, np.uint8) for i in range(n)])


@pytest.fixture(scope="module")
def edge_bench(tmp_path_factory):
    """Two bounded tasks and one plain one; .MP4 and .avi files; fps 25 (step round(12.5)=12),
    8, and 1 (round(0.5)=0, which crashes the reference code)."""
    root = tmp_path_factory.mktemp("edge") / "bench"
    (root / "json").mkdir(parents=True)
    vids = {("action_sequence", "as1.mp4"): (30, 25), ("action_sequence", "as2.mp4"): (24, 8),
            ("action_localization", "al1.mp4"): (24, 8),
            ("egocentric_sequence", "es1.mp4"): (16, 8),
            ("egocentric_sequence", "slow.mp4"): (6, 1),
            ("egocentric_sequence", "ntu.avi"): (12, 8)}
    for (task, name), (n, fps) in vids.items():
        write_video(root / "video" / task / name, _ramp(n), fps)
    (root / "video" / "egocentric_sequence" / "es1.mp4").rename(
        root / "video" / "egocentric_sequence" / "es1.MP4")  # ES ships upper-case .MP4
    items = {
        "action_sequence": [
            {"video": "as1.mp4", "question": "q0", "candidates": ["a", "b"], "answer": "b",
             "start": 0.2, "end": 1.0},
            {"video": "as2.mp4", "question": "q1", "candidates": ["a", "b"], "answer": "a",
             "start": 10.0, "end": 12.0},  # window past the end of the clip
        ],
        "action_localization": [
            {"video": "al1.mp4", "question": "q2", "candidates": ["w", "x", "y", "z"],
             "answer": "z", "start": 0.5, "end": 2.5},
        ],
        "egocentric_sequence": [
            {"video": "es1.mp4", "question": "q3", "candidates": ["a", "b", "c", "d"],
             "answer": "c"},  # json says .mp4, disk has .MP4
            {"video": "es1.mp4", "question": "q4", "candidates": ["a", "b", "c", "d"],
             "answer": "a"},
            {"video": "slow.mp4", "question": "q5", "candidates": ["a", "b", "c"], "answer": "b"},
            {"video": "ntu.avi", "question": "q6", "candidates": ["a", "b"], "answer": "a"},
        ],
    }
    for task, its in items.items():
        (root / "json" / f"{task}.json").write_text(json.dumps(its))
    return root


def test_loader_edge_cases(edge_bench):
    b = tvbench.open_benchmark(edge_bench)
    assert [t.key for t in b.tasks] == ["action_localization", "action_sequence",
                                        "egocentric_sequence"]
    assert b.release is None and len(b.questions) == 7 and not b.skipped
    es = [q for q in b.questions if q.task == "egocentric_sequence"]
    assert es[0].video_path.name == "es1.MP4" and es[3].video_path.suffix == ".avi"
    bounded = [q for q in b.questions if q.task in ("action_sequence", "action_localization")]
    assert all(q.start is not None and q.end is not None for q in bounded)
    assert all(q.start is None for q in es)


def test_paper_sampling_protocol(edge_bench):
    qs = {q.question: q for q in tvbench.load(edge_bench)}
    s = video.Sampler("paper")
    # as1: 30 frames at 25 fps, window [round(0.2*25)=5, min(25, 29)) step round(12.5)=12
    clip = video.read_clip(qs["q0"], s)
    assert clip.indices == [5, 17] and clip.fps == pytest.approx(25)
    assert np.abs(clip.frames.mean(axis=(1, 2, 3)) - 8 * np.array([5, 17])).max() < 3
    # al1: 24 frames at 8 fps, [4, 20) step 4
    assert video.read_clip(qs["q2"], s).indices == [4, 8, 12, 16]
    # unbounded: the whole clip, range(0, n, step)
    assert video.read_clip(qs["q3"], s).indices == [0, 4, 8, 12]
    assert video.read_clip(qs["q6"], s).indices == [0, 4, 8]  # .avi
    # fps 1: the reference divides by round(0.5) = 0; here step 1, noted
    c = video.read_clip(qs["q5"], s)
    assert c.indices == list(range(6)) and "fps<1" in c.note
    # window beyond the clip: one frame (the last), noted, never an empty stack
    c = video.read_clip(qs["q1"], s)
    assert c.indices == [23] and "empty-window" in c.note and len(c.frames) == 1


def test_index_functions():
    assert video.paper_indices(100, 30)[0] == list(range(0, 100, 15))
    assert video.paper_indices(100, 29.97)[0] == list(range(0, 100, 15))
    assert video.paper_indices(100, 30, 1.0, 2.0)[0] == [30, 45]
    assert video.paper_indices(50, 30, 1.0, 5.0)[0] == [30, 45]  # end clamped to n-1
    idx, _ = video.uniform_indices(160, 8, 16)
    assert idx == [5 + 10 * i for i in range(16)]
    idx, _ = video.uniform_indices(160, 8, 4, 2.0, 6.0)
    assert idx == [20, 28, 36, 44] and all(16 <= i < 48 for i in idx)
    assert video.Sampler("uniform", 8).indices(3, 8)[0] == [0, 0, 0, 1, 1, 2, 2, 2]


def test_missing_video_error_lists_all_and_skip_counts(edge_bench, tmp_path):
    root = tmp_path / "b"
    shutil.copytree(edge_bench, root)
    (root / "video" / "egocentric_sequence" / "es1.MP4").unlink()
    (root / "video" / "action_localization" / "al1.mp4").unlink()
    with pytest.raises(tvbench.BenchmarkError) as e:
        tvbench.open_benchmark(root)
    msg = str(e.value)
    assert "2 video file(s) missing" in msg and "es1.mp4" in msg and "al1.mp4" in msg
    assert "no frame is substituted" in msg
    b = tvbench.open_benchmark(root, on_missing="skip")
    assert len(b.questions) == 4 and len(b.skipped) == 3  # q3, q4 share es1
    assert b.skipped_videos == ["video/action_localization/al1.mp4",
                                "video/egocentric_sequence/es1.mp4"]
    recs = [_rec(q, q.answer_index) for q in b.questions]
    m = metrics.score_frame(metrics.predictions_frame(recs, b), b, n_boot=50)
    assert m["skipped_missing_video"] == 3 and m["micro"] == 100


def test_release_counts_auto(tmp_path):
    root = _table3_bench(tmp_path)
    b = tvbench.open_benchmark(root, require_videos=False)
    assert b.release == "tvbench-2525" and len(b.questions) == 2525
    f = root / "json" / "unexpected_action.json"
    items = json.loads(f.read_text())
    f.write_text(json.dumps(items + items[:38]))  # the pre-revision 120 UA questions
    with pytest.raises(tvbench.BenchmarkError, match=r"unexpected_action.json: 120 valid.*82"):
        tvbench.open_benchmark(root, require_videos=False)
    assert len(tvbench.open_benchmark(root, release=None, require_videos=False).questions) == 2563


def test_conditions():
    frames = _ramp(5)
    same, order = conditions.apply_condition(frames, "normal")
    assert order == [0, 1, 2, 3, 4] and same is frames
    a, pa = conditions.apply_condition(frames, "shuffled", 0, "task/1")
    b, pb = conditions.apply_condition(frames, "shuffled", 0, "task/1")
    c, pc = conditions.apply_condition(frames, "shuffled", 1, "task/1")
    assert pa == pb and sorted(pa) == [0, 1, 2, 3, 4] and np.array_equal(a, frames[pa])
    perms = {tuple(conditions.apply_condition(frames, "shuffled", s, "task/1")[1]) for s in range(8)}
    assert len(perms) > 4  # seeds give different orders
    r, _ = conditions.apply_condition(frames, "reversed")
    assert np.array_equal(r, frames[::-1])
    st, _ = conditions.apply_condition(frames, "static")
    assert st.shape == frames.shape and (st == frames[0]).all()
    bl, order = conditions.apply_condition(frames, "blind")
    assert bl.shape == (1, 1024, 1024, 3) and bl.max() == 0 and order is None
    assert conditions.condition_units(["normal", "shuffled"], [0, 1]) == [
        ("normal", None), ("shuffled", 0), ("shuffled", 1)]
    with pytest.raises(ValueError, match="unknown condition"):
        conditions.condition_units(["upside-down"])


def test_frame_cache_roundtrip(edge_bench, tmp_path):
    q = tvbench.load(edge_bench)[0]
    cache = video.FrameCache(tmp_path / "cache")
    a = cache.get(q, video.Sampler())
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    b = cache.get(q, video.Sampler())
    assert np.array_equal(a.frames, b.frames) and a.indices == b.indices
    cache.get(q, video.Sampler("uniform", 4))
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2


# --- metrics ----------------------------------------------------------------------------------


def _rec(q, pred, **kw):
    return {"sample_id": tvbench.sample_id(q), "task": q.task, "video": q.video,
            "question": q.question, "answer_index": q.answer_index, "pred_index": pred, **kw}


def test_micro_macro_chance_and_baselines():
    from lib.tvbench import Benchmark, Question, Task

    tasks = [Task("two", "Two", "T2", False), Task("four", "Four", "T4", False)]
    qs = [Question("two", i, f"v{i}.mp4", None, f"q{i}", ("x", "y"), i % 2) for i in range(10)]
    qs += [Question("four", i, f"w{i // 2}.mp4", None, f"r{i}", ("a", "b", "c", "d"), 1)
           for i in range(30)]
    b = Benchmark(None, tasks, qs)
    # two: 8/10 right; four: 6/30 right
    recs = [_rec(q, q.answer_index if i < 8 else 1 - q.answer_index)
            for i, q in enumerate(qs[:10])]
    recs += [_rec(q, 1 if i < 6 else None if i < 10 else 0) for i, q in enumerate(qs[10:])]
    m = metrics.score_frame(metrics.predictions_frame(recs, b), b, n_boot=500)
    assert m["tasks"]["two"]["acc"] == 80 and m["tasks"]["four"]["acc"] == 20
    assert m["micro"] == pytest.approx(100 * 14 / 40)
    assert m["macro"] == pytest.approx(50)
    assert m["chance_micro"] == pytest.approx(100 * (10 * 0.5 + 30 * 0.25) / 40)
    assert m["chance_macro"] == pytest.approx(37.5)
    assert m["unanswered"] == 4
    assert m["baselines"]["always_B"] == pytest.approx(100 * 35 / 40)
    assert m["baselines"]["majority_letter"] == pytest.approx(100 * 35 / 40)
    assert m["tasks"]["four"]["videos"] == 15
    lo, hi = m["micro_ci"]
    assert lo < m["micro"] < hi and m["tasks"]["four"]["ci"][0] < 20 < m["tasks"]["four"]["ci"][1]


def test_cluster_bootstrap_is_wider_for_clustered_videos():
    """Same accuracy, but all questions of a video agree: the video-clustered CI must widen."""
    import pandas as pd

    n = 200
    correct = np.array([i % 40 < 20 for i in range(n)])  # 50%
    indep = pd.DataFrame({"task": "t", "video": [f"v{i}" for i in range(n)], "correct": correct})
    clustered = indep.assign(video=[f"v{i % 40}" for i in range(n)])  # 40 videos x 5
    w1 = np.diff(metrics.bootstrap(indep, 2000)["micro"])[0]
    w2 = np.diff(metrics.bootstrap(clustered, 2000)["micro"])[0]
    assert 11 < w1 < 17  # about 2 x 1.96 x sqrt(.25/200) = 13.9 points
    assert w2 > 1.8 * w1  # design effect sqrt(5) = 2.2
    assert metrics.bootstrap(indep, 300, seed=3) == metrics.bootstrap(indep, 300, seed=3)


def test_paired_comparison():
    from lib.tvbench import Benchmark, Question, Task

    qs = [Question("t", i, f"v{i}.mp4", None, f"q{i}", ("a", "b", "c", "d"), 0)
          for i in range(100)]
    b = Benchmark(None, [Task("t", "T", "T", False)], qs)
    a = [_rec(q, 0 if i < 60 else 1) for i, q in enumerate(qs)]
    s = [_rec(q, 0 if i < 30 else 1, condition="shuffled", seed=0) for i, q in enumerate(qs)]
    res = metrics.paired(a, s, b, n_boot=1000)
    assert res["micro_a"] == 60 and res["micro_b"] == 30 and res["micro_diff"] == -30
    assert res["a_only"] == 30 and res["b_only"] == 0 and res["mcnemar_p"] < 1e-6
    assert res["micro_ci"][1] < 0 and res["flip_rate"] == 30
    same = metrics.paired(a, a, b, n_boot=200)
    assert same["micro_diff"] == 0 and same["mcnemar_p"] == 1.0


def test_parse_failures_counted_per_task(edge_bench):
    b = tvbench.open_benchmark(edge_bench)
    recs = [_rec(q, 2 if q.task == "egocentric_sequence" else None, parse="nomatch")
            for q in b.questions[:3]] + [_rec(q, q.answer_index, parse="ok")
                                         for q in b.questions[3:]]
    m = metrics.score(recs, b, n_boot=0)["normal/paper"]
    assert m["parse"] == {"nomatch": 3, "ok": 4}
    assert m["parse_by_task"]["action_localization"] == {"nomatch": 1}
    assert m["micro_ci"] is None


# --- the paper's Table 3 through `score` --------------------------------------------------------


def _table3_bench(tmp_path):
    """JSON-only TVBench layout with the revised counts (ES: 200 questions on 41 videos)."""
    root = tmp_path / "tvbench"
    (root / "json").mkdir(parents=True)
    for t in tvbench.TVBENCH_TASKS:
        items = []
        for i in range(t.n):
            k = t.num_options
            cands = [f"{t.abbr} option {j}" for j in range(k)]
            it = {"video": f"{t.abbr}_{i % 41 if t.abbr == 'ES' else i}.mp4",
                  "question": f"{t.abbr} question {i}", "candidates": cands,
                  "answer": cands[i % k]}
            if t.bound:
                it.update(start=1.0, end=3.0)
            items.append(it)
        (root / "json" / f"{t.key}.json").write_text(json.dumps(items))
    return root


@pytest.mark.parametrize("row", range(8))
def test_score_cli_reproduces_table3_micro(tmp_path, row):
    root = _table3_bench(tmp_path)
    t3 = tables.paper_frame("3")
    accs = t3.iloc[row]
    recs = []
    for t in tvbench.TVBENCH_TASKS:
        k_right = round(accs[t.abbr] * t.n / 100)
        items = json.loads((root / "json" / f"{t.key}.json").read_text())
        for i, it in enumerate(items):
            ans = it["candidates"].index(it["answer"])
            pred = ans if i < k_right else (ans + 1) % len(it["candidates"])
            recs.append({"task": t.key, "video": it["video"], "question": it["question"],
                         "pred_index": pred, "answer_index": ans})
    f = tmp_path / "preds.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = subprocess.run([sys.executable, "-m", "lib.tvbench", "score", "--data", str(root),
                          "--predictions", str(f), "--json", str(tmp_path / "m.json"),
                          "--n-boot", "200"], capture_output=True, text=True, cwd=paths.ROOT)
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1].split()
    assert last[0] == "micro" and last[2] == "macro" and last[4] == "n" and last[5] == "2525"
    assert abs(float(last[1]) - accs["Avg"]) <= 0.1
    m = json.loads((tmp_path / "m.json").read_text())["normal/paper"]
    for t in tvbench.TVBENCH_TASKS:
        assert abs(m["tasks"][t.key]["acc"] - accs[t.abbr]) <= 0.1
    assert m["chance_macro"] == pytest.approx(100 / 3, abs=0.01)
    assert m["chance_micro"] == pytest.approx(35.07, abs=0.01)
    assert m["tasks"]["egocentric_sequence"]["videos"] == 41
    if row == 0:  # the letter-bias numbers quoted in eval_anchors.md need the real labels;
        # on this fixture (balanced letters) always-X is exactly the share of letter X
        assert m["baselines"]["always_A"] > m["baselines"]["always_D"]


def test_results_table_layout():
    t3 = tables.paper_frame("3")
    assert list(t3.columns) == paper.COLUMNS and len(t3) == 8
    m = {"tasks": {"action_count": {"abbr": "AC", "acc": 40.0, "ci": [30.0, 50.0],
                                    "chance": 25.0}},
         "micro": 40.0, "macro": 40.0, "micro_ci": [30.0, 50.0], "n": 10,
         "chance_micro": 25.0, "chance_macro": 25.0}
    tab = tables.results_table({"ours": m},
                               paper=[("video-trained", "Qwen2-7B", "normal")], ci=True)
    assert list(tab.index) == ["paper: video-trained / Qwen2-7B / normal", "ours",
                               "chance (from data)"]
    assert tab.loc["ours", "Avg"] == "40.0 [30.0, 50.0]"
    assert tab.loc["paper: video-trained / Qwen2-7B / normal", "Avg"] == 55.8


def test_predictions_reader_tolerates_torn_line_and_dupes(tmp_path):
    """A torn last line is ignored; a repeated sample_id counts once. Records without an id are
    all kept: real TVBench repeats (video, question), so only the data can tell them apart."""
    f = tmp_path / "predictions.jsonl"
    r = {"sample_id": "t/0", "task": "t", "video": "v", "question": "q", "pred_index": 0,
         "answer_index": 0}
    f.write_text(json.dumps(r) + "\n" + json.dumps(r) + "\n" + '{"task": "t", "vid')
    assert len(predictions.read_predictions(f)) == 1
    assert predictions.read_prediction_set(f).duplicates == ["normal/paper"]
    text_only = {k: v for k, v in r.items() if k != "sample_id"}
    f.write_text(json.dumps(text_only) + "\n" + json.dumps(text_only) + "\n")
    assert len(predictions.read_predictions(f)) == 2
    (tmp_path / "bad.jsonl").write_text(json.dumps({"task": "t"}) + "\n")
    with pytest.raises(tvbench.BenchmarkError, match="missing field"):
        predictions.read_predictions(tmp_path / "bad.jsonl")


def test_score_cli_on_minitvbench_run(smoke_assets, tmp_path):
    """Predictions from another harness (no sample_id, no num_options) score against --data."""
    root = smoke_assets / "minitvbench"
    qs = tvbench.load(root)
    recs = [{"task": q.task, "video": q.video, "question": q.question,
             "pred_index": 0, "answer_index": q.answer_index} for q in qs]
    f = tmp_path / "p.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in recs))
    res = metrics.score(f, root, n_boot=100)
    m = res["normal/paper"]
    assert m["n"] == len(qs) and m["micro"] == pytest.approx(m["baselines"]["always_A"])
