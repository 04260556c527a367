"""Run dirs of ``lib.train``: checkpoints with completion flags (an incomplete write is dropped
on resume), the settings a resume must match, the step log, and the record of which
pseudo-video table each rank drew (``RUN_DIR/data_rank<r>.json``; per-rank tables are the
paper's, checklist 24). Used by ``lib.train`` (notebook 03, the CLI) and its tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch.utils.data as tud

from lib.config import TrainConfig
from lib.trainer import COMPLETE_FLAG, TrainError

# config fields that must match when resuming (they change the schedule, data or model)
RESUME_KEYS = ("model", "mode", "coco", "split", "questions", "S", "F", "n", "seed", "max_steps",
               "epochs", "lr", "lora_r", "lora_alpha", "lora_dropout", "global_batch",
               "micro_batch", "warmup_ratio", "weight_decay", "max_grad_norm", "question_mode",
               "answer_format", "prompt_format",
               "jitter", "frame_size", "supervise_prompt_tokens", "legacy_placeholder_tokens",
               "train_connector", "init_adapter", "source", "token_layout", "recipe",
               "seeding", "master_weights", "optim")
# the model's token layout, written into RUN_DIR/config.json next to the TrainConfig
LAYOUT_FIELDS = ("image_token_len", "query_num_list", "highres", "lowres_token", "drop_threshold")
# what a config.json written before a key existed meant by it
RESUME_DEFAULTS = {"source": "coco", "token_layout": None, "recipe": "ours", "seeding": "global",
                   "master_weights": "load", "optim": "auto", "answer_format": "letter",
                   "prompt_format": "fork"}


def formations(dataset: tud.Dataset) -> list | None:
    """The pseudo-video formation table behind a dataset (None for other datasets)."""
    return getattr(getattr(dataset, "source", None), "formations", None)


def table_record(dataset: tud.Dataset, cfg: TrainConfig, rank: int) -> dict[str, Any]:
    """Which pseudo-video table this rank drew: seeding, the seed it used, a digest of its
    formations (image ids and frame counts) and the first few; RUN_DIR/data_rank<r>.json."""
    table = formations(dataset) or []
    digest = hashlib.sha256(json.dumps([[f.qtype, f.image_ids, f.frame_counts]
                                        for f in table]).encode()).hexdigest()
    return {"rank": rank, "seeding": cfg.seeding,
            "table_seed": cfg.seed + rank if cfg.seeding == "per-rank" else cfg.seed,
            "n": len(table), "sha256": digest,
            "first": [list(f.image_ids) for f in table[:3]]}


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


def check_resume_config(run: Path, cfg: TrainConfig) -> None:
    f = run / "config.json"
    if not f.is_file():
        return
    old = RESUME_DEFAULTS | json.loads(f.read_text())
    diff = {k: (old.get(k), getattr(cfg, k)) for k in RESUME_KEYS if old.get(k) != getattr(cfg, k)}
    if diff:
        raise TrainError(f"{f}: this run was started with different settings {diff}; resume "
                         "with the same ones, or use a new --out / RUN_NAME")


def truncate_log(path: Path, step: int) -> None:
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
