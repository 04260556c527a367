"""The real TVBench excerpt (tests/fixtures/real_tvbench_excerpt, see its README): the original
annotation entries and their videos through the loader, the decoder, the evaluator and `score`.

Its videos are project-page renders with the question and the checked answer drawn into the
frames, so no accuracy on them means anything: these tests check plumbing only (counts, n,
frames, windows, matching), never an accuracy as a result.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import pytest

from lib import metrics, paths, predictions, tvbench, video
from tests.cli_helpers import tvbench_cli as _cli

REAL = paths.ROOT / "tests" / "fixtures" / "real_tvbench_excerpt"
MANIFEST = json.loads((REAL / "manifest.json").read_text())
ANNOTATED = ("action_count", "action_localization", "action_sequence", "moving_direction")
OVERRUN = {"3J9L5.mp4", "5I5E5.mp4"}  # action_localization windows past the render's end


def _entries() -> list[tuple[str, dict]]:
    """(task, original entry) in json order, read directly (not through lib.tvbench)."""
    return [(task, it) for task in ANNOTATED
            for it in json.loads((REAL / "json" / f"{task}.json").read_text())]


def _foreign(path: Path, question_id: bool = True, candidates: bool = True,
             null_ids: bool = False) -> Path:
    """Predictions as another harness writes them: no sample_id; task, video, question,
    candidates, answer_index, pred_index, question_id (where the entry has one)."""
    recs = []
    for task, it in _entries():
        r = {"task": task, "video": it["video"], "question": it["question"]}
        if candidates:
            r["candidates"] = it["candidates"]
        r["answer_index"] = it["candidates"].index(it["answer"])
        r["pred_index"] = r["answer_index"] if task == "action_sequence" else 0
        if question_id and "question_id" in it:
            r["question_id"] = it["question_id"]
        elif null_ids:
            r["question_id"] = None
        recs.append(r)
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def _expected_correct() -> int:
    """What the foreign file says, counted from the file itself (not a model's accuracy)."""
    return sum(1 for task, it in _entries() if task == "action_sequence"
               or it["candidates"].index(it["answer"]) == 0)


# --- the fixture and the loader -------------------------------------------------------------


def test_fixture_is_complete():
    assert (REAL / "README.md").read_text().startswith("# Real TVBench excerpt")
    for task, vids in MANIFEST.items():
        where = "video" if task in ANNOTATED else "extra_videos"
        for v in vids:
            assert (REAL / where / task / v["video"]).stat().st_size > 0
    assert sorted(p.stem for p in (REAL / "json").glob("*.json")) == list(ANNOTATED)


def test_real_fields_load():
    b = tvbench.open_benchmark(REAL)
    assert b.release is None and len(b.questions) == 16 and not b.skipped
    assert {t.key: sum(q.task == t.key for q in b.questions) for t in b.tasks} == {
        "action_count": 5, "action_localization": 3, "action_sequence": 5,
        "moving_direction": 3}
    seq = [q for q in b.questions if q.task == "action_sequence"]
    assert [q.question_id for q in seq] == ["Sequence_T3_1983", "Sequence_T3_1984",
                                            "Sequence_T3_2057", "Sequence_T3_3161",
                                            "Sequence_T3_3162"]
    assert len({(q.video, q.question) for q in seq}) == 3  # the text alone repeats
    loc = {q.video: q for q in b.questions if q.task == "action_localization"}
    assert loc["DOYQE.mp4"].start == 6.099999999999994 and loc["DOYQE.mp4"].end == 22.3
    assert (loc["5I5E5.mp4"].accurate_start, loc["5I5E5.mp4"].accurate_end) == (2.6, 8.4)
    assert all(q.question_id is None for q in b.questions if q.task != "action_sequence")
    assert tvbench.select(b.questions, 1)[2].question_id == "Sequence_T3_1983"


def test_int_bounds_load_as_seconds(tmp_path):
    root = tmp_path / "real"
    shutil.copytree(REAL / "json", root / "json")
    f = root / "json" / "action_sequence.json"
    items = json.loads(f.read_text())
    items[2]["start"] = 4  # as 2GQDN's start (10) in the full file: a JSON int
    f.write_text(json.dumps(items, indent=2))
    b = tvbench.open_benchmark(root, require_videos=False)
    q = [q for q in b.questions if q.question_id == "Sequence_T3_2057"][0]
    assert q.start == 4.0 and isinstance(q.start, float)


def test_validate_probes_every_video_and_lists_window_overruns():
    report = tvbench.validate(REAL)
    assert report.ok and report.num_questions == 16 and sum(report.videos.values()) == 12
    assert len(report.window_overruns) == 2
    assert all(any(v in line for v in OVERRUN) for line in report.window_overruns)


def test_h264_high444_decoding():
    for task, where, name in [("moving_direction", "video", "video_10477.mp4"),
                              ("action_sequence", "video", "01ZWG.mp4"),
                              ("scene_transition", "extra_videos", "Top009_03460.mp4")]:
        meta = {v["video"]: v for v in MANIFEST[task]}[name]
        f = REAL / where / task / name
        with av.open(str(f)) as c:
            s = c.streams.video[0]
            assert (s.codec_context.name, s.codec_context.pix_fmt, s.profile) == (
                "h264", "yuv444p", "High 4:4:4 Predictive")
        n, fps = video.probe(f)
        assert (n, fps) == (meta["n_frames"], meta["fps"])
        frames, note = video.decode_frames(f, [0, n // 2, n - 1])
        assert note == "" and frames.shape == (3, meta["height"], meta["width"], 3)
        assert frames.dtype.name == "uint8" and frames.std() > 1  # a picture, not a fill


def test_windows_are_sampled_as_the_paper_does():
    b = tvbench.open_benchmark(REAL)
    s = video.Sampler("paper")
    for q in b.questions:
        meta = {v["video"]: v for v in MANIFEST[q.task]}[q.video]
        idx, note = s.indices(meta["n_frames"], meta["fps"], q.start, q.end)
        if q.start is None:
            assert idx == list(range(0, meta["n_frames"], 15)) and note == ""
        else:
            assert idx[0] == round(q.start * 30) and all(i < meta["n_frames"] for i in idx)
            assert note.startswith("window-past-end") == (q.video in OVERRUN)


# --- foreign predictions through `score` ---------------------------------------------------------


def test_score_foreign_predictions_cli(tmp_path):
    f = _foreign(tmp_path / "foreign.jsonl")
    out = _cli("score", "--data", REAL, "--predictions", f, "--json", tmp_path / "m.json")
    lines = out.stdout.strip().splitlines()
    assert lines[-1].endswith("n 16")
    assert "5 by question_id" in out.stdout and "11 by video+question+candidates" in out.stdout
    m = json.loads((tmp_path / "m.json").read_text())["normal/paper"]
    assert m["n"] == 16 and m["correct"] == _expected_correct()
    assert m["matched_by"] == {"question_id": 5, "video+question+candidates": 11}
    assert m["tasks"]["action_sequence"]["n"] == 5 and m["tasks"]["action_sequence"]["videos"] == 3


@pytest.mark.parametrize("kw, matched", [
    ({"question_id": False}, {"video+question+candidates": 16}),
    ({"question_id": False, "null_ids": True}, {"video+question+candidates": 16}),
    ({"question_id": False, "candidates": False}, {"video+question": 12, "order": 4}),
    ({"candidates": False}, {"question_id": 5, "video+question": 11}),
])
def test_foreign_matching_fallbacks(tmp_path, kw, matched):
    res = metrics.score(_foreign(tmp_path / "f.jsonl", **kw), REAL, n_boot=0)
    m = res["normal/paper"]
    assert m["n"] == 16 and m["matched_by"] == matched
    assert m["correct"] == _expected_correct()


def test_foreign_predictions_that_cannot_match(tmp_path):
    f = _foreign(tmp_path / "f.jsonl")
    lines = f.read_text().splitlines()
    rec = json.loads(lines[9])
    assert rec["question_id"] == "Sequence_T3_1984"
    bad = dict(rec, question_id="Sequence_T3_9999")
    (tmp_path / "g.jsonl").write_text("\n".join(lines[:9] + [json.dumps(bad)] + lines[10:]))
    with pytest.raises(tvbench.BenchmarkError, match=r"line 10.*Sequence_T3_9999"):
        metrics.score(tmp_path / "g.jsonl", REAL, n_boot=0)
    swapped = dict(rec, candidates=rec["candidates"][::-1])  # same question, other option order
    (tmp_path / "h.jsonl").write_text("\n".join(lines[:9] + [json.dumps(swapped)] + lines[10:]))
    with pytest.raises(tvbench.BenchmarkError, match=r"line 10.*candidates"):
        metrics.score(tmp_path / "h.jsonl", REAL, n_boot=0)
    text_only = _foreign(tmp_path / "t.jsonl", question_id=False, candidates=False)
    extra = text_only.read_text().splitlines()
    seq = [x for x in extra if "RJCNV" in x]
    text_only.write_text("\n".join(extra + seq[:1]) + "\n")  # 3 records for RJCNV's 2 questions
    with pytest.raises(tvbench.BenchmarkError, match=r"RJCNV.*3 prediction.*2 question"):
        metrics.score(text_only, REAL, n_boot=0)


# --- eval on the real videos ------------------------------------------------------------------


def test_eval_default_stops_on_window_overruns(tmp_path):
    """3J9L5 and 5I5E5 are renders already cut to their window (README): applying [start, end]
    again runs past their end. A default run stops before evaluating; `report` counts them."""
    base = ["eval", "--model", "fake:hash", "--data", REAL, "--out", tmp_path / "run",
            "--tasks", "action_localization", "moving_direction", "--workers", "0", "--quiet",
            "--no-record"]
    out = _cli(*base, check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "2 question(s)" in out.stderr and "--on-short-video report" in out.stderr
    assert all(v in out.stderr for v in OVERRUN) and "DOYQE" not in out.stderr
    assert not (tmp_path / "run" / "predictions.jsonl").exists()
    out = _cli(*base, "--on-short-video", "report")
    assert out.stdout.splitlines()[-1].endswith("n 6")
    assert "short video frames: 2 question(s) (window-past-end 2)" in out.stdout
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())["normal/paper"]
    assert m["n"] == 6 and m["short_video"] == 2 and m["frame_notes"] == {"window-past-end": 2}
    assert m["short_video_questions"] == ["action_localization/1", "action_localization/2"]
    recs = predictions.read_predictions(tmp_path / "run")
    assert len(recs) == 6 and {r["video"] for r in recs if r["frame_note"]} == OVERRUN
    assert all(r["n_frames"] > 1 for r in recs)


def test_eval_tiny_longvu_on_real_videos(tmp_path):
    from lib.longvu.tiny import write_tiny

    ckpt = write_tiny(tmp_path / "tiny", "qwen", "video", "demo", 0)
    out = _cli("eval", "--model", ckpt, "--data", REAL, "--out", tmp_path / "run",
               "--tasks", "action_sequence", "moving_direction", "--scoring", "paper", "letter",
               "--workers", "0", "--threads", "1", "--quiet", "--no-record")
    assert out.stdout.splitlines()[-1].endswith("n 8")
    recs = predictions.read_predictions(tmp_path / "run")
    assert len(recs) == 16 and {r["scoring"] for r in recs} == {"paper", "letter"}
    assert all(r["model"] == "tiny" and r["frame_note"] == "" for r in recs)
    assert all(r["parse"] in ("ok", "fallback", "nomatch") for r in recs)
    frames = {r["sample_id"]: r["n_frames"] for r in recs}
    b = tvbench.open_benchmark(REAL, ["action_sequence", "moving_direction"])
    for q in b.questions:
        meta = {v["video"]: v for v in MANIFEST[q.task]}[q.video]
        want = len(video.paper_indices(meta["n_frames"], meta["fps"], q.start, q.end)[0])
        assert frames[tvbench.sample_id(q)] == want
    assert len({r["sample_id"] for r in recs if r["video"] == "78R4Y.mp4"}) == 2
    again = _cli("score", "--data", REAL, "--predictions", tmp_path / "run")
    assert again.stdout.splitlines()[-1] == out.stdout.splitlines()[-1]
