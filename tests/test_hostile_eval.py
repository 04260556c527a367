"""Hostile benchmark folders, videos, run folders and predictions files (issue 15, evaluation):
paths that leave the benchmark, frames that would be substituted, malformed items, corrupt
videos, concurrent and mismatched runs on one folder, conflicting or out-of-range predictions.
Every case ends in an error naming the file, the item and the fix, or in a counted and reported
outcome; never in a silent substitution."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from lib import config, evaluate, metrics, models, paths, predictions, tvbench, video
from lib.video import write_video
from tests.cli_helpers import tvbench_cli as _cli

PY = sys.executable


def _ramp(n: int, size: int = 32) -> np.ndarray:
    return np.stack([np.full((size, size, 3), 8 * i % 256, np.uint8) for i in range(n)])


def _bench(root: Path, items: dict[str, list[dict]], videos: dict[str, tuple[int, int]]
           ) -> Path:
    """json/<task>.json from ``items`` and the videos (``task/name`` -> (frames, fps))."""
    (root / "json").mkdir(parents=True, exist_ok=True)
    for rel, (n, fps) in videos.items():
        write_video(root / "video" / rel, _ramp(n), fps)
    for task, its in items.items():
        (root / "json" / f"{task}.json").write_text(json.dumps(its))
    return root


def _item(video_name: str, q: str = "q", **kw) -> dict:
    return {"video": video_name, "question": q, "candidates": ["a", "b", "c"], "answer": "b",
            **kw}


def _truncated_mp4(path: Path, n: int, keep: int, fps: int = 8, partial: bool = False
                   ) -> Path:
    """An mp4 whose header says ``n`` frames but whose data stops after ``keep`` packets (in
    the middle of the next one with ``partial``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    full = path.with_suffix(".full.mp4")
    with av.open(str(full), mode="w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width = s.height = 32
        s.pix_fmt = "yuv420p"
        for f in _ramp(n):
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with av.open(str(full)) as c:
        packets = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    pos, size = packets[keep - 1]
    cut = pos + size + (packets[keep][1] // 2 if partial else 0)
    path.write_bytes(full.read_bytes()[:cut])
    full.unlink()
    return path


# --- 3: every data path stays inside its root ------------------------------------------------


@pytest.mark.parametrize("name", ["../other_task/x.mp4", "/etc/passwd", "../../..",
                                  "sub/../../other_task/x.mp4", ""])
def test_video_paths_stay_in_the_task_folder(tmp_path, name):
    root = _bench(tmp_path / "b", {"this_task": [_item("ok.mp4"), _item(name, "q1")]},
                  {"this_task/ok.mp4": (8, 8), "other_task/x.mp4": (8, 8)})
    with pytest.raises(tvbench.BenchmarkError) as e:
        tvbench.open_benchmark(root)
    msg = str(e.value)
    assert "this_task.json item 1" in msg and ("video/this_task/" in msg or "'video'" in msg)
    report = tvbench.validate(root, raise_on_error=False)
    assert not report.ok and any("item 1" in p for p in report.problems)
    with pytest.raises(tvbench.BenchmarkError, match="outside"):
        tvbench.video_path(root, "this_task", name or ".")
    assert tvbench.resolve_video(root, "this_task", "ok.mp4") is not None


# --- 4: substituted frames are counted, reported, and stop a default run ---------------------


@pytest.fixture(scope="module")
def short_bench(tmp_path_factory):
    """Six questions: three normal, a window past the video's end, a 1-frame video and an mp4
    whose stream stops at frame 25 of the 40 its header promises."""
    root = tmp_path_factory.mktemp("short") / "bench"
    bound = [_item("ok.mp4", "in", start=0.5, end=2.0),
             _item("ok.mp4", "past", start=10.0, end=12.0),  # the clip is 3 s long
             _item("one.mp4", "one frame", start=0.0, end=0.5)]
    plain = [_item("ok2.mp4", "plain"), _item("trunc.mp4", "truncated"),
             _item("ok2.mp4", "plain again")]
    _bench(root, {"action_sequence": bound, "object_count": plain},
           {"action_sequence/ok.mp4": (24, 8), "action_sequence/one.mp4": (1, 8),
            "object_count/ok2.mp4": (24, 8)})
    _truncated_mp4(root / "video" / "object_count" / "trunc.mp4", 40, 25)
    return root


def test_short_videos_fail_a_default_run(short_bench, tmp_path):
    b = tvbench.open_benchmark(short_bench)
    spec = config.EvalSpec(num_workers=0)
    assert spec.on_short_video == "fail"
    # found when the benchmark was opened: stops before anything is evaluated
    with pytest.raises(video.VideoError) as e:
        evaluate.evaluate(models.FakeModel(), b, tmp_path / "run", spec, n_boot=20,
                          progress=False)
    msg = str(e.value)
    assert "2 question(s)" in msg and "--on-short-video report" in msg
    for what in ("action_sequence/1", "ok.mp4", "past the video's 3.00 s", "action_sequence/2",
                 "one.mp4", "1 frame"):
        assert what in msg, what
    assert not (tmp_path / "run" / "predictions.jsonl").exists()
    # a stream that stops early is found by decoding: the run stops before writing results
    oc = tvbench.open_benchmark(short_bench, ["object_count"])
    with pytest.raises(video.VideoError) as e:
        evaluate.evaluate(models.FakeModel(), oc, tmp_path / "oc", spec, n_boot=20,
                          progress=False)
    msg = str(e.value)
    assert "1 question(s)" in msg and "--on-short-video report" in msg
    assert "object_count/1 video/object_count/trunc.mp4: short-stream:25" in msg
    assert not (tmp_path / "oc" / "metrics.json").exists()
    # the predictions are kept: `report` finishes the run without recomputing anything
    report = config.EvalSpec(num_workers=0, on_short_video="report")
    assert evaluate.run(models.FakeModel(), oc, tmp_path / "oc", report,
                        progress=False)["todo"] == 0
    res = evaluate.evaluate(models.FakeModel(), oc, tmp_path / "oc", report, n_boot=20,
                            progress=False)
    assert res["normal/paper"]["short_video_questions"] == ["object_count/1"]


def test_short_videos_counted_in_metrics_report_and_stdout(short_bench, tmp_path):
    out = _cli("eval", "--model", "fake:hash", "--data", short_bench, "--out", tmp_path / "r",
               "--workers", "0", "--quiet", "--no-record", check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "short video" in out.stderr and "--on-short-video report" in out.stderr
    out = _cli("eval", "--model", "fake:hash", "--data", short_bench, "--out", tmp_path / "r",
               "--workers", "0", "--quiet", "--no-record", "--on-short-video", "report")
    assert "short video frames: 3 question(s)" in out.stdout
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())["normal/paper"]
    assert m["n"] == 6 and m["short_video"] == 3
    assert m["frame_notes"] == {"empty-window": 2, "short-stream": 1}
    assert sorted(m["short_video_questions"]) == ["action_sequence/1", "action_sequence/2",
                                                  "object_count/1"]
    assert "short video frames: 3 question(s)" in (tmp_path / "r" / "report.md").read_text()
    s = _cli("score", "--data", short_bench, "--predictions", tmp_path / "r").stdout
    assert "short video frames: 3 question(s)" in s and s.splitlines()[-1].endswith("n 6")


def test_window_past_the_end_is_noted():
    idx, note = video.paper_indices(100, 10, 2.0, 20.0)  # 10 s clip, window to 20 s
    assert idx == list(range(20, 99, 5)) and note.startswith("window-past-end")
    assert video.paper_indices(100, 10, 2.0, 10.0)[1] == ""  # ends at the clip's end: fine
    assert video.uniform_indices(100, 10, 4, 2.0, 20.0)[1].startswith("window-past-end")
    assert video.paper_indices(1, 10)[1] == "one-frame"


def test_eval_spec_on_short_video():
    assert config.EvalSpec.from_params(
        {"CONDITIONS": ["normal"], "SHUFFLE_SEEDS": [0], "SCORING": "paper", "LIMIT": None,
         "WORKERS": 0, "FRAME_CACHE": False, "TORCH_THREADS": None,
         "ON_SHORT_VIDEO": "report"}).on_short_video == "report"
    with pytest.raises(ValueError, match="on_short_video"):
        config.EvalSpec(on_short_video="ignore")


# --- 5: malformed items and broken videos -----------------------------------------------------


@pytest.mark.parametrize("bad, expect", [
    ([], "holds no questions"),
    ([_item("v.mp4", candidates=["a", "b", "c", "c", "d"])], "repeats candidate"),
    ([_item("v.mp4", start=True, end=2.0)], "bounds"),
    ([_item("v.mp4", start=0.0, end=False)], "bounds"),
    ([_item("v.mp4", start=0.0, end=float("nan"))], "bounds"),
    ([_item("v.mp4", question=None)], "'question' must be a non-empty string"),
    ([{**_item("v.mp4"), "candidates": [f"o{i}" for i in range(27)], "answer": "o3"}],
     "at most 26"),
    ([_item("v.mp4", candidates=["a", 2, "b"])], "candidates"),
    ([_item("v.mp4", start=0.0, end=2.0, accurate_start="x", accurate_end=1.0)],
     "accurate_start"),
])
def test_malformed_items_are_refused(tmp_path, bad, expect):
    task = "action_sequence" if any("start" in it for it in bad) else "action_count"
    items = {task: bad, "object_count": [_item("ok.mp4")]}
    root = _bench(tmp_path / "b", items, {f"{task}/v.mp4": (8, 8), "object_count/ok.mp4": (8, 8)})
    if task == "action_sequence":  # start/end are only read for the bounded tasks
        for it in bad:
            it.setdefault("start", 0.0)
            it.setdefault("end", 1.0)
        (root / "json" / f"{task}.json").write_text(json.dumps(bad))
    with pytest.raises(tvbench.BenchmarkError, match=expect) as e:
        tvbench.open_benchmark(root)
    assert f"{task}.json" in str(e.value)
    assert not tvbench.validate(root, raise_on_error=False).ok


def test_empty_task_file_stops_the_cli(tmp_path):
    root = _bench(tmp_path / "b", {"action_count": [], "object_count": [_item("ok.mp4")]},
                  {"object_count/ok.mp4": (8, 8)})
    out = _cli("eval", "--model", "fake:hash", "--data", root, "--out", tmp_path / "r",
               "--workers", "0", "--quiet", "--no-record", check=False)
    assert out.returncode == 2 and "action_count.json" in out.stderr
    assert "holds no questions" in out.stderr


def test_duplicate_question_ids_are_refused(tmp_path):
    its = [_item("v.mp4", start=0.0, end=1.0, question_id="X"),
           _item("v.mp4", "q2", start=0.0, end=1.0, question_id="X")]
    root = _bench(tmp_path / "b", {"action_sequence": its}, {"action_sequence/v.mp4": (8, 8)})
    with pytest.raises(tvbench.BenchmarkError, match="question_id 'X'.*item 0"):
        tvbench.open_benchmark(root)


@pytest.mark.parametrize("content", [b"", b"\x00garbage" * 50])
def test_corrupt_videos(tmp_path, content):
    root = _bench(tmp_path / "b", {"object_count": [_item("ok.mp4"), _item("bad.mp4", "q1")]},
                  {"object_count/ok.mp4": (8, 8)})
    bad = root / "video" / "object_count" / "bad.mp4"
    bad.write_bytes(content)
    report = tvbench.validate(root, raise_on_error=False)
    assert not report.ok and any("bad.mp4" in p for p in report.problems)
    with pytest.raises(tvbench.BenchmarkError, match="bad.mp4"):
        tvbench.validate(root)
    q = tvbench.Question("object_count", 1, "bad.mp4", bad, "q1", ("a", "b", "c"), 1)
    with pytest.raises(video.VideoError, match="bad.mp4.*re-download"):
        video.read_clip(q)
    out = _cli("eval", "--model", "fake:hash", "--data", root, "--out", tmp_path / "r",
               "--workers", "0", "--quiet", "--no-record", check=False)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "bad.mp4" in out.stderr and "Traceback" not in out.stderr


def test_truncated_videos(tmp_path):
    f = tmp_path / "v.mp4"
    write_video(f, _ramp(30), 8)
    g = tmp_path / "cut.mp4"
    g.write_bytes(f.read_bytes()[:f.stat().st_size // 2])  # index at the end: unreadable
    with pytest.raises(video.VideoError, match="cut.mp4"):
        video.probe(g)
    mid = _truncated_mp4(tmp_path / "mid.mp4", 40, 25, partial=True)  # cut inside a packet
    frames, note = video.decode_frames(mid, [0, 10, 30, 39])
    assert len(frames) == 4 and note.startswith("short-stream:")
    assert np.array_equal(frames[2], frames[3])  # the last decoded frame, and it says so


# --- 6: one run at a time per folder; a mismatched rerun is refused before anything changes ----


@pytest.fixture(scope="module")
def mini(smoke_assets):
    return smoke_assets / "minitvbench"


def test_second_eval_on_a_busy_folder_is_refused(mini, tmp_path):
    run = tmp_path / "run"
    args = ["eval", "--data", mini, "--out", run, "--workers", "0", "--quiet", "--no-record",
            "--limit", "2"]
    first = subprocess.Popen([PY, "-m", "lib.tvbench", *map(str, args), "--model",
                              "fake:hash?delay=1"], cwd=paths.ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pred = run / "predictions.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (pred.exists() and pred.stat().st_size):
        time.sleep(0.05)
    second = _cli(*args, "--model", "fake:hash", check=False)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert second.returncode == 2
    assert str(run) in second.stderr and f"pid {first.pid}" in second.stderr
    recs = predictions.read_predictions(run)
    assert len(recs) == 12 and json.loads((run / "metrics.json").read_text())[
        "normal/paper"]["n"] == 12
    again = _cli(*args, "--model", "fake:hash")  # the lock is gone with its process
    assert again.stdout.splitlines()[-1].endswith("n 12")


def test_mismatched_rerun_is_refused_before_touching_the_folder(mini, tmp_path):
    b = tvbench.open_benchmark(mini)
    run = tmp_path / "r"
    evaluate.evaluate(models.FakeModel(), b, run, config.EvalSpec(limit=2, num_workers=0),
                      n_boot=20, progress=False)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(tvbench.BenchmarkError) as e:
        evaluate.run(models.FakeModel("other"), b, run,
                     config.EvalSpec(limit=2, num_workers=0, max_new_tokens=9), progress=False)
    msg = str(e.value)
    assert "model" in msg and "fake:hash" in msg and "fake:other" in msg
    assert "max_new_tokens" in msg and "5" in msg and "9" in msg
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_rerun_with_a_smaller_limit_scores_its_subset(mini, tmp_path):
    """A shared folder may hold more questions than a run asks for (notebook 04 shares the base
    model's folder across LIMITs): the run scores its own questions and says how many more the
    folder holds; `score` on the folder scores everything."""
    run = tmp_path / "r"
    base = ["eval", "--model", "fake:hash", "--data", mini, "--out", run, "--workers", "0",
            "--quiet", "--no-record"]
    _cli(*base, "--limit", "2")
    out = _cli(*base, "--limit", "1")
    assert out.stdout.splitlines()[-1].endswith("n 6")
    assert "6 prediction(s) of questions outside this run" in out.stdout
    m = json.loads((run / "metrics.json").read_text())["normal/paper"]
    assert m["n"] == 6 and m["outside_selection"] == 6
    assert len(predictions.read_predictions(run)) == 12
    assert _cli("score", "--data", mini, "--predictions", run).stdout.splitlines()[
        -1].endswith("n 12")


# --- 7: predictions files that would score differently depending on line order ------------------


def _json_bench(root: Path, n: int = 12) -> Path:
    (root / "json").mkdir(parents=True)
    its = [{"video": f"v{i // 2}.mp4", "question": f"question {i}", "candidates": ["a", "b"],
            "answer": "ab"[i % 2]} for i in range(n)]
    (root / "json" / "action_count.json").write_text(json.dumps(its))
    return root


def _recs(root: Path) -> list[dict]:
    qs = tvbench.open_benchmark(root, require_videos=False).questions
    return [{"sample_id": tvbench.sample_id(q), "task": q.task, "video": q.video,
             "question": q.question, "answer_index": q.answer_index,
             "pred_index": q.answer_index} for q in qs]


def _write(f: Path, recs: list[dict]) -> Path:
    f.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return f


def test_conflicting_duplicates_name_both_lines(tmp_path):
    root = _json_bench(tmp_path / "b")
    recs = _recs(root)
    f = _write(tmp_path / "p.jsonl", recs + [dict(recs[3], pred_index=1 - recs[3]["pred_index"])])
    out = _cli("score", "--data", root, "--predictions", f, check=False)
    assert out.returncode == 2
    assert "line 4" in out.stderr and "line 13" in out.stderr
    assert "action_count/3" in out.stderr and "Traceback" not in out.stderr


def test_identical_duplicates_count_once_and_are_reported(tmp_path):
    root = _json_bench(tmp_path / "b")
    recs = _recs(root)
    f = _write(tmp_path / "p.jsonl", recs + [recs[3], recs[5]])
    out = _cli("score", "--data", root, "--predictions", f, "--json", tmp_path / "m.json")
    assert out.stdout.splitlines()[-1].endswith("n 12")
    assert "duplicate records (identical, counted once): 2" in out.stdout
    assert json.loads((tmp_path / "m.json").read_text())["normal/paper"][
        "duplicate_records"] == 2


def test_unknown_sample_id_is_not_counted_twice(tmp_path):
    root = _json_bench(tmp_path / "b")
    recs = _recs(root)
    f = _write(tmp_path / "p.jsonl", recs + [dict(recs[0], sample_id="action_count/99")])
    out = _cli("score", "--data", root, "--predictions", f, check=False)
    assert out.returncode == 2 and "action_count/99" in out.stderr and "line 13" in out.stderr


@pytest.mark.parametrize("pred", [2, -1, 7, 1.5, True])
def test_out_of_range_pred_index_is_an_error(tmp_path, pred):
    root = _json_bench(tmp_path / "b")
    recs = _recs(root)
    recs[4]["pred_index"] = pred
    f = _write(tmp_path / "p.jsonl", recs)
    with pytest.raises(tvbench.BenchmarkError, match=r"line 5.*pred_index"):
        metrics.score(f, root, n_boot=0)
    recs[4]["pred_index"] = None  # unanswered is what null is for
    assert metrics.score(_write(f, recs), root, n_boot=0)["normal/paper"]["unanswered"] == 1


def test_changed_data_is_detected(tmp_path):
    root = _json_bench(tmp_path / "b")
    recs = _recs(root)
    recs[2]["question"] = "a question the data does not hold"
    with pytest.raises(tvbench.BenchmarkError, match="action_count/2"):
        metrics.score(_write(tmp_path / "p.jsonl", recs), root, n_boot=0)


def test_lock_file_names_the_holder(tmp_path):
    from lib import run_folder

    code = ("import sys\nfrom lib import run_folder, tvbench\ntry:\n"
            f"    run_folder.locked({str(tmp_path)!r}).__enter__()\n"
            "except tvbench.BenchmarkError as e:\n    print(e)\n    sys.exit(3)\n")
    with run_folder.locked(tmp_path):
        child = subprocess.run([PY, "-c", code], capture_output=True, text=True, cwd=paths.ROOT)
        assert child.returncode == 3, child.stderr[-2000:]
        assert f"pid {os.getpid()}" in child.stdout and str(tmp_path) in child.stdout
        with run_folder.locked(tmp_path):  # re-entrant in the holding process
            pass
    child = subprocess.run([PY, "-c", code], capture_output=True, text=True, cwd=paths.ROOT)
    assert child.returncode == 0, child.stdout + child.stderr[-2000:]
