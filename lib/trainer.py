"""The Hugging Face Trainer wired for LongVU: answer-only loss (``LongVU.forward`` runs lm_head at
label rows only), adapter checkpoints with a completion flag, one ``log.jsonl`` line per
optimizer step (loss, lr, grad norm, data wait, compute, tokens/s, peak memory, bad samples,
answer truncation) and a wall-clock budget that saves and stops.

Answers cut by the token budget: a sample whose prompt and visual tokens fill the checkpoint's
``tokenizer_model_max_length`` loses the tail of its sequence, its answer. The loss of an
optimizer step is the mean over the answer tokens that survive, across all its samples (as HF
does with ``num_items_in_batch``); a sample with no answer token left is dropped (counted,
warned about once); a step with none left makes no update and logs ``loss: null``
(``skipped``). A non-finite loss or gradient norm stops the run with ``TrainError``.

Used by ``lib.train`` (notebook 03, the ``python -m lib.train`` CLI, ``lib.demo_stages``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import resource
import sys
import time
from pathlib import Path

import torch
import torch.utils.data as tud
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.utils import logging as hf_logging

from lib.adapters import load_weights, save_adapter
from lib.config import TrainConfig

COMPLETE_FLAG = "checkpoint_is_complete.flag"


class TrainError(ValueError):
    """A run that cannot go on as asked (bad input, a non-finite loss, no answer token left);
    the message names the item and the fix. ``python -m lib.train`` prints it as one line."""


def training_arguments(cfg: TrainConfig, output_dir: Path, max_steps: int, accum: int,
                       workers: int, cuda: bool) -> TrainingArguments:
    """The schedule: linear warm-up over ``warmup_ratio`` of the steps (ceil, as HF: with one
    step that step runs at lr 0) then cosine to 0; ``optim`` auto: 8-bit paged AdamW on CUDA,
    plain AdamW on CPU; adamw: AdamW with fp32 states everywhere; bf16 autocast on CUDA and
    with fp32 master weights (``master_weights="fp32"``, also on CPU); ``max_grad_norm`` 0 = no
    clipping; a log record every step, checkpoints every ``save_steps`` with
    optimizer/scheduler/RNG state."""
    optim = "paged_adamw_8bit" if (cuda and cfg.optim == "auto") else "adamw_torch"
    if cfg.deepspeed:
        check_deepspeed(cfg.deepspeed, cuda)
    return TrainingArguments(deepspeed=cfg.deepspeed,
        output_dir=str(output_dir), max_steps=max_steps,
        per_device_train_batch_size=cfg.micro_batch,
        gradient_accumulation_steps=accum, learning_rate=cfg.resolved_lr(),
        lr_scheduler_type="cosine", warmup_steps=cfg.warmup_ratio, weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm, optim=optim, bf16=cuda or cfg.master_weights == "fp32",
        use_cpu=not cuda, seed=cfg.seed, data_seed=cfg.seed,
        logging_steps=1, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, save_only_model=False, report_to=[],
        dataloader_num_workers=workers, dataloader_pin_memory=cuda,
        dataloader_persistent_workers=False,  # workers must see set_epoch
        remove_unused_columns=False, disable_tqdm=True, ddp_find_unused_parameters=False,
        include_num_input_tokens_seen="no")


def check_deepspeed(config: str, cuda: bool) -> None:
    """``--deepspeed``: a readable JSON, CUDA, and the package, or a ``TrainError`` naming the
    fix (DeepSpeed is a cluster dependency, not in requirements.txt)."""
    f = Path(config)
    if not f.is_file():
        raise TrainError(f"--deepspeed {config}: no such file; fix: configs/deepspeed/zero2.json "
                         "or zero2_offload.json")
    try:
        json.loads(f.read_text())
    except ValueError as e:
        raise TrainError(f"--deepspeed {config}: not valid JSON ({e})") from None
    if not cuda:
        raise TrainError(f"--deepspeed {config}: DeepSpeed needs CUDA GPUs; on CPU run "
                         "torchrun without --deepspeed (DDP over gloo)")
    if importlib.util.find_spec("deepspeed") is None:
        raise TrainError(f"--deepspeed {config}: the deepspeed package is not installed; fix: "
                         "pip install deepspeed (on the GPU cluster)")


def build_trainer(model, cfg: TrainConfig, args: TrainingArguments, data: tud.Dataset,
                  collator, log_path: Path, quant: str, device: torch.device,
                  fail_at_step: int | None = None) -> LongVUTrainer:
    """A ``LongVUTrainer`` with the step log, the checkpoint flags / time budget and, for tests
    of kill-and-resume, a simulated kill after ``fail_at_step``; no progress printing."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "not a PreTrainedModel" and similar notices
    try:
        trainer = LongVUTrainer(model=model, args=args, train_dataset=data,
                                data_collator=collator, mode=cfg.mode,
                                group_by_length=cfg.group_by_length)
    finally:
        hf_logging.set_verbosity(verbosity)
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    trainer.add_callback(StepLog(trainer, log_path, max(1, cfg.log_every), quant, device))
    trainer.add_callback(Checkpoints(cfg.time_budget_s))
    if fail_at_step is not None:
        trainer.add_callback(_FailAt(fail_at_step))
    return trainer


