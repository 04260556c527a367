"""Loading LongVU checkpoints: tiny checkpoints via the CLI, nf4/none, loud errors, adapters."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from longvu_helpers import REPO, tiny_ckpt

FRAMES = (np.random.RandomState(0).rand(3, 40, 56, 3) * 255).astype(np.uint8)


def _copy(src, dst):
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _rewrite(ckpt, fn):
    """Apply fn(dict of tensors) -> dict to the checkpoint's model.safetensors."""
    path = ckpt / "model.safetensors"
    with safe_open(str(path), "pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    save_file(fn(state), str(path), metadata={"format": "pt"})


def test_tiny_cli_writes_original_layout(tmp_path):
    out = tmp_path / "tiny"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "lib.longvu", "tiny", "--backbone", "llama",
                        "--stage", "image", "--geometry", "small", "--seed", "3", "--out",
                        str(out)], cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "cambrian_llama" and cfg["image_token_len"] == 576
    assert cfg["architectures"] == ["CambrianLlamaForCausalLM"] and cfg["highres"] is False
    for f in ("model.safetensors", "tokenizer.json", "towers/siglip/config.json",
              "towers/dinov2/model.safetensors"):
        assert (out / f).is_file(), f
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "lm_head.weight" in keys and "model.vision_query" in keys
    assert "model.vision_sampler_0.layers.2.cross_attn.k_proj_1.1.weight" in keys
    assert not any("pos_embed" in k for k in keys)  # image stage: 1x1 windows
    from lib.longvu import load
    model = load(out, quantization="nf4")  # the CLI's output is a model path for every module
    assert model.template == "llama3" and model.towers.sizes == (64, 56)
    assert isinstance(model.generate(FRAMES, model.prompt("Hi?"), max_new_tokens=2), str)


@pytest.mark.parametrize("quantization", ["none", "nf4"])
def test_load_tiny_and_generate(quantization):
    from lib.longvu import load
    from lib.longvu.prompts import mc_user_text
    model = load(tiny_ckpt("qwen", "video"), quantization=quantization)
    layer = model.decoder.model.layers[0].self_attn.q_proj
    assert (type(layer).__name__ == "Linear4bit") == (quantization == "nf4")
    assert type(model.decoder.lm_head).__name__ == "Linear"
    assert not any(type(m).__name__ == "Linear4bit"
                   for m in [*model.connector.modules(), *model.towers.modules()])
    assert model.template == "qwen" and model.tokenizer is not None
    prompt = model.prompt(mc_user_text("What happens?", ["a", "b", "c"]))
    text = model.generate(FRAMES, prompt, max_new_tokens=3)
    assert isinstance(text, str)
    logits = model.next_token_logits(FRAMES, prompt)
    assert logits.shape == (model.decoder.config.vocab_size,)
    # Qwen-like vocab: ids past the tokenizer cannot be produced (the original resizes the head)
    assert torch.isinf(logits[len(model.tokenizer):]).all()
    assert torch.isfinite(logits[:len(model.tokenizer)]).all()


def test_save_load_round_trip_is_exact(tmp_path):
    from lib.longvu import load, save
    from lib.longvu.tiny import build_tiny
    model = build_tiny("llama", "video", "real", seed=1)
    save(model, tmp_path / "ckpt")
    again = load(tmp_path / "ckpt")
    prompt = model.prompt("Describe.")
    a = model.next_token_logits(FRAMES, prompt)
    b = again.next_token_logits(FRAMES, prompt)
    assert torch.equal(a, b)
    assert again.decoder.lm_head.weight.data_ptr() == \
        again.decoder.model.embed_tokens.weight.data_ptr()  # tied, as Llama 3.2


def test_renamed_key_fails_naming_it(tmp_path):
    from lib.longvu import LongVULoadError, load
    ckpt = _copy(tiny_ckpt("qwen", "video"), tmp_path / "c")
    key = "model.vision_sampler_0.layers.1.pos_embed_0"

    def rename(s):
        s["model.vision_sampler_0.layers.1.pos_embedding_0"] = s.pop(key)
        return s
    _rewrite(ckpt, rename)
    with pytest.raises(LongVULoadError) as e:
        load(ckpt)
    msg = str(e.value)
    assert "missing keys (1)" in msg and key in msg
    assert "unexpected keys (1)" in msg and "pos_embedding_0" in msg


def test_wrong_shape_fails_naming_it(tmp_path):
    from lib.longvu import LongVULoadError, load
    ckpt = _copy(tiny_ckpt("qwen", "video"), tmp_path / "c")

    def shrink(s):
        s["model.layers.0.mlp.up_proj.weight"] = s["model.layers.0.mlp.up_proj.weight"][:100]
        return s
    _rewrite(ckpt, shrink)
    with pytest.raises(LongVULoadError) as e:
        load(ckpt)
    assert "model.layers.0.mlp.up_proj.weight: checkpoint (100, 64) vs expected (128, 64)" \
        in str(e.value)


def test_stage_config_mismatch_is_caught(tmp_path):
    """An image-stage checkpoint with a video-stage config lacks the pos_embed tensors."""
    from lib.longvu import LongVULoadError, load
    ckpt = _copy(tiny_ckpt("qwen", "image"), tmp_path / "c")
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg.update(image_token_len=144, query_num_list=[144], highres=True)
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(LongVULoadError, match="pos_embed_0"):
        load(ckpt)


def test_absent_files_say_what_and_how(tmp_path):
    from lib.longvu import load
    with pytest.raises(FileNotFoundError, match="hf download Vision-CAIR/LongVU_Qwen2_7B"):
        load("Vision-CAIR/LongVU_Qwen2_7B")
    ckpt = _copy(tiny_ckpt("qwen", "video"), tmp_path / "c")
    (ckpt / "model.safetensors").rename(ckpt / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="safetensors only"):
        load(ckpt)
    ckpt2 = _copy(tiny_ckpt("qwen", "video"), tmp_path / "d")
    with pytest.raises(FileNotFoundError, match="hf download google/siglip-so400m-patch14-384"):
        load(ckpt2, towers={"siglip": "google/siglip-so400m-patch14-384",
                            "dinov2": str(ckpt2 / "towers" / "dinov2")})


def test_adapter_and_connector_weights_load(tmp_path):
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import save_file as save_st

    from lib.longvu import load
    ckpt = tiny_ckpt("qwen", "video")
    model = load(ckpt)
    cfg = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                     target_modules=r"model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj")
    model.decoder = get_peft_model(model.decoder, cfg)
    with torch.no_grad():
        model.connector.image_newline.add_(0.5)
    prompt = model.prompt("Describe.")
    want = model.next_token_logits(FRAMES, prompt)
    model.decoder.save_pretrained(str(tmp_path / "ad"))
    save_st({k: v.contiguous() for k, v in model.connector.state_dict().items()},
            str(tmp_path / "ad" / "connector.safetensors"))
    again = load(ckpt, adapter=tmp_path / "ad")
    assert torch.allclose(again.next_token_logits(FRAMES, prompt), want, atol=1e-5)
    plain = load(ckpt)
    assert not torch.allclose(plain.next_token_logits(FRAMES, prompt), want, atol=1e-3)
