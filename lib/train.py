"""Fine-tune LongVU on pseudo-videos: QLoRA (default), LoRA, or the paper's full fine-tuning.

Notebook 03 (and `python -m lib.train`) calls `train(TrainConfig(...))`; notebook 04 reloads the
result with `lib.longvu.load(base, quantization=..., adapter=RUN_DIR/"adapter")`.

Modes
    qlora  decoder linears in NF4 (double quantisation, bf16 compute); LoRA on the decoder's
           attention and MLP projections only (`LORA_TARGET`, anchored on `model.layers.N`, so
           the SVA sampler's and SigLIP's q/k/v/o projections are never adapted); connector
           fully trainable; towers frozen in the load dtype (bf16 on CUDA).
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
                              compute, tokens/s, peak memory, bad samples)
    metrics.json, training_complete.flag
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data as tud

from lib.models import pick_device

log = logging.getLogger(__name__)

MODES = ("qlora", "lora", "full")
DEFAULT_LR = {"qlora": 1e-4, "lora": 1e-4, "full": 5e-6}
# fullmatch against the decoder's module names: only the LLM blocks' projections
LORA_TARGET = r"model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
COMPLETE_FLAG = "checkpoint_is_complete.flag"
DONE_FLAG = "training_complete.flag"
PAPER_SAMPLES = 3125 * 64  # the paper's run: 3,125 steps at global batch 64
# config fields that must match when resuming (they change the schedule, data or model)
RESUME_KEYS = ("model", "mode", "coco", "split", "questions", "S", "F", "n", "seed", "max_steps",
               "epochs", "lr", "lora_r", "lora_alpha", "lora_dropout", "global_batch",
               "micro_batch", "warmup_ratio", "weight_decay", "max_grad_norm", "question_mode",
               "jitter", "frame_size", "supervise_prompt_tokens", "legacy_placeholder_tokens",
               "train_connector", "init_adapter")


@dataclass
class TrainConfig:
    """Every knob of a fine-tuning run (serialised to RUN_DIR/config.json)."""

    model: str  # LongVU checkpoint dir or cached hub id (the start checkpoint)
    out: str  # run dir
    coco: str | None = None  # COCO-layout root for lib.pseudo_video
    split: str = "train"
    questions: str = "R1"  # lib.pseudo_video mix string, e.g. "R1:S=4:F=20,R3:S=6:F=5"
    S: int = 4
    F: int = 5
    n: int = 1000  # formations (samples per epoch)
    question_mode: str = "fixed"  # lib.pseudo_video mode: fixed | compat
    jitter: str = "mild"
    frame_size: int | None = None  # resize frames (None: keep the images' size)
    mode: str = "qlora"
    max_steps: int | None = None  # optimizer steps; None: `epochs` over n samples
    epochs: float = 1.0
    lr: float | None = None  # None: 1e-4 for (q)lora, 5e-6 (the paper's) for full
    lora_r: int = 64
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    global_batch: int = 64
    micro_batch: int = 1
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    train_connector: bool = True
    init_adapter: str | None = None  # start from a saved adapter dir (e.g. a previous run)
    supervise_prompt_tokens: bool = False  # the paper code's labels (prompt role tokens too)
    legacy_placeholder_tokens: bool = False  # the paper collator's token-id-0 leak
    on_bad_sample: str = "raise"  # raise | substitute (serve the next sample, counted and logged)
    seed: int = 0
    save_steps: int = 100
    save_total_limit: int = 2
    time_budget_s: float | None = None  # save and stop after this much training wall time
    num_workers: int | None = None  # None: 0 on CPU, min(6, cores - 1) on CUDA
    log_every: int = 10  # print a line every N steps (every step goes to log.jsonl)
    require_4bit: bool | None = None  # None: True on CUDA; False allows a loud LoRA fallback
    activation_checkpointing: bool = True
    device: str | None = None  # None: cuda (local rank) if available else cpu

    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.mode]


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
        from lib.longvu.model import preprocess_visual
        return preprocess_visual(frames, "video", self.sizes, self.swap)

    def text(self, prompt: str, target: str) -> tuple[list[int], list[int]]:
        from lib.longvu import prompts
        return prompts.training_example(self.tokenizer, self.template, prompt, target,
                                        with_image=prompts.IMAGE_TOKEN not in prompt,
                                        supervise_prompt_tokens=self.supervise_prompt_tokens)

    def __call__(self, item: dict) -> dict:
        ids, labels = self.text(item["prompt"], item["target"])
        if all(t == -100 for t in labels):
            raise ValueError(f"sample {item.get('sample_id')}: no supervised tokens")
        return {"visual": self.visual(item["frames"]), "input_ids": ids, "labels": labels,
                "num_frames": int(len(item["frames"])),
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
                          "frames": sum(it["num_frames"] for it in items),
                          "bad": sum(len(it["errors"]) for it in items),
                          "errors": [e for it in items for e in it["errors"]]}}


def pad_id(tokenizer) -> int:
    pid = tokenizer.pad_token_id
    return pid if pid is not None else (tokenizer.eos_token_id or 0)


def pseudo_video_dataset(cfg: TrainConfig, rank: int = 0) -> tud.Dataset:
    """lib.pseudo_video's on-the-fly dataset for this config.

    Every image file of the split is checked up front, so a missing file stops the run before
    training with the full list; a bad sample later raises unless ``on_bad_sample="substitute"``.
    """
    from lib import coco, pseudo_video
    if not cfg.coco:
        raise ValueError("TrainConfig.coco (--coco) is required: a COCO-layout dir "
                         "(python -m lib.assets build --profile smoke --out DIR builds one)")
    coco.validate_captions(coco.captions_path(cfg.coco, cfg.split),
                           coco.images_dir(cfg.coco, cfg.split), check_images="exists")
    source = pseudo_video.build_source(cfg.coco, cfg.split, cfg.questions, cfg.n, cfg.S, cfg.F,
                                       seed=cfg.seed, mode=cfg.question_mode, rank=rank)
    return pseudo_video.PseudoVideoDataset(source, jitter=cfg.jitter, size=cfg.frame_size,
                                           on_error=cfg.on_bad_sample)


# ---------------------------------------------------------------------------------------------
# Model


def probe_4bit(device: torch.device) -> tuple[bool, str]:
    """Can bitsandbytes run NF4 + LoRA forward/backward here? (ok, reason)."""
    try:
        import bitsandbytes as bnb
        lin = bnb.nn.Linear4bit(64, 64, bias=False, compute_dtype=torch.bfloat16,
                                compress_statistics=True, quant_type="nf4").to(device)
        a = torch.nn.Linear(64, 4, bias=False).to(device)
        x = torch.randn(2, 64, device=device, dtype=torch.bfloat16)
        y = lin(x) + (a(x.float()).sum(-1, keepdim=True)).to(torch.bfloat16)
        y.float().sum().backward()
        if a.weight.grad is None or not torch.isfinite(a.weight.grad).all():
            return False, "no finite gradient through Linear4bit"
        return True, "ok"
    except Exception as e:  # any failure means: no 4-bit here
        return False, f"{type(e).__name__}: {e}"


def build_model(cfg: TrainConfig, device: torch.device):
    """Load the start checkpoint for `cfg.mode`, freeze, attach adapters. -> (model, quant str)."""
    from lib.longvu import Flags, load
    if cfg.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {cfg.mode!r}")
    flags = Flags(legacy_placeholder_tokens=cfg.legacy_placeholder_tokens)
    cuda = device.type == "cuda"
    quant = "none"
    if cfg.mode == "qlora":
        ok, reason = probe_4bit(device)
        require = cfg.require_4bit if cfg.require_4bit is not None else cuda
        if ok:
            quant = "nf4"
        elif require:
            raise RuntimeError(f"4-bit NF4 is not usable on {device} ({reason}); fix the "
                               "bitsandbytes install or pass require_4bit=False / --mode lora")
        else:
            quant = f"none (fallback: {reason})"
            log.warning("!!! QLoRA fell back to 16-bit LoRA: %s", reason)
    dtype = torch.bfloat16 if (cuda or quant == "nf4") else torch.float32
    model = load(cfg.model, quantization="nf4" if quant == "nf4" else "none", dtype=dtype,
                 device=device, flags=flags)
    return prepare_for_training(model, cfg, quant), quant


def prepare_for_training(model, cfg: TrainConfig, quant: str = "none"):
    """Freeze, attach LoRA (qlora/lora) or unfreeze the decoder (full), connector trainable,
    non-reentrant activation checkpointing. Towers stay frozen in their load dtype."""
    model.requires_grad_(False)
    if cfg.mode == "full":
        model.decoder.requires_grad_(True)
    else:
        from peft import LoraConfig, PeftModel, get_peft_model
        if cfg.init_adapter:  # continue from a saved adapter (and its connector)
            model.decoder = PeftModel.from_pretrained(model.decoder, cfg.init_adapter,
                                                      is_trainable=True)
            con = Path(cfg.init_adapter) / "connector.safetensors"
            if con.is_file():
                from safetensors.torch import load_file
                model.connector.load_state_dict(load_file(str(con)), strict=True)
        else:
            lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                              lora_dropout=cfg.lora_dropout, target_modules=LORA_TARGET,
                              bias="none")
            torch.manual_seed(cfg.seed)  # adapter init
            model.decoder = get_peft_model(model.decoder, lcfg)
    model.connector.requires_grad_(cfg.train_connector)
    if cfg.activation_checkpointing:
        model.base_decoder.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False})
    if quant == "nf4":  # Trainer: do not .to() a bnb model
        model.quantization_method = "bitsandbytes"
    return model


def trainable_counts(model) -> dict[str, int]:
    """Trainable parameters per group (lora / connector / decoder / other)."""
    out = {"lora": 0, "connector": 0, "decoder": 0, "other": 0}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        g = ("lora" if "lora_" in name else "connector" if name.startswith("connector.")
             else "decoder" if name.startswith("decoder.") else "other")
        out[g] += p.numel()
    return out


def save_adapter(model, out_dir: str | os.PathLike, mode: str, with_towers: bool = False) -> Path:
    """qlora/lora: PEFT adapter + connector.safetensors (what `load(adapter=)` reads);
    full: decoder + connector in LongVU's original layout (+ towers/ for a standalone copy)."""
    from safetensors.torch import save_file
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if mode == "full":
        from lib.longvu import save
        save(model, out, with_towers=with_towers)
        return out
    model.decoder.save_pretrained(str(out))
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.connector.state_dict().items()}
    save_file(state, str(out / "connector.safetensors"), metadata={"format": "pt"})
    return out


