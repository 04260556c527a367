"""Batched evaluation (issue 14): several questions per decoder forward, option and letter
scores from one prefill's key/value cache, visual tokens once per clip, all equal to batch size 1
and to the full-prompt reference on the tiny real-geometry LongVU."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lib import config, evaluate, minitvbench, models, tvbench
from lib.longvu import batched
from lib.longvu.tiny import build_tiny
from lib.tvbench import LETTERS, Question

RNG = np.random.RandomState(0)
# different frame counts (3: all high-res; 6 and 9: low-res with question-guided upgrades) and
# sizes, so rows of one batch have different visual blocks and sequence lengths
CLIPS = [(RNG.rand(n, h, w, 3) * 255).astype(np.uint8)
         for n, h, w in [(3, 48, 64), (6, 40, 40), (9, 64, 48), (6, 48, 64)]]
QUESTIONS = [Question(task, i, f"{i}.mp4", Path(f"{i}.mp4"), text, tuple(cands), answer)
             for i, (task, text, cands, answer) in enumerate([
                 ("action_sequence", "What happened first?", ["sit", "stand", "run"], 0),
                 ("scene_transition", "Which scene change is shown in this clip, from the "
                  "first scene to the last one, in the order in which they appear?",
                  ["a kitchen to a street", "a beach to a forest"], 1),
                 ("object_count", "How many?", ["1", "2", "3", "4"], 2),
                 ("moving_direction", "Where does the red circle move?",
                  ["left", "right", "up"], 1)])]
SCORINGS = ["paper", "strict", "letter", "option"]


@pytest.fixture(scope="module")
def tiny():
    model = models.LongVUModel(build_tiny("qwen", "video", "real", seed=0), "tiny-real")
    with model.session():  # one visual cache for the module: each clip's towers run once
        yield model


@pytest.fixture(scope="module")
def rows(tiny):
    """The four questions, plus one whose prompt (241 tokens) is one token short of the length
    at which the 6-frame 40x40 clip gets 3 instead of 4 question-guided high-res frames, so the
    letter scorer's text (prompt + "(") has other visual tokens than the prompt."""
    pre = tiny.preprocessor()
    out = [(q, pre(c)) for q, c in zip(QUESTIONS, CLIPS)]
    q = QUESTIONS[0]
    n = len(tiny.model.tokenize(tiny.prompt(q.question, q.candidates)))
    edge = dataclasses.replace(q, index=9, question=q.question + " " + "x" * (240 - n))
    assert len(tiny.model.tokenize(tiny.prompt(edge.question, edge.candidates))) == 241
    return out + [(edge, out[1][1])]


@pytest.fixture(scope="module")
def reference(tiny, rows):
    """Batch-size-1 methods: `generate`, `letter_logprobs`, and `sequence_logprob`, which runs
    the whole prompt again for every option."""
    m, out = tiny.model, []
    for q, p in rows:
        prompt = tiny.prompt(q.question, q.candidates)
        out.append((m.generate(p, prompt, max_new_tokens=5),
                    m.letter_logprobs(p, prompt, list(LETTERS[:len(q.candidates)])),
                    m.sequence_logprob(p, prompt, list(q.candidates))))
    return out


@pytest.fixture(params=["rowwise", "padded"])
def prefill_mode(request, monkeypatch):
    """Both prefill strategies on the CPU: rows one by one (the CPU default) and one padded
    batch (the CUDA default, forced here)."""
    monkeypatch.setattr(batched, "padded_prefill", lambda model: request.param == "padded")
    return request.param


