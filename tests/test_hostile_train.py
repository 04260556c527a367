"""Issue 15, training and CLI items: answers cut by the token budget (loss over the surviving
answer tokens, counted, never a NaN step), a non-finite loss stops the run, one-line errors for
bad training inputs, and every writing CLI checks its output location first."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lib import assets, longvu, train, train_runs
from lib import pseudo_video as pv
from lib.config import TrainConfig
from lib.eval_cli import main as tvbench_main
from lib.longvu.model import LongVU
from lib.trainer import TrainError
from tests.longvu_helpers import tiny_ckpt

REPO = Path(__file__).resolve().parents[1]
BUDGET = 192  # tokens: a prompt of ~200 byte-level tokens overflows it
PAD = {"intact": 0, "cut": 21, "dropped": 30}  # filler words that give each outcome at BUDGET
COLORS = ["red", "green", "blue", "black"]


def _no_nan(text: str):
    def refuse(c):
        raise AssertionError(f"{c} written: {text[:300]}")
    return json.loads(text, parse_constant=refuse)


class Padded(torch.utils.data.Dataset):
    """Toy video questions whose prompts carry filler words: the longer ones lose their answer
    tokens (partly or entirely) to the checkpoint's token budget."""

    def __init__(self, kinds: list[str], frames: list[int] | None = None):
        self.kinds, self.frames = kinds, frames or [3] * len(kinds)

    def __len__(self):
        return len(self.kinds)

    def __getitem__(self, i):
        k = i % len(COLORS)
        frames = np.full((self.frames[i], 40, 48, 3), 60 + 40 * k, np.uint8)
        options = "".join(f"({'ABCD'[j]}) {c}\n" for j, c in enumerate(COLORS))
        return {"frames": frames, "sample_id": i, "question_type": self.kinds[i], "errors": [],
                "prompt": "<image>\nColour?" + " and" * PAD[self.kinds[i]] + "\n" + options,
                "target": f"({'ABCD'[k]}) {COLORS[k]}"}


@pytest.fixture(scope="module")
def short_ckpt(tmp_path_factory) -> Path:
    """A tiny LongVU whose token budget is BUDGET."""
    out = tmp_path_factory.mktemp("short") / "ckpt"
    shutil.copytree(tiny_ckpt("qwen", "image", "demo"), out)
    cfg = json.loads((out / "config.json").read_text())
    cfg["tokenizer_model_max_length"] = BUDGET
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    return out


def _cfg(ckpt, out, **kw) -> TrainConfig:
    base = dict(model=str(ckpt), out=str(out), mode="lora", max_steps=1, save_steps=100,
                lr=1e-3, lora_r=4, lora_alpha=8, lora_dropout=0.0, seed=0, log_every=1)
    return TrainConfig(**(base | kw))


def _reference(ckpt, data) -> tuple[float, list[tuple[int, int]]]:
    """The mean answer-token loss over the tokens that survive, and (kept, labelled) per item."""
    model = longvu.load(ckpt).eval()
    builder = train.SampleBuilder(model)
    total, kept, counts = 0.0, 0, []
    with torch.no_grad():
        for i in range(len(data)):
            s = builder(data[i])
            out = model.forward(s["visual"], [s["input_ids"]], [s["labels"]])
            counts.append((out.num_tokens, sum(t != -100 for t in s["labels"])))
            if out.num_tokens:
                total += float(out.loss) * out.num_tokens
                kept += out.num_tokens
    return total / kept, counts


def test_truncated_answers_loss_over_survivors(short_ckpt, tmp_path, capsys):
    """A partly cut answer trains on its surviving tokens, an entirely cut one is dropped and
    counted; the step loss and gradient are the mean over the surviving answer tokens."""
    data = Padded(["intact", "intact", "cut", "dropped"])
    want, counts = _reference(short_ckpt, data)
    assert [k == n for k, n in counts] == [True, True, False, False] and counts[3][0] == 0
    assert 0 < counts[2][0] < counts[2][1]
    m = train.train(_cfg(short_ckpt, tmp_path / "a", global_batch=4), dataset=data)
    text = (tmp_path / "a" / "log.jsonl").read_text()
    (rec,) = [_no_nan(ln) for ln in text.splitlines()]
    assert rec["loss"] == pytest.approx(want, rel=1e-4)
    assert (rec["answer_cut_samples"], rec["answer_dropped_samples"]) == (1, 1)
    assert rec["answer_tokens_kept"] == sum(k for k, _ in counts)
    assert rec["answer_tokens"] == sum(n for _, n in counts) and not rec["skipped"]
    _no_nan((tmp_path / "a" / "metrics.json").read_text())
    assert (m["truncated_samples"], m["answer_cut_samples"], m["answer_dropped_samples"],
            m["skipped_steps"], m["samples_seen"]) == (2, 1, 1, 0, 4)
    out = capsys.readouterr()
    assert "2 of 4 samples lost answer tokens (1 partly cut, 1 dropped entirely)" in out.out
    assert "tokenizer_model_max_length" in out.err  # the first dropped sample is a warning

    # the dropped sample adds nothing: same loss and gradient as the step without it
    b = train.train(_cfg(short_ckpt, tmp_path / "b", global_batch=3),
                    dataset=Padded(["intact", "intact", "cut"]))
    (ref,) = train_runs.read_log(tmp_path / "b")
    assert ref["loss"] == pytest.approx(rec["loss"], rel=1e-5)
    assert ref["grad_norm"] == pytest.approx(rec["grad_norm"], rel=1e-4)
    assert b["answer_dropped_samples"] == 0 and b["answer_cut_samples"] == 1


