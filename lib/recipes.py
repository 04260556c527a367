"""The two training and evaluation recipes as data: ``paper`` (the fork's exact settings) and
``ours`` (the workbook's one-GPU defaults), and the one rule that applies a recipe under
explicit settings (a flag or a notebook parameter that is not None wins over the recipe).

Used by ``lib.config`` (``TrainConfig.from_args`` / ``from_params``), ``lib.train``
(metrics.json, the finetune.csv row), ``lib.eval_cli`` (``--recipe`` on ``lib.tvbench eval``)
and notebooks 01, 03 and 04 (``RECIPE``). docs/fidelity.md lists every deviation between the two.

Sources for ``paper`` (VisualComputingInstitute/videollm-pseudovideo-training @0bf2d48):
    scripts/julich/training_specific/coco_splicing_llama.sh:28-52  lr 5e-6, wd 0, warm-up 0.03,
        cosine, bf16, per-device batch 1 x accumulation 2 (x 4 GPUs x 8 nodes = 64), seed 42
    scripts/julich/training_specific/coco_splicing_llama.sh:74     --repeat_first_frame_only True
        (no jitter, longvu/custom_datasets/longvu_dataset_wrappers.py:304-310); the Qwen script
        coco_splicing_qwen.sh:73-78 does not pass it (default False, train_modified.py:162):
        mild jitter
    scripts/julich/sbatch_train.sh:36,49 + scripts/zero2.json       DeepSpeed ZeRO-2, bf16 with
        fp32 master weights; no "gradient_clipping" key (DeepSpeed's default 0: no clipping;
        accelerate leaves clipping to DeepSpeed, so HF's max_grad_norm 1.0 is not applied)
    longvu/train_modified.py:964   set_seed(seed + global_rank) before the dataset is built:
        every rank draws its own table of N pseudo-videos (checklist 24)
    eval/eval_tvbench_format.py:177 drop_threshold 0.8 forced; the model loads through
        longvu/builder.py:68 (torch_dtype float16) and :217 (towers in float16)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

RECIPE_NAMES = ("paper", "ours")


@dataclass(frozen=True)
class Recipe:
    """Every setting a recipe fixes. Training fields are ``TrainConfig`` field names."""

    name: str
    question_mode: str  # lib.questions mode
    mode: str  # qlora | lora | full
    lr: float | None  # None: lib.config.DEFAULT_LR for the mode
    global_batch: int
    micro_batch: int
    warmup_ratio: float
    weight_decay: float
    max_grad_norm: float  # 0: no clipping
    seeding: str  # lib.pseudo_video.SEEDINGS: global | per-rank
    jitter: Mapping[str, str]  # backbone -> lib.jitter name
    supervise_prompt_tokens: bool
    legacy_placeholder_tokens: bool
    master_weights: str  # "fp32": trainable tensors fp32 under bf16 autocast; "load": load dtype
    optim: str  # "adamw" (fp32 states) | "auto" (8-bit paged AdamW on CUDA, AdamW on CPU)
    eval_dtype: str | None  # evaluation dtype (None: lib.longvu.load's default)
    eval_drop_threshold: float | None  # None: the checkpoint's config.json value

    def train_fields(self, backbone: str | None) -> dict[str, Any]:
        """The ``TrainConfig`` fields this recipe sets, the jitter for ``backbone``."""
        d = {k: v for k, v in asdict(self).items() if k in TRAIN_FIELDS}
        d["jitter"] = self.jitter.get(backbone or "", self.jitter["default"])
        return d

    def record(self, backbone: str | None = None) -> dict[str, Any]:
        """Every field, flat, for metrics.json and result rows (``recipe`` = the name)."""
        d = asdict(self)
        d["recipe"] = d.pop("name")
        d["jitter"] = self.jitter.get(backbone or "", self.jitter["default"])
        return d


TRAIN_FIELDS = ("question_mode", "mode", "lr", "global_batch", "micro_batch", "warmup_ratio",
                "weight_decay", "max_grad_norm", "seeding", "jitter", "supervise_prompt_tokens",
                "legacy_placeholder_tokens", "master_weights", "optim")

RECIPES: dict[str, Recipe] = {
    "paper": Recipe(
        name="paper", question_mode="compat", mode="full", lr=5e-6, global_batch=64,
        micro_batch=1, warmup_ratio=0.03, weight_decay=0.0, max_grad_norm=0.0,
        seeding="per-rank", jitter={"llama": "none", "qwen": "mild", "default": "mild"},
        supervise_prompt_tokens=True, legacy_placeholder_tokens=True, master_weights="fp32",
        optim="adamw", eval_dtype="float16", eval_drop_threshold=0.8),
    "ours": Recipe(
        name="ours", question_mode="fixed", mode="qlora", lr=None, global_batch=64,
        micro_batch=1, warmup_ratio=0.03, weight_decay=0.0, max_grad_norm=1.0,
        seeding="global", jitter={"default": "mild"}, supervise_prompt_tokens=False,
        legacy_placeholder_tokens=False, master_weights="load", optim="auto",
        eval_dtype=None, eval_drop_threshold=None),
}


def get(name: str) -> Recipe:
    """The recipe called ``name``; ``ValueError`` naming the choices otherwise."""
    if name not in RECIPES:
        raise ValueError(f"recipe {name!r}: choose from {RECIPE_NAMES} (--recipe / RECIPE)")
    return RECIPES[name]


def resolve_train(name: str, given: Mapping[str, Any], model: str | None) -> dict[str, Any]:
    """``given`` (TrainConfig fields; None = unset) with every unset recipe field filled from
    recipe ``name`` (the jitter by the backbone of ``model``'s config.json). Explicit values
    win: ``--recipe paper --global-batch 2`` trains at global batch 2."""
    recipe = get(name)
    backbone = backbone_of(model) if given.get("jitter") is None else None
    out = {k: v for k, v in given.items() if v is not None or k not in TRAIN_FIELDS}
    for k, v in recipe.train_fields(backbone).items():
        if out.get(k) is None:
            out[k] = v
    out["recipe"] = name
    return out


def eval_record(name: str, dtype: str | None, drop_threshold: float | None) -> dict[str, Any]:
    """The evaluation columns of a tvbench.csv row: the recipe and the dtype and
    drop_threshold the model ran with (None: the load default / config.json's)."""
    return {"recipe": name, "eval_dtype": dtype or "default",
            "drop_threshold": "config" if drop_threshold is None else drop_threshold}


def eval_models(models: Sequence[Any], name: str) -> list[Any]:
    """``lib.models.ModelSpec``s with recipe ``name``'s evaluation dtype and drop_threshold
    (notebooks 01 and 04; a spec's own non-None setting wins)."""
    r = get(name)
    return [replace(ms, dtype=ms.dtype or r.eval_dtype,
                    drop_threshold=ms.drop_threshold if ms.drop_threshold is not None
                    else r.eval_drop_threshold) for ms in models]


def backbone_of(model: str | None) -> str | None:
    """``qwen`` | ``llama`` from a checkpoint dir's config.json ``model_type`` (None when the
    path is not a local dir: a hub id resolves at load time)."""
    f = Path(str(model)) / "config.json" if model else None
    if f is None or not f.is_file():
        return None
    try:
        kind = json.loads(f.read_text()).get("model_type", "")
    except (OSError, ValueError) as e:
        raise ValueError(f"{f}: not readable JSON ({e}); fix: re-fetch the checkpoint") from None
    return kind.removeprefix("cambrian_") or None