def test_batched_scores_equal_batch_size_one(tiny, rows, reference, prefill_mode):
    """Every scorer on rows of different question lengths and frame counts in one batch: the
    same predictions as batch size 1 and the same letter and option scores as the reference
    (options from the prompt's key/value cache vs the full prompt per option)."""
    recs = evaluate.score_rows(tiny, [(q, p, SCORINGS) for q, p in rows])
    for (q, _), r, (raw, lets, opts) in zip(rows, recs, reference):
        assert [x["scoring"] for x in r] == SCORINGS
        assert r[0]["raw"] == r[1]["raw"] == raw
        assert r[0]["pred_index"] == evaluate.parse_paper(raw, len(q.candidates))[0]
        assert r[1]["pred_index"] == evaluate.parse_strict(raw, len(q.candidates))[0]
        np.testing.assert_allclose(r[2]["letter_logprobs"], lets, atol=2e-4)
        np.testing.assert_allclose(r[3]["option_logprobs"], opts, atol=2e-4)
        assert r[2]["pred_index"] == int(np.argmax(lets))
        assert r[3]["pred_index"] == int(np.argmax(opts))


def test_letter_text_that_moves_the_visual_tokens_keeps_its_definition(tiny, rows):
    """Where "(" changes the visual tokens, the letter row runs its own forward (and equals
    the reference above); elsewhere it is one continuation on the prompt's cache."""
    m, moved = tiny.model, []
    open_id = m.tokenizer("(", add_special_tokens=False)["input_ids"]
    for q, p in rows:
        ids = m.tokenize(tiny.prompt(q.question, q.candidates))
        a, b = m.embed_one(ids, p)[0], m.embed_one(ids + open_id, p)[0]
        moved.append(not (len(b) == len(a) + 1 and torch.equal(b[:-1], a)))
    assert moved == [False] * len(QUESTIONS) + [True]


def test_visual_work_once_per_clip_for_every_scorer(tiny, rows, monkeypatch):
    sample = tiny.model.connector.sample
    runs = []
    monkeypatch.setattr(tiny.model.connector, "sample",
                        lambda *a, **k: runs.append(1) or sample(*a, **k))
    tiny.end_batch()
    before = tiny.timing()
    evaluate.score_rows(tiny, [(q, p, SCORINGS) for q, p in rows[:4]])
    assert len(runs) == 4  # four clips, four scorers each: the connector ran once per clip
    after = tiny.timing()
    assert after["visual_passes"] - before["visual_passes"] == 4
    assert after["visual_uses"] - before["visual_uses"] == 4  # one user: each block served once
    assert after["visual_s"] > before["visual_s"] and after["decoder_s"] > before["decoder_s"]
    evaluate.score_rows(tiny, [(q, p, ["option"]) for q, p in rows[:1]])
    assert len(runs) == 4  # cached until end_batch
    tiny.end_batch()
    evaluate.score_rows(tiny, [(q, p, ["option"]) for q, p in rows[:1]])
    assert len(runs) == 5


def test_no_cache_outside_a_session():
    m = build_tiny("qwen", "video", "small", seed=0)
    v = m.preprocess(CLIPS[0][:2])
    ids = m.tokenize(m.prompt("Q?"))
    assert m._vcache is None
    e1 = m.embed_one(ids, v)[0]
    assert m._vcache is None and m.timing == {"visual_s": 0.0, "decoder_s": 0.0,
                                              "visual_passes": 0, "visual_uses": 0}
    with m.visual_cache():
        assert torch.equal(m.embed_one(ids, v)[0], e1)
    assert m._vcache is None


def test_run_predictions_do_not_depend_on_batch_size(tmp_path):
    """End to end through the runner (decode workers, conditions, resumable file): the same
    predictions at batch size 1 and 5 (6 rows: a full batch and a short one), with the time
    split in metrics.json."""
    data = tmp_path / "bench"
    minitvbench.build_minitvbench(data, 1, 64, 8, seed=0)
    bench = tvbench.open_benchmark(data, ["scene_transition", "object_count", "action_count"])
    model = models.LongVUModel(build_tiny("qwen", "video", "small", seed=0), "tiny-small")
    out = {}
    for bs in (1, 5):
        spec = config.EvalSpec(conditions=("normal", "reversed"), scorings=tuple(SCORINGS),
                               num_workers=0, batch_size=bs, limit=1)
        evaluate.evaluate(model, bench, tmp_path / f"b{bs}", spec, n_boot=50, progress=False)
        lines = [json.loads(x) for x in (tmp_path / f"b{bs}" / "predictions.jsonl")
                 .read_text().splitlines()]
        out[bs] = [(r["sample_id"], r["condition"], r["scoring"], r["pred_index"],
                    r.get("raw")) for r in lines]
        split = json.loads((tmp_path / f"b{bs}" / "metrics.json").read_text())["time_split"]
        assert split["rank0"]["batch_size"] == bs
        assert {"decode_wait_s", "decode_s", "prep_s", "visual_s", "decoder_s"} <= set(
            split["rank0"])
    assert len(out[1]) == 3 * 2 * 4 and out[1] == out[5]


