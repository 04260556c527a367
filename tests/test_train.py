"""lib.train: label masking, real 4-bit QLoRA on CPU, kill-and-resume, adapter reload, CLI."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lib import adapters, assets, coco, heldout, paths, train, train_runs
from lib.config import TrainConfig, add_train_arguments
from tests.longvu_helpers import tiny_ckpt

REPO = Path(__file__).resolve().parents[1]
COLORS = ["red", "green", "blue", "black"]


class ToyVideos(torch.utils.data.Dataset):
    """pseudo-video-shaped items with short prompts: per-index seeded frames and answer."""

    def __init__(self, n: int = 16, frames: int = 3, bad: tuple[int, ...] = ()):
        self.n, self.frames, self.bad = n, frames, bad
        self.epochs: list[int] = []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        rng = np.random.default_rng([7, i])
        k = int(rng.integers(len(COLORS)))
        frames = np.zeros((self.frames, 40, 48, 3), np.uint8)
        frames[..., k % 3] = 200
        frames += rng.integers(0, 40, frames.shape, dtype=np.uint8)
        options = "".join(f"({'ABCD'[j]}) {c}\n" for j, c in enumerate(COLORS))
        return {"frames": frames, "prompt": f"<image>\nColour?\n{options}",
                "target": f"({'ABCD'[k]}) {COLORS[k]}", "question_type": "toy",
                "sample_id": i, "errors": ["substituted"] if i in self.bad else []}


@pytest.fixture(scope="module")
def ckpt() -> Path:
    return tiny_ckpt("qwen", "image", "small")


def _cfg(ckpt, out, **kw) -> TrainConfig:
    base = dict(model=str(ckpt), out=str(out), max_steps=4, global_batch=2, save_steps=2,
                lr=2e-3, lora_r=8, lora_alpha=16, seed=0, log_every=100)
    base.update(kw)
    return TrainConfig(**base)


def test_labels_only_on_answer_tokens(ckpt):
    from lib.longvu import load
    model = load(ckpt)
    item = ToyVideos()[3]
    batch = train.Collator(train.pad_id(model.tokenizer))([train.SampleBuilder(model)(item)])
    sup = batch["labels"][0][batch["labels"][0] != -100]
    assert model.tokenizer.decode(sup) == item["target"] + "<|im_end|>\n"
    # the supervised span is the sequence's tail: nothing of the prompt is supervised
    n = len(sup)
    assert (batch["labels"][0, -n:] == batch["input_ids"][0, -n:]).all()
    assert (batch["labels"][0, :-n] == -100).all()
    # the paper code's labels (opt-in) also supervise the role tokens
    paper = train.SampleBuilder(model, supervise_prompt_tokens=True)(item)
    assert sum(t != -100 for t in paper["labels"]) > n
    # the worker-side preprocessing equals LongVU.preprocess
    mine, ref = train.SampleBuilder(model).visual(item["frames"]), model.preprocess(item["frames"])
    assert mine["image_sizes"] == ref["image_sizes"] and mine["kind"] == ref["kind"]
    assert torch.equal(mine["siglip"], ref["siglip"]) and torch.equal(mine["dino"], ref["dino"])


def test_qlora_model_and_loss_decrease(ckpt, tmp_path):
    cfg = _cfg(ckpt, tmp_path)
    model, quant = adapters.build_model(cfg, torch.device("cpu"))
    assert quant == "nf4"
    base = model.base_decoder
    assert type(base.model.layers[0].mlp.down_proj.base_layer).__name__ == "Linear4bit"
    assert type(base.lm_head).__name__ == "Linear"
    lora = {n.split(".lora_")[0] for n, p in model.named_parameters()
            if p.requires_grad and "lora_" in n}
    assert lora and all(".model.layers." in n for n in lora)  # never the SVA / towers
    assert all(p.requires_grad for p in model.connector.parameters())
    assert not any(p.requires_grad for p in model.towers.parameters())
    counts = adapters.trainable_counts(model)
    assert counts["lora"] > 0 and counts["connector"] > 0 and counts["decoder"] == 0

    builder = train.SampleBuilder(model)
    batch = train.Collator(train.pad_id(model.tokenizer))([builder(ToyVideos()[i])
                                                           for i in (0, 1)])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    model.train()
    losses = []
    for _ in range(6):
        out = model(batch["visual"], batch["input_ids"], batch["labels"],
                    batch["attention_mask"])
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(out.loss.detach()))
    assert losses[-1] < losses[0] - 0.5, losses


def test_kill_resume_identical_and_adapter_reload(ckpt, tmp_path):
    from lib.longvu import load
    data = ToyVideos()
    ref, model = train.run_training(_cfg(ckpt, tmp_path / "ref"), dataset=data)
    ref_log = train_runs.read_log(tmp_path / "ref")
    assert [r["step"] for r in ref_log] == [1, 2, 3, 4]
    assert ref["quantization"] == "nf4" and ref["steps"] == 4
    assert ref_log[0]["lr"] == 0.0  # warm-up starts from 0 (paper checklist 32)
    for k in ("first_loss", "last_loss", "peak_memory_bytes", "tokens_per_s"):
        assert ref[k] is not None
    assert all(r["data_wait_s"] >= 0 and r["compute_s"] > 0 for r in ref_log)

    # the adapter dir reloads through lib.longvu.load and gives the trained model's logits
    item = data[5]
    prompt = model.prompt(item["prompt"].replace("<image>\n", ""))
    model.eval()
    want = model.next_token_logits(item["frames"], prompt)
    again = load(ckpt, quantization="nf4", adapter=tmp_path / "ref" / "adapter")
    got = again.next_token_logits(item["frames"], prompt)
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    plain = load(ckpt, quantization="nf4").next_token_logits(item["frames"], prompt)
    assert not torch.allclose(plain, want, atol=1e-2)

    # killed after step 3 (checkpoint at 2 is complete; a half-written one must be ignored)
    run = tmp_path / "killed"
    with pytest.raises(RuntimeError, match="simulated kill"):
        train.train(_cfg(ckpt, run), dataset=data, fail_at_step=3)
    (run / "checkpoints" / "checkpoint-3").mkdir()  # a write cut short: no completion flag
    with pytest.raises(FileExistsError, match="resume"):
        train.train(_cfg(ckpt, run), dataset=data)
    with pytest.raises(ValueError, match="different settings"):
        train.train(_cfg(ckpt, run, lr=1e-3), dataset=data, resume=True)
    resumed = train.train(_cfg(ckpt, run), dataset=data, resume=True)
    assert not (run / "checkpoints" / "checkpoint-3").exists()
    assert resumed["resumed_from"].endswith("checkpoint-2")
    log = train_runs.read_log(run)
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert [r["loss"] for r in log] == [r["loss"] for r in ref_log]
    assert [r["lr"] for r in log] == [r["lr"] for r in ref_log]
    assert (run / train.DONE_FLAG).is_file()
    # a finished run is not retrained
    assert train.train(_cfg(ckpt, run), dataset=data, resume=True)["last_loss"] == log[-1]["loss"]


def test_time_budget_saves_and_stops(ckpt, tmp_path):
    m = train.train(_cfg(ckpt, tmp_path, max_steps=50, save_steps=1000, time_budget_s=0.0),
                    dataset=ToyVideos())
    assert m["steps"] == 1 and not m["finished"]
    assert [d.name for d in train.complete_checkpoints(tmp_path / "checkpoints")] == \
        ["checkpoint-1"]


def test_contract_cli(ckpt, smoke_assets, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "lib.train", "--model", str(ckpt), "--coco",
           str(smoke_assets / "coco"), "--questions", "R1", "--S", "2", "--F", "2", "--n", "16",
           "--max-steps", "2", "--global-batch", "2", "--out", str(out), "--mode", "qlora"]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    for k in ("first_loss", "last_loss", "steps", "quantization", "peak_memory_bytes"):
        assert k in m, k
    assert m["steps"] == 2 and m["quantization"] == "nf4"
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert (out / "adapter" / "connector.safetensors").is_file()


def test_full_mode_resume_and_standalone_checkpoint(ckpt, tmp_path):
    from lib.longvu import load
    data = ToyVideos(n=8)
    kw = dict(mode="full", max_steps=2, global_batch=1, save_steps=1, lr=1e-4)
    ref, model = train.run_training(_cfg(ckpt, tmp_path / "ref", **kw), dataset=data)
    assert ref["quantization"] == "none" and ref["trainable_params"]["decoder"] > 0
    assert ref["trainable_params"]["lora"] == 0
    item = data[2]
    prompt = model.prompt("Colour?")
    model.eval()
    want = model.next_token_logits(item["frames"], prompt)
    got = load(paths.absolute(ref["model_dir"])).next_token_logits(item["frames"], prompt)
    assert torch.allclose(got, want, atol=1e-5)
    run = tmp_path / "killed"
    with pytest.raises(RuntimeError, match="simulated kill"):
        train.train(_cfg(ckpt, run, **kw), dataset=data, fail_at_step=1)
    train.train(_cfg(ckpt, run, **kw), dataset=data, resume=True)
    assert [r["loss"] for r in train_runs.read_log(run)] == \
        [r["loss"] for r in train_runs.read_log(tmp_path / "ref")]


def test_epochs_redraw_and_bad_samples_counted(ckpt, tmp_path):
    data = ToyVideos(n=2, bad=(1,))
    m = train.train(_cfg(ckpt, tmp_path, max_steps=2, save_steps=100), dataset=data)
    assert sorted(set(data.epochs)) == [0, 1]  # the dataset re-draws its questions per epoch
    assert m["bad_samples"] == 2  # index 1 is a substitute in each of the two epochs


def test_missing_image_stops_before_training(tmp_path):
    """A missing image is an error naming it, found before any step (never a substitute)."""
    root = tmp_path / "a"
    assets.build("smoke", root)
    data = root / "coco"
    victim = sorted((data / "train2017").glob("*.jpg"))[3]
    victim.unlink()
    cfg = TrainConfig(model="unused", out=str(tmp_path / "run"), coco=str(data))
    with pytest.raises(coco.CocoError, match=victim.name):
        train.pseudo_video_dataset(cfg)
    shutil.rmtree(root)


def test_config_frozen_and_from_params():
    """Notebook 03's parameters map onto the fields (STEPS -> max_steps, a line per tenth)."""
    params = {"RUN_NAME": "x", "SEED": 3, "PROFILE": "smoke", "QUESTIONS": "R1,R3", "S": 2,
              "F": 3, "N": 16, "STEPS": 40, "GLOBAL_BATCH": 2, "LR": None, "LORA_R": 8,
              "LORA_ALPHA": 16, "MODE": "lora", "TIME_BUDGET_S": None, "SAVE_STEPS": 7,
              "EVAL_SAMPLES": 2}
    cfg = TrainConfig.from_params(params, model="m", out="o", coco="c")
    assert cfg == TrainConfig(model="m", out="o", coco="c", questions="R1,R3", S=2, F=3, n=16,
                              mode="lora", max_steps=40, lr=None, lora_r=8, lora_alpha=16,
                              global_batch=2, save_steps=7, time_budget_s=None, seed=3,
                              log_every=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0
    assert dataclasses.replace(cfg, split="val").split == "val" and cfg.split == "train"


def test_result_row_has_repo_relative_paths():
    adapter = paths.ROOT / "outputs" / "03_qlora_finetune" / "r" / "adapter"
    params = {"RUN_NAME": "r", "PROFILE": "smoke", "BACKBONE": "qwen", "MODE": "qlora",
              "QUESTIONS": "R1", "S": 2, "F": 2, "N": 4}
    metrics = {"quantization": "nf4", "steps": 2, "first_loss": 2.0, "last_loss": 1.0,
               "time_per_sample_s": 0.1, "peak_memory_bytes": 1, "adapter_dir": str(adapter),
               **train.recipe_record(TrainConfig(model="m", out="o"))}
    held = {"n": 4, "chance": 25.0,  # lib.heldout.heldout_eval
            "base": {"loss": 2.0, "letter": 25.0, "option": 50.0, "letter_eval_prompt": 20.0,
                     "option_eval_prompt": 40.0},
            "tuned": {"loss": 1.5, "letter": 75.0, "option": 100.0, "letter_eval_prompt": 30.0,
                      "option_eval_prompt": 45.0}}
    row = heldout.result_row(params, metrics, held)
    assert len(row) == 25 + len(train.RECIPE_COLUMNS)  # "mode" is both
    # the paper's target and user turn unless notebook 03 says otherwise
    assert (row["answer_format"], row["prompt_format"]) == ("letter", "fork")
    other = heldout.result_row({**params, "ANSWER_FORMAT": "text", "PROMPT_FORMAT": "eval"},
                               metrics, held)
    assert (other["answer_format"], other["prompt_format"]) == ("text", "eval")
    assert "time_per_sample_s" not in row and "peak_memory_bytes" not in row  # machine's
    assert row["heldout_tuned"] == 1.5 and row["source"] == "coco"
    assert (row["heldout_letter_base"], row["heldout_letter_tuned"], row["heldout_option_base"],
            row["heldout_option_tuned"]) == (25.0, 75.0, 50.0, 100.0)
    assert (row["heldout_option_eval_prompt_base"], row["heldout_option_eval_prompt_tuned"],
            row["heldout_letter_eval_prompt_tuned"]) == (40.0, 45.0, 30.0)
    # every recipe field is in the row (lib.recipes)
    assert (row["recipe"], row["mode"], row["seeding"], row["max_grad_norm"]) == (
        "ours", "qlora", "global", 1.0)
    assert row["adapter"] == "outputs/03_qlora_finetune/r/adapter"
    assert paths.absolute(row["adapter"]) == adapter


def test_cli_flags_derived_from_config():
    ap = add_train_arguments(argparse.ArgumentParser())
    a = ap.parse_args(["--model", "m", "--coco", "c", "--out", "o"])
    assert TrainConfig.from_args(a) == TrainConfig(model="m", out="o", coco="c")
    a = ap.parse_args(["--model", "m", "--coco", "c", "--out", "o", "--r", "8", "--alpha", "4",
                       "--time-budget", "9", "--workers", "2", "--question-mode", "compat",
                       "--supervise-prompt-tokens", "--allow-fallback", "--lr", "0.5",
                       "--answer-format", "text", "--prompt-format", "eval"])
    assert TrainConfig.from_args(a) == TrainConfig(
        model="m", out="o", coco="c", lora_r=8, lora_alpha=4, time_budget_s=9.0, num_workers=2,
        question_mode="compat", supervise_prompt_tokens=True, require_4bit=False, lr=0.5,
        answer_format="text", prompt_format="eval")
    for flag in ("--answer-format", "--prompt-format"):
        with pytest.raises(SystemExit):
            ap.parse_args(["--model", "m", "--coco", "c", "--out", "o", flag, "A"])
    with pytest.raises(SystemExit):
        ap.parse_args(["--model", "m", "--out", "o"])  # --coco is required on the CLI