def load_weights(model, ckpt: str | os.PathLike, mode: str) -> None:
    """Inverse of `save_adapter` onto an already-built training model (resume)."""
    from safetensors.torch import load_file
    d = Path(ckpt)
    if mode == "full":
        state = load_file(str(d / "model.safetensors"))
        con = {k[6:]: v for k, v in state.items()
               if k.startswith("model.") and k[6:].split(".")[0] in _connector_tops(model)}
        dec = {k: v for k, v in state.items() if k[6:] not in con}
        model.connector.load_state_dict(con, strict=True)
        missing, unexpected = model.base_decoder.load_state_dict(dec, strict=False)
        if unexpected or [k for k in missing if k != "lm_head.weight"]:
            raise RuntimeError(f"{d}: decoder keys missing {missing[:5]} unexpected "
                               f"{unexpected[:5]}")
        return
    from peft import set_peft_model_state_dict
    res = set_peft_model_state_dict(model.decoder, load_file(str(d / "adapter_model.safetensors")))
    if getattr(res, "unexpected_keys", None):
        raise RuntimeError(f"{d}: unexpected adapter keys {res.unexpected_keys[:5]}")
    con = d / "connector.safetensors"
    if con.is_file():
        model.connector.load_state_dict(load_file(str(con)), strict=True)