def test_micro_batch_in_one_forward_equals_one_by_one(short_ckpt, tmp_path):
    """A micro-batch of 4 runs as one right-padded forward (rows of different visual and text
    lengths, one answer cut, one dropped): the same loss, gradient and counts as 4 micro-batches
    of 1 accumulated, and the reference mean over the surviving answer tokens."""
    data = Padded(["intact", "cut", "intact", "dropped"], frames=[2, 3, 5, 1])
    want, counts = _reference(short_ckpt, data)
    assert [k == n for k, n in counts] == [True, False, True, False] and counts[3][0] == 0
    recs = {}
    for mb in (1, 4):
        m = train.train(_cfg(short_ckpt, tmp_path / f"mb{mb}", global_batch=4, micro_batch=mb),
                        dataset=data)
        (recs[mb],) = train_runs.read_log(tmp_path / f"mb{mb}")
        assert (m["answer_cut_samples"], m["answer_dropped_samples"], m["samples_seen"]) == \
            (1, 1, 4)
    assert recs[4]["loss"] == pytest.approx(want, rel=1e-4)
    assert recs[4]["loss"] == pytest.approx(recs[1]["loss"], rel=1e-5)
    assert recs[4]["grad_norm"] == pytest.approx(recs[1]["grad_norm"], rel=1e-4)
    assert recs[4]["answer_tokens_kept"] == recs[1]["answer_tokens_kept"] == sum(
        k for k, _ in counts)


