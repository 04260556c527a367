"""Fine-tune LongVU on pseudo-videos: QLoRA (default), LoRA, or the paper's full fine-tuning.

Notebook 03 (and `python -m lib.train`) calls `train(TrainConfig(...))` (`lib.config`);
`lib.demo_stages` trains the demo's stage checkpoints through `run_training`; notebook 04
reloads the result with `lib.longvu.load(base, quantization=..., adapter=RUN_DIR/"adapter")`.
This module turns items into LongVU samples, runs (or resumes) a run dir and summarises it;
`lib.heldout` measures the result on held-out pseudo-videos; `lib.adapters` prepares the model
for a mode and stores adapters, `lib.trainer` is the HF Trainer wiring.

Modes
    qlora  decoder linears in NF4 (double quantisation, bf16 compute); LoRA on the decoder's
           attention and MLP projections only (`lib.adapters.LORA_TARGET`, anchored on
           `model.layers.N`, so the SVA sampler's and SigLIP's q/k/v/o projections are never
           adapted); connector fully trainable; towers frozen in the load dtype (bf16 on CUDA).
    lora   the same adapters on a 16-bit base (bf16 on CUDA, fp32 on CPU).
    full   the paper's recipe: decoder + connector trainable, towers frozen, lr 5e-6.
Recipe: linear warm-up over 3 % of the steps then cosine to 0, global batch 64 through gradient
accumulation (micro-batch 1, divided over DDP ranks under torchrun), non-reentrant activation
checkpointing, 8-bit paged AdamW on CUDA (plain AdamW on CPU), loss on answer tokens only
(`LongVU.forward` runs lm_head at label rows only).

Run dir layout (RUN_DIR = --out)
    config.json               the TrainConfig (a resume must match it)
    checkpoints/checkpoint-N/ adapter (or full weights) + optimizer/scheduler/RNG/trainer state;
                              `checkpoint_is_complete.flag` marks a finished write, others are
                              deleted on resume
    adapter/                  adapter_config.json, adapter_model.safetensors,
                              connector.safetensors (qlora/lora) -> `lib.longvu.load(adapter=)`
    model/                    (full mode) a complete checkpoint in LongVU's layout
    log.jsonl                 one line per optimizer step (loss, lr, grad norm, data wait,
                              compute, tokens/s, peak memory, bad samples, answers cut by the
                              token budget; ``loss`` is null on a step with no answer token)
    metrics.json, training_complete.flag   (paths in metrics.json are repo-relative)
Answers cut by the token budget are counted per step and per run (``truncated_samples`` =
``answer_cut_samples`` partly + ``answer_dropped_samples`` entirely, ``skipped_steps``) in
log.jsonl, metrics.json and on stdout (``lib.trainer`` has the loss rules).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data as tud
from transformers import set_seed

from lib import coco, longvu, paths, pseudo_video, recipes
from lib.adapters import build_model, save_adapter, trainable_counts
from lib.config import TrainConfig, add_train_arguments
from lib.longvu import prompts
from lib.longvu.model import preprocess_visual
from lib.models import pick_device
from lib.paths import OutputPathError
from lib.questions import MIN_SCENES, parse_mix
from lib.train_runs import (LAYOUT_FIELDS, check_resume_config, complete_checkpoints,
                            drop_incomplete, formations, read_log, table_record, truncate_log)
from lib.trainer import TrainError, build_trainer, report_truncation, training_arguments

DONE_FLAG = "training_complete.flag"
# the recipe columns of a finetune.csv row (lib.recipes; metrics.json has the same keys)
RECIPE_COLUMNS = ("recipe", *recipes.TRAIN_FIELDS, "eval_dtype", "eval_drop_threshold",
                  "recipe_overrides")
PAPER_SAMPLES = 3125 * 64  # the paper's run: 3,125 steps at global batch 64


# ---------------------------------------------------------------------------------------------
# Samples and collation


class SampleBuilder:
    """Pseudo-video item -> LongVU tower inputs + (input_ids, labels). Picklable, CPU only.

    Mirrors `LongVU.preprocess(frames, kind="video")` (checked by the tests) without holding
    the model, so DataLoader workers never touch CUDA tensors.
    """

    def __init__(self, model, supervise_prompt_tokens: bool = False):
        self.sizes = tuple(model.towers.sizes)
        self.swap = bool(model.flags.legacy_video_size_swap)
        self.tokenizer, self.template = model.tokenizer, model.template
        self.supervise_prompt_tokens = supervise_prompt_tokens
        if self.tokenizer is None:
            raise ValueError(f"{getattr(model, 'source', 'model')}: checkpoint has no tokenizer; "
                             "training needs one (save it next to config.json)")

    def visual(self, frames: np.ndarray) -> dict:
        return preprocess_visual(frames, "video", self.sizes, self.swap)

    def text(self, prompt: str, target: str) -> tuple[list[int], list[int]]:
        return prompts.training_example(self.tokenizer, self.template, prompt, target,
                                        with_image=prompts.IMAGE_TOKEN not in prompt,
                                        supervise_prompt_tokens=self.supervise_prompt_tokens)

    def __call__(self, item: dict) -> dict:
        ids, labels = self.text(item["prompt"], item["target"])
        if all(t == -100 for t in labels):
            raise ValueError(f"sample {item.get('sample_id')}: no supervised tokens")
        return {"visual": self.visual(item["frames"]), "input_ids": ids, "labels": labels,
                "num_frames": int(len(item["frames"])), "sample_id": item.get("sample_id"),
                "question_type": item.get("question_type", "?"),
                "errors": list(item.get("errors", []))}


class TrainSamples(tud.Dataset):
    """A pseudo-video dataset (items with frames/prompt/target) turned into LongVU samples."""

    def __init__(self, source: tud.Dataset, builder: SampleBuilder):
        self.source, self.builder = source, builder

    def __len__(self) -> int:
        return len(self.source)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.source, "set_epoch"):
            self.source.set_epoch(epoch)

    def __getitem__(self, i: int) -> dict:
        return self.builder(self.source[i])

    def lengths(self) -> list[int] | None:
        """Frames per item without rendering any (pseudo-video formations; the visual tokens
        dominate a sample's length): the key of length-grouped batches. None: unknown."""
        table = formations(self.source)
        return [f.num_frames for f in table] if table is not None else None


class Collator:
    """Right-pad ids/labels of a micro-batch; visual inputs stay a list (frame counts differ)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, items: list[dict]) -> dict:
        n = max(len(it["input_ids"]) for it in items)
        ids = torch.full((len(items), n), self.pad_id, dtype=torch.long)
        labels = torch.full((len(items), n), -100, dtype=torch.long)
        mask = torch.zeros((len(items), n), dtype=torch.long)
        for i, it in enumerate(items):
            k = len(it["input_ids"])
            ids[i, :k] = torch.tensor(it["input_ids"])
            labels[i, :k] = torch.tensor(it["labels"])
            mask[i, :k] = 1
        return {"visual": [it["visual"] for it in items], "input_ids": ids,
                "attention_mask": mask, "labels": labels,
                "stats": {"answer_tokens": int((labels != -100).sum()),
                          "label_counts": (labels != -100).sum(1).tolist(),
                          "sample_ids": [it.get("sample_id") for it in items],
                          "question_types": [it.get("question_type", "?") for it in items],
                          "frames": sum(it["num_frames"] for it in items),
                          "bad": sum(len(it["errors"]) for it in items),
                          "errors": [e for it in items for e in it["errors"]]}}


def pad_id(tokenizer) -> int:
    pid = tokenizer.pad_token_id
    return pid if pid is not None else (tokenizer.eos_token_id or 0)


def pseudo_video_dataset(cfg: TrainConfig, rank: int = 0) -> tud.Dataset:
    """lib.pseudo_video's on-the-fly dataset for this config (``cfg.seeding="per-rank"``: rank
    ``rank`` draws its own table from ``seed + rank``, as the fork's train_modified.py:964).

    Every image file of the split is checked up front, so a missing file stops the run before
    training with the full list; a bad sample later raises unless ``on_bad_sample="substitute"``.
    """
    check_data_settings(cfg)
    coco.validate_captions(coco.captions_path(cfg.coco, cfg.split),
                           coco.images_dir(cfg.coco, cfg.split), check_images="exists")
    source = pseudo_video.build_source(cfg.coco, split=cfg.split, questions=cfg.questions,
                                       n=cfg.n, s=cfg.S, f=cfg.F, seed=cfg.seed,
                                       mode=cfg.question_mode, seeding=cfg.seeding,
                                       rank=rank, source=cfg.source)
    return pseudo_video.PseudoVideoDataset(source, jitter=cfg.jitter, size=cfg.frame_size,
                                           on_error=cfg.on_bad_sample,
                                           answer_format=cfg.answer_format,
                                           prompt_format=cfg.prompt_format)


def check_data_settings(cfg: TrainConfig) -> None:
    """What a pseudo-video run cannot use, as one-line ``TrainError``s naming the flag and the
    fix, before anything loads: the question mix, too few scenes for a question type (R1 with
    S=1 would ask for the order of one scene), the COCO split's captions file and images."""
    fix_coco = (f"fix: pass a COCO root with annotations/captions_{cfg.split}2017.json and "
                f"{cfg.split}2017/ (python -m lib.assets build --profile smoke --out DIR)")
    if not cfg.coco:
        raise TrainError(f"--coco is required (TrainConfig.coco); {fix_coco}")
    try:
        specs = parse_mix(cfg.questions, cfg.n, cfg.S, cfg.F)
    except ValueError as e:
        raise TrainError(f"--questions {cfg.questions!r}: {e}; fix: a mix such as R1, R1,R3 "
                         "or R1:S=4:F=5 (lib.questions.parse_mix)") from None
    for spec in specs:
        need = MIN_SCENES[spec.qtype]
        if spec.s_min is None and spec.s_max < need:
            raise TrainError(f"--S {spec.s_max}: {spec.qtype} needs at least {need} scenes "
                             f"(its questions are about their order); fix: --S {need} or more, "
                             "or a one-scene question type (A1, A2)")
    try:
        coco.captions_path(cfg.coco, cfg.split)
    except coco.CocoError as e:
        raise TrainError(f"--coco {cfg.coco}: {str(e).splitlines()[0].rstrip('.')}; "
                         f"{fix_coco}") from None
    if not coco.images_dir(cfg.coco, cfg.split).is_dir():
        raise TrainError(f"--coco {cfg.coco}: no image folder {cfg.split}2017/ next to "
                         f"annotations/; {fix_coco}")


# ---------------------------------------------------------------------------------------------
# Entry points


def train(cfg: TrainConfig, resume: bool = False, dataset: tud.Dataset | None = None,
          fail_at_step: int | None = None) -> dict[str, Any]:
    """Train (or resume) one run; returns and writes RUN_DIR/metrics.json (see run_training)."""
    return run_training(cfg, resume, dataset, fail_at_step)[0]


def run_training(cfg: TrainConfig, resume: bool = False, dataset: tud.Dataset | None = None,
                 fail_at_step: int | None = None) -> tuple[dict[str, Any], Any]:
    """Train (or resume) one run -> (metrics, trained model; None if already complete).

    dataset: items with `frames`/`prompt`/`target` (default: lib.pseudo_video from cfg).
    resume: continue from the last complete checkpoint under RUN_DIR/checkpoints (same config
    required); a finished run (training_complete.flag) is not retrained.
    fail_at_step: raise after that optimizer step (tests of kill-and-resume).
    """
    run = Path(cfg.out)
    ckpt_dir = run / "checkpoints"
    if resume:
        check_resume_config(run, cfg)
        if (run / DONE_FLAG).is_file() and (run / "metrics.json").is_file():
            print(f"{run}: training already complete; reusing it")
            return json.loads((run / "metrics.json").read_text()), None
    elif complete_checkpoints(ckpt_dir) or (run / DONE_FLAG).is_file():
        raise FileExistsError(f"{run} already holds a run; pass resume=True (--resume) to "
                              "continue it, or choose a new --out / RUN_NAME")
    device = pick_device(cfg.device)
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    if cfg.global_batch % (cfg.micro_batch * world):
        raise TrainError(f"global_batch {cfg.global_batch} is not a multiple of micro_batch "
                         f"{cfg.micro_batch} x {world} processes")
    accum = cfg.global_batch // (cfg.micro_batch * world)

    source = dataset if dataset is not None else pseudo_video_dataset(cfg, rank)
    if len(source) < cfg.global_batch:  # HF would quietly run steps of len(source) samples
        raise TrainError(f"--n {len(source)} is fewer than --global-batch {cfg.global_batch} "
                         f"(samples per epoch vs per optimizer step); fix: --n "
                         f"{cfg.global_batch} or more, or --global-batch {len(source)} or less")

    set_seed(cfg.seed)
    model, quant = build_model(cfg, device)
    data = TrainSamples(source, SampleBuilder(model, cfg.supervise_prompt_tokens))
    cuda = device.type == "cuda"
    workers = cfg.num_workers if cfg.num_workers is not None else (
        min(6, max((os.cpu_count() or 1) - 1, 0)) if cuda else 0)
    max_steps = cfg.max_steps if cfg.max_steps is not None else max(1, math.ceil(
        cfg.epochs * len(data) / cfg.global_batch))
    if rank == 0:
        run.mkdir(parents=True, exist_ok=True)
        gone = drop_incomplete(ckpt_dir) if resume else []
        if gone:
            print(f"dropped incomplete checkpoints: {gone}")
        layout = {k: getattr(model.config, k) for k in LAYOUT_FIELDS}  # as trained and saved
        (run / "config.json").write_text(json.dumps(dataclasses.asdict(cfg) | layout, indent=1)
                                         + "\n")
    last = complete_checkpoints(ckpt_dir)
    resume_from = str(last[-1]) if (resume and last) else None
    resumed_step = int(last[-1].name.split("-")[-1]) if resume_from else 0
    if rank == 0:
        truncate_log(run / "log.jsonl", resumed_step)
    if formations(source) is not None:
        run.mkdir(parents=True, exist_ok=True)  # any rank may get here before rank 0 made it
        (run / f"data_rank{rank}.json").write_text(json.dumps(table_record(source, cfg, rank))
                                                  + "\n")

    args = training_arguments(cfg, ckpt_dir, max_steps, accum, workers, cuda)
    trainer = build_trainer(model, cfg, args, data, Collator(pad_id(model.tokenizer)),
                            run / "log.jsonl", quant, device, fail_at_step)
    counts = trainable_counts(model)
    if rank == 0:
        print(f"mode {cfg.mode} ({quant}) on {device}: trainable {counts}; {max_steps} steps x "
              f"{cfg.global_batch} samples (accumulation {accum}); lr {cfg.resolved_lr():g}; "
              f"{len(data)} samples per epoch" + (f"; resuming {resume_from}" if resume_from
                                                   else ""), flush=True)
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume_from)
    wall = time.perf_counter() - t0
    finished = trainer.state.global_step >= max_steps
    if rank == 0:
        adapter = save_adapter(model, run / ("model" if cfg.mode == "full" else "adapter"),
                               cfg.mode, with_towers=True)
        if finished:
            (run / DONE_FLAG).write_text(f"{trainer.state.global_step}\n")
        metrics = summarise(run, cfg, quant, device, counts, max_steps, accum, wall,
                            resume_from, finished, adapter)
        report_truncation(run, metrics, model.config.tokenizer_model_max_length)
        return metrics, model
    return {}, model