class LongVUTrainer(Trainer):
    """HF Trainer on a LongVU model: a micro-batch in one right-padded forward, the mean loss
    over an optimizer step's surviving answer tokens, adapter checkpoints, data timing and
    truncation counts per sample (see the module docstring)."""

    loss_is_scaled_for_ga = True  # compute_loss divides by the step's answer tokens itself

    def __init__(self, *a, mode: str = "qlora", group_by_length: bool = False, **kw):
        super().__init__(*a, **kw)
        self.mode, self.group_by_length = mode, group_by_length
        self.model_accepts_loss_kwargs = False
        self.step_stats = _new_stats()
        self._labels, self._micro_left, self._warned = 1, 0, False
        base = self.model.base_decoder.model
        base.register_forward_pre_hook(self._count_tokens, with_kwargs=True)

    def _count_tokens(self, module, args, kwargs):
        if module.training and kwargs.get("attention_mask") is not None:
            self.step_stats["tokens"] += int(kwargs["attention_mask"].sum())

    def _global_sum(self, n: int) -> int:
        if self.accelerator.num_processes == 1:
            return n
        return int(self.accelerator.reduce(torch.tensor(n, device=self.args.device), "sum"))

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        t = time.perf_counter()
        batches, n_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        self.step_stats["data_wait"] += time.perf_counter() - t
        # the step's labelled answer tokens (all ranks) scale the loss; `_rescale` corrects it
        # to the tokens that survive the budget once every micro-batch has run
        self._labels = max(1, self._global_sum(sum(b["stats"]["answer_tokens"]
                                                   for b in batches)))
        self._micro_left = len(batches)
        return batches, n_items

    def _get_train_sampler(self, train_dataset=None):
        data = train_dataset if train_dataset is not None else self.train_dataset
        lengths = data.lengths() if self.group_by_length and hasattr(data, "lengths") else None
        if not self.group_by_length:
            return super()._get_train_sampler(train_dataset)
        if lengths is None:
            raise TrainError("group_by_length: the dataset has no per-item lengths (a "
                             "pseudo-video dataset does); fix: --no-group-by-length")
        # HF's sampler: shuffled megabatches of micro-batch x accumulation x 50 items, each
        # sorted by length, so a micro-batch holds videos of similar frame counts
        return LengthGroupedSampler(self.args.train_batch_size
                                    * self.args.gradient_accumulation_steps, lengths=lengths)

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
        s["samples"] += len(inputs["input_ids"])
        # the micro-batch in one right-padded forward; LongVU.forward reports each row's
        # surviving answer tokens, so the accounting stays per sample
        out = model(visual=inputs["visual"], input_ids=inputs["input_ids"],
                    labels=inputs["labels"], attention_mask=inputs["attention_mask"])
        self._account(out, stats)
        total = out.loss * out.num_tokens if out.num_tokens else out.loss  # 0, with a graph
        loss = total * self.accelerator.num_processes / self._labels
        return (loss, out) if return_outputs else loss

    def _account(self, out, stats: dict) -> None:
        s = self.step_stats
        value = float(out.loss.detach())
        if out.num_tokens and not math.isfinite(value):
            bad = [i for i, (k, v) in enumerate(zip(out.row_tokens, out.row_loss))
                   if k and not math.isfinite(v)] or range(len(out.row_tokens))
            what = ", ".join(f"sample {stats['sample_ids'][i]} ({stats['question_types'][i]})"
                             for i in bad)
            raise TrainError(
                f"step {self.state.global_step + 1}: the loss is {value} on {what}; the run is "
                "stopped before this step's update and nothing of it is logged or saved. Fix: "
                "lower the learning rate (--lr / LR) and resume from the last checkpoint "
                "(--resume), or check the start checkpoint if this is step 1")
        s["kept"] += out.num_tokens
        s["loss_sum"] += value * out.num_tokens
        rows = zip(out.row_tokens, stats["label_counts"], strict=True)
        for i, (kept, want) in enumerate(rows):
            if kept == 0:
                s["dropped"] += 1
                if not self._warned:
                    self._warned = True
                    cfg = self.accelerator.unwrap_model(self.model).config
                    print(f"warning: sample {stats['sample_ids'][i]} "
                          f"({stats['question_types'][i]}): its prompt and visual tokens fill "
                          "the checkpoint's budget (tokenizer_model_max_length "
                          f"{cfg.tokenizer_model_max_length}), so its whole answer is cut off; "
                          "it is dropped from the loss and counted (answer_dropped_samples in "
                          "log.jsonl and metrics.json). Fix: fewer scenes (--S) or options, or "
                          "a checkpoint with a larger budget", file=sys.stderr, flush=True)
            elif kept < want:
                s["cut"] += 1

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self._micro_left -= 1
        if self._micro_left == 0:  # the step's gradients are complete (and synced)
            self._rescale(model)
        return loss

    def _rescale(self, model) -> None:
        """Gradients over the labelled answer tokens -> mean over the surviving ones."""
        kept = self._global_sum(self.step_stats["kept"])
        if self.is_deepspeed_enabled and kept != self._labels:
            # ZeRO holds the reduced gradients in its own partitions (p.grad is None here), so
            # this step's loss stays the sum over the answer tokens kept divided by the
            # labelled ones: said once, and counted per step in log.jsonl (answer_cut_samples)
            if not self._warned:
                self._warned = True
                print(f"warning: step {self.state.global_step + 1}: answers were cut by the "
                      "token budget; under DeepSpeed the step's gradient is not rescaled to the "
                      f"{kept} surviving answer tokens (it is divided by all {self._labels} "
                      "labelled ones)", file=sys.stderr, flush=True)
            return
        params = [p for p in model.parameters() if p.grad is not None]
        if kept == 0:  # no answer token left: the optimizer skips parameters without a grad
            for p in params:
                p.grad = None
            self.step_stats["skipped"] = True
        elif kept != self._labels:
            for p in params:
                p.grad.mul_(self._labels / kept)

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
            "step": state.global_step,
            "loss": s["loss_sum"] / s["kept"] if s["kept"] else None,  # None: no answer token
            "step_time_s": wall, "data_wait_s": s["data_wait"],
            "compute_s": wall - s["data_wait"], "tokens": s["tokens"],
            "tokens_per_s": s["tokens"] / wall if wall > 0 else 0.0,
            "samples": self.trainer._global_sum(s["samples"]),  # every rank's
            "answer_tokens": s["answer_tokens"],
            "answer_tokens_kept": s["kept"],
            "frames": s["frames"], "bad_samples": s["bad"],
            "truncated_samples": s["cut"] + s["dropped"], "answer_cut_samples": s["cut"],
            "answer_dropped_samples": s["dropped"], "skipped": s["skipped"],
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
        if rec["grad_norm"] is not None and not math.isfinite(rec["grad_norm"]):
            raise TrainError(f"step {rec['step']}: the gradient norm is {rec['grad_norm']} "
                             f"(loss {rec['loss']}); the run is stopped before this step is "
                             "logged or saved. Fix: lower the learning rate (--lr / LR) and "
                             "resume from the last checkpoint (--resume)")
        self.records.append(rec)
        if state.is_world_process_zero:
            with open(self.path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            if rec["step"] % self.every == 0 or rec["step"] == 1 \
                    or rec["step"] == state.max_steps:
                loss = "   n/a" if rec["loss"] is None else f"{rec['loss']:.4f}"
                cut = (f"  answers cut {rec['answer_cut_samples']}, dropped "
                       f"{rec['answer_dropped_samples']}" if rec["truncated_samples"] else "")
                print(f"step {rec['step']:>5}/{state.max_steps}  loss {loss}  "
                      f"lr {rec['lr']:.2e}  {rec['step_time_s']:.2f}s/step "
                      f"(data {rec['data_wait_s']:.2f}s)  {rec['tokens_per_s']:.0f} tok/s  "
                      f"peak {rec['peak_memory_bytes'] / 2**30:.2f} GiB{cut}"
                      + ("  (no answer token left: no update)" if rec["skipped"] else ""),
                      flush=True)


def report_truncation(run: Path, m: dict, budget: int) -> None:
    """The run's answer truncation (``lib.train.summarise``'s metrics) on stdout;
    ``TrainError`` if no step had an answer token left."""
    print(f"answer truncation: {m['truncated_samples']} of {m['samples_seen']} samples lost "
          f"answer tokens ({m['answer_cut_samples']} partly cut, {m['answer_dropped_samples']} "
          f"dropped entirely); {m['skipped_steps']} of {m['steps']} steps had no answer token "
          f"left and made no update (budget tokenizer_model_max_length {budget})", flush=True)
    if m["steps"] and m["skipped_steps"] == m["steps"]:
        raise TrainError(f"{run}: no answer token survived the token budget ({budget}) in any "
                         "step, so nothing was trained (counts in metrics.json); fix: fewer "
                         "scenes (--S) or options, or a checkpoint with a larger budget")


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


def _new_stats() -> dict:
    return {"data_wait": 0.0, "tokens": 0, "samples": 0, "answer_tokens": 0, "frames": 0,
            "bad": 0, "kept": 0, "loss_sum": 0.0, "cut": 0, "dropped": 0, "skipped": False,
            "errors": []}


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB




class _FailAtError(RuntimeError):
    pass


class _FailAt(TrainerCallback):
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