def _connector_tops(model) -> set[str]:
    return {n.split(".")[0] for n, _ in model.connector.named_parameters()}


# ---------------------------------------------------------------------------------------------
# Trainer


def _trainer_classes():
    from transformers import Trainer, TrainerCallback

    class LongVUTrainer(Trainer):
        """HF Trainer on a LongVU model: answer-only loss, adapter checkpoints, data timing."""

        def __init__(self, *a, mode: str = "qlora", **kw):
            super().__init__(*a, **kw)
            self.mode = mode
            self.model_accepts_loss_kwargs = False  # loss = mean over a micro-batch's tokens
            self.step_stats = _new_stats()
            base = self.model.base_decoder.model
            base.register_forward_pre_hook(self._count_tokens, with_kwargs=True)

        def _count_tokens(self, module, args, kwargs):
            if module.training and kwargs.get("attention_mask") is not None:
                self.step_stats["tokens"] += int(kwargs["attention_mask"].sum())

        def get_batch_samples(self, epoch_iterator, num_batches, device):
            t = time.perf_counter()
            out = super().get_batch_samples(epoch_iterator, num_batches, device)
            self.step_stats["data_wait"] += time.perf_counter() - t
            return out

        def _run_epoch(self, model, epoch, *a, **kw):
            # accelerate skips dataset.set_epoch under DDP; pseudo-videos re-draw per epoch
            if hasattr(self.train_dataset, "set_epoch"):
                self.train_dataset.set_epoch(epoch)
            return super()._run_epoch(model, epoch, *a, **kw)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            stats = inputs.pop("stats")
            s = self.step_stats
            s["answer_tokens"] += stats["answer_tokens"]
            s["frames"] += stats["frames"]
            s["bad"] += stats["bad"]
            s["errors"].extend(stats["errors"][:3])
            out = model(visual=inputs["visual"], input_ids=inputs["input_ids"],
                        labels=inputs["labels"], attention_mask=inputs["attention_mask"])
            if out.num_tokens:
                s["losses"].append(float(out.loss.detach()))
            else:  # the token budget cut the answer off: no signal from this micro-batch
                s["truncated"] += 1
            return (out.loss, out) if return_outputs else out.loss

        def _save(self, output_dir=None, state_dict=None):
            if self.args.should_save:
                save_adapter(self.accelerator.unwrap_model(self.model), output_dir, self.mode)

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            load_weights(self.accelerator.unwrap_model(model or self.model),
                         resume_from_checkpoint, self.mode)

    class StepLog(TrainerCallback):
        """One log.jsonl line per optimizer step; a printed line every `every` steps."""

        def __init__(self, trainer, path: Path, every: int, quant: str, device: torch.device):
            self.trainer, self.path, self.every = trainer, path, every
            self.quant, self.device = quant, device
            self.t_last = None
            self.records: list[dict] = []

        def on_step_begin(self, args, state, control, **kw):
            if self.t_last is None:  # first step of this process: the batch was fetched before
                self.t_last = time.perf_counter() - self.trainer.step_stats["data_wait"]

        def on_step_end(self, args, state, control, **kw):
            now = time.perf_counter()
            s = self.trainer.step_stats
            self.trainer.step_stats = _new_stats()
            wall = now - self.t_last
            self.t_last = now
            self.pending = {
                "step": state.global_step, "loss": float(np.mean(s["losses"])) if s["losses"]
                else float("nan"), "step_time_s": wall, "data_wait_s": s["data_wait"],
                "compute_s": wall - s["data_wait"], "tokens": s["tokens"],
                "tokens_per_s": s["tokens"] / wall if wall > 0 else 0.0,
                "answer_tokens": s["answer_tokens"], "frames": s["frames"],
                "bad_samples": s["bad"], "truncated_samples": s["truncated"],
                "peak_memory_bytes": _peak_memory(self.device),
                "quantization": self.quant, "epoch": state.epoch}
            if s["errors"]:
                self.pending["errors"] = s["errors"]
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)

        def on_save(self, args, state, control, **kw):
            self.t_last = time.perf_counter()  # checkpoint writes are not step time

        def on_log(self, args, state, control, logs=None, **kw):
            rec = getattr(self, "pending", None)
            if rec is None or "loss" not in (logs or {}):
                return
            self.pending = None
            rec["lr"] = logs.get("learning_rate")
            rec["grad_norm"] = logs.get("grad_norm")
            self.records.append(rec)
            if state.is_world_process_zero:
                with open(self.path, "a") as f:
                    f.write(json.dumps(rec) + "\n")
                if rec["step"] % self.every == 0 or rec["step"] == 1 \
                        or rec["step"] == state.max_steps:
                    print(f"step {rec['step']:>5}/{state.max_steps}  loss {rec['loss']:.4f}  "
                          f"lr {rec['lr']:.2e}  {rec['step_time_s']:.2f}s/step "
                          f"(data {rec['data_wait_s']:.2f}s)  {rec['tokens_per_s']:.0f} tok/s  "
                          f"peak {rec['peak_memory_bytes'] / 2**30:.2f} GiB", flush=True)

    class Checkpoints(TrainerCallback):
        """Completion flag after each checkpoint write; wall-clock budget -> save and stop."""

        def __init__(self, budget_s: float | None):
            self.budget_s, self.t0 = budget_s, None

        def on_train_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if self.budget_s is not None and time.perf_counter() - self.t0 > self.budget_s:
                control.should_save = True
                control.should_training_stop = True
                state.budget_stopped = True
            return control

        def on_save(self, args, state, control, **kw):
            if state.is_world_process_zero:
                d = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if d.is_dir():
                    (d / COMPLETE_FLAG).write_text(f"{state.global_step}\n")

    return LongVUTrainer, StepLog, Checkpoints