def test_step_without_answer_tokens_is_skipped_not_nan(short_ckpt, tmp_path, capsys):
    """A step whose every answer was cut makes no update and logs no loss (never NaN)."""
    m = train.train(_cfg(short_ckpt, tmp_path, global_batch=1, max_steps=2),
                    dataset=Padded(["dropped", "intact"]))
    recs = [_no_nan(ln) for ln in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert sorted(r["skipped"] for r in recs) == [False, True]
    (skipped,) = [r for r in recs if r["skipped"]]
    assert skipped["loss"] is None and skipped["answer_tokens_kept"] == 0
    assert all(math.isfinite(r["loss"]) for r in recs if not r["skipped"])
    _no_nan((tmp_path / "metrics.json").read_text())
    assert m["skipped_steps"] == 1 and m["answer_dropped_samples"] == 1
    assert math.isfinite(m["first_loss"]) and math.isfinite(m["last_loss"])
    assert "1 of 2 steps had no answer token left" in capsys.readouterr().out


def test_run_without_any_answer_token_fails(short_ckpt, tmp_path):
    with pytest.raises(TrainError, match="no answer token"):
        train.train(_cfg(short_ckpt, tmp_path, global_batch=1), dataset=Padded(["dropped"]))
    m = _no_nan((tmp_path / "metrics.json").read_text())  # the counts are still on disk
    assert m["answer_dropped_samples"] == 1 and m["skipped_steps"] == 1


def test_non_finite_loss_stops_the_run(short_ckpt, tmp_path, monkeypatch):
    forward, calls = LongVU.forward, []

    def poisoned(self, *a, **kw):
        out = forward(self, *a, **kw)
        calls.append(1)
        return dataclasses.replace(out, loss=out.loss * float("nan")) if len(calls) > 1 else out

    monkeypatch.setattr(LongVU, "forward", poisoned)
    with pytest.raises(TrainError, match=r"step 2: .*nan.*sample"):
        train.train(_cfg(short_ckpt, tmp_path, global_batch=1, max_steps=3),
                    dataset=Padded(["intact", "intact"]))
    recs = [_no_nan(ln) for ln in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1]


def test_pseudo_video_run_with_truncated_answers_cli(smoke_assets, tmp_path):
    """The done-when check: a pseudo-video run whose answers are cut logs no NaN and states
    the counts in metrics.json and on stdout."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "lib.train", "--model", str(tiny_ckpt("qwen", "image", "small")),
           "--coco", str(smoke_assets / "coco"), "--questions", "R1", "--S", "6", "--F", "1",
           "--n", "6", "--global-batch", "2", "--max-steps", "3", "--out", str(out)]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    m = _no_nan((out / "metrics.json").read_text())
    recs = [_no_nan(ln) for ln in (out / "log.jsonl").read_text().splitlines()]
    assert m["truncated_samples"] == m["answer_cut_samples"] + m["answer_dropped_samples"] > 0
    assert m["truncated_samples"] == sum(r["truncated_samples"] for r in recs)
    assert all(r["loss"] is None or math.isfinite(r["loss"]) for r in recs)
    assert (f"{m['truncated_samples']} of 6 samples lost answer tokens "
            f"({m['answer_cut_samples']} partly cut, {m['answer_dropped_samples']} dropped "
            "entirely)") in res.stdout


# --- one-line errors for bad training inputs ---------------------------------------------------


@pytest.mark.parametrize("extra, expect", [
    (["--n", "2", "--global-batch", "4"], "--n 2 is fewer than --global-batch 4"),
    (["--S", "1"], "R1 needs at least 2 scenes"),
    (["--questions", "R9"], "unknown question type 'R9'"),
    (["--questions", "R1:S=x"], "--questions 'R1:S=x'"),
    (["--coco", "MINITVBENCH"], "no captions_train2017.json"),
    (["--coco", "NO_IMAGES"], "train2017"),
])
def test_train_cli_input_errors_one_line(smoke_assets, tmp_path, capsys, extra, expect):
    """Each is found before the model loads (--model does not exist) and is one line."""
    no_images = tmp_path / "coco"
    shutil.copytree(smoke_assets / "coco" / "annotations", no_images / "annotations")
    subs = {"MINITVBENCH": str(smoke_assets / "minitvbench"), "NO_IMAGES": str(no_images)}
    argv = ["--model", str(tmp_path / "no-model"), "--coco", str(smoke_assets / "coco"),
            "--out", str(tmp_path / "run"), "--questions", "R1", "--S", "2", "--n", "8",
            "--global-batch", "2"] + [subs.get(x, x) for x in extra]
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert expect in err and "fix" in err.lower(), err
    assert not (tmp_path / "run").exists()


# --- every writing CLI checks its output location first ----------------------------------------


def _bad_location(kind: str, tmp_path: Path, want: str) -> Path:
    """An output location that cannot be used: the wrong kind of thing, under a file, or in a
    folder nobody can write (/proc refuses even root)."""
    if kind == "wrong_kind":
        if want == "dir":
            (tmp_path / "a_file").write_text("keep me\n")
            return tmp_path / "a_file"
        (tmp_path / "a_dir").mkdir()
        return tmp_path / "a_dir"
    if kind == "under_file":
        (tmp_path / "a_file").write_text("keep me\n")
        return tmp_path / "a_file" / ("sub" if want == "dir" else "x.jsonl")
    return Path("/proc/issue15") / ("sub" if want == "dir" else "x.jsonl")


def _clis(smoke: Path, tmp_path: Path, bad: Path) -> dict:
    coco_root = str(smoke / "coco")
    sample = ["sample", "--coco", coco_root, "--n", "2"]
    return {
        "train": (train.main, ["--model", "m", "--coco", coco_root, "--out", str(bad)], "dir"),
        "tvbench eval": (tvbench_main, ["eval", "--model", "fake:hash", "--data",
                                        str(smoke / "minitvbench"), "--out", str(bad)], "dir"),
        "pseudo_video sample --out": (pv.main, sample + ["--out", str(bad)], "file"),
        "pseudo_video sample --frames-out": (pv.main, sample + [
            "--out", str(tmp_path / "ok.jsonl"), "--frames-out", str(bad)], "dir"),
        "pseudo_video export": (pv.main, ["export", "--coco", coco_root, "--n", "2", "--out",
                                          str(bad)], "dir"),
        "assets build": (assets.main, ["build", "--profile", "smoke", "--out", str(bad)], "dir"),
    }


CLIS = ["train", "tvbench eval", "pseudo_video sample --out",
        "pseudo_video sample --frames-out", "pseudo_video export", "assets build"]


@pytest.mark.parametrize("kind", ["wrong_kind", "under_file", "read_only"])
@pytest.mark.parametrize("cli", CLIS)
def test_cli_output_location_checked_first(smoke_assets, tmp_path, capsys, cli, kind):
    want = _clis(smoke_assets, tmp_path, tmp_path)[cli][2]
    bad = _bad_location(kind, tmp_path, want)
    main, argv, _ = _clis(smoke_assets, tmp_path, bad)[cli]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert str(bad) in err and "fix:" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
