"""LongVU config: read the original config.json into (our LongVU fields, a stock HF LLM config).

The released checkpoints carry one config.json with `model_type` cambrian_qwen / cambrian_llama:
the base LLM's fields plus LongVU's connector/pipeline fields. transformers 5.x has no such model
type, so we split it: the LLM part becomes a stock `Qwen2Config` / `LlamaConfig`, the rest lives in
`LongVUConfig`. Every LongVU value is taken from the file, never hard-coded (image- and
video-stage checkpoints differ only here). Used by notebooks 01, 03, 04 through `lib.longvu.load`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import LlamaConfig, PretrainedConfig, Qwen2Config

from .errors import LongVUConfigError, read_json, refetch_hint

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


# ---------------------------------------------------------------------------------------------
# Which config.json fields change the computation, and what happens when one is absent.
#
# The original builds its LLM config from the transformers 4.42.4 classes (requirements.txt
# pins transformers==4.42.4) and reads the LongVU fields in cambrian_arch.py (commit 1b0be5c).
# A field is REQUIRED when the original reads it unguarded (it would fail without it), when it
# fixes a parameter shape, or when the original's default differs from the value in a released
# checkpoint (so a stripped config would silently compute something else, e.g. rope_theta:
# default 10000.0, released 1e6 / 5e5). Every other absent field gets the original's default,
# and `LoadingReport.defaulted` names it with its value and source. Fields the original never
# reads (mm_vision_select_layer, image_aspect_ratio, is_image_newline, pad/bos ids, ...) are not
# listed here; they are kept as they are.

REQUIRED = object()
_Q = "transformers 4.42.4 configuration_qwen2.py"
_L = "transformers 4.42.4 configuration_llama.py"
_A = "LongVU cambrian_arch.py"


@dataclass(frozen=True)
class FieldSpec:
    kind: str  # int | float | bool | str | list_int | list_str | ids | rope_scaling
    default: Any = REQUIRED  # REQUIRED or the original's value when absent
    source: str = ""  # where the original takes the default from / why the field is required
    minimum: float | None = None


_SHAPE = "sets parameter shapes"
LLM_FIELDS: dict[str, dict[str, FieldSpec]] = {
    "qwen": {
        "vocab_size": FieldSpec("int", source=f"{_SHAPE} ({_Q}:96 default 151936)", minimum=1),
        "hidden_size": FieldSpec("int", source=f"{_SHAPE} ({_Q}:97 default 4096)", minimum=1),
        "intermediate_size": FieldSpec("int", source=f"{_SHAPE} ({_Q}:98)", minimum=1),
        "num_hidden_layers": FieldSpec("int", source=f"{_SHAPE} ({_Q}:99)", minimum=1),
        "num_attention_heads": FieldSpec("int", source=f"{_SHAPE} ({_Q}:100)", minimum=1),
        "num_key_value_heads": FieldSpec("int", source=f"{_SHAPE} ({_Q}:101 default 32)",
                                         minimum=1),
        "rope_theta": FieldSpec("float", source=f"{_Q}:108 defaults to 10000.0, the released "
                                "Qwen2 checkpoints use 1e6: without it every logit changes",
                                minimum=1e-12),
        "eos_token_id": FieldSpec("ids", source="decides where generation stops; the 4.42 "
                                  "default (None) differs from the released 151645"),
        "hidden_act": FieldSpec("str", "silu", f"{_Q}:102"),
        "max_position_embeddings": FieldSpec("int", 32768, f"{_Q}:103", minimum=1),
        "rms_norm_eps": FieldSpec("float", 1e-6, f"{_Q}:105", minimum=0.0),
        "tie_word_embeddings": FieldSpec("bool", False, f"{_Q}:107"),
        "use_sliding_window": FieldSpec("bool", False, f"{_Q}:109"),
    },
    "llama": {
        "vocab_size": FieldSpec("int", source=f"{_SHAPE} ({_L}:119 default 32000)", minimum=1),
        "hidden_size": FieldSpec("int", source=f"{_SHAPE} ({_L}:120 default 4096)", minimum=1),
        "intermediate_size": FieldSpec("int", source=f"{_SHAPE} ({_L}:121)", minimum=1),
        "num_hidden_layers": FieldSpec("int", source=f"{_SHAPE} ({_L}:122)", minimum=1),
        "num_attention_heads": FieldSpec("int", source=f"{_SHAPE} ({_L}:123)", minimum=1),
        "num_key_value_heads": FieldSpec("int", source=f"{_SHAPE} ({_L}:124 default = "
                                         "num_attention_heads)", minimum=1),
        "rope_theta": FieldSpec("float", source=f"{_L}:135 defaults to 10000.0, the released "
                                "Llama 3.2 checkpoints use 5e5: without it every logit changes",
                                minimum=1e-12),
        "rope_scaling": FieldSpec("rope_scaling", source=f"{_L}:136 defaults to null, the "
                                  "released Llama 3.2 checkpoints use llama3 scaling (factor "
                                  "32); write null explicitly for plain RoPE"),
        "rms_norm_eps": FieldSpec("float", source=f"{_L}:128 defaults to 1e-6, the released "
                                  "Llama 3.2 checkpoints use 1e-5", minimum=0.0),
        "tie_word_embeddings": FieldSpec("bool", source=f"{_L}:134 defaults to false, the "
                                         "released Llama 3.2 checkpoints tie lm_head to "
                                         "embed_tokens"),
        "eos_token_id": FieldSpec("ids", source=f"decides where generation stops; {_L}:132 "
                                  "defaults to 2, an ordinary Llama-3 token"),
        "hidden_act": FieldSpec("str", "silu", f"{_L}:125"),
        "max_position_embeddings": FieldSpec("int", 2048, f"{_L}:126 (unused by default and "
                                             "llama3 RoPE)", minimum=1),
        "attention_bias": FieldSpec("bool", False, f"{_L}:137"),
        "mlp_bias": FieldSpec("bool", False, f"{_L}:139"),
        # 4.42 has no head_dim field: modeling_llama.py:249 uses hidden_size // heads
        "head_dim": FieldSpec("int", None, "transformers 4.42.4 modeling_llama.py:249 "
                              "(hidden_size // num_attention_heads)", minimum=1),
    },
}
LONGVU_FIELDS: dict[str, FieldSpec] = {
    "mm_vision_tower_aux_list": FieldSpec("list_str", source=f"{_A}:44 builds no vision "
                                          "modules without it"),
    "mm_vision_tower_aux_token_len_list": FieldSpec("list_int", source=f"read unguarded, "
                                                    f"{_A}:65"),
    "mm_projector_type": FieldSpec("str", source=f"absent means 'linear' ({_A}:46), which is "
                                   "not LongVU's connector"),
    "vision_hidden_size": FieldSpec("int", source=f"read unguarded, {_A}:49", minimum=1),
    "num_query_group": FieldSpec("int", source=f"read unguarded, {_A}:50", minimum=1),
    "query_num_list": FieldSpec("list_int", source=f"read unguarded, {_A}:51"),
    "connector_only": FieldSpec("bool", source=f"read unguarded, {_A}:52"),
    "connector_depth": FieldSpec("int", source=f"read unguarded, {_A}:53", minimum=1),
    "image_token_len": FieldSpec("int", source=f"read unguarded, {_A}:63", minimum=1),
    "lowres_token": FieldSpec("int", source=f"read unguarded, {_A}:960", minimum=1),
    "tokenizer_model_max_length": FieldSpec("int", source=f"read unguarded, {_A}:700",
                                            minimum=1),
    "highres": FieldSpec("bool", source=f"{_A}:971 defaults to false, the released video-stage "
                         "checkpoints use true: without it a video checkpoint runs image-style"),
    "dino_threshold": FieldSpec("float", 0.83, f"{_A}:845"),
    # the model's own fallback is 0.7 (cambrian_arch.py:1487), but the MVBench eval we reproduce
    # sets 0.8 before every run (eval/eval_mvbench.py:194)
    "drop_threshold": FieldSpec("float", 0.8, "LongVU eval/eval_mvbench.py:194"),
    "inference_max_length": FieldSpec("int", 16, f"{_A}:702", minimum=0),
    "frame_pos": FieldSpec("bool", False, f"{_A}:1143"),
}
_KIND_TEXT = {"int": "an integer", "float": "a number", "bool": "true or false",
              "str": "a string", "list_int": "a list of integers", "list_str": "a list of strings",
              "ids": "an integer or a list of integers", "rope_scaling": "null or an object"}


def _type_ok(kind: str, v: Any) -> bool:
    def is_int(x):
        return isinstance(x, int) and not isinstance(x, bool)
    if kind == "int":
        return is_int(v)
    if kind == "float":
        return (is_int(v) or isinstance(v, float)) and math.isfinite(v)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "str":
        return isinstance(v, str)
    if kind == "list_int":
        return isinstance(v, list) and bool(v) and all(is_int(x) and x > 0 for x in v)
    if kind == "list_str":
        return isinstance(v, list) and bool(v) and all(isinstance(x, str) for x in v)
    if kind == "ids":
        return is_int(v) or (isinstance(v, list) and bool(v) and all(is_int(x) for x in v))
    if kind == "rope_scaling":
        return v is None or isinstance(v, dict)
    raise AssertionError(kind)


@dataclass
class LoadingReport:
    """What `load` did beyond copying files: config fields it filled in (with the original's
    default), fields present but ignored (as the original ignores them), fields a requested
    token layout changed, parameters that do not come from a file (each with shape and init)
    and notes. `str(report)` is the short text `load` logs; `model.loading_report`."""

    source: str = ""
    defaulted: dict[str, tuple[Any, str]] = field(default_factory=dict)  # name -> (value, src)
    ignored: dict[str, tuple[Any, str]] = field(default_factory=dict)  # name -> (value, why)
    # name -> (old, new, why): set by load(token_layout=...), see layout.py
    changed: dict[str, tuple[Any, Any, str]] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)  # parameters not read from any file
    files: list[str] = field(default_factory=list)  # files the weights were read from
    notes: list[str] = field(default_factory=list)  # e.g. a token layout that changed nothing

    @property
    def clean(self) -> bool:
        return not (self.defaulted or self.ignored or self.changed or self.created)

    def __str__(self) -> str:
        lines = [f"LongVU loading report for {self.source or '<config>'}:"]
        if self.clean:
            lines.append("  every computation-relevant config field was present; all parameters "
                         "read from files")
        for name, (value, src) in sorted(self.defaulted.items()):
            lines.append(f"  defaulted {name} = {value!r}  (absent from config.json; the "
                         f"original's default, {src})")
        for name, (value, why) in sorted(self.ignored.items()):
            lines.append(f"  ignored {name} = {value!r}  ({why})")
        for name, (old, value, why) in sorted(self.changed.items()):
            lines.append(f"  changed {name}: {old!r} -> {value!r}  ({why})")
        for what in self.created:
            lines.append(f"  created {what}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


def _config_fix(path: str) -> str:
    return ("Fix: use the config.json that came with these weights (" + refetch_hint(path)
            + "), or add the field with the value the checkpoint was trained with.")


def _check_fields(raw: dict[str, Any], specs: dict[str, FieldSpec], path: str,
                  report: LoadingReport) -> dict[str, Any]:
    """Values for `specs` from raw (type-checked) or the original's default (reported)."""
    missing, wrong, out = [], [], {}
    for name, spec in specs.items():
        v = raw.get(name, None) if name in raw else REQUIRED
        if v is REQUIRED or (v is None and spec.kind != "rope_scaling"):
            if spec.default is REQUIRED:
                missing.append(f"{name!r} ({_KIND_TEXT[spec.kind]}; {spec.source})")
            else:
                out[name] = spec.default
                report.defaulted[name] = (spec.default, spec.source)
            continue
        if not _type_ok(spec.kind, v) or (spec.minimum is not None
                                           and spec.kind in ("int", "float")
                                           and v < spec.minimum):
            bound = f" >= {spec.minimum}" if spec.minimum is not None else ""
            wrong.append(f"{name}={v!r} (must be {_KIND_TEXT[spec.kind]}{bound})")
            continue
        out[name] = v
    if missing or wrong:
        parts = [f"{path}: config.json cannot be used as it is:"]
        if missing:
            parts.append("missing required field(s): " + "; ".join(missing))
        if wrong:
            parts.append("field(s) of the wrong type or range: " + "; ".join(wrong))
        parts.append(_config_fix(path))
        raise LongVUConfigError("\n".join(parts))
    return out


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
    if len(cfg.mm_vision_tower_aux_list) != 2:
        problems.append("mm_vision_tower_aux_list must name two towers [SigLIP, DINOv2]")
    if cfg.frame_pos:
        problems.append("frame_pos=true is not supported (false in every released config)")
    if problems:
        raise LongVUConfigError(f"{path}: unsupported LongVU config: " + "; ".join(problems))


