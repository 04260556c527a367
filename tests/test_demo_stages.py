"""The demo geometry and the demo's image/video training stages."""

import json
import subprocess
import sys

import numpy as np
import pytest

from lib import coco, demo_stages, minitvbench


def test_demo_geometry_is_small_and_loads(tmp_path):
    from lib import longvu

    out = tmp_path / "tiny"
    subprocess.run([sys.executable, "-m", "lib.longvu", "tiny", "--backbone", "qwen", "--stage",
                    "image", "--geometry", "demo", "--seed", "0", "--out", str(out)], check=True,
                   capture_output=True)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["mm_vision_tower_aux_token_len_list"] == [64, 64] and cfg["query_num_list"] == [16]
    m = longvu.load(out)
    assert m.towers.token_side == 8
    frames = np.random.default_rng(0).integers(0, 255, (3, 96, 96, 3), dtype=np.uint8)
    ids = m.tokenizer(m.prompt("Question: what?"))["input_ids"]
    text = m.generate(frames, m.prompt("Question: what?"), max_new_tokens=3)
    assert isinstance(text, str)
    import torch

    from lib.longvu import prompts
    emb, _, pmap = m.prepare_inputs_embeds(
        torch.tensor([prompts.tokenize_with_image(m.tokenizer, m.prompt("Question: what?"))]),
        [m.preprocess(frames)])
    visual_rows = int((pmap[0] == -1).sum())
    assert visual_rows <= 3 * (16 + 4) < len(ids) * 10  # 4x4 queries (+ newlines) per frame


def test_image_stage_samples(smoke_assets):
    index = coco.CaptionIndex.from_root(smoke_assets / "coco", "train")
    ds = demo_stages.ImageStageDataset(index, n=40, seed=0)
    kinds = {ds[i]["question_type"] for i in range(len(ds))}
    assert kinds == {"caption", "image_mc"}
    for i in range(len(ds)):
        it = ds[i]
        assert it["frames"].ndim == 4 and it["frames"].shape[0] == 1
        caps = index.captions[it["image_ids"][0]]
        if it["question_type"] == "caption":
            assert it["target"] in caps
        else:
            letter, text = it["target"][1], it["target"][4:]
            assert text in caps and f"({letter}) {text}" in it["prompt"]
            assert it["prompt"].count("\n(") == 4
    again = demo_stages.ImageStageDataset(index, n=40, seed=0)
    assert all(ds[i]["target"] == again[i]["target"] for i in range(10))


def test_image_stage_missing_image_is_an_error(smoke_assets, tmp_path):
    import shutil

    root = tmp_path / "coco"
    shutil.copytree(smoke_assets / "coco", root)
    index = coco.CaptionIndex.from_root(root, "train")
    index.image_path(index.image_ids[0]).unlink()
    ds = demo_stages.ImageStageDataset(index, n=len(index), seed=0)
    with pytest.raises(coco.CocoError, match=r"missing"):
        ds[0]


def test_video_stage_samples_follow_eval_sampling():
    ds = demo_stages.VideoStageDataset(12, seed=0, size=48, fps=4)
    seen = set()
    for i in range(len(ds)):
        it = ds[i]
        seen.add(it["question_type"])
        letter, text = it["target"][1], it["target"][4:]
        assert f"({letter}) {text}" in it["prompt"]
        assert it["frames"].dtype == np.uint8 and it["frames"].shape[1:] == (48, 48, 3)
    assert seen == {t[0] for t in minitvbench.MINI_TASKS}


def test_letter_logprobs_sum_both_answer_styles(tmp_path):
    import math

    from lib.longvu.tiny import write_tiny
    from lib import longvu

    m = longvu.load(write_tiny(tmp_path / "t", "qwen", "image", "demo", 0))
    frames = np.random.default_rng(1).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    p = m.prompt("Question: which?\nOptions:\n(A) x\n(B) y")
    got = m.letter_logprobs(frames, p, ["A", "B"])
    for x, g in zip("AB", got):
        bare, paren = m.sequence_logprob(frames, p, [x, "(" + x])
        assert g == pytest.approx(math.log(math.exp(bare) + math.exp(paren)), abs=1e-4)


def test_mc_accuracy_cli(smoke_assets, tmp_path):
    ckpt = tmp_path / "tiny"
    subprocess.run([sys.executable, "-m", "lib.longvu", "tiny", "--backbone", "qwen", "--stage",
                    "image", "--geometry", "demo", "--seed", "0", "--out", str(ckpt)], check=True,
                   capture_output=True)
    out = subprocess.run([sys.executable, "-m", "lib.demo_stages", "mc-accuracy", "--checkpoint",
                          str(ckpt), "--coco", str(smoke_assets / "coco"), "--n", "6",
                          "--options", "2"], check=True, capture_output=True, text=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["n"] == 6 and res["options"] == 2 and res["chance"] == 50.0
    assert sum(res["picked"].values()) == 6 and set(res["picked"]) == {"A", "B"}
    assert 0.0 <= res["accuracy"] <= 100.0


def test_frame_similarity_and_prompt_lengths(smoke_assets, tmp_path):
    """The diagnostics of docs/demo.md: two scenes' frames differ at the decoder input, frames of
    one scene do not; the byte-level tokenizer spends hundreds of ids on a 4-option question."""
    from lib.longvu.tiny import write_tiny

    ckpt = write_tiny(tmp_path / "t", "qwen", "image", "demo", 0)
    sim = demo_stages.frame_similarity(ckpt, n=2)
    assert sim["videos"] == 2 and sim["frames_kept_fraction"] == 1.0
    assert sim["cos_within_scene"] > 0.99 > sim["cos_across_scenes"]
    lens = demo_stages.prompt_lengths(ckpt, smoke_assets / "coco", n=3)
    assert lens["visual_rows_per_frame"] == 20 and lens["tokenizer_size"] == 259
    assert lens["image_mc_4"]["text_ids_mean"] > 400
