"""Token layouts: an image-stage checkpoint in the video layout (the paper's fine-tuning start).

Every launch script of the paper's fork (VisualComputingInstitute/videollm-pseudovideo-training
@0bf2d48: scripts/julich/training_specific/*.sh, scripts/julich/submit_train_*.sh) passes the
video-stage arguments `--query_num_list [144] --image_token_len 144 --highres True
--lowres_token 8 --drop_threshold 0.8`, also when it starts from LongVU_*_img (e.g. the one-step
scene_descr_llama.sh:29,62-63,88-93). `train_modified.py:1111` hands them to
`initialize_vision_modules`, which writes them into the config (cambrian_arch.py:202-216) but
creates no parameter: the connector already exists (:238; :338-341 only re-enables gradients).
The 2x2-window sampler and its `pos_embed_*` exist only when config.json itself already says 144
queries when `from_pretrained` builds the model (cambrian_arch.py:86-103, vision_sampler.py:
332-338), i.e. after LongVU's README step "change image_token_len and query_num_list in
config.json to 144" (LongVU README.md:133-135); with the hub config the first forward fails on
the absent `pos_embed_0` (vision_sampler.py:376-385, windows from config: cambrian_arch.py:
900-967). transformers 4.42.4 then leaves the missing `pos_embed_*` at their construction value
(modeling_utils.py:4093-4123 re-inits only not-loaded modules, and `_init_weights` touches only
nn.Linear / nn.Embedding: modeling_llama.py:779-788, modeling_qwen2.py:822-831), so they are
`torch.randn(r*r, D)`: N(0, 1) from the global RNG after `set_seed(seed + rank)`
(train_modified.py:964), its values depending on every draw made before while building the model.
We draw them N(0, 1) from a dedicated seeded generator instead (a documented deviation: the same
distribution, reproducible values). Used by `loading.load(token_layout=...)`.

API
    VIDEO_LAYOUT                               the five fields and values the fork passes
    apply_layout(cfg, token_layout, report, path) -> LongVUConfig
        None: cfg unchanged. "video": the five fields set (each change -> report.changed;
        nothing to change -> report.notes). "image": a no-op on an image-stage checkpoint and
        LongVUConfigError on a video-stage one (the fork never converts that way).
    creatable(have, expected) -> {key: shape}  missing `pos_embed_*` a conversion may create
    init_created(created, seed, report) -> {connector key: tensor}   N(0, 1), seeded, reported
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import torch

from .config import LoadingReport, LongVUConfig, validate
from .errors import LongVUConfigError

LAYOUTS = ("image", "video")
# field -> (value, the launch-script argument); e.g. coco_splicing_llama.sh:92-97
VIDEO_LAYOUT: dict[str, tuple[Any, str]] = {
    "image_token_len": (144, "--image_token_len 144"),
    "query_num_list": ([144], "--query_num_list [144]"),
    "highres": (True, "--highres True"),
    "lowres_token": (8, "--lowres_token 8"),
    "drop_threshold": (0.8, "--drop_threshold 0.8"),
}
# the only connector parameters whose existence depends on the layout (2x2 windows)
_CREATABLE = re.compile(r"model\.vision_sampler_\d+\.layers\.\d+\.pos_embed_\d+")


def apply_layout(cfg: LongVUConfig, token_layout: str | None, report: LoadingReport,
                 path: str = "config.json") -> LongVUConfig:
    """`cfg` in the requested token layout (a new object when anything changes)."""
    if token_layout is None:
        return cfg
    if token_layout not in LAYOUTS:
        raise ValueError(f"token_layout must be None, 'image' or 'video', got {token_layout!r}")
    if token_layout == "image":
        if cfg.stage == "image":
            report.notes.append("token_layout='image': the checkpoint is in the image layout "
                                "already; nothing changed")
            return cfg
        raise LongVUConfigError(
            f"{path}: token_layout='image' asks for the image-stage layout, but this is a "
            f"video-stage checkpoint (image_token_len={cfg.image_token_len}, highres=true). The "
            "paper's fork never converts a video checkpoint to the image layout: every launch "
            "script passes the video-layout arguments and its evals change only drop_threshold "
            "(eval/eval_tvbench_format.py:177). Fix: load the image-stage checkpoint "
            "(LongVU_*_img), or leave token_layout=None.")
    changes = {k: v for k, (v, _) in VIDEO_LAYOUT.items() if getattr(cfg, k) != v}
    if not changes:
        report.notes.append("token_layout='video': the checkpoint is in the video layout "
                            "already; nothing changed")
        return cfg
    q = math.isqrt(VIDEO_LAYOUT["query_num_list"][0][0])
    if cfg.token_side % q:
        raise LongVUConfigError(
            f"{path}: token_layout='video' applies the fork's {q * q}-query layout, which needs "
            f"tower maps whose side is a multiple of {q} (LongVU: 24x24); this checkpoint has "
            f"{cfg.token_side}x{cfg.token_side} (mm_vision_tower_aux_token_len_list="
            f"{cfg.mm_vision_tower_aux_token_len_list}). Fix: leave token_layout=None.")
    new = dataclasses.replace(cfg, **{k: list(v) if isinstance(v, list) else v
                                      for k, v in changes.items()})
    validate(new, path)
    for k, v in changes.items():
        report.changed[k] = (getattr(cfg, k), v, f"token_layout='video': the fork's "
                             f"{VIDEO_LAYOUT[k][1]}, in every launch script, e.g. "
                             "scene_descr_llama.sh:88-93")
    return new


def creatable(have: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]]
              ) -> dict[str, tuple[int, ...]]:
    """Expected `pos_embed_*` keys absent from the checkpoint, in the connector's order."""
    return {k: s for k, s in expected.items() if k not in have and _CREATABLE.fullmatch(k)}


def init_created(created: dict[str, tuple[int, ...]], seed: int | torch.Generator,
                 report: LoadingReport) -> dict[str, torch.Tensor]:
    """Fresh N(0, 1) values (float32, CPU) for `created`, keyed without `model.`; each is
    listed in `report.created` with its shape and init."""
    if isinstance(seed, torch.Generator):
        gen, how = seed, f"a caller's torch.Generator (initial seed {seed.initial_seed()})"
    else:
        gen, how = torch.Generator().manual_seed(int(seed)), f"torch.Generator seed {seed}"
    out = {}
    for key, shape in created.items():  # the original's construction order (layer, tower)
        out[key[len("model."):]] = torch.randn(shape, generator=gen)
        report.created.append(
            f"{key} {tuple(shape)}: N(0, 1) from {how} (token_layout='video'; the original "
            "draws torch.randn at construction from the global RNG, vision_sampler.py:332-338)")
    return out
