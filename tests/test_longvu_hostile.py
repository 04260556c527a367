"""Hostile checkpoints (issue 15, loading items): nothing lost, nothing substituted, nothing
silently wrong.

9  config.json fields that change the computation are required or defaulted to what the
   original defaults to, and every default is named in `model.loading_report`.
10 unreadable files (truncated/empty safetensors, config, index, tokenizer, generation config,
   tower files, adapter files) name themselves, say what is wrong and how to fix it; pickled
   adapters are refused like pickled checkpoints.
3  index shards are contained in the checkpoint root (names only; symlinked HF-cache blobs ok).
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from longvu_helpers import tiny_ckpt

FRAMES = (np.random.RandomState(0).rand(3, 40, 56, 3) * 255).astype(np.uint8)


def _copy(src, dst):
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _edit_config(ckpt, fn):
    path = ckpt / "config.json"
    cfg = json.loads(path.read_text())
    fn(cfg)
    path.write_text(json.dumps(cfg))
    return cfg


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def _logits(model, text="Describe."):
    return model.next_token_logits(FRAMES, model.prompt(text))


@pytest.fixture(scope="module")
def base_logits():
    from lib.longvu import load
    return {b: _logits(load(tiny_ckpt(b, "video"))) for b in ("qwen", "llama")}


def _shard(ckpt, names=("model-00001-of-00002.safetensors",
                        "model-00002-of-00002.safetensors")):
    """Split model.safetensors into two shards + index (the hub's sharded layout)."""
    with safe_open(str(ckpt / "model.safetensors"), "pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    keys = sorted(state)
    halves = [keys[: len(keys) // 2], keys[len(keys) // 2:]]
    weight_map = {}
    for name, ks in zip(names, halves):
        save_file({k: state[k] for k in ks}, str(ckpt / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in ks})
    (ckpt / "model.safetensors").unlink()
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(index))
    return weight_map


# --------------------------------------------------------------------------------------------
# 9. config fields: required, or the original's default + a loading report


@pytest.mark.parametrize("backbone", ["qwen", "llama"])
def test_missing_rope_theta_is_refused_naming_file_field_and_fix(tmp_path, backbone):
    """Without rope_theta 5.x (and 4.42) would run RoPE with 10000 instead of 1e6 / 5e5."""
    from lib.longvu import LongVULoadError, load
    ckpt = _copy(tiny_ckpt(backbone, "video"), tmp_path / "c")
    _edit_config(ckpt, lambda c: c.pop("rope_theta"))
    with pytest.raises(LongVULoadError) as e:
        load(ckpt)
    msg = str(e.value)
    assert str(ckpt / "config.json") in msg and "'rope_theta'" in msg
    assert "10000" in msg and "Fix:" in msg and "config.json that came with these weights" in msg


REQUIRED = {
    "qwen": ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
             "num_attention_heads", "num_key_value_heads", "rope_theta", "eos_token_id",
             "image_token_len", "query_num_list", "vision_hidden_size", "num_query_group",
             "connector_only", "connector_depth", "mm_vision_tower_aux_list",
             "mm_vision_tower_aux_token_len_list", "mm_projector_type", "lowres_token",
             "tokenizer_model_max_length", "highres"],
    "llama": ["rope_theta", "rope_scaling", "rms_norm_eps", "tie_word_embeddings",
              "eos_token_id", "num_key_value_heads", "highres"],
}


@pytest.mark.parametrize("backbone,field",
                         [(b, f) for b, fs in REQUIRED.items() for f in fs])
def test_each_required_field_is_named_when_absent(tmp_path, backbone, field):
    from lib.longvu import LongVULoadError
    from lib.longvu.config import read_config
    ckpt = tmp_path / "c"
    ckpt.mkdir()
    cfg = json.loads((tiny_ckpt(backbone, "video") / "config.json").read_text())
    cfg.pop(field)
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(LongVULoadError, match=f"missing required field.*'{field}'") as e:
        read_config(ckpt)
    assert isinstance(e.value, ValueError)  # LongVUConfigError: also a ValueError


@pytest.mark.parametrize("field,value", [("highres", "false"), ("rope_theta", "1e6"),
                                         ("tokenizer_model_max_length", 8192.5),
                                         ("query_num_list", 144), ("rms_norm_eps", -1e-6),
                                         ("eos_token_id", "<|im_end|>")])
def test_wrong_typed_field_is_refused(tmp_path, field, value):
    """"false" is truthy in Python: a quoted boolean would silently switch the regime."""
    from lib.longvu import LongVULoadError, load
    ckpt = _copy(tiny_ckpt("qwen", "video"), tmp_path / "c")
    _edit_config(ckpt, lambda c: c.update({field: value}))
    with pytest.raises(LongVULoadError, match=f"wrong type or range.*{field}="):
        load(ckpt)


def test_absent_optional_fields_get_original_defaults_and_are_reported(tmp_path, caplog,
                                                                       base_logits):
    from lib.longvu import load
    ckpt = _copy(tiny_ckpt("qwen", "video"), tmp_path / "c")
    gone = ["dino_threshold", "drop_threshold", "inference_max_length", "frame_pos",
            "hidden_act", "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings",
            "use_sliding_window"]
    _edit_config(ckpt, lambda c: [c.pop(k) for k in gone])
    with caplog.at_level(logging.WARNING, logger="lib.longvu.loading"):
        model = load(ckpt)
    rep = model.loading_report
    assert {k: v for k, (v, _) in rep.defaulted.items()} == {
        "dino_threshold": 0.83, "drop_threshold": 0.8, "inference_max_length": 16,
        "frame_pos": False, "hidden_act": "silu", "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "use_sliding_window": False}
    assert "cambrian_arch.py:845" in rep.defaulted["dino_threshold"][1]
    assert "configuration_qwen2.py:105" in rep.defaulted["rms_norm_eps"][1]
    text = caplog.text
    assert "defaulted inference_max_length = 16" in text and str(ckpt) in text
    # the defaults equal the tiny checkpoint's own values: same computation
    assert torch.equal(_logits(model), base_logits["qwen"])


def test_complete_config_reports_nothing(tmp_path):
    from lib.longvu import load
    model = load(tiny_ckpt("llama", "video"))
    assert model.loading_report.clean, str(model.loading_report)
    assert model.loading_report.files and model.loading_report.created == []


def test_tied_head_absent_from_checkpoint_is_reported_as_created(tmp_path, base_logits):
    from lib.longvu import load
    ckpt = _copy(tiny_ckpt("llama", "video"), tmp_path / "c")
    path = ckpt / "model.safetensors"
    with safe_open(str(path), "pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys() if k != "lm_head.weight"}
    save_file(state, str(path), metadata={"format": "pt"})
    model = load(ckpt)
    assert [c.split(":")[0] for c in model.loading_report.created] == ["lm_head.weight"]
    # same tensors (a rewritten file may change the last bit through memory alignment)
    assert torch.allclose(_logits(model), base_logits["llama"], atol=1e-5)


def test_llama_head_dim_defaults_to_hidden_over_heads(tmp_path, base_logits):
    from lib.longvu import load
    ckpt = _copy(tiny_ckpt("llama", "video"), tmp_path / "c")
    _edit_config(ckpt, lambda c: c.pop("head_dim"))
    model = load(ckpt)
    assert model.loading_report.defaulted["head_dim"][0] == 16
    assert torch.equal(_logits(model), base_logits["llama"])


def test_qwen_rope_scaling_is_ignored_as_the_original_does(tmp_path, base_logits):
    """cambrian_qwen.py:222 forces rope_scaling=None; 5.x would apply it."""
    from lib.longvu import load
    ckpt = _copy(tiny_ckpt("qwen", "video"), tmp_path / "c")
    _edit_config(ckpt, lambda c: c.update(rope_scaling={"type": "linear", "factor": 4.0}))
    model = load(ckpt)
    assert torch.equal(_logits(model), base_logits["qwen"])
    assert model.decoder.config.rope_parameters["rope_type"] == "default"
    assert "rope_scaling" in model.loading_report.ignored


@pytest.mark.parametrize("extra", [{}, {"layer_types": ["sliding_attention"] * 2}])
def test_qwen_sliding_window_is_ignored_as_the_original_does(tmp_path, base_logits, extra):
    """4.42 Qwen2 slides only under flash-attention (modeling_qwen2.py:373); LongVU's eval runs
    sdpa, so a config asking for a window attends fully there."""
    from lib.longvu import load
    ckpt = _copy(tiny_ckpt("qwen", "video"), tmp_path / "c")
    _edit_config(ckpt, lambda c: c.update(use_sliding_window=True, sliding_window=4,
                                          max_window_layers=0, **extra))
    model = load(ckpt)
    assert torch.equal(_logits(model), base_logits["qwen"])
    assert "use_sliding_window" in model.loading_report.ignored


def test_llama3_rope_scaling_must_be_complete(tmp_path):
    from lib.longvu import LongVULoadError, load
    ckpt = _copy(tiny_ckpt("llama", "video"), tmp_path / "c")
    _edit_config(ckpt, lambda c: c["rope_scaling"].pop("original_max_position_embeddings"))
    with pytest.raises(LongVULoadError, match="original_max_position_embeddings"):
        load(ckpt)


# --------------------------------------------------------------------------------------------
# 10. unreadable files name themselves


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.999])
def test_truncated_safetensors_names_file_and_fix(tmp_path, keep):
    from lib.longvu import LongVULoadError, load
    ckpt = _copy(tiny_ckpt("qwen", "video"), tmp_path / "c")
    _truncate(ckpt / "model.safetensors", keep)
    with pytest.raises(LongVULoadError) as e:
        load(ckpt)
    msg = str(e.value)
    assert str(ckpt / "model.safetensors") in msg and "truncated or corrupt" in msg
    assert "Fix:" in msg


def test_truncated_shard_in_hf_cache_gives_force_download(tmp_path):
    from lib.longvu import LongVULoadError, load
    snap = tmp_path / "hub" / "models--Vision-CAIR--LongVU_Qwen2_7B" / "snapshots" / "abc"
    ckpt = _copy(tiny_ckpt("qwen", "video"), snap)
    _shard(ckpt)
    _truncate(ckpt / "model-00002-of-00002.safetensors")
    with pytest.raises(LongVULoadError) as e:
        load(ckpt)
    msg = str(e.value)
    assert "model-00002-of-00002.safetensors" in msg
    assert ("hf download Vision-CAIR/LongVU_Qwen2_7B model-00002-of-00002.safetensors "
            "--force-download") in msg


@pytest.mark.parametrize("name", ["config.json", "model.safetensors.index.json",
                                  "generation_config.json", "tokenizer.json",
                                  "tokenizer_config.json"])
def test_truncated_json_files_name_themselves(tmp_path, name):
    """generation_config.json: transformers would silently fall back to the model config."""
    from lib.longvu import LongVULoadError, load
    ckpt = _copy(tiny_ckpt("qwen", "video"), tmp_path / "c")
    if name == "model.safetensors.index.json":
        _shard(ckpt)
    _truncate(ckpt / name)
    with pytest.raises(LongVULoadError) as e:
        load(ckpt)
    msg = str(e.value)
    assert str(ckpt / name) in msg and "truncated or corrupt" in msg and "Fix:" in msg


def test_broken_tokenizer_names_dir(tmp_path):
    from lib.longvu import LongVULoadError, load
    ckpt = _copy(tiny_ckpt("qwen", "video"), tmp_path / "c")
    tok = json.loads((ckpt / "tokenizer.json").read_text())
    tok["model"] = {"type": "NoSuchModel"}  # valid JSON, unusable tokenizer
    (ckpt / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(LongVULoadError, match=f"{ckpt}.*tokenizer"):
        load(ckpt)


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_truncated_tower_files_name_themselves(tmp_path, name):
    from lib.longvu import LongVULoadError, load
    ckpt = _copy(tiny_ckpt("qwen", "video"), tmp_path / "c")
    _truncate(ckpt / "towers" / "dinov2" / name)
    with pytest.raises(LongVULoadError) as e:
        load(ckpt)
    assert str(ckpt / "towers" / "dinov2" / name) in str(e.value)


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory):
    """A LoRA adapter + connector.safetensors as lib/adapters.py save_adapter writes it."""
    from peft import LoraConfig, get_peft_model

    from lib.longvu import load
    model = load(tiny_ckpt("qwen", "video"))
    cfg = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                     target_modules=r"model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj")
    model.decoder = get_peft_model(model.decoder, cfg)
    out = tmp_path_factory.mktemp("adapter") / "ad"
    model.decoder.save_pretrained(str(out))
    save_file({k: v.contiguous() for k, v in model.connector.state_dict().items()},
              str(out / "connector.safetensors"), metadata={"format": "pt"})
    model.decoder.save_pretrained(str(out.parent / "pickled"), safe_serialization=False)
    return out


def test_pickle_only_adapter_is_refused_with_recipe(tmp_path, adapter_dir):
    """PEFT would torch.load adapter_model.bin."""
    from lib.longvu import LongVULoadError, load
    ad = tmp_path / "ad"
    shutil.copytree(adapter_dir.parent / "pickled", ad)
    shutil.copy(adapter_dir / "connector.safetensors", ad)
    assert (ad / "adapter_model.bin").is_file()
    with pytest.raises(LongVULoadError) as e:
        load(tiny_ckpt("qwen", "video"), adapter=ad)
    msg = str(e.value)
    assert "adapter_model.bin" in msg and "safetensors only" in msg
    assert "torch.load" in msg and "save_file" in msg


@pytest.mark.parametrize("case", ["missing", "truncated", "incomplete",
                                  "adapter_truncated", "adapter_config_truncated"])
def test_damaged_adapter_files_name_themselves(tmp_path, adapter_dir, case):
    from lib.longvu import LongVULoadError, load
    ad = _copy(adapter_dir, tmp_path / "ad")
    con = ad / "connector.safetensors"
    if case == "missing":
        con.unlink()
        want = "connector.safetensors"
    elif case == "truncated":
        _truncate(con)
        want = str(con)
    elif case == "incomplete":
        with safe_open(str(con), "pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys() if k != "image_newline"}
        save_file(state, str(con))
        want = "image_newline"
    elif case == "adapter_truncated":
        _truncate(ad / "adapter_model.safetensors")
        want = str(ad / "adapter_model.safetensors")
    else:
        _truncate(ad / "adapter_config.json")
        want = str(ad / "adapter_config.json")
    with pytest.raises(LongVULoadError) as e:
        load(tiny_ckpt("qwen", "video"), adapter=ad)
    assert want in str(e.value) and "Fix" in str(e.value)


def test_adapter_for_other_modules_is_refused(tmp_path, adapter_dir):
    """Adapter tensors that match no module would be dropped by PEFT with a warning."""
    from lib.longvu import LongVULoadError, load
    ad = _copy(adapter_dir, tmp_path / "ad")
    path = ad / "adapter_model.safetensors"
    with safe_open(str(path), "pt") as f:
        state = {k.replace("layers.1.", "layers.7."): f.get_tensor(k) for k in f.keys()}
    save_file(state, str(path))
    with pytest.raises(LongVULoadError, match="layers.7"):
        load(tiny_ckpt("qwen", "video"), adapter=ad)


# --------------------------------------------------------------------------------------------
# 3. index shards contained in the checkpoint root


@pytest.mark.parametrize("bad", ["../outside.safetensors", "/etc/passwd",
                                 "sub/../../outside.safetensors", ""])
def test_index_names_outside_the_checkpoint_are_refused(tmp_path, bad):
    from lib.longvu import LongVULoadError, load
    ckpt = _copy(tiny_ckpt("qwen", "video"), tmp_path / "c")
    weight_map = _shard(ckpt)
    # a readable, valid shard really sits outside: today's loader would read it
    shutil.copy(ckpt / "model-00002-of-00002.safetensors", tmp_path / "outside.safetensors")
    index = json.loads((ckpt / "model.safetensors.index.json").read_text())
    index["weight_map"] = {k: (bad if v.startswith("model-00002") else v)
                           for k, v in weight_map.items()}
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(LongVULoadError) as e:
        load(ckpt)
    msg = str(e.value)
    assert repr(bad) in msg and "model.safetensors.index.json" in msg


def test_index_with_stale_single_file_is_refused(tmp_path):
    """transformers would load model.safetensors while the index names other shards."""
    from lib.longvu import LongVULoadError, load
    ckpt = _copy(tiny_ckpt("qwen", "video"), tmp_path / "c")
    _shard(ckpt)
    shutil.copy(tiny_ckpt("qwen", "video") / "model.safetensors", ckpt)
    with pytest.raises(LongVULoadError, match="both"):
        load(ckpt)


def test_duplicate_key_across_shards_is_refused(tmp_path):
    from lib.longvu import LongVULoadError, load
    ckpt = _copy(tiny_ckpt("qwen", "video"), tmp_path / "c")
    weight_map = _shard(ckpt)
    key = next(k for k, v in weight_map.items() if v.startswith("model-00001"))
    with safe_open(str(ckpt / "model-00002-of-00002.safetensors"), "pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    with safe_open(str(ckpt / "model-00001-of-00002.safetensors"), "pt") as f:
        state[key] = f.get_tensor(key) + 1
    save_file(state, str(ckpt / "model-00002-of-00002.safetensors"))
    with pytest.raises(LongVULoadError, match=key.replace(".", r"\.")):
        load(ckpt)


def test_hf_cache_symlinked_shards_load(tmp_path, base_logits):
    """HF cache snapshots hold symlinks into ../../blobs: legitimate, names stay plain."""
    from lib.longvu import load
    repo = tmp_path / "hub" / "models--org--tiny"
    snap = _copy(tiny_ckpt("qwen", "video"), repo / "snapshots" / "abc")
    _shard(snap)
    (repo / "blobs").mkdir()
    for i, f in enumerate(sorted(snap.glob("*.safetensors*")) + [snap / "config.json"]):
        blob = repo / "blobs" / f"blob{i}"
        f.rename(blob)
        os.symlink(os.path.join("..", "..", "blobs", blob.name), f)
    model = load(snap)
    assert model.loading_report.files == ["model-00001-of-00002.safetensors",
                                          "model-00002-of-00002.safetensors"]
    # same tensors; float summation may differ in the last bit with other memory alignment
    assert torch.allclose(_logits(model), base_logits["qwen"], atol=1e-5)