def _new_stats() -> dict:
    return {"data_wait": 0.0, "tokens": 0, "answer_tokens": 0, "frames": 0, "bad": 0,
            "truncated": 0, "errors": [], "losses": []}


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    import resource
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB


def complete_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Checkpoints with a completion flag, oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = [d for d in ckpt_dir.glob("checkpoint-*") if (d / COMPLETE_FLAG).is_file()]
    return sorted(found, key=lambda d: int(d.name.split("-")[-1]))


def drop_incomplete(ckpt_dir: Path) -> list[str]:
    """Delete checkpoint dirs without a completion flag (a kill during the write)."""
    gone = []
    for d in ckpt_dir.glob("checkpoint-*") if ckpt_dir.is_dir() else []:
        if not (d / COMPLETE_FLAG).is_file():
            shutil.rmtree(d, ignore_errors=True)
            gone.append(d.name)
    return gone


def _check_resume_config(run: Path, cfg: TrainConfig) -> None:
    f = run / "config.json"
    if not f.is_file():
        return
    old = json.loads(f.read_text())
    diff = {k: (old.get(k), getattr(cfg, k)) for k in RESUME_KEYS if old.get(k) != getattr(cfg, k)}
    if diff:
        raise ValueError(f"{f}: this run was started with different settings {diff}; resume "
                         "with the same ones, or use a new --out / RUN_NAME")


