"""LongVU forward benchmark: parameter counts, weight memory, prefill time and peak memory.

Full-size architectures (Qwen2-7B and Llama-3.2-3B LongVU video stage, SigLIP-so400m, DINOv2-
giant) are built on the `meta` device from their known configs (random weights, no download) for
parameter counts and weight memory in bf16 / NF4. Prefill (towers + connector + token pipeline +
decoder forward over the whole prompt) is timed for a 16- and a 64-frame video: on CPU with the
tiny "real" geometry (tiny widths, real token grids, real 8192 budget); on CUDA with full-size
random bf16 weights. Figures go to docs/longvu.md ("Measured"). Run:

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/longvu_forward.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import numpy as np
import torch
from transformers import (Dinov2Config, Dinov2Model, LlamaConfig, LlamaForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel)

from lib.longvu import prompts
from lib.longvu.config import LongVUConfig
from lib.longvu.connector import Connector
from lib.longvu.model import LongVU
from lib.longvu.tiny import build_tiny, tiny_config
from lib.longvu.towers import Towers

# Base-model dims (Qwen/Qwen2-7B-Instruct, meta-llama/Llama-3.2-3B-Instruct hub configs).
LLMS = {
    "qwen2_7b": (Qwen2ForCausalLM, dict(
        vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
        num_attention_heads=28, num_key_value_heads=4, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6},
        max_position_embeddings=32768), Qwen2Config),
    "llama3_2_3b": (LlamaForCausalLM, dict(
        vocab_size=128256, hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
        num_attention_heads=24, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True,
        max_position_embeddings=131072,
        rope_parameters={"rope_type": "llama3", "rope_theta": 5e5, "factor": 32.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192}), LlamaConfig),
}
SIGLIP_SO400M = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                     num_attention_heads=16, image_size=384, patch_size=14)
DINOV2_GIANT = dict(hidden_size=1536, num_hidden_layers=40, num_attention_heads=24, mlp_ratio=4,
                    use_swiglu_ffn=True, image_size=518, patch_size=14)
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4-bit codes + 8-bit absmax/64 + fp32 per 256 absmax
GB = 1e9


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def full_size(name: str, stage: str = "video", device: str = "meta",
              dtype: torch.dtype = torch.bfloat16) -> LongVU:
    """A full-size LongVU with random weights (meta: no allocation)."""
    cls, kw, cfg_cls = LLMS[name]
    llm_cfg = cfg_cls(**kw)
    q = 144 if stage == "video" else 576
    cfg = LongVUConfig(backbone="qwen" if name.startswith("qwen") else "llama",
                       hidden_size=kw["hidden_size"], query_num_list=[q], image_token_len=q,
                       highres=stage == "video")
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            decoder = cls(llm_cfg)
            towers = Towers(SiglipVisionModel(SiglipVisionConfig(**SIGLIP_SO400M)),
                            Dinov2Model(Dinov2Config(**DINOV2_GIANT)))
            connector = Connector(towers.widths, cfg.vision_hidden_size, cfg.hidden_size,
                                  cfg.window_sizes(), cfg.connector_depth)
    finally:
        torch.set_default_dtype(old)
    return LongVU(decoder, connector, towers, cfg).eval()


def counts(model: LongVU) -> dict:
    dec = model.decoder
    tied = dec.config.tie_word_embeddings
    layers = n_params(dec.model.layers)
    quant = sum(m.weight.numel() for m in dec.model.layers.modules()
                if isinstance(m, torch.nn.Linear))
    dec_total = n_params(dec)  # parameters() de-duplicates a tied head
    con = model.connector
    c = {
        "decoder_total": dec_total, "decoder_layers": layers,
        "embed_tokens": dec.model.embed_tokens.weight.numel(),
        "lm_head": 0 if tied else dec.lm_head.weight.numel(),
        "siglip_vision": n_params(model.towers.siglip),
        "siglip_map_head_unused": n_params(model.towers.siglip.head),
        "dinov2_giant": n_params(model.towers.dino),
        "connector_total": n_params(con),
        "aux_mlps": n_params(con.mm_projector_aux_0) + n_params(con.mm_projector_aux_1),
        "sva_sampler": n_params(con.vision_sampler_0),
        "mm_projector": n_params(con.mm_projector),
    }
    rest = dec_total - quant  # embeddings, head, norms, biases stay bf16 under NF4
    towers = c["siglip_vision"] + c["dinov2_giant"]
    c["weights_GB_bf16"] = {"decoder": dec_total * 2 / GB, "towers": towers * 2 / GB,
                            "connector": c["connector_total"] * 2 / GB}
    c["weights_GB_nf4_decoder"] = (quant * NF4_BYTES + rest * 2) / GB
    c["total_GB_bf16"] = (dec_total + towers + c["connector_total"]) * 2 / GB
    c["total_GB_nf4_decoder"] = (c["weights_GB_nf4_decoder"]
                                 + (towers + c["connector_total"]) * 2 / GB)
    return c


def video(n: int, seed: int = 0) -> np.ndarray:
    """n frames of a slowly moving synthetic scene, 240x320."""
    rng = np.random.RandomState(seed)
    base = rng.rand(240, 320, 3) * 255
    return np.stack([np.roll(base, 4 * i, axis=1) for i in range(n)]).astype(np.uint8)


def prefill(model: LongVU, frames: np.ndarray, ids: list[int], sync) -> dict:
    trace: dict = {}
    t0 = time.perf_counter()
    with torch.no_grad():
        visual = model.preprocess(frames)
        t1 = time.perf_counter()
        embeds, _ = model.embed_one(ids, visual, trace)
        sync()
        t2 = time.perf_counter()
        model.base_decoder.model(inputs_embeds=embeds[None])
        sync()
        t3 = time.perf_counter()
    return {"frames": len(frames), "kept": len(trace["kept_frame_indices"]),
            "regime": trace["regime"], "seq_len": len(embeds),
            "preprocess_s": t1 - t0, "towers_connector_pipeline_s": t2 - t1,
            "decoder_prefill_s": t3 - t2, "total_s": t3 - t0}


def run_cpu(frames_list: list[int]) -> list[dict]:
    out = []
    for backbone in ("llama", "qwen"):
        model = build_tiny(backbone, "video", "real", seed=0)
        model.config.tokenizer_model_max_length = 8192  # the released budget
        ids = model.tokenize(model.prompt(prompts.mc_user_text("What happens?", ["a", "b"])))
        prefill(model, video(2), ids, lambda: None)  # warm-up
        for n in frames_list:
            r = prefill(model, video(n), ids, lambda: None)
            # CPU has no per-run allocator peak; max RSS of the process so far (monotonic)
            r["process_peak_rss_MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            r["model"] = f"tiny-{backbone}-video (real geometry)"
            out.append(r)
    return out


def run_cuda(frames_list: list[int]) -> list[dict]:
    out = []
    for name in ("llama3_2_3b", "qwen2_7b"):
        model = full_size(name, device="cuda")
        for p in model.parameters():  # O(1) random weights instead of torch.empty garbage
            torch.nn.init.normal_(p, std=0.02)
        model.towers.eval()
        ids = [1] * 20 + [prompts.IMAGE_TOKEN_INDEX] + [1] * 60
        prefill(model, video(2), ids, torch.cuda.synchronize)
        for n in frames_list:
            torch.cuda.reset_peak_memory_stats()
            r = prefill(model, video(n), ids, torch.cuda.synchronize)
            r["peak_GB"] = torch.cuda.max_memory_allocated() / GB
            r["model"] = f"{name} video stage, random bf16"
            out.append(r)
        del model
        torch.cuda.empty_cache()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    res = {"device": torch.cuda.get_device_name() if cuda else f"CPU ({platform.processor()}, "
           f"{torch.get_num_threads()} threads)", "torch": torch.__version__, "params": {}}
    for name in LLMS:
        res["params"][name] = counts(full_size(name))
    print(f"device: {res['device']}")
    for name, c in res["params"].items():
        print(f"\n{name} LongVU (video stage), parameters:")
        for k, v in c.items():
            if isinstance(v, dict):
                print(f"  {k:28s} " + ", ".join(f"{a} {b:.2f}" for a, b in v.items()))
            elif isinstance(v, float):
                print(f"  {k:28s} {v:.2f}")
            else:
                print(f"  {k:28s} {v:,}")
    if cuda:
        print("\nprefill: full-size random bf16 weights on CUDA")
        res["prefill"] = run_cuda(args.frames)
    else:
        print("\nprefill: no GPU -> tiny 'real'-geometry models on CPU (tiny widths, real token "
              "grids, 8192 budget); times are NOT representative of the full-size models")
        res["prefill"] = run_cpu(args.frames)
    for r in res["prefill"]:
        mem = (f"peak {r['peak_GB']:.2f} GB" if "peak_GB" in r
               else f"process peak RSS {r['process_peak_rss_MB']:.0f} MB")
        print(f"  {r['model']:38s} {r['frames']:3d} frames -> kept {r['kept']:3d}, "
              f"{r['regime']:24s} seq {r['seq_len']:5d}: preprocess {r['preprocess_s']:.2f} s, "
              f"towers+connector {r['towers_connector_pipeline_s']:.2f} s, decoder "
              f"{r['decoder_prefill_s']:.3f} s, total {r['total_s']:.2f} s, {mem}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
