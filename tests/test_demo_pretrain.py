"""The demo's pretrained start: vocabulary tokenizer, the build script, the shipped checkpoint."""

import json
import random
import subprocess
import sys

from lib import assets, coco, demo_pretrain, demo_stages, longvu
from lib.longvu.tiny import build_tokenizer, build_vocab_tokenizer


def test_vocab_tokenizer_makes_words_single_tokens(smoke_assets):
    index = coco.CaptionIndex.from_root(smoke_assets / "coco", "train")
    text = demo_pretrain.corpus(index)
    tok = build_vocab_tokenizer("qwen", text)
    assert tok.get_vocab() == build_vocab_tokenizer("qwen", text).get_vocab()  # deterministic
    caption = index.captions[index.image_ids[0]][0]
    ids = tok(caption, add_special_tokens=False)["input_ids"]
    assert len(ids) <= len(caption.split()) + 2  # words (+ the full stop), not bytes
    assert len(build_tokenizer("qwen")(caption)["input_ids"]) > 3 * len(ids)
    for s in ["(", "A", "B", "C", "D"]:  # letter scoring needs them as single tokens
        assert len(tok(s, add_special_tokens=False)["input_ids"]) == 1
    odd = "zebra 42 ünïcode"  # outside the corpus: still tokenized, byte for byte
    assert tok.decode(tok(odd, add_special_tokens=False)["input_ids"]) == odd
    assert tok.eos_token == "<|im_end|>" and tok.chat_template
    item = demo_pretrain.text_mc_item(index, random.Random(0))
    assert item["target"].startswith(f"({'ABCD'[item['answer']]}) ")
    order = demo_pretrain.text_order_item(index, random.Random(1))
    assert order["options"][order["answer"]] in order["target"]


def test_build_script_smoke(smoke_assets, tmp_path):
    out = tmp_path / "start"
    r = subprocess.run([sys.executable, "-m", "lib.demo_pretrain", "build", "--coco",
                        str(smoke_assets / "coco"), "--out", str(out), "--tower-steps", "2",
                        "--tower-batch", "4", "--text-steps", "3",
                        "--image-steps", "2", "--batch", "2", "--eval-n", "3", "--width", "32",
                        "--layers", "1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((out / "manifest.json").read_text())
    assert m["tower_stage"]["steps"] == 2 and m["tower_stage"]["untrained_steps"] == 0
    assert 0 <= m["tower_stage"]["heldout_retrieval"]["caption_to_image"] <= 100
    assert m["text_stage"]["steps"] == 3 and m["image_stage"]["steps"] == 2
    assert m["text_stage"]["untrained_steps"] == 0 and m["image_stage"]["untrained_steps"] == 0
    acc = m["image_stage"]["heldout_image_mc"]
    assert acc["n"] == 3 and 0 <= acc["letter"] <= 100 and 0 <= acc["option_likelihood"] <= 100
    assert m["command"].startswith("python -m lib.demo_pretrain build")
    assert len(m["data"]["captions_sha256"]) == 64
    model = longvu.load(out).eval()
    assert len(model.tokenizer) == m["tokenizer_size"]
    assert model.base_decoder.config.hidden_size == 32
    # the recorded accuracy is what the reloaded checkpoint gets on the same held-out questions
    val = coco.CaptionIndex.from_root(smoke_assets / "coco", "val")
    again = demo_pretrain.image_accuracy(model, val, acc["n"], acc["options"])
    assert again == acc


def test_shipped_start_reproduces_its_recorded_accuracy():
    """The start `make demo` uses: its manifest's held-out image accuracy is what the shipped
    weights get again on the demo's own shapes-COCO, and it clears issue 12's 80% bar."""
    start = demo_stages.SHIPPED[("demo", "qwen")]
    m = json.loads((start / "manifest.json").read_text())
    size = sum(f.stat().st_size for f in start.rglob("*") if f.is_file())
    assert size <= 25 * 2**20, f"{start}: {size} bytes; the shipped start must stay <= 25 MB"
    acc = m["image_stage"]["heldout_image_mc"]
    assert acc["caption_likelihood"] >= 80 and m["image_stage"]["untrained_steps"] == 0
    root = assets.embedded("demo")["coco"]
    assert demo_pretrain.data_sha256(root) == m["data"]["captions_sha256"]
    assert m["command"].startswith("python -m lib.demo_pretrain build")
    model = longvu.load(start).eval()
    val = coco.CaptionIndex.from_root(root, "val")
    assert demo_pretrain.image_accuracy(model, val, acc["n"], acc["options"]) == acc
    assert demo_stages.checkpoint("demo", "qwen", "image", seed=2) == start
