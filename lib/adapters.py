"""What a fine-tuning mode trains and how it is stored: the 4-bit probe, the start checkpoint
loaded and prepared for a mode (LoRA on the decoder for qlora/lora, the whole decoder for full;
connector trainable, towers frozen), trainable-parameter counts, and adapter save/load.

Used by ``lib.train`` (notebook 03; ``lib.demo_stages`` through it),
``benchmarks/qlora_step.py`` and ``benchmarks/tvbench_throughput.py``. An adapter dir holds ``adapter_config.json``,
``adapter_model.safetensors`` (PEFT) and ``connector.safetensors``: what
``lib.longvu.load(adapter=)`` reads. Full mode saves a complete checkpoint in LongVU's layout.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file, save_file

from lib.config import TRAIN_MODES, TrainConfig
from lib.longvu import Flags, LongVU, load, save

log = logging.getLogger(__name__)

# fullmatch against the decoder's module names: only the LLM blocks' projections
MASTER_WEIGHTS = ("fp32", "load")
LORA_TARGET = r"model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"


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


def build_model(cfg: TrainConfig, device: torch.device, token_layout: str | None = None
                ) -> tuple[LongVU, str]:
    """Load the start checkpoint for `cfg.mode`, freeze, attach adapters. -> (model, quant str).

    token_layout (else `cfg.token_layout` if TrainConfig has it): see `lib.longvu.load`;
    "video" starts from an image-stage checkpoint in the paper's video layout, the absent
    `pos_embed_*` drawn from `cfg.seed`."""
    if cfg.mode not in TRAIN_MODES:
        raise ValueError(f"mode must be one of {TRAIN_MODES}, got {cfg.mode!r}")
    if cfg.master_weights not in MASTER_WEIGHTS:
        raise ValueError(f"master_weights must be one of {MASTER_WEIGHTS}, got "
                         f"{cfg.master_weights!r} (--master-weights)")
    if cfg.master_weights == "fp32" and cfg.mode == "qlora":
        raise ValueError("master_weights 'fp32' keeps the trained tensors in fp32; with "
                         "--mode qlora the decoder is 4-bit. Fix: --mode full or lora, or "
                         "--master-weights load")
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
    if cfg.master_weights == "fp32":  # trainable tensors fp32; the Trainer runs bf16 autocast
        dtype = torch.float32
    elif cfg.mode == "full" and dtype == torch.bfloat16:
        log.warning("!!! full fine-tuning with bf16 weights and no fp32 master copy: updates "
                    "smaller than bf16's resolution are lost (issue 11: 8%% of the entries moved "
                    "in 10 steps at lr 5e-6); pass --master-weights fp32 (--recipe paper does)")
    layout = token_layout if token_layout is not None else getattr(cfg, "token_layout", None)
    model = load(cfg.model, quantization="nf4" if quant == "nf4" else "none", dtype=dtype,
                 device=device, flags=flags, token_layout=layout, layout_seed=cfg.seed)
    if model.base_decoder.config._attn_implementation != cfg.attn_implementation:
        model.base_decoder.set_attn_implementation(cfg.attn_implementation)
    if cfg.master_weights == "fp32":
        # frozen towers in bf16 as under the fork's DeepSpeed bf16 engine (zero2.json), which
        # holds every module in bf16 and keeps fp32 master copies of the trained ones only
        model.towers.to(torch.bfloat16)
    return prepare_for_training(model, cfg, quant), quant


def prepare_for_training(model: LongVU, cfg: TrainConfig, quant: str = "none") -> LongVU:
    """Freeze, attach LoRA (qlora/lora) or unfreeze the decoder (full), connector trainable,
    non-reentrant activation checkpointing. Towers stay frozen in their load dtype."""
    model.requires_grad_(False)
    if cfg.mode == "full":
        model.decoder.requires_grad_(True)
    else:
        if cfg.init_adapter:  # continue from a saved adapter (and its connector)
            model.decoder = PeftModel.from_pretrained(model.decoder, cfg.init_adapter,
                                                      is_trainable=True)
            con = Path(cfg.init_adapter) / "connector.safetensors"
            if con.is_file():
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


def trainable_counts(model: LongVU) -> dict[str, int]:
    """Trainable parameters per group (lora / connector / decoder / other)."""
    out = {"lora": 0, "connector": 0, "decoder": 0, "other": 0}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        g = ("lora" if "lora_" in name else "connector" if name.startswith("connector.")
             else "decoder" if name.startswith("decoder.") else "other")
        out[g] += p.numel()
    return out


def save_adapter(model: LongVU, out_dir: str | os.PathLike, mode: str,
                 with_towers: bool = False) -> Path:
    """qlora/lora: PEFT adapter + connector.safetensors (what `load(adapter=)` reads);
    full: decoder + connector in LongVU's original layout (+ towers/ for a standalone copy)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if mode == "full":
        save(model, out, with_towers=with_towers)
        return out
    model.decoder.save_pretrained(str(out))
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.connector.state_dict().items()}
    save_file(state, str(out / "connector.safetensors"), metadata={"format": "pt"})
    return out


def write_random_lora(ckpt: str | os.PathLike, out_dir: str | os.PathLike, seed: int,
                      r: int = 64, alpha: int = 16, std: float = 0.1) -> Path:
    """A decoder-only LoRA adapter for ``ckpt`` saved as notebook 03 saves one (connector
    unchanged), its LoRA B drawn from N(0, std) so that it changes the decoder (PEFT starts B at
    zero). For tests and benchmarks of adapter evaluation (``lib.variants``)."""
    cfg = TrainConfig(model=str(ckpt), out=str(out_dir), mode="lora", lora_r=r, lora_alpha=alpha,
                      lora_dropout=0.0, seed=seed, train_connector=False,
                      activation_checkpointing=False)
    model, _ = build_model(cfg, torch.device("cpu"))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.decoder.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    return save_adapter(model, out_dir, "lora")


def load_weights(model: LongVU, ckpt: str | os.PathLike, mode: str) -> None:
    """Inverse of `save_adapter` onto an already-built training model (resume)."""
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
    res = set_peft_model_state_dict(model.decoder, load_file(str(d / "adapter_model.safetensors")))
    if getattr(res, "unexpected_keys", None):
        raise RuntimeError(f"{d}: unexpected adapter keys {res.unexpected_keys[:5]}")
    con = d / "connector.safetensors"
    if con.is_file():
        model.connector.load_state_dict(load_file(str(con)), strict=True)


def _connector_tops(model: LongVU) -> set[str]:
    return {n.split(".")[0] for n, _ in model.connector.named_parameters()}