def test_reorder_equals_preprocessing_the_reordered_frames(tiny):
    """The workers preprocess a clip once for every frame order: exactly what preprocessing the
    reordered frames gives, repeats (static) included."""
    pre, frames = tiny.preprocessor(), CLIPS[2]
    whole = pre(frames)
    for order in ([8, 0, 3, 1, 2, 7, 6, 5, 4], list(range(8, -1, -1)), [0] * 9):
        got, want = pre.reorder(whole, order), pre(frames[order])
        assert set(got) == set(want) and got["image_sizes"] == want["image_sizes"]
        assert torch.equal(got["siglip"], want["siglip"]) and torch.equal(got["dino"], want["dino"])


def test_order_conditions_encode_each_frame_once(tmp_path):
    """normal, shuffled, reversed and static show the frames of one clip: in one run the towers
    and the sampler see each frame once (the runner's frame keys, ``LongVU.visual_cache``), and
    the predictions equal those of each condition in a run of its own."""
    data = tmp_path / "bench"
    minitvbench.build_minitvbench(data, 1, 64, 8, seed=0)
    bench = tvbench.open_benchmark(data, ["scene_transition", "object_count"])
    model = models.LongVUModel(build_tiny("qwen", "video", "small", seed=0), "tiny-small")
    conds = ("normal", "shuffled", "reversed", "static")

    def run(cs: tuple[str, ...], out: Path) -> tuple[dict, dict]:
        spec = config.EvalSpec(conditions=cs, scorings=tuple(SCORINGS), num_workers=0,
                               batch_size=8)
        st = evaluate.run(model, bench, out, spec, progress=False)
        recs = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
        return st, {(r["sample_id"], r["condition"], r["scoring"]): r for r in recs}

    st, joint = run(conds, tmp_path / "joint")
    alone = {}
    for c in conds:
        alone.update(run((c,), tmp_path / c)[1])
    assert sorted(joint) == sorted(alone) and len(joint) == 2 * 4 * 4
    for k, r in joint.items():
        a = alone[k]
        assert (r["pred_index"], r.get("raw")) == (a["pred_index"], a.get("raw")), k
        for f in ("letter_logprobs", "option_logprobs"):
            np.testing.assert_allclose(r.get(f) or [], a.get(f) or [], atol=2e-4)
    frames = sum(r["n_frames"] for (_, c, m), r in joint.items()
                 if c == "normal" and m == "paper")
    assert frames > 2 * 4  # the clips have several frames
    assert (st["dino_frames"], st["dino_frames_reused"]) == (frames, 3 * frames)
    # the sampler: every frame once; later conditions keep the frames their order lets through
    # DINO's dropping (static's identical frames are mostly dropped)
    assert st["sva_frames"] == frames and st["sva_frames_reused"] >= 2 * frames


def test_batch_size_is_checked():
    with pytest.raises(ValueError, match="batch_size"):
        config.EvalSpec(batch_size=0)


def test_ramp_starts_and_ends_with_small_batches():
    """The runner's model batches: 1, 2, 4 up to the batch size, about half the rest at the
    end; every item scored once."""
    sizes, left = [], 48
    while left:
        sizes.append(min(left, evaluate.ramp(len(sizes), left, 8)))
        left -= sizes[-1]
    assert sizes == [1, 2, 4, 8, 8, 8, 8, 5, 2, 1, 1]
    assert evaluate.ramp(0, 0, 8) == 1 and evaluate.ramp(40, 1000, 16) == 16
