"""An image-stage checkpoint in the video token layout (the paper's fine-tuning start):
`lib.longvu.load(path, token_layout="video")` against the tiny video-stage checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from longvu_helpers import tiny_ckpt

FRAMES = (np.random.RandomState(0).rand(2, 40, 56, 3) * 255).astype(np.uint8)
VIDEO_FIELDS = {"image_token_len": 144, "query_num_list": [144], "highres": True,
                "lowres_token": 8, "drop_threshold": 0.8}
BACKBONES = ["qwen", "llama"]


def _shapes(ckpt) -> dict[str, tuple[int, ...]]:
    with safe_open(str(ckpt / "model.safetensors"), "pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def _config(ckpt) -> dict:
    return json.loads((ckpt / "config.json").read_text())


def _pos_embeds(model) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.connector.state_dict().items() if "pos_embed" in k}


@pytest.fixture(scope="module", params=BACKBONES)
def converted(request, tmp_path_factory):
    """(backbone, image ckpt, video ckpt, converted model, its saved dir)."""
    from lib.longvu import load, save
    b = request.param
    img, vid = tiny_ckpt(b, "image"), tiny_ckpt(b, "video")
    model = load(img, token_layout="video", layout_seed=7)
    out = save(model, tmp_path_factory.mktemp(f"{b}_converted") / "ckpt")
    return b, img, vid, model, out


def test_converted_matches_video_stage_names_shapes_and_layout(converted):
    b, img, vid, model, out = converted
    assert _shapes(out) == _shapes(vid)  # exactly the video checkpoint's names and shapes
    assert {k: tuple(v.shape) for k, v in model.connector.state_dict().items()} == \
        {k[6:]: s for k, s in _shapes(vid).items()
         if k.startswith("model.") and k[6:] in model.connector.state_dict()}
    a, v, c = _config(img), _config(vid), _config(out)
    differ = {k for k in set(a) | set(v) if a.get(k) != v.get(k)} - {"_name_or_path"}
    # the tiny factory gives the stages different budgets; not a layout field, kept as it was
    assert differ == {"image_token_len", "query_num_list", "highres",
                      "tokenizer_model_max_length"}
    assert c["tokenizer_model_max_length"] == a["tokenizer_model_max_length"]
    for k in differ - {"tokenizer_model_max_length"} | set(VIDEO_FIELDS):
        assert c[k] == v[k] == VIDEO_FIELDS[k], k
    assert model.config.window_sizes() == [2, 2] and model.config.stage == "video"


def test_report_lists_created_parameters_and_changed_fields(converted):
    b, img, vid, model, out = converted
    rep = model.loading_report
    pos = sorted(k for k in _shapes(vid) if "pos_embed" in k)
    assert len(pos) == 6  # 3 sampler layers x 2 towers
    created = [c for c in rep.created if "pos_embed" in c]
    assert [c.split()[0] for c in created] == pos
    assert all("(4, 64): N(0, 1)" in c and "seed 7" in c for c in created)
    assert {k: (old, new) for k, (old, new, _) in rep.changed.items()} == {
        "image_token_len": (576, 144), "query_num_list": ([576], [144]),
        "highres": (False, True)}
    text = str(rep)
    assert "changed image_token_len: 576 -> 144" in text and pos[0] in text
    assert not rep.clean


def test_only_pos_embed_is_new(converted):
    from lib.longvu import load
    b, img, vid, model, out = converted
    plain = load(img).connector.state_dict()
    conv = model.connector.state_dict()
    assert set(conv) - set(plain) == set(_pos_embeds(model))
    assert all(torch.equal(plain[k], conv[k]) for k in plain)


def test_forward_on_video_input_uses_the_video_pipeline(converted):
    from lib.longvu import load, prompts
    b, img, vid, model, out = converted
    video = load(vid)
    prompt = model.prompt(prompts.mc_user_text("What happens?", ["a", "b"]))
    ids = model.tokenize(prompt)
    visual = model.preprocess(FRAMES)
    trace_conv, trace_vid = {}, {}
    e_conv, _ = model.embed_one(ids, visual, trace_conv)
    e_vid, _ = video.embed_one(ids, visual, trace_vid)
    assert e_conv.shape == e_vid.shape  # the same visual block as the video-stage model
    assert trace_conv["sva_output"].shape == trace_vid["sva_output"].shape  # 144 queries
    assert trace_conv["sva_output"].shape[1] == 144
    labels = [-100] * (len(ids) - 1) + [ids[-1]]
    loss = model(visual, ids, labels).loss
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for n, p in model.connector.named_parameters() if "pos_embed" in n)
    model.zero_grad(set_to_none=True)


def test_save_load_round_trip(converted):
    from lib.longvu import load
    b, img, vid, model, out = converted
    again = load(out)  # no token_layout: config.json holds the video layout
    assert not again.loading_report.changed
    assert not [c for c in again.loading_report.created if "pos_embed" in c]
    for k, value in VIDEO_FIELDS.items():
        assert getattr(again.config, k) == value
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    prompt = model.prompt("Describe.")
    # the weights are bit-equal; lm_head's GEMV may still differ in the last bit, because
    # the tensors read from the two files sit at different memory alignments
    torch.testing.assert_close(model.next_token_logits(FRAMES, prompt),
                               again.next_token_logits(FRAMES, prompt), rtol=0, atol=1e-5)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_created_init_is_seeded(backbone):
    from lib.longvu import load
    img = tiny_ckpt(backbone, "image")
    a = _pos_embeds(load(img, token_layout="video", layout_seed=3))
    b = _pos_embeds(load(img, token_layout="video", layout_seed=3))
    g = _pos_embeds(load(img, token_layout="video",
                         layout_seed=torch.Generator().manual_seed(3)))
    c = _pos_embeds(load(img, token_layout="video", layout_seed=4))
    assert a.keys() == b.keys() == c.keys() and len(a) == 6
    assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], g[k]) for k in a)
    assert not any(torch.equal(a[k], c[k]) for k in a)
    flat = torch.cat([v.flatten() for v in a.values()])
    assert abs(float(flat.std()) - 1) < 0.2  # N(0, 1) as torch.randn in the original


def test_video_checkpoint_is_a_no_op():
    from lib.longvu import load
    vid = tiny_ckpt("qwen", "video")
    plain, same = load(vid), load(vid, token_layout="video")
    rep = same.loading_report
    assert rep.clean and not rep.changed and not rep.created
    assert any("already; nothing changed" in n for n in rep.notes)
    assert "nothing changed" in str(rep)
    assert all(torch.equal(v, same.connector.state_dict()[k])
               for k, v in plain.connector.state_dict().items())


def test_image_layout_refused_on_video_and_no_op_on_image():
    from lib.longvu import load
    from lib.longvu.errors import LongVUConfigError
    with pytest.raises(LongVUConfigError, match="never converts a video checkpoint"):
        load(tiny_ckpt("qwen", "video"), token_layout="image")
    m = load(tiny_ckpt("qwen", "image"), token_layout="image")
    assert m.config.image_token_len == 576 and any("image layout already" in n
                                                   for n in m.loading_report.notes)
    with pytest.raises(ValueError, match="token_layout must be"):
        load(tiny_ckpt("qwen", "image"), token_layout="videos")


def test_demo_geometry_is_refused():
    """The fork's 144 queries do not tile the demo's 8x8 tower maps."""
    from lib.longvu import LongVULoadError, load
    with pytest.raises(LongVULoadError, match="side is a multiple of 12"):
        load(tiny_ckpt("qwen", "image", "demo"), token_layout="video")


def test_edited_config_without_pos_embed_still_fails(tmp_path):
    """Only a conversion creates parameters: an image checkpoint whose config.json already
    claims the video layout (LongVU's README edit) is refused as before, with the fix."""
    import shutil

    from lib.longvu import LongVULoadError, load
    ckpt = tmp_path / "c"
    shutil.copytree(tiny_ckpt("qwen", "image"), ckpt)
    cfg = _config(ckpt)
    cfg.update(image_token_len=144, query_num_list=[144], highres=True)
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(LongVULoadError, match="token_layout='video'") as e:
        load(ckpt, token_layout="video")
    assert "pos_embed_0" in str(e.value)


def test_model_and_training_loaders_pass_it_through():
    from lib.adapters import build_model
    from lib.config import TrainConfig
    from lib.models import ModelSpec
    img = str(tiny_ckpt("llama", "image"))
    m = ModelSpec("img-video", img, token_layout="video", layout_seed=2).load("cpu")
    assert m.model.config.image_token_len == 144
    cfg = TrainConfig(model=img, out="unused", mode="full", seed=2)
    model, quant = build_model(cfg, torch.device("cpu"), token_layout="video")
    assert model.config.highres and quant == "none"
    assert all(torch.equal(v, model.connector.state_dict()[k])
               for k, v in _pos_embeds(m.model).items())  # both drew from seed 2


def test_adapter_from_a_converted_start(tmp_path):
    """An adapter trained from the converted start carries the pos_embed_* in its
    connector.safetensors: it loads on the converted start only, and its values win."""
    from lib.adapters import build_model, save_adapter
    from lib.config import TrainConfig
    from lib.longvu import LongVULoadError, load
    img = str(tiny_ckpt("qwen", "image"))
    cfg = TrainConfig(model=img, out="unused", mode="lora", lora_r=4, seed=1)
    model, _ = build_model(cfg, torch.device("cpu"), token_layout="video")
    with torch.no_grad():
        model.connector.vision_sampler_0.layers[0].pos_embed_0.add_(0.5)  # "trained"
    ad = save_adapter(model, tmp_path / "ad", "lora")
    again = load(img, token_layout="video", layout_seed=9, adapter=ad)
    assert all(torch.equal(v, again.connector.state_dict()[k])
               for k, v in _pos_embeds(model).items())
    assert any("replaced by the adapter's connector" in n for n in again.loading_report.notes)
    with pytest.raises(LongVULoadError, match="pos_embed_0"):
        load(img, adapter=ad)  # its own image layout has no pos_embed_*
