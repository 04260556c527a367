"""Tiny random LongVU checkpoints (both backbones, both stages) and a local tokenizer.

Geometries: "real" keeps LongVU's tower inputs (SigLIP 384 px, DINOv2 378 px with the 37 -> 27
position interpolation) and token grids, with tiny widths, for parity-style tests; "small" runs
the towers at 64 / 56 px (4x4 patches, still resized to LongVU's 24x24 maps) so a CPU can train
it in the demo profile. Budgets (`tokenizer_model_max_length`) are 1024 (video) / 2048 (image) so
that every pipeline branch is reachable with a few frames. The tokenizer is a byte-level BPE
built in code (no download) with the backbone's special tokens and chat template; the demo can
instead pass a vocabulary-sized BPE trained on its own text (`build_vocab_tokenizer`: every word
of the shapes-COCO language one token, anything else still spelled in bytes). Checkpoints
are written in the original layout and load through `lib.longvu.load`. Used by the tests and by
notebooks 03/04 in the demo profile.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from transformers import (Dinov2Config, Dinov2Model, LlamaConfig, LlamaForCausalLM,
                          PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM,
                          SiglipVisionConfig, SiglipVisionModel)

from .config import LongVUConfig
from .connector import Connector
from .loading import save
from .model import Flags, LongVU
from .towers import Towers

SPECIALS = {
    "qwen": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
    "llama": ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
              "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>"],
}
QWEN_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
# Shape of Meta's Llama-3.2-Instruct template (system block with the knowledge/date lines).
LLAMA_TEMPLATE = (
    "{{- bos_token }}{%- if not date_string is defined %}{%- set date_string = '26 Jul 2024' %}"
    "{%- endif %}{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content']|trim %}{%- set messages = messages[1:] %}"
    "{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\n\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\n' }}{{- 'Today Date: ' + date_string + '\n\n' }}"
    "{{- system_message }}{{- '<|eot_id|>' }}{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + "
    "message['content'] | trim + '<|eot_id|>' }}{%- endfor %}{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}")
GEOMETRY = {  # (siglip image, siglip patch, dino run size, dino image_size, dino patch)
    "real": (384, 14, 378, 518, 14),
    "small": (64, 16, 56, 98, 14),
    "demo": (64, 16, 56, 98, 14),
}
# Token grids: (tower map side, queries per frame by stage, low-res side). "real" and "small"
# keep LongVU's (24x24 maps; 144 video / 576 image queries; 8x8 low-res). "demo" shrinks them
# (8x8 maps, 4x4 queries, 2x2 low-res) so the embedded study trains and evaluates on a CPU.
GRIDS = {
    "real": (24, {"video": 144, "image": 576}, 8),
    "small": (24, {"video": 144, "image": 576}, 8),
    "demo": (8, {"video": 16, "image": 16}, 2),
}


def build_tokenizer(backbone: str) -> PreTrainedTokenizerFast:
    """Byte-level BPE over the 256 bytes (no merges) + the backbone's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    specials = SPECIALS[backbone]
    tok.add_special_tokens(specials)
    if backbone == "llama":  # like Llama 3: BOS is added automatically
        bos = specials[0]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tok.token_to_id(bos))])
        return PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token=bos, eos_token="<|eot_id|>",
            pad_token="<|reserved_special_token_0|>", chat_template=LLAMA_TEMPLATE,
            model_max_length=131072)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        chat_template=QWEN_TEMPLATE, model_max_length=32768)


def build_vocab_tokenizer(backbone: str, corpus: list[str]) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on ``corpus`` until every word in it is one token.

    Same pre-tokenizer, specials and chat template as `build_tokenizer`, so prompts, letters and
    "(" stay single tokens and text outside the corpus still tokenizes (as bytes). The trainer
    is deterministic for a given corpus order.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    base = build_tokenizer(backbone)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=100_000, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[])
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_special_tokens(SPECIALS[backbone])
    inner = base.backend_tokenizer
    tok.post_processor = inner.post_processor
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=base.bos_token, eos_token=base.eos_token,
        pad_token=base.pad_token, chat_template=base.chat_template,
        model_max_length=base.model_max_length)


def _llm_config(backbone: str, tokenizer, width: int = 64, layers: int = 2
                ) -> Qwen2Config | LlamaConfig:
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIALS[backbone]}
    # 320 > len(tokenizer): like Qwen2-7B (152064 rows vs 151646 tokens); a larger vocabulary
    # tokenizer gets its size rounded up to 64 the same way
    qwen_rows = max(320, -(-len(tokenizer) // 64) * 64 + 64 * (len(tokenizer) > 320))
    common = dict(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
                  num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
                  use_cache=False)
    if backbone == "qwen":
        return Qwen2Config(vocab_size=qwen_rows, max_position_embeddings=32768,
                           rope_parameters={"rope_type": "default", "rope_theta": 1e6},
                           tie_word_embeddings=False,
                           bos_token_id=ids["<|endoftext|>"], sliding_window=None,
                           eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]], **common)
    return LlamaConfig(vocab_size=len(tokenizer), head_dim=16, max_position_embeddings=131072,
                       tie_word_embeddings=True,
                       rope_parameters={"factor": 32.0, "high_freq_factor": 4.0,
                                        "low_freq_factor": 1.0,
                                        "original_max_position_embeddings": 8192,
                                        "rope_type": "llama3", "rope_theta": 5e5},
                       bos_token_id=ids["<|begin_of_text|>"],
                       eos_token_id=[ids["<|end_of_text|>"], ids["<|eom_id|>"], ids["<|eot_id|>"]],
                       **common)