_LLAMA3_ROPE_KEYS = ("factor", "low_freq_factor", "high_freq_factor",
                     "original_max_position_embeddings")


def _rope_4x_layout(raw: dict[str, Any], path: str) -> dict[str, Any]:
    """raw with a transformers-5 `rope_parameters` folded into rope_theta / rope_scaling."""
    raw = dict(raw)
    if isinstance(raw.get("rope_parameters"), dict):  # written by transformers 5
        rp = dict(raw.pop("rope_parameters"))
        theta = rp.pop("rope_theta", None)
        if "rope_theta" in raw and theta is not None and raw["rope_theta"] != theta:
            raise LongVUConfigError(f"{path}: rope_theta={raw['rope_theta']!r} and "
                                    f"rope_parameters.rope_theta={theta!r} disagree. "
                                    + _config_fix(path))
        if theta is not None:
            raw.setdefault("rope_theta", theta)
        if "rope_scaling" not in raw:
            kind = rp.get("rope_type", rp.get("type", "default"))
            raw["rope_scaling"] = None if kind == "default" else rp
    return raw


def split_config(raw: dict[str, Any], path: str = "config.json",
                 report: LoadingReport | None = None) -> tuple[LongVUConfig, PretrainedConfig]:
    """Split an original LongVU config dict into (LongVUConfig, Qwen2Config | LlamaConfig).

    Required fields (see LLM_FIELDS / LONGVU_FIELDS) must be present with the right type, else
    LongVUConfigError names them; absent optional ones get the original's default and are
    recorded in `report.defaulted`.
    """
    report = report if report is not None else LoadingReport(source=str(path))
    if not isinstance(raw, dict):
        raise LongVUConfigError(f"{path}: expected a JSON object, got {type(raw).__name__}. "
                                + _config_fix(path))
    model_type = raw.get("model_type")
    if model_type not in MODEL_TYPES:
        raise LongVUConfigError(f"{path}: model_type={model_type!r}; expected one of "
                                f"{sorted(MODEL_TYPES)} (an original LongVU config.json)")
    backbone = MODEL_TYPES[model_type]
    raw = _rope_4x_layout(raw, path)
    # the LongVU fields first: a non-LongVU config.json fails here with the LongVU names
    lv = _check_fields(raw, LONGVU_FIELDS, path, report)
    llm = _check_fields(raw, LLM_FIELDS[backbone], path, report)

    known = set(LongVUConfig.__dataclass_fields__) - {"backbone", "extra"}
    assert set(lv) | {"hidden_size"} == known, "LONGVU_FIELDS must cover LongVUConfig"
    lv_kwargs = {**lv, "hidden_size": llm["hidden_size"]}
    extra = {k: raw[k] for k in _LONGVU_KEYS if k in raw and k not in known
             and k != "vision_tower_aux_token_len_list"}
    cfg = LongVUConfig(backbone=backbone, extra=extra, **lv_kwargs)
    validate(cfg, path)

    llm_kwargs = {k: v for k, v in raw.items()
                  if k not in _LONGVU_KEYS and k not in _DROP_KEYS and k != "rope_parameters"}
    llm_kwargs.update(llm)
    theta = float(llm_kwargs.pop("rope_theta"))
    # transformers 5 would build per-layer attention kinds from `layer_types`; 4.42 has no such
    # field (every layer attends fully in the sdpa/eager path)
    layer_types = llm_kwargs.pop("layer_types", None)
    if layer_types and any(t != "full_attention" for t in layer_types):
        report.ignored["layer_types"] = (layer_types, "transformers-5 field; 4.42 (the "
                                         "original) attends fully in every layer")
    scaling = llm_kwargs.pop("rope_scaling", None)
    if backbone == "qwen":
        # The original forces rope_scaling = None (cambrian_qwen.py:222) and 4.42's Qwen2 RoPE
        # has no scaling; sliding windows exist only in 4.42's flash-attention path
        # (modeling_qwen2.py:373-377), not in the sdpa/eager path LongVU's eval runs.
        if scaling is not None:
            report.ignored["rope_scaling"] = (scaling, "the original forces rope_scaling=None "
                                              "for Qwen2, cambrian_qwen.py:222")
        scaling = None
        if llm_kwargs.get("use_sliding_window"):
            report.ignored["use_sliding_window"] = (True, "4.42 Qwen2 applies sliding windows "
                                                    "only with flash-attention, "
                                                    "modeling_qwen2.py:373-377")
            llm_kwargs["use_sliding_window"] = False
        hd = raw.get("head_dim")
        if hd is not None and hd != llm["hidden_size"] // llm["num_attention_heads"]:
            raise LongVUConfigError(
                f"{path}: head_dim={hd!r} but 4.42 Qwen2 always uses hidden_size // "
                f"num_attention_heads = {llm['hidden_size'] // llm['num_attention_heads']} "
                "(modeling_qwen2.py:221). " + _config_fix(path))
        llm_kwargs.pop("head_dim", None)
    if llm_kwargs.get("head_dim", 0) is None:  # llama, absent: 4.42's hidden // heads
        llm_kwargs["head_dim"] = llm["hidden_size"] // llm["num_attention_heads"]
        report.defaulted["head_dim"] = (llm_kwargs["head_dim"],
                                        LLM_FIELDS["llama"]["head_dim"].source)
    rope = {"rope_type": "default"}
    if scaling is not None:
        rope = dict(scaling)
        rope["rope_type"] = rope.pop("type", rope.get("rope_type", "default"))
        rope.pop("type", None)
        if rope["rope_type"] == "llama3":
            absent = [k for k in _LLAMA3_ROPE_KEYS if k not in rope]
            if absent:
                raise LongVUConfigError(f"{path}: rope_scaling of type llama3 lacks {absent}. "
                                        + _config_fix(path))
        elif rope["rope_type"] != "default":
            raise LongVUConfigError(
                f"{path}: rope_scaling type {rope['rope_type']!r} is not one the released "
                "LongVU checkpoints use (Llama 3.2: llama3; Qwen2: none). " + _config_fix(path))
    rope["rope_theta"] = theta
    llm_kwargs["rope_parameters"] = rope
    llm_cls = Qwen2Config if backbone == "qwen" else LlamaConfig
    llm_cfg = llm_cls(**llm_kwargs)
    return cfg, llm_cfg


def read_config(ckpt_dir: str | Path, report: LoadingReport | None = None
                ) -> tuple[LongVUConfig, PretrainedConfig]:
    """Read `<ckpt_dir>/config.json` (original LongVU layout); fills `report` if given."""
    path = Path(ckpt_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a LongVU checkpoint dir needs config.json")
    return split_config(read_json(path, "LongVU config.json"), str(path), report)


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
