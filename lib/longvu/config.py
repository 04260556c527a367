"""LongVU config: read the original config.json into (our LongVU fields, a stock HF LLM config).

The released checkpoints carry one config.json with `model_type` cambrian_qwen / cambrian_llama:
the base LLM's fields plus LongVU's connector/pipeline fields. transformers 5.x has no such model
type, so we split it: the LLM part becomes a stock `Qwen2Config` / `LlamaConfig`, the rest lives in
`LongVUConfig`. Every LongVU value is taken from the file, never hard-coded (image- and
video-stage checkpoints differ only here). Used by notebooks 01, 03, 04 through `lib.longvu.load`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import LlamaConfig, PretrainedConfig, Qwen2Config

MODEL_TYPES = {"cambrian_qwen": "qwen", "cambrian_llama": "llama"}
ARCHITECTURES = {"qwen": "CambrianQwenForCausalLM", "llama": "CambrianLlamaForCausalLM"}
# Pad ids the original hard-codes when it measures the text length (cambrian_arch select_frame).
PAD_IDS = {"qwen": 151643, "llama": 128002}
# Hub repos the original hard-codes for the two towers (siglip_encoder.py, dino_encoder.py).
TOWER_HUB_IDS = {"siglip": "google/siglip-so400m-patch14-384", "dinov2": "facebook/dinov2-giant"}

# Fields that belong to LongVU, not to the LLM; kept out of the stock LLM config.
_LONGVU_KEYS = {
    "mm_vision_tower_aux_list", "mm_vision_tower_aux_token_len_list",
    "vision_tower_aux_token_len_list", "mm_projector_type", "vision_hidden_size",
    "num_query_group", "query_num_list", "image_token_len", "connector_depth", "connector_only",
    "highres", "lowres_token", "dino_threshold", "drop_threshold", "frame_pos", "highres_connect",
    "is_st_sampler", "connect_layer", "is_image_newline", "tokenizer_model_max_length",
    "tokenizer_padding_side", "inference_max_length", "image_aspect_ratio",
    "mm_vision_select_layer", "mm_vision_select_feature", "mm_use_im_start_end",
    "mm_use_im_patch_token", "image_position", "unfreeze_mm_vision_tower", "tune_mm_mlp_adapter",
    "freeze_mm_mlp_adapter", "mm_projector_lr", "mm_vision_sampler_lr", "mm_vision_tower_lr",
    "use_mm_proj", "mm_hidden_size",
}
# transformers-5.x bookkeeping that a 4.4x-era config.json does not carry
_NOISE_KEYS = {"rope_parameters", "output_hidden_states", "return_dict", "use_return_dict",
               "id2label", "label2id", "problem_type", "output_attentions", "layer_types",
               "chunk_size_feed_forward", "is_encoder_decoder"}
_DROP_KEYS = {"model_type", "architectures", "_name_or_path", "transformers_version",
              "torch_dtype",
              "dtype", "auto_map"}


@dataclass
class LongVUConfig:
    """LongVU's own fields (names as in the original config.json)."""

    backbone: str  # "qwen" | "llama"
    hidden_size: int  # LLM width H
    vision_hidden_size: int = 1024
    num_query_group: int = 1
    query_num_list: list[int] = field(default_factory=lambda: [144])
    image_token_len: int = 144
    connector_depth: int = 3
    connector_only: bool = True
    highres: bool = False
    lowres_token: int = 8
    dino_threshold: float = 0.83
    drop_threshold: float = 0.8
    tokenizer_model_max_length: int = 8192
    inference_max_length: int = 16
    mm_vision_tower_aux_token_len_list: list[int] = field(default_factory=lambda: [576, 576])
    mm_vision_tower_aux_list: list[str] = field(
        default_factory=lambda: ["siglip/CLIP-ViT-SO400M-14-384", "facebook/dinov2-giant-res378"])
    mm_projector_type: str = "sva"
    frame_pos: bool = False
    # every other LongVU key, written back on save
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def model_type(self) -> str:
        return "cambrian_" + self.backbone

    @property
    def stage(self) -> str:
        """'video' for the 144-query high-res checkpoints, 'image' for the 576-query ones."""
        return "video" if self.highres else "image"

    @property
    def pad_id(self) -> int:
        return PAD_IDS[self.backbone]

    @property
    def token_side(self) -> int:
        """Side of the towers' resized token maps (24 for every released checkpoint)."""
        side = int(round(self.mm_vision_tower_aux_token_len_list[0] ** 0.5))
        if side * side != self.mm_vision_tower_aux_token_len_list[0]:
            raise ValueError("mm_vision_tower_aux_token_len_list must hold square token counts, "
                             f"got {self.mm_vision_tower_aux_token_len_list}")
        return side

    def window_sizes(self) -> list[int]:
        """SVA key window side per tower: sqrt(tower tokens) // sqrt(queries) (1 or 2)."""
        q = int(self.query_num_list[0] ** 0.5)
        return [int(n ** 0.5) // q for n in self.mm_vision_tower_aux_token_len_list]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("backbone"), d.pop("hidden_size")
        extra = d.pop("extra")
        d.update(extra)
        d["vision_tower_aux_token_len_list"] = list(self.mm_vision_tower_aux_token_len_list)
        return d


def validate(cfg: LongVUConfig, path: str = "config.json") -> None:
    """Refuse configs this implementation does not reproduce, naming the field."""
    problems = []
    if cfg.mm_projector_type != "sva":
        problems.append(f"mm_projector_type={cfg.mm_projector_type!r} (only 'sva' is LongVU)")
    if not cfg.connector_only:
        problems.append("connector_only=false (sampler layers inside the LLM are not LongVU)")
    if cfg.num_query_group != 1 or len(cfg.query_num_list) != 1:
        problems.append(f"num_query_group={cfg.num_query_group}, query_num_list="
                        f"{cfg.query_num_list} (LongVU uses one group)")
    if cfg.vision_hidden_size % 16:
        problems.append(f"vision_hidden_size={cfg.vision_hidden_size} must be divisible by the "
                        "sampler's 16 heads")
    if len(cfg.mm_vision_tower_aux_token_len_list) != 2:
        problems.append("mm_vision_tower_aux_token_len_list must name two towers [SigLIP, DINOv2]")
    if cfg.frame_pos:
        problems.append("frame_pos=true is not supported (false in every released config)")
    if problems:
        raise ValueError(f"{path}: unsupported LongVU config: " + "; ".join(problems))


def split_config(raw: dict[str, Any], path: str = "config.json"
                 ) -> tuple[LongVUConfig, PretrainedConfig]:
    """Split an original LongVU config dict into (LongVUConfig, Qwen2Config | LlamaConfig)."""
    model_type = raw.get("model_type")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"{path}: model_type={model_type!r}; expected one of "
                         f"{sorted(MODEL_TYPES)} (an original LongVU config.json)")
    backbone = MODEL_TYPES[model_type]
    for key in ("image_token_len", "query_num_list", "vision_hidden_size", "hidden_size"):
        if key not in raw:
            raise ValueError(f"{path}: missing LongVU field {key!r}; is this a LongVU checkpoint?")
    known = set(LongVUConfig.__dataclass_fields__) - {"backbone", "extra"}
    lv_kwargs = {k: raw[k] for k in known if k in raw}
    extra = {k: raw[k] for k in _LONGVU_KEYS if k in raw and k not in known
             and k != "vision_tower_aux_token_len_list"}
    cfg = LongVUConfig(backbone=backbone, extra=extra, **lv_kwargs)
    validate(cfg, path)
    llm_kwargs = {k: v for k, v in raw.items() if k not in _LONGVU_KEYS and k not in _DROP_KEYS}
    if "rope_parameters" not in llm_kwargs:  # 4.4x layout: rope_theta + rope_scaling
        rope = dict(llm_kwargs.pop("rope_scaling", None) or {"rope_type": "default"})
        rope.setdefault("rope_type", rope.pop("type", "default"))
        rope["rope_theta"] = llm_kwargs.pop("rope_theta", 10000.0)
        llm_kwargs["rope_parameters"] = rope
    llm_cls = Qwen2Config if backbone == "qwen" else LlamaConfig
    llm_cfg = llm_cls(**llm_kwargs)
    return cfg, llm_cfg


def read_config(ckpt_dir: str | Path) -> tuple[LongVUConfig, PretrainedConfig]:
    """Read `<ckpt_dir>/config.json` (original LongVU layout)."""
    path = Path(ckpt_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a LongVU checkpoint dir needs config.json")
    return split_config(json.loads(path.read_text()), str(path))


def merged_config_dict(cfg: LongVUConfig, llm_cfg: PretrainedConfig) -> dict[str, Any]:
    """The original-layout config.json content for (cfg, llm_cfg)."""
    d = llm_cfg.to_dict()
    for k in _DROP_KEYS | _NOISE_KEYS:
        d.pop(k, None)
    rope = dict(llm_cfg.rope_parameters or {})
    d["rope_theta"] = rope.pop("rope_theta", getattr(llm_cfg, "rope_theta", None))
    d["rope_scaling"] = None if rope.get("rope_type", "default") == "default" else rope
    d.update(cfg.to_dict())
    d["model_type"] = cfg.model_type
    d["architectures"] = [ARCHITECTURES[cfg.backbone]]
    d["torch_dtype"] = "float32"
    return dict(sorted(d.items()))