# ---------------------------------------------------------------------------------------------
# Entry point


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
    from transformers import TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from transformers.utils import logging as hf_logging

    run = Path(cfg.out)
    ckpt_dir = run / "checkpoints"
    if resume:
        _check_resume_config(run, cfg)
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
        raise ValueError(f"global_batch {cfg.global_batch} is not a multiple of micro_batch "
                         f"{cfg.micro_batch} x {world} processes")
    accum = cfg.global_batch // (cfg.micro_batch * world)

    from transformers import set_seed
    set_seed(cfg.seed)
    model, quant = build_model(cfg, device)
    builder = SampleBuilder(model, cfg.supervise_prompt_tokens)
    data = TrainSamples(dataset if dataset is not None else pseudo_video_dataset(cfg), builder)
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
        (run / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1) + "\n")
    last = complete_checkpoints(ckpt_dir)
    resume_from = str(last[-1]) if (resume and last) else None
    resumed_step = int(last[-1].name.split("-")[-1]) if resume_from else 0
    if rank == 0:
        _truncate_log(run / "log.jsonl", resumed_step)

    args = TrainingArguments(
        output_dir=str(ckpt_dir), max_steps=max_steps, per_device_train_batch_size=cfg.micro_batch,
        gradient_accumulation_steps=accum, learning_rate=cfg.resolved_lr(),
        lr_scheduler_type="cosine", warmup_steps=cfg.warmup_ratio, weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm, optim="paged_adamw_8bit" if cuda else "adamw_torch",
        bf16=cuda, use_cpu=not cuda, seed=cfg.seed, data_seed=cfg.seed,
        logging_steps=1, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, save_only_model=False, report_to=[],
        dataloader_num_workers=workers, dataloader_pin_memory=cuda,
        dataloader_persistent_workers=False,  # workers must see set_epoch
        remove_unused_columns=False, disable_tqdm=True, ddp_find_unused_parameters=False,
        include_num_input_tokens_seen="no")
    LongVUTrainer, StepLog, Checkpoints = _trainer_classes()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "not a PreTrainedModel" and similar notices
    try:
        trainer = LongVUTrainer(model=model, args=args, train_dataset=data,
                                data_collator=Collator(pad_id(model.tokenizer)), mode=cfg.mode)
    finally:
        hf_logging.set_verbosity(verbosity)
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    steplog = StepLog(trainer, run / "log.jsonl", max(1, cfg.log_every), quant, device)
    trainer.add_callback(steplog)
    trainer.add_callback(Checkpoints(cfg.time_budget_s))
    if fail_at_step is not None:
        trainer.add_callback(_FailAt(fail_at_step))
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
        return metrics, model
    return {}, model