def tiny_config(backbone: str, stage: str, geometry: str = "real", width: int = 64
                ) -> LongVUConfig:
    if backbone not in ("qwen", "llama") or stage not in ("video", "image"):
        raise ValueError(f"backbone qwen|llama and stage video|image, got {backbone}, {stage}")
    if geometry not in GEOMETRY:
        raise ValueError(f"geometry must be one of {sorted(GEOMETRY)}, got {geometry!r}")
    sig_px, _, dino_px, _, _ = GEOMETRY[geometry]
    side, queries, low = GRIDS[geometry]
    q = queries[stage]
    return LongVUConfig(
        backbone=backbone, hidden_size=width, vision_hidden_size=64, query_num_list=[q],
        image_token_len=q, connector_depth=3, highres=stage == "video", lowres_token=low,
        mm_vision_tower_aux_token_len_list=[side * side, side * side],
        tokenizer_model_max_length=1024 if stage == "video" else 2048,
        mm_vision_tower_aux_list=[f"siglip/CLIP-ViT-SO400M-14-{sig_px}",
                                  f"facebook/dinov2-giant-res{dino_px}"],
        extra={"tokenizer_padding_side": "right", "image_aspect_ratio": "pad",
               "mm_use_im_start_end": False, "mm_use_im_patch_token": False,
               "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch",
               "is_image_newline": True, "connect_layer": 2, "image_position": 91})


@torch.no_grad()
def randomize(module: nn.Module, gen: torch.Generator) -> None:
    """Seeded O(1)-scale init (the fixture recipe): Linear/Conv std 1/sqrt(fan_in), norm scales
    1+0.1N, biases 0.1N, token embeddings 0.1N, `pos_embed_*` N(0,1), other raw parameters
    N/sqrt(dim)."""
    def draw(p):
        return torch.randn(p.shape, generator=gen).to(p.dtype)

    for mod in module.modules():
        own = dict(mod.named_parameters(recurse=False))
        kind = type(mod).__name__
        for name, p in own.items():
            if name == "bias":
                p.copy_(0.1 * draw(p))
            elif "Norm" in kind:
                p.copy_(1 + 0.1 * draw(p))
            elif isinstance(mod, nn.Embedding):
                p.copy_(0.1 * draw(p))
            elif isinstance(mod, (nn.Linear, nn.Conv2d)):
                p.copy_(draw(p) / math.sqrt(p[0].numel()))
            elif name.startswith("pos_embed"):
                p.copy_(draw(p))
            elif name.startswith("lambda"):  # DINOv2 layer scale
                p.copy_(1 + 0.1 * draw(p))
            else:
                p.copy_(draw(p) / math.sqrt(p.shape[-1]))


def build_tiny(backbone: str = "qwen", stage: str = "video", geometry: str = "real",
               seed: int = 0, flags: Flags | None = None, tokenizer=None, width: int = 64,
               layers: int = 2) -> LongVU:
    """A tiny random LongVU in memory (float32, CPU); decoder ``width`` x ``layers``, with
    ``tokenizer`` (default: the byte-level one)."""
    gen = torch.Generator().manual_seed(seed)
    cfg = tiny_config(backbone, stage, geometry, width)
    tokenizer = tokenizer if tokenizer is not None else build_tokenizer(backbone)
    llm_cfg = _llm_config(backbone, tokenizer, width, layers)
    dec_cls = Qwen2ForCausalLM if backbone == "qwen" else LlamaForCausalLM
    decoder = dec_cls(llm_cfg)
    randomize(decoder, gen)
    decoder.generation_config.eos_token_id = llm_cfg.eos_token_id
    decoder.eval()
    sig_px, sig_patch, dino_px, dino_img, dino_patch = GEOMETRY[geometry]
    siglip = SiglipVisionModel(SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=sig_px, patch_size=sig_patch, layer_norm_eps=1e-6,
        hidden_act="gelu_pytorch_tanh"))
    dino = Dinov2Model(Dinov2Config(
        hidden_size=24, num_hidden_layers=2, num_attention_heads=4, image_size=dino_img,
        patch_size=dino_patch, use_swiglu_ffn=True, layer_norm_eps=1e-6))
    randomize(siglip, gen)
    randomize(dino, gen)
    with torch.no_grad():  # O(1) position tables, as in the fixture towers
        dino.embeddings.position_embeddings.mul_(0.5)
    flags = flags or Flags()
    towers = Towers(siglip, dino, legacy_dino_interp=flags.legacy_dino_interp,
                    sizes=(sig_px, dino_px), token_side=cfg.token_side)
    connector = Connector(towers.widths, cfg.vision_hidden_size, cfg.hidden_size,
                          cfg.window_sizes(), cfg.connector_depth)
    randomize(connector, gen)
    return LongVU(decoder, connector, towers, cfg, tokenizer, None, flags).eval()


def write_tiny(out: str | Path, backbone: str = "qwen", stage: str = "video",
               geometry: str = "real", seed: int = 0, **kw) -> Path:
    """Write a complete tiny checkpoint (original layout + towers/ + tokenizer) to `out`;
    ``kw`` as `build_tiny` (tokenizer, width, layers)."""
    return save(build_tiny(backbone, stage, geometry, seed, **kw), out)