def _portable(path: str | os.PathLike) -> str:
    """A path for metrics.json: repo-relative when inside the repository."""
    return paths.relative(Path(path).resolve())


def recipe_record(cfg: TrainConfig) -> dict[str, Any]:
    """The recipe's name, every training field as this run used it (explicit settings
    included), the recipe's evaluation settings, and the fields set against the recipe."""
    recipe = recipes.get(cfg.recipe)
    used = {k: getattr(cfg, k) for k in recipes.TRAIN_FIELDS}
    want = recipe.train_fields(recipes.backbone_of(cfg.model))
    return {"recipe": cfg.recipe, **used, "lr": cfg.resolved_lr(),
            "eval_dtype": recipe.eval_dtype, "eval_drop_threshold": recipe.eval_drop_threshold,
            "recipe_overrides": sorted(k for k in used if used[k] != want[k])}


def summarise(run: Path, cfg: TrainConfig, quant: str, device: torch.device,
              counts: dict, max_steps: int, accum: int, wall: float, resume_from: str | None,
              finished: bool, adapter: Path) -> dict:
    """RUN_DIR/metrics.json from the step log: losses, speed, memory, the adapter dir."""
    recs = read_log(run)
    steady = recs[1:] if len(recs) > 1 else recs  # step 1 carries warm-up costs
    step_s = float(np.mean([r["step_time_s"] for r in steady])) if steady else float("nan")
    data_s = float(np.mean([r["data_wait_s"] for r in steady])) if steady else float("nan")
    tok_s = float(np.mean([r["tokens_per_s"] for r in steady])) if steady else float("nan")
    per_sample = step_s / cfg.global_batch
    losses = [r["loss"] for r in recs if r["loss"] is not None]  # None: no answer token left

    def total(key: str) -> int:
        return sum(r.get(key, 0) for r in recs)

    metrics = {
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "steps": recs[-1]["step"] if recs else 0, "max_steps": max_steps,
        "finished": finished, "mode": cfg.mode, "source": cfg.source, "quantization": quant,
        "token_layout": cfg.token_layout, "layout_seed": cfg.seed,
        "device": str(device), "lr": cfg.resolved_lr(), "lora_r": cfg.lora_r,
        "lora_alpha": cfg.lora_alpha, "global_batch": cfg.global_batch,
        "gradient_accumulation": accum, "trainable_params": counts,
        "peak_memory_bytes": max((r["peak_memory_bytes"] for r in recs), default=0),
        "peak_memory_kind": "cuda_max_allocated" if device.type == "cuda" else "cpu_max_rss",
        "step_time_s": step_s, "data_wait_s": data_s,
        "data_wait_fraction": data_s / step_s if step_s else None,
        "time_per_sample_s": per_sample, "tokens_per_s": tok_s,
        "implied_paper_run_h": per_sample * PAPER_SAMPLES / 3600,
        **recipe_record(cfg), "world_size": int(os.environ.get("WORLD_SIZE", 1)),
        "attn_implementation": cfg.attn_implementation, "group_by_length": cfg.group_by_length,
        "activation_checkpointing": cfg.activation_checkpointing, "deepspeed": cfg.deepspeed,
        "samples_per_step": cfg.global_batch,
        "bad_samples": total("bad_samples"), "samples_seen": total("samples"),
        "truncated_samples": total("truncated_samples"),
        "answer_cut_samples": total("answer_cut_samples"),
        "answer_dropped_samples": total("answer_dropped_samples"),
        "skipped_steps": sum(bool(r.get("skipped")) for r in recs),
        "answer_tokens": total("answer_tokens"),
        "answer_tokens_kept": total("answer_tokens_kept"),
        "train_wall_s_this_session": wall,
        "resumed_from": _portable(resume_from) if resume_from else None,
        "adapter_dir" if cfg.mode != "full" else "model_dir": _portable(adapter),
    }
    (run / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(prog="python -m lib.train", description=__doc__.split("\n")[0])
    add_train_arguments(ap)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--fail-at-step", type=int, default=None, help=argparse.SUPPRESS)  # tests
    a = ap.parse_args(argv)
    try:
        paths.writable_dir(a.out, "--out")
        m = train(TrainConfig.from_args(a), resume=a.resume, fail_at_step=a.fail_at_step)
    except (TrainError, OutputPathError, coco.CocoError, FileExistsError, FileNotFoundError,
            longvu.LongVULoadError) as e:  # each names the file or flag and the fix
        print(f"error: {e}", file=sys.stderr)
        return 2
    if m:
        print(json.dumps({k: m[k] for k in (
            "first_loss", "last_loss", "steps", "quantization", "peak_memory_bytes",
            "time_per_sample_s", "samples_seen", "truncated_samples", "answer_cut_samples",
            "answer_dropped_samples", "skipped_steps")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