class _FailAtError(RuntimeError):
    pass


def _fail_cb_base():
    from transformers import TrainerCallback
    return TrainerCallback


class _FailAt(_fail_cb_base()):
    """Raise after a given optimizer step, once its checkpoint (if any) is written."""

    def __init__(self, step: int):
        self.step = step

    def on_save(self, args, state, control, **kw):
        self._maybe(state)

    def on_log(self, args, state, control, **kw):
        if state.global_step % max(args.save_steps, 1):
            self._maybe(state)

    def _maybe(self, state):
        if state.global_step >= self.step:
            raise _FailAtError(f"simulated kill after step {state.global_step}")


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past the resumed step (they will be recomputed)."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text().splitlines()
            if ln.strip() and json.loads(ln)["step"] <= step]
    path.write_text("".join(ln + "\n" for ln in keep))


def read_log(run_dir: str | os.PathLike) -> list[dict]:
    """The per-step records of a run (log.jsonl)."""
    f = Path(run_dir) / "log.jsonl"
    return [json.loads(ln) for ln in f.read_text().splitlines() if ln.strip()] if f.is_file() \
        else []


def summarise(run: Path, cfg: TrainConfig, quant: str, device: torch.device,
              counts: dict, max_steps: int, accum: int, wall: float, resume_from: str | None,
              finished: bool, adapter: Path) -> dict:
    recs = read_log(run)
    steady = recs[1:] if len(recs) > 1 else recs  # step 1 carries warm-up costs
    step_s = float(np.mean([r["step_time_s"] for r in steady])) if steady else float("nan")
    data_s = float(np.mean([r["data_wait_s"] for r in steady])) if steady else float("nan")
    tok_s = float(np.mean([r["tokens_per_s"] for r in steady])) if steady else float("nan")
    per_sample = step_s / cfg.global_batch
    metrics = {
        "first_loss": recs[0]["loss"] if recs else None,
        "last_loss": recs[-1]["loss"] if recs else None,
        "steps": recs[-1]["step"] if recs else 0, "max_steps": max_steps,
        "finished": finished, "mode": cfg.mode, "quantization": quant,
        "device": str(device), "lr": cfg.resolved_lr(), "lora_r": cfg.lora_r,
        "lora_alpha": cfg.lora_alpha, "global_batch": cfg.global_batch,
        "gradient_accumulation": accum, "trainable_params": counts,
        "peak_memory_bytes": max((r["peak_memory_bytes"] for r in recs), default=0),
        "peak_memory_kind": "cuda_max_allocated" if device.type == "cuda" else "cpu_max_rss",
        "step_time_s": step_s, "data_wait_s": data_s,
        "data_wait_fraction": data_s / step_s if step_s else None,
        "time_per_sample_s": per_sample, "tokens_per_s": tok_s,
        "implied_paper_run_h": per_sample * PAPER_SAMPLES / 3600,
        "bad_samples": sum(r.get("bad_samples", 0) for r in recs),
        "truncated_samples": sum(r.get("truncated_samples", 0) for r in recs),
        "train_wall_s_this_session": wall, "resumed_from": resume_from,
        "adapter_dir" if cfg.mode != "full" else "model_dir": str(adapter),
    }
    (run / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


@torch.no_grad()
def answer_loss(model, dataset: tud.Dataset, indices, supervise_prompt_tokens: bool = False
                ) -> float:
    """Mean answer-token loss of `model` (adapter attached) on dataset items (eval mode)."""
    builder = SampleBuilder(model, supervise_prompt_tokens)
    model.eval()
    losses = []
    for i in indices:
        s = builder(dataset[i])
        out = model.forward(s["visual"], [s["input_ids"]], [s["labels"]])
        losses.append(float(out.loss))
    return float(np.mean(losses))


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(prog="python -m lib.train", description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="LongVU checkpoint dir or cached hub id")
    ap.add_argument("--coco", required=True, help="COCO-layout dir (images + captions)")
    ap.add_argument("--questions", default="R1", help="question mix, e.g. R1 or R1:S=4:F=20")
    ap.add_argument("--S", type=int, default=4)
    ap.add_argument("--F", type=int, default=5)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--out", required=True, help="run dir")
    ap.add_argument("--mode", choices=MODES, default="qlora")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--r", type=int, default=64, dest="lora_r")
    ap.add_argument("--alpha", type=int, default=16, dest="lora_alpha")
    ap.add_argument("--global-batch", type=int, default=64)
    ap.add_argument("--micro-batch", type=int, default=1)
    ap.add_argument("--save-steps", type=int, default=100)
    ap.add_argument("--time-budget", type=float, default=None, dest="time_budget_s",
                    help="seconds of training before saving and stopping (resume later)")
    ap.add_argument("--workers", type=int, default=None, dest="num_workers")
    ap.add_argument("--frame-size", type=int, default=None)
    ap.add_argument("--jitter", default="mild")
    ap.add_argument("--question-mode", default="fixed", choices=["fixed", "compat"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--init-adapter", default=None)
    ap.add_argument("--supervise-prompt-tokens", action="store_true",
                    help="the paper code's labels (prompt role tokens supervised too)")
    ap.add_argument("--legacy-placeholder-tokens", action="store_true",
                    help="the paper collator's token-id-0 leak after the visual block")
    ap.add_argument("--on-bad-sample", choices=["raise", "substitute"], default="raise",
                    help="a missing/corrupt image mid-run: stop (default) or serve the next "
                         "sample, counted in metrics.json bad_samples")
    ap.add_argument("--allow-fallback", action="store_true",
                    help="qlora: train 16-bit LoRA (loudly) if 4-bit is unusable")
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args(argv)
    cfg = TrainConfig(
        model=a.model, out=a.out, coco=a.coco, questions=a.questions, S=a.S, F=a.F, n=a.n,
        mode=a.mode, max_steps=a.max_steps, epochs=a.epochs, lr=a.lr, lora_r=a.lora_r,
        lora_alpha=a.lora_alpha, global_batch=a.global_batch, micro_batch=a.micro_batch,
        save_steps=a.save_steps, time_budget_s=a.time_budget_s, num_workers=a.num_workers,
        frame_size=a.frame_size, jitter=a.jitter, question_mode=a.question_mode, seed=a.seed,
        log_every=a.log_every, init_adapter=a.init_adapter,
        supervise_prompt_tokens=a.supervise_prompt_tokens,
        legacy_placeholder_tokens=a.legacy_placeholder_tokens,
        on_bad_sample=a.on_bad_sample,
        require_4bit=False if a.allow_fallback else None)
    m = train(cfg, resume=a.resume)
    if m:
        print(json.dumps({k: m[k] for k in ("first_loss", "last_loss", "steps", "quantization",
                                            "peak_memory_bytes", "time_per_sample_s")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
