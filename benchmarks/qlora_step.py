"""Peak memory and samples/s of LongVU fine-tuning per mode and knob: QLoRA (NF4), 16-bit LoRA,
full fine-tuning with fp32 master weights (the paper recipe), each with SDPA or eager attention
and activation checkpointing on or off, against the baseline (SDPA + checkpointing) of the same
run.

Builds LongVU with random weights in memory (no download; memory and speed depend on shapes,
not on weight values): on CUDA the real sizes (Qwen2-7B / Llama3.2-3B decoder, SigLIP-so400m,
DINOv2-giant, the SVA connector, video-stage geometry: 144 tokens per frame, 8192-token budget);
on CPU the tiny "small" geometry of lib.longvu.tiny, whose numbers only show that the path runs.
Each cell trains S=4 scenes x F frames (F in 5, 10, 20) with lib.train's own preparation
(lib.adapters: LoRA r=64 on the decoder's attention+MLP projections, trainable connector,
non-reentrant activation checkpointing; loss at answer rows only) and the optimizer lib.train
uses (8-bit paged AdamW on CUDA, AdamW on CPU; ``full``: decoder + connector in fp32 under
bf16 autocast with fp32 AdamW, as ``--recipe paper``), micro-batch 1 (``mb4``: 4 samples in one
right-padded forward, as ``--micro-batch 4``). Reported: peak memory
(CUDA max allocated; CPU max RSS, which only grows, so it is meaningless per row on CPU),
samples/s, decoder tokens/s, the speed against the baseline variant of the same cell and the
implied time of the paper's 200k samples. QLoRA's memory figures need CUDA (bitsandbytes' CPU
path runs, but its NF4 kernels and 8-bit paged optimizer are CUDA ones).

Usage: ``python benchmarks/qlora_step.py [--size tiny|full] [--backbones qwen,llama]
[--F 5,10,20] [--modes qlora,lora,full] [--variants base,eager,no-ckpt,mb4] [--steps 3]``.
Last line: ``qwen F=20 qlora peak X GiB``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib import adapters, train  # noqa: E402
from lib.config import TrainConfig  # noqa: E402
from lib.longvu.config import LongVUConfig  # noqa: E402
from lib.longvu.connector import Connector  # noqa: E402
from lib.longvu.model import LongVU  # noqa: E402
from lib.longvu.towers import Towers  # noqa: E402

PAPER_SAMPLES = train.PAPER_SAMPLES
GOAL_GIB = 20.0  # Qwen2-7B at F=20 under QLoRA should fit a 24 GB card
PROMPT_TOKENS, ANSWER_TOKENS = 250, 60  # an R1 question with 4 options / its answer (real BPE)


def llm_config(backbone: str):
    from transformers import LlamaConfig, Qwen2Config
    if backbone == "qwen":  # Qwen2-7B
        return Qwen2Config(vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                           num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                           rms_norm_eps=1e-6, max_position_embeddings=32768,
                           tie_word_embeddings=False, use_cache=False,
                           rope_parameters={"rope_type": "default", "rope_theta": 1e6})
    return LlamaConfig(vocab_size=128256, hidden_size=3072, intermediate_size=8192,  # 3.2-3B
                       num_hidden_layers=28, num_attention_heads=24, num_key_value_heads=8,
                       head_dim=128, rms_norm_eps=1e-5, max_position_embeddings=131072,
                       tie_word_embeddings=True, use_cache=False,
                       rope_parameters={"rope_type": "llama3", "rope_theta": 5e5, "factor": 32.0,
                                        "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                        "original_max_position_embeddings": 8192})


def build_full(backbone: str, device: torch.device) -> LongVU:
    """Real-size random LongVU (video stage) in bf16 on `device`."""
    from transformers import (Dinov2Config, Dinov2Model, LlamaForCausalLM, Qwen2ForCausalLM,
                              SiglipVisionConfig, SiglipVisionModel)
    lcfg = llm_config(backbone)
    cls = Qwen2ForCausalLM if backbone == "qwen" else LlamaForCausalLM
    with device:
        decoder = cls._from_config(lcfg, dtype=torch.bfloat16)
        siglip = SiglipVisionModel._from_config(SiglipVisionConfig(
            hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
            num_attention_heads=16, image_size=384, patch_size=14, layer_norm_eps=1e-6,
            hidden_act="gelu_pytorch_tanh"), dtype=torch.bfloat16)
        dino = Dinov2Model._from_config(Dinov2Config(
            hidden_size=1536, num_hidden_layers=40, num_attention_heads=24, image_size=518,
            patch_size=14, use_swiglu_ffn=True, layer_norm_eps=1e-6), dtype=torch.bfloat16)
    cfg = LongVUConfig(backbone=backbone, hidden_size=lcfg.hidden_size, query_num_list=[144],
                       image_token_len=144, highres=True, tokenizer_model_max_length=8192,
                       extra={"image_aspect_ratio": "pad", "mm_vision_select_layer": -2,
                              "is_image_newline": True, "connect_layer": 2})
    towers = Towers(siglip, dino, sizes=(384, 378))
    connector = Connector(towers.widths, cfg.vision_hidden_size, cfg.hidden_size,
                          cfg.window_sizes(), cfg.connector_depth).to(device, torch.bfloat16)
    return LongVU(decoder.eval(), connector, towers, cfg, None, None).eval()


def build_tiny(backbone: str, device: torch.device, dtype: torch.dtype) -> LongVU:
    from lib.longvu.tiny import build_tiny as tiny
    return tiny(backbone, "video", "small").to(device, dtype)


def quantize_nf4_(model: LongVU, device: torch.device) -> None:
    """Swap the decoder layers' nn.Linear for bitsandbytes NF4 (double quant, bf16 compute),
    as lib.longvu.load(quantization="nf4") does; lm_head, connector and towers stay 16-bit."""
    import bitsandbytes as bnb
    for mod in list(model.base_decoder.model.layers.modules()):
        for name, child in list(mod.named_children()):
            if type(child) is not nn.Linear:
                continue
            q = bnb.nn.Linear4bit(child.in_features, child.out_features,
                                  bias=child.bias is not None, compute_dtype=torch.bfloat16,
                                  compress_statistics=True, quant_type="nf4", device="meta")
            q.weight = bnb.nn.Params4bit(child.weight.data.to(torch.bfloat16),
                                         requires_grad=False, quant_type="nf4",
                                         compress_statistics=True)
            if child.bias is not None:
                q.bias = nn.Parameter(child.bias.data, requires_grad=False)
            setattr(mod, name, q.to(device))  # .to() quantises
            del child
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def sample(model: LongVU, s: int, f: int, full: bool, rng: np.random.Generator):
    """A pseudo-video-shaped sample: s scenes, each one image repeated f times with noise."""
    h, w = (480, 640) if full else (96, 128)
    scenes = rng.integers(0, 256, (s, 1, h, w, 3), dtype=np.uint8)
    frames = np.repeat(scenes, f, axis=1).reshape(s * f, h, w, 3)
    frames = np.clip(frames + rng.integers(-6, 7, frames.shape), 0, 255).astype(np.uint8)
    vocab = model.base_decoder.config.vocab_size if full else 200
    text = rng.integers(10, vocab, PROMPT_TOKENS + ANSWER_TOKENS).tolist()
    ids = text[:20] + [-200] + text[20:]
    labels = [-100] * (len(ids) - ANSWER_TOKENS) + ids[-ANSWER_TOKENS:]
    return model.preprocess(frames), ids, labels


def peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


# variant -> (attention implementation, activation checkpointing, samples per forward); "base" is
# lib.train's default; "mb4" is --micro-batch 4 (one right-padded forward, as LongVUTrainer runs
# a micro-batch; its samples have equal lengths here, which --group-by-length approaches)
VARIANTS = {"base": ("sdpa", True, 1), "eager": ("eager", True, 1), "no-ckpt": ("sdpa", False, 1),
            "mb4": ("sdpa", True, 4)}


def cell(backbone: str, mode: str, fs: list[int], full: bool, device: torch.device,
         steps: int, variant: str = "base") -> list[dict]:
    cuda = device.type == "cuda"
    attn, ckpt, mb = VARIANTS[variant]
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    dtype = torch.bfloat16 if (cuda or mode == "qlora") else torch.float32
    model = build_full(backbone, device) if full else build_tiny(backbone, device, dtype)
    if mode == "qlora":
        quantize_nf4_(model, device)
    if mode == "full":  # the paper recipe: fp32 master weights, frozen towers in bf16
        model.base_decoder.to(torch.float32)
        model.connector.to(torch.float32)
        model.towers.to(torch.bfloat16)
    model.base_decoder.set_attn_implementation(attn)
    cfg = TrainConfig(model="", out="", mode=mode, lora_r=64, lora_alpha=16,
                      activation_checkpointing=ckpt, attn_implementation=attn)
    adapters.prepare_for_training(model, cfg, "nf4" if mode == "qlora" else "none")
    params = [p for p in model.parameters() if p.requires_grad]
    if cuda and mode != "full":
        import bitsandbytes as bnb
        opt = bnb.optim.PagedAdamW8bit(params, lr=1e-4)
    else:
        opt = torch.optim.AdamW(params, lr=1e-4)
    autocast = cuda or mode == "full"
    tokens = []
    model.base_decoder.model.register_forward_pre_hook(
        lambda m, a, kw: tokens.append(int(kw["attention_mask"].sum())), with_kwargs=True)
    weights = peak_bytes(device)
    rng = np.random.default_rng(0)
    rows = []
    for f in fs:
        times = []
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        for i in range(steps + 1):  # the first step warms up (allocator, kernels)
            batch = [sample(model, 4, f, full, rng) for _ in range(mb)]
            if cuda:
                torch.cuda.synchronize(device)
            t = time.perf_counter()
            model.train()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                visuals, ids, labels = map(list, zip(*batch))
                out = model(visuals, ids, labels)
            out.loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize(device)
            if i:
                times.append(time.perf_counter() - t)
        sec = float(np.median(times)) / mb  # per sample
        rows.append({"backbone": backbone, "mode": mode, "variant": variant, "attn": attn,
                     "checkpointing": ckpt, "micro_batch": mb, "S": 4, "F": f, "frames": 4 * f,
                     "decoder_tokens": tokens[-1] // mb, "s_per_sample": sec,
                     "samples_per_s": 1.0 / sec,
                     "tokens_per_s": tokens[-1] / mb / sec, "peak_gib": peak_bytes(device) / 2**30,
                     "weights_gib": weights / 2**30,
                     "paper_200k_h": sec * PAPER_SAMPLES / 3600,
                     "geometry": "full" if full else "tiny-small"})
        print(json.dumps(rows[-1]), flush=True)
    del model, opt, params
    gc.collect()
    return rows


def memory_plan(gpus: list[int]) -> list[str]:
    """Model-state memory per GPU for full fine-tuning, from the real-size parameter counts
    (built on the meta device, no memory used): DeepSpeed ZeRO-2 keeps the bf16 weights
    replicated (2 bytes/param, frozen towers included) and shards the bf16 gradients
    (2 bytes/param) and the fp32 master weights + Adam moments (12 bytes/param) over the GPUs;
    offload moves the last to CPU; plain DDP with fp32 master weights replicates 16 bytes per
    trained parameter. Activations come on top (not computed)."""
    lines = []
    for backbone in ("llama", "qwen"):
        m = build_full(backbone, torch.device("meta"))
        trained = sum(p.numel() for p in m.base_decoder.parameters()) + sum(
            p.numel() for p in m.connector.parameters())
        frozen = sum(p.numel() for p in m.towers.parameters())
        gib = 2**30
        for g in gpus:
            w, grads, opt = 2 * (trained + frozen), 2 * trained / g, 12 * trained / g
            lines.append(f"{backbone} {trained / 1e9:.2f}B trained + {frozen / 1e9:.2f}B frozen,"
                         f" {g} GPUs: ZeRO-2 {(w + grads + opt) / gib:.1f} GiB/GPU (weights "
                         f"{w / gib:.1f}, grads {grads / gib:.1f}, optimizer {opt / gib:.1f}); "
                         f"with optimizer offload {(w + grads) / gib:.1f} GiB/GPU")
        lines.append(f"{backbone}: DDP with fp32 master weights, no ZeRO: "
                     f"{(16 * trained + 2 * frozen) / gib:.1f} GiB/GPU")
    return lines


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=["tiny", "full"], default="full" if cuda else "tiny")
    ap.add_argument("--backbones", default="qwen,llama")
    ap.add_argument("--F", default="5,10,20")
    ap.add_argument("--modes", default="qlora,lora,full")
    ap.add_argument("--variants", default="base,eager,no-ckpt,mb4",
                    help=f"comma list of {sorted(VARIANTS)}; base first (the others are "
                         "compared with it)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--memory-plan", default=None, metavar="GPUS",
                    help="print full fine-tuning model-state memory per GPU for these GPU "
                         "counts (e.g. 8,32) and exit")
    a = ap.parse_args(argv)
    if a.memory_plan:
        print("\n".join(memory_plan([int(g) for g in a.memory_plan.split(",")])))
        return 0
    device = torch.device("cuda" if cuda else "cpu")
    full = a.size == "full"
    where = torch.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores)"
    print(f"device: {where}; geometry: {a.size}" + ("" if full else
          " (tiny random LongVU: shows the path runs; the figures are NOT full-size ones)"))
    fs = [int(x) for x in a.F.split(",")]
    variants = a.variants.split(",")
    if variants[0] != "base" or not set(variants) <= set(VARIANTS):
        ap.error(f"--variants: base first, then any of {sorted(VARIANTS)}")
    if not cuda and "qlora" in a.modes:
        print("note: qlora on CPU runs bitsandbytes' CPU path; its speed and memory say nothing "
              "about CUDA, where its NF4 kernels and paged 8-bit AdamW run")
    rows = [r for b in a.backbones.split(",") for m in a.modes.split(",") for v in variants
            for r in cell(b, m, fs, full, device, a.steps, v)]
    base = {(r["backbone"], r["mode"], r["F"]): r["samples_per_s"] for r in rows
            if r["variant"] == "base"}
    print(f"\n{'backbone':8} {'mode':5} {'variant':8} {'F':>3} {'tokens':>6} {'samples/s':>9} "
          f"{'vs base':>7} {'tok/s':>8} {'peak GiB':>9} {'200k h':>8}")
    for r in rows:
        ratio = r["samples_per_s"] / base[(r["backbone"], r["mode"], r["F"])]
        print(f"{r['backbone']:8} {r['mode']:5} {r['variant']:8} {r['F']:>3} "
              f"{r['decoder_tokens']:>6} {r['samples_per_s']:>9.3f} {ratio:>6.2f}x "
              f"{r['tokens_per_s']:>8.0f} {r['peak_gib']:>9.2f} {r['paper_200k_h']:>8.1f}")
    pick = [r for r in rows if r["mode"] == "qlora" and r["F"] == max(fs)]
    if pick:
        r = next((x for x in pick if x["backbone"] == "qwen"), pick[0])
        goal = f" (goal <= {GOAL_GIB:.0f} GiB)" if full and r["backbone"] == "qwen" else ""
        print(f"{r['backbone']} F={r['F']} qlora peak {r['peak_gib']:.2f} GiB{goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
