"""lib.heldout.heldout_eval: notebook 03's held-out answer loss and accuracy (base vs tuned)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lib import adapters, heldout, longvu, questions, train
from lib.config import TrainConfig
from lib.longvu import prompts
from lib.longvu.tiny import build_vocab_tokenizer, write_tiny
from lib.tvbench import LETTERS


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads; on a busy 2-core machine two of them
    spin-wait on each other (about 20x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _picks(model, items: list[dict]) -> list[tuple[int, int]]:
    """The definition, one question at a time: (argmax of `letter_logprobs` over the item's
    letters, argmax of `sequence_logprob` of each option text) after the eval prompt (for Qwen
    the training prompt's text)."""
    out = []
    for it in items:
        prompt, vis = model.prompt(it["prompt"].removeprefix("<image>\n")), model.preprocess(
            it["frames"])
        lp = model.letter_logprobs(vis, prompt, list(LETTERS[:len(it["options"])]))
        op = model.sequence_logprob(vis, prompt, it["options"])
        out.append((int(np.argmax(lp)), int(np.argmax(op))))
    return out


def _accuracy(picks: list[tuple[int, int]], items: list[dict]) -> tuple[float, float]:
    return tuple(100 * np.mean([[p == it["answer_index"] for p in pk]
                                for pk, it in zip(picks, items)], axis=0))


def test_heldout_eval_matches_per_question_scoring(smoke_assets, tmp_path):
    cfg = TrainConfig(model=str(tmp_path / "start"), out=str(tmp_path / "run"),
                      coco=str(smoke_assets / "coco"), questions="R1", S=2, F=1, lora_r=8,
                      lora_alpha=16, seed=0)
    held = train.pseudo_video_dataset(dataclasses.replace(cfg, split="val", n=2, seed=1))
    items = [held[0], held[1]]
    # as the demo's tiny LongVU: 16 visual tokens a frame, a word-level vocabulary (short rows)
    tok = build_vocab_tokenizer("qwen", [prompts.build_prompt("qwen", it["prompt"], False)
                                         + it["target"] for it in items])
    ckpt = write_tiny(cfg.model, "qwen", "image", "demo", 0, tokenizer=tok)
    # an adapter dir as training leaves it, its LoRA B drawn away from 0 (a trained adapter)
    model, _ = adapters.build_model(cfg, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
    adapter = adapters.save_adapter(model, tmp_path / "run" / "adapter", "qlora")
    got = heldout.heldout_eval(cfg, {"quantization": "nf4", "adapter_dir": str(adapter)}, 2)
    asked = [dict(it, prompt=questions.user_turn(it["question"], it["options"], "eval"))
             for it in items]
    assert asked[0]["prompt"] != items[0]["prompt"]

    assert got["n"] == 2
    assert got["chance"] == pytest.approx(100 * np.mean([1 / len(it["options"]) for it in items]))
    base = longvu.load(ckpt, quantization="nf4")
    tuned = longvu.load(ckpt, quantization="nf4", adapter=adapter)
    for name, m in (("base", base), ("tuned", tuned)):
        row = got[name]
        assert set(row) == {"loss", "letter", "option", "letter_eval_prompt",
                            "option_eval_prompt"}
        assert all(0 <= row[k] <= 100 for k in ("letter", "option"))
        assert (row["letter"], row["option"]) == pytest.approx(_accuracy(_picks(m, items),
                                                                         items))
        # the same questions in the evaluator's prompt (the one notebook 04 asks in)
        assert (row["letter_eval_prompt"], row["option_eval_prompt"]) == pytest.approx(
            _accuracy(_picks(m, asked), asked))
    assert got["tuned"]["loss"] == pytest.approx(heldout.answer_loss(tuned, items, range(2)))
    assert got["base"]["loss"] != got["tuned"]["loss"]  # the adapter was attached
    # one item per likelihood_batch gives the same as both in one
    assert heldout.answer_accuracy(tuned, items, batch=1) == pytest.approx(
        {k: got["tuned"][k] for k in ("letter", "option")})
    # each item's pick, not just the count: an answer moved to the pick scores 100 %
    picks = _picks(tuned, items)
    for j, kind in enumerate(("letter", "option")):
        moved = [dict(it, answer_index=pk[j]) for pk, it in zip(picks, items)]
        assert heldout.answer_accuracy(tuned, moved)[kind] == 100
    # the training prompt's tokens (what answer_accuracy asks) are the eval prompt's for Qwen
    ids, labels = train.SampleBuilder(base).text(items[0]["prompt"], items[0]["target"])
    start = next(j for j, t in enumerate(labels) if t != -100)
    assert ids[:start] == base.tokenize(base.prompt(items[0]["prompt"].removeprefix("<image>\n")))
    # prompt_format "eval": the training tokens are what the evaluator asks (LongVUModel.prompt)
    ids, labels = train.SampleBuilder(base).text(asked[0]["prompt"], asked[0]["target"])
    start = next(j for j, t in enumerate(labels) if t != -100)
    assert ids[:start] == base.tokenize(base.prompt(prompts.mc_user_text(items[0]["question"],
                                                                         items[0]["options"])))


def test_heldout_eval_needs_an_item(smoke_assets, tmp_path):
    cfg = TrainConfig(model="unused", out=str(tmp_path), coco=str(smoke_assets / "coco"),
                      questions="R1", S=2, F=2)
    with pytest.raises(train.TrainError, match="EVAL_SAMPLES"):
        heldout.heldout_eval(cfg, {"quantization": "nf4"}, 0)
