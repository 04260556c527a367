"""Load and save LongVU checkpoints in the original layout (config.json + safetensors shards).

Keys are the original ones: `lm_head.weight` and `model.*` (LLM + connector); tower weights live
in their own dirs / hub repos, as in the release. Before anything is loaded every checkpoint key
and shape is checked against the architecture the config implies; missing keys, unexpected keys
and shape mismatches are listed by name. Safetensors only (checkpoints, towers and adapters): no
pickle, no trust_remote_code. Every file is checked before transformers/PEFT read it: a damaged
config, index, shard, tokenizer, generation config, tower or adapter file raises LongVULoadError
naming the file, what is wrong and the fix (the exact `hf download ... --force-download` for a
file in the HF cache). Index entries must be plain names inside the checkpoint dir. config.json
fields are required or defaulted as the original does (config.py); `model.loading_report` lists
the defaults. `token_layout="video"` loads an image-stage checkpoint in the paper's video layout
(layout.py), creating the absent `pos_embed_*` seeded and reported. NF4 quantises only the
decoder's linear layers (lm_head, connector and towers never), and this is verified after
loading. Used by notebooks 01, 03, 04 through `lib.longvu.load`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import (AutoTokenizer, BitsAndBytesConfig, Dinov2Model, LlamaForCausalLM,
                          Qwen2ForCausalLM, SiglipVisionModel)
from transformers.utils import logging as hf_logging

from . import layout, prompts
from .config import TOWER_HUB_IDS, LoadingReport, LongVUConfig, merged_config_dict, read_config
from .errors import LongVULoadError, download_hint, read_json, refetch_hint
from .connector import Connector
from .files import PICKLE_RECIPE, header_shapes, read_shapes, weight_files
from .model import Flags, LongVU
from .towers import Towers, tower_resolutions, tower_width

log = logging.getLogger(__name__)
CONNECTOR_TOP = ("mm_projector", "mm_projector_aux_0", "mm_projector_aux_1", "vision_sampler_0",
                 "vision_query", "image_newline")
OFFICIAL = ("Vision-CAIR/LongVU_Qwen2_7B", "Vision-CAIR/LongVU_Qwen2_7B_img",
            "Vision-CAIR/LongVU_Llama3_2_3B", "Vision-CAIR/LongVU_Llama3_2_3B_img")
TOWER_DIRS = ("towers", "vision_towers")  # where a self-contained checkpoint keeps its towers
# files a tokenizer dir may hold that must parse as JSON (merges.txt has no checkable form)
TOKENIZER_JSON = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                  "added_tokens.json", "vocab.json")
__all__ = ["load", "save", "LongVULoadError", "bnb_config", "attach_adapter"]


def _download_hint(repo_id: str) -> str:
    return download_hint(repo_id)


def resolve_dir(path_or_id: str | os.PathLike, what: str = "checkpoint") -> Path:
    """A local dir, or a hub id already in the local HF cache (never downloads)."""
    p = Path(path_or_id).expanduser()
    if p.is_dir():
        return p
    s = str(path_or_id)
    if s.count("/") == 1 and not s.startswith((".", "/", "~")):
        from huggingface_hub import snapshot_download
        try:
            return Path(snapshot_download(s, local_files_only=True))
        except Exception as e:  # not cached (or offline without it)
            raise FileNotFoundError(f"{what} {s!r} is not a local dir and not in the HF cache "
                                    f"({type(e).__name__}); {_download_hint(s)}") from None
    raise FileNotFoundError(f"{what} dir {p} does not exist")


def _decoder_cls(cfg: LongVUConfig):
    return Qwen2ForCausalLM if cfg.backbone == "qwen" else LlamaForCausalLM


def expected_shapes(cfg: LongVUConfig, llm_cfg, widths: tuple[int, int]
                    ) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """(decoder keys -> shape, connector keys (with `model.`) -> shape), built on `meta`."""
    with torch.device("meta"):
        dec = _decoder_cls(cfg)(llm_cfg)
        con = build_connector(cfg, widths)
    d = {k: tuple(v.shape) for k, v in dec.state_dict().items()}
    c = {"model." + k: tuple(v.shape) for k, v in con.state_dict().items()}
    return d, c


def build_connector(cfg: LongVUConfig, widths: tuple[int, int]) -> Connector:
    return Connector(widths, cfg.vision_hidden_size, cfg.hidden_size, cfg.window_sizes(),
                     cfg.connector_depth)


def check_keys(ckpt: Path, have: dict, dec: dict, con: dict, tied: bool) -> None:
    """Raise LongVULoadError naming every missing/unexpected key and shape mismatch."""
    want = {**dec, **con}
    optional = {"lm_head.weight"} if tied else set()
    missing = sorted(k for k in want if k not in have and k not in optional)
    unexpected = sorted(k for k in have if k not in want)
    bad = sorted(f"{k}: checkpoint {have[k]} vs expected {want[k]}"
                 for k in have if k in want and tuple(have[k]) != tuple(want[k]))
    if missing or unexpected or bad:
        parts = [f"{ckpt}: checkpoint does not match the LongVU architecture of its config.json"]
        for name, items in (("missing keys", missing), ("unexpected keys", unexpected),
                            ("shape mismatches", bad)):
            if items:
                shown = "\n    ".join(items[:40]) + ("\n    ..." if len(items) > 40 else "")
                parts.append(f"{name} ({len(items)}):\n    {shown}")
        parts.append("Fix: use the config.json that came with these weights (image-stage vs "
                     "video-stage differ in image_token_len/query_num_list), or re-download. An "
                     "image-stage checkpoint in the video layout: load(..., token_layout='video')"
                     " with its own config.json.")
        raise LongVULoadError("\n".join(parts))


def resolve_towers(ckpt: Path, towers) -> tuple[Path, Path]:
    """towers: None (checkpoint's own `towers/` dir, else the hub ids the original uses),
    a dir holding `siglip/` and `dinov2/`, or {"siglip": ..., "dinov2": ...}."""
    if towers is None:
        for sub in TOWER_DIRS:
            if (ckpt / sub / "siglip").is_dir() and (ckpt / sub / "dinov2").is_dir():
                towers = ckpt / sub
                break
        else:
            towers = dict(TOWER_HUB_IDS)
    if not isinstance(towers, dict):
        root = Path(towers)
        towers = {"siglip": root / "siglip", "dinov2": root / "dinov2"}
    if set(towers) != {"siglip", "dinov2"}:
        raise ValueError(f"towers must name 'siglip' and 'dinov2', got {sorted(towers)}")
    return (resolve_dir(towers["siglip"], "SigLIP tower"),
            resolve_dir(towers["dinov2"], "DINOv2 tower"))


def bnb_config() -> BitsAndBytesConfig:
    # A user skip list replaces the default one, so lm_head must be named explicitly.
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16,
                              llm_int8_skip_modules=["lm_head"])


def verify_quantization(model: LongVU, quantized: bool) -> None:
    """Decoder layer linears 4-bit iff `quantized`; lm_head, connector, towers never."""
    def is4(m):  # by name: importing bitsandbytes is slow and noisy when it is not used
        return type(m).__name__ == "Linear4bit"
    base = model.base_decoder
    layer_lin = [(n, m) for n, m in base.model.layers.named_modules()
                 if isinstance(m, torch.nn.Linear) and not n.split(".")[-1].startswith("lora_")]
    wrong = [n for n, m in layer_lin if is4(m) != quantized]
    for name, mod in (("lm_head", base.lm_head), ("connector", model.connector),
                      ("towers", model.towers)):
        if any(is4(m) for m in mod.modules()):
            wrong.append(name)
    if wrong:
        raise LongVULoadError(f"quantisation check failed (quantized={quantized}) for: "
                              f"{wrong[:10]}")


def _check_tower_files(path: Path, what: str) -> None:
    """config.json parses and every safetensors header reads, before transformers sees them."""
    read_json(path / "config.json", f"{what} config.json")
    index = path / "model.safetensors.index.json"
    if index.is_file() and not (path / "model.safetensors").is_file():
        files = weight_files(path)  # sharded: transformers follows the index (contained names)
    else:  # transformers reads model.safetensors (a hub repo may also carry an index)
        files = sorted(path.glob("*.safetensors"))
    for f in files:
        header_shapes(f)


def _load_tower(cls, path: Path, dtype: torch.dtype):
    """A tower from its own dir; fails if any of its weights would be left random."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the SigLIP hub repo also holds the unused text model
    try:
        model, info = cls.from_pretrained(str(path), dtype=dtype, output_loading_info=True,
                                          use_safetensors=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    bad = sorted(info["missing_keys"]) + sorted(str(k) for k in info.get("mismatched_keys", []))
    if bad:
        raise LongVULoadError(f"{path}: {cls.__name__} weights missing or mismatched: {bad[:20]}"
                              " (is this the right tower dir?)")
    return model


def _connector_state(files: list[Path]) -> dict[str, torch.Tensor]:
    out = {}
    for f in files:
        with safe_open(str(f), "pt") as sf:
            for k in sf.keys():
                if k.startswith("model.") and k[6:].split(".")[0] in CONNECTOR_TOP:
                    out[k[6:]] = sf.get_tensor(k)
    return out


def _load_tokenizer(ckpt: Path, llm_cfg):
    """The checkpoint's tokenizer, or None when it ships none; damaged files name themselves."""
    for name in TOKENIZER_JSON:
        if (ckpt / name).is_file():
            read_json(ckpt / name, "tokenizer file")
    try:
        # config= stops AutoTokenizer from parsing the cambrian_* config.json itself
        tok = AutoTokenizer.from_pretrained(str(ckpt), config=llm_cfg)
        if tok.chat_template:
            from transformers.utils.chat_template_utils import _compile_jinja_template
            templates = tok.chat_template if isinstance(tok.chat_template, dict) else \
                {"default": tok.chat_template}
            for t in templates.values():
                _compile_jinja_template(t)
    except Exception as e:
        raise LongVULoadError(
            f"{ckpt}: the tokenizer files do not load ({type(e).__name__}: {str(e)[:300]}). "
            f"Fix: {refetch_hint(ckpt / 'tokenizer.json')}") from None
    return tok


def load(path_or_id: str | os.PathLike, towers=None, quantization: str = "none",
         dtype: torch.dtype | None = None, device: str | torch.device = "cpu",
         adapter: str | os.PathLike | None = None, flags: Flags | None = None,
         template: str | None = None, token_layout: str | None = None,
         layout_seed: int | torch.Generator = 0) -> LongVU:
    """Load a LongVU checkpoint (official or tiny) in the original layout.

    path_or_id: a dir or a cached hub id (e.g. "Vision-CAIR/LongVU_Qwen2_7B").
    towers: see `resolve_towers`. quantization: "none" | "nf4" (decoder linears only).
    dtype: default float32 on CPU, bfloat16 on CUDA and for nf4 (fp16 = the original's choice).
    adapter: a PEFT adapter dir (adapter_config.json, adapter_model.safetensors and
    connector.safetensors, as lib/adapters.py save_adapter writes it).
    token_layout: None (the checkpoint's own), "video" (an image-stage checkpoint in the fork's
    144-query video layout, the paper's fine-tuning start: layout.py; the absent `pos_embed_*`
    are drawn N(0, 1) from `layout_seed`, an int or a torch.Generator) or "image" (refused on
    a video-stage checkpoint). `save` of such a model writes the video-layout config.
    The returned model carries `loading_report` (config.LoadingReport: defaulted / ignored
    config fields, fields a token layout changed, parameters not read from files with shape
    and init, weight files); it is logged (warning level when anything was defaulted, ignored,
    changed or created).
    """
    if quantization not in ("none", "nf4"):
        raise ValueError(f"quantization must be 'none' or 'nf4', got {quantization!r}")
    device = torch.device(device)
    if dtype is None:
        cpu_full = device.type == "cpu" and quantization == "none"
        dtype = torch.float32 if cpu_full else torch.bfloat16
    ckpt = resolve_dir(path_or_id)
    report = LoadingReport(source=str(ckpt))
    cfg, llm_cfg = read_config(ckpt, report)
    converted = layout.apply_layout(cfg, token_layout, report, str(ckpt / "config.json"))
    may_create, cfg = converted is not cfg, converted  # only a conversion creates pos_embed_*
    files = weight_files(ckpt)
    report.files = [f.name for f in files]
    if (ckpt / "generation_config.json").is_file():  # transformers ignores a broken one
        read_json(ckpt / "generation_config.json", "generation config")
    sig_dir, dino_dir = resolve_towers(ckpt, towers)
    _check_tower_files(sig_dir, "SigLIP tower")
    _check_tower_files(dino_dir, "DINOv2 tower")
    widths = (tower_width(sig_dir), tower_width(dino_dir))
    have = read_shapes(files)
    dec_shapes, con_shapes = expected_shapes(cfg, llm_cfg, widths)
    created = layout.creatable(have, con_shapes) if may_create else {}
    check_keys(ckpt, {**have, **created}, dec_shapes, con_shapes,
               bool(llm_cfg.tie_word_embeddings))
    if "lm_head.weight" not in have:  # tied and absent: the head is the embedding
        report.created.append("lm_head.weight: tied to model.embed_tokens.weight (not in the "
                              "checkpoint; tie_word_embeddings=true)")

    kwargs = {"config": llm_cfg, "dtype": dtype, "device_map": {"": str(device)},
              "use_safetensors": True}
    if quantization == "nf4":
        kwargs["quantization_config"] = bnb_config()
    verbosity = hf_logging.get_verbosity()
    # quiet: the connector keys are expected "unexpected" keys for the stock decoder, and the
    # tokenizer/config readers warn about the cambrian_* model_type
    hf_logging.set_verbosity_error()
    try:
        decoder, info = _decoder_cls(cfg).from_pretrained(str(ckpt), output_loading_info=True,
                                                          **kwargs)
        tokenizer = None
        if (ckpt / "tokenizer_config.json").is_file() or (ckpt / "tokenizer.json").is_file():
            tokenizer = _load_tokenizer(ckpt, llm_cfg)
        else:
            log.warning("%s has no tokenizer files; pass input_ids directly", ckpt)
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = sorted(set(info["missing_keys"]) - {"lm_head.weight"})
    if missing or info.get("mismatched_keys"):
        raise LongVULoadError(f"{ckpt}: decoder load reported missing {missing} / mismatched "
                              f"{info.get('mismatched_keys')}")
    decoder.eval()

    connector = build_connector(cfg, widths)
    state = _connector_state(files)
    state.update(layout.init_created(created, layout_seed, report))
    res = connector.load_state_dict(state, strict=True)
    assert not res.missing_keys and not res.unexpected_keys
    connector.to(device=device, dtype=dtype)

    siglip = _load_tower(SiglipVisionModel, sig_dir, dtype).to(device)
    dino = _load_tower(Dinov2Model, dino_dir, dtype).to(device)
    flags = flags or Flags()
    tw = Towers(siglip, dino, legacy_dino_interp=flags.legacy_dino_interp,
                sizes=tower_resolutions(cfg.mm_vision_tower_aux_list),
                token_side=cfg.token_side)

    model = LongVU(decoder, connector, tw, cfg, tokenizer,
                   template or prompts.template_for(cfg.backbone), flags)
    model.eval()
    model.source = str(ckpt)
    verify_quantization(model, quantization == "nf4")
    if adapter is not None:
        attach_adapter(model, adapter)
        if created:
            report.notes.append(f"the {len(created)} created pos_embed_* were then replaced by "
                                "the adapter's connector.safetensors")
    model.loading_report = report
    (log.info if report.clean else log.warning)("%s", report)
    return model


def _adapter_files(d: Path) -> tuple[Path, Path]:
    """(adapter_model.safetensors, connector.safetensors) of an adapter dir, both checked."""
    if not d.is_dir():
        raise FileNotFoundError(f"adapter dir {d} does not exist")
    if not (d / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{d}/adapter_config.json not found: not a PEFT adapter dir")
    acfg = read_json(d / "adapter_config.json", "PEFT adapter config")
    if not isinstance(acfg, dict) or "peft_type" not in acfg:
        raise LongVULoadError(f"{d / 'adapter_config.json'}: no 'peft_type'; truncated or not a "
                              "PEFT adapter config. Fix: use the adapter's own file "
                              "(lib/adapters.py save_adapter writes complete adapter dirs).")
    weights = d / "adapter_model.safetensors"
    if not weights.is_file():
        pickles = sorted(p.name for p in d.glob("*.bin"))
        if pickles:
            raise LongVULoadError(
                f"{d}: adapter weights only as pickle {pickles}; this loader reads safetensors "
                "only (PEFT would torch.load them). Fix: "
                + PICKLE_RECIPE.format(name="adapter_model.safetensors")
                + ", or re-save with model.decoder.save_pretrained(dir) (safetensors default).")
        raise LongVULoadError(f"{d}: no adapter_model.safetensors. Fix: point adapter= at a dir "
                              "written by lib/adapters.py save_adapter (or PEFT "
                              "save_pretrained).")
    header_shapes(weights)
    con = d / "connector.safetensors"
    if not con.is_file():
        raise LongVULoadError(
            f"{d}: no connector.safetensors. lib/adapters.py save_adapter always writes the "
            "(possibly fine-tuned) connector next to the LoRA weights; without it the base "
            "connector would silently stand in. Fix: copy the adapter dir completely; if this "
            "adapter really left the connector untouched, save the base one there: "
            "safetensors.torch.save_file(model.connector.state_dict(), "
            f"'{con}').")
    header_shapes(con)
    return weights, con


def attach_adapter(model: LongVU, adapter_dir: str | os.PathLike) -> None:
    """Wrap the decoder with a saved PEFT adapter and load its `connector.safetensors`.

    Safetensors only; every adapter tensor must land in the model and the connector file must
    hold the whole connector (strict), else LongVULoadError names what is off."""
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file
    d = Path(adapter_dir)
    weights, con = _adapter_files(d)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        decoder = PeftModel.from_pretrained(model.decoder, str(d))
    except Exception as e:
        raise LongVULoadError(f"{d}: PEFT could not attach this adapter ({type(e).__name__}: "
                              f"{str(e)[:300]}). Fix: use an adapter trained for this "
                              "checkpoint (lib/adapters.py save_adapter).") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    with safe_open(str(weights), "pt") as sf:
        saved = set(sf.keys())
    placed = set(get_peft_model_state_dict(decoder))
    lost, absent = sorted(saved - placed), sorted(placed - saved)
    if lost or absent:
        raise LongVULoadError(
            f"{weights}: adapter does not match this decoder: tensors that match no module "
            f"{lost[:10]}, adapter parameters absent from the file {absent[:10]}. Fix: use the "
            "adapter trained for this checkpoint (its adapter_config.json target_modules).")
    model.decoder = decoder
    model.decoder.eval()
    state = load_file(str(con))
    own = model.connector.state_dict()
    unknown = sorted(k for k in state if k not in own)
    missing = sorted(k for k in own if k not in state)
    bad = sorted(f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                 for k in state if k in own and state[k].shape != own[k].shape)
    if unknown or missing or bad:
        raise LongVULoadError(f"{con}: does not hold this model's connector: missing keys "
                              f"{missing[:10]}, unknown keys {unknown[:10]}, shape mismatches "
                              f"{bad[:10]}. Fix: use the connector.safetensors saved with this "
                              "adapter (lib/adapters.py save_adapter).")
    model.connector.load_state_dict(state, strict=True)


def save(model: LongVU, out_dir: str | os.PathLike, with_towers: bool = True) -> Path:
    """Write `model` in the original LongVU layout (+ towers/ and tokenizer if present)."""
    out = Path(out_dir)
    base = model.base_decoder
    if any(type(m).__name__ == "Linear4bit" for m in base.modules()):
        raise ValueError("save() writes full-precision checkpoints; this decoder is 4-bit. Load "
                         "with quantization='none' to save.")
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in base.state_dict().items()}
    if "lm_head.weight" not in state:
        state["lm_head.weight"] = base.lm_head.weight.detach().cpu().clone()
    for k, v in model.connector.state_dict().items():
        state["model." + k] = v.detach().cpu().contiguous().clone()
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    cfg_dict = merged_config_dict(model.config, base.config)
    (out / "config.json").write_text(json.dumps(cfg_dict, indent=2) + "\n")
    base.generation_config.save_pretrained(str(out))
    if with_towers:
        model.towers.siglip.save_pretrained(str(out / "towers" / "siglip"))
        model.towers.dino.save_pretrained(str(out / "towers" / "dinov2"))
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(str(out))
    return out
