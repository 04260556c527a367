"""The LongVU model API: label-only loss, gradients, batching, likelihoods, fidelity flags."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lib.longvu import prompts
from lib.longvu.model import Flags, placeholder_count
from lib.longvu.tiny import build_tiny

RNG = np.random.RandomState(0)
VIDEO = (RNG.rand(4, 48, 64, 3) * 255).astype(np.uint8)
SQUARE = (RNG.rand(1, 40, 40, 3) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def small():
    return build_tiny("qwen", "video", "small", seed=0)


def _example(model, answer="B"):
    ids, labels = prompts.training_example(model.tokenizer, model.template, "Which one?", answer)
    return ids, labels


def test_label_only_loss_matches_full_logits(small):
    ids, labels = _example(small)
    visual = small.preprocess(VIDEO)
    out = small(visual, ids, labels)
    embeds, mask, pmap = small.prepare_inputs_embeds(ids, visual)
    lab = small.align_labels([labels], pmap)
    logits = small.decoder(inputs_embeds=embeds, attention_mask=mask).logits.float()
    ref = F.cross_entropy(logits[0, :-1], lab[0, 1:], ignore_index=-100)
    assert out.num_tokens == sum(t != -100 for t in labels)
    assert torch.allclose(out.loss, ref, atol=1e-5)


def test_gradients_reach_connector_and_decoder_not_towers(small):
    small.train()
    assert not small.towers.training  # frozen towers stay in eval mode
    small.zero_grad()
    ids, labels = _example(small)
    small(small.preprocess(VIDEO), ids, labels).loss.backward()
    con = [p.grad for p in small.connector.parameters()]
    assert all(g is not None for g in con) and any(g.abs().sum() > 0 for g in con)
    assert small.decoder.model.layers[0].mlp.up_proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in small.towers.parameters())
    small.zero_grad()
    small.eval()


def test_batch_embeds_and_position_map(small):
    a, la = _example(small, "A")
    b, lb = _example(small, "a much longer answer")
    va, vb = small.preprocess(VIDEO), small.preprocess(SQUARE, kind="image")
    embeds, mask, pmap = small.prepare_inputs_embeds([a, b], [va, vb])
    one, _, _ = small.prepare_inputs_embeds(b, vb)
    n_b = one.shape[1]
    assert torch.equal(embeds[1, :n_b], one[0]) and mask[1, :n_b].all()
    assert mask[0].sum() < mask[1].sum() or mask[0].sum() == embeds.shape[1]
    table = small.embed_tokens.weight
    for i, ids in enumerate([a, b]):
        rows = (pmap[i] >= 0).nonzero()[:, 0]
        src = torch.tensor(ids)[pmap[i, rows]]
        assert (src >= 0).all() and len(rows) == len(ids) - 1  # every text id once, no sentinel
        assert torch.equal(embeds[i, rows], table[src])
    lab = small.align_labels([la, lb], pmap)
    assert sorted(lab[1][lab[1] != -100].tolist()) == sorted(t for t in lb if t != -100)


def test_logprob_agrees_with_next_token_logits(small):
    prompt = small.prompt(prompts.mc_user_text("Q?", ["x", "y", "z"]))
    logits = small.next_token_logits(VIDEO, prompt)
    lp = small.sequence_logprob(VIDEO, prompt, ["A", "B", "AB"])
    tok = small.tokenizer
    a, b = tok("A", add_special_tokens=False)["input_ids"], tok("B", add_special_tokens=False)[
        "input_ids"]
    ref = logits.log_softmax(-1)
    assert abs(lp[0] - float(ref[a[0]])) < 1e-4 and abs(lp[1] - float(ref[b[0]])) < 1e-4
    assert lp[2] < lp[0]  # a longer continuation adds a (negative) log-prob term
    text = small.generate(VIDEO, prompt, max_new_tokens=2)
    assert isinstance(text, str)


def test_placeholder_leak_flag_adds_masked_zero_tokens():
    plain = build_tiny("qwen", "video", "small", seed=0)
    leak = build_tiny("qwen", "video", "small", seed=0,
                      flags=Flags(legacy_placeholder_tokens=True))
    ids, labels = _example(plain)
    v = plain.preprocess(SQUARE, kind="image")
    e0, _, p0 = plain.prepare_inputs_embeds(ids, v)
    e1, _, p1 = leak.prepare_inputs_embeds(ids, v)
    k = placeholder_count((40, 40), 144)
    assert k == 155 and e1.shape[1] - e0.shape[1] == k
    assert (p1 == -1).sum() - (p0 == -1).sum() == k
    zero = plain.embed_tokens.weight[0]
    start = int((p0[0] == -1).nonzero()[-1]) + 1  # first row after the visual block
    assert torch.equal(e1[0, start], zero) and torch.equal(e1[0, start + k - 1], zero)
    assert leak(v, ids, labels).num_tokens == plain(v, ids, labels).num_tokens


def test_video_size_swap_flag():
    fixed = build_tiny("qwen", "video", "small", seed=0, flags=Flags(legacy_video_size_swap=False))
    legacy = build_tiny("qwen", "video", "small", seed=0)
    assert legacy.preprocess(VIDEO)["image_sizes"] == [(48, 64)]
    assert fixed.preprocess(VIDEO)["image_sizes"] == [(64, 48)]
    assert legacy.preprocess(VIDEO[:1], kind="image")["image_sizes"] == [(64, 48)]
