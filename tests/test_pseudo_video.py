"""Pseudo-video generator: formations, question generators (checklist 1, 3-5, 8-21), modes,
determinism, the sample CLI, the torch Dataset, the TVBench-layout export and bad input."""

from __future__ import annotations

import itertools
import json
import math
import re
import shutil
from collections import Counter

import numpy as np
import pytest

from lib import coco, questions, tvbench
from lib import pseudo_video as pv
from lib.longvu import prompts

N_STAT = 1500  # questions per statistical check: fast (no frames) and tight enough


@pytest.fixture(scope="session")
def index(smoke_assets):
    return coco.CaptionIndex.from_root(smoke_assets / "coco", "train")


def make(index, qtype, n=N_STAT, s=4, f=5, mode="fixed", seed=0, **kw):
    return pv.PseudoVideoSource(index, [questions.GenSpec(qtype, n, s, f, **kw)], seed, mode)


def samples(src, epoch=0):
    return [src.sample(i, epoch) for i in range(len(src))]


def letters(ss):
    c = Counter(s.letter for s in ss)
    return {k: v / len(ss) for k, v in c.items()}


def video_caption_sets(index, s):
    return {c for i in s.image_ids for c in index.captions_for(i)}


# --- formations (checklist 1, 3, 4, 5, 24) ----------------------------------------------------


def test_formations_ranges_and_distinct_images(index):
    src = make(index, "A1", n=2000, s=6, f=7, s_min=1)
    Ss = Counter(len(fm.image_ids) for fm in src.formations)
    Fs = Counter(f for fm in src.formations for f in fm.frame_counts)
    assert set(Ss) == set(range(1, 7)) and set(Fs) == set(range(1, 8))  # inclusive U{..}
    for fm in src.formations:
        assert len(set(fm.image_ids)) == len(fm.image_ids)  # distinct images within a video
        assert set(fm.image_ids) <= set(index.image_ids)  # only from the (train) index
    s = src.sample(3)
    assert s.num_frames == sum(s.frame_counts) == src.formations[3].num_frames


def test_default_min_scenes(index):
    for q, lo in [("R1", 2), ("R2", 2), ("R3", 2), ("R4", 2), ("A1", 1), ("A2", 1), ("TG", 2)]:
        assert questions.GenSpec(q, 1, 4, 5).scene_range == (lo, 4)
    with pytest.raises(ValueError, match="at least 2 scenes"):
        questions.GenSpec("R2", 1, 4, 5, s_min=1)


def test_length_and_concatenation_order(index):
    specs = questions.parse_mix("R1:S=4:F=20,R3:S=6:F=5,A1:w=2", 400)
    assert [(x.qtype, x.n, x.s_max, x.f_max) for x in specs] == [
        ("R1", 100, 4, 20), ("R3", 100, 6, 5), ("A1", 200, 4, 5)]
    src = pv.PseudoVideoSource(index, specs, 0)
    assert len(src) == 400
    assert [fm.qtype for fm in src.formations] == ["R1"] * 100 + ["R3"] * 100 + ["A1"] * 200
    assert max(max(fm.frame_counts) for fm in src.formations[:100]) == 20
    assert max(len(fm.image_ids) for fm in src.formations[100:200]) == 6
    assert [x.qtype for x in questions.parse_mix("llama_best", 10)] == ["R1", "R3"]
    assert questions.parse_mix("scenes_descr", 5)[0].qtype == "R1"
    with pytest.raises(ValueError, match="unknown key"):
        questions.parse_mix("R1:X=3", 5)


def test_fixed_table_redrawn_reads(index):
    src = make(index, "R1", n=50)
    a, b, c = src.sample(7), src.sample(7), src.sample(7, epoch=1)
    assert a == b  # same (seed, epoch, index): the same read
    assert (a.image_ids, a.frame_counts) == (c.image_ids, c.frame_counts)  # table fixed
    reads = [src.sample(7, epoch=e) for e in range(30)]
    assert len({(r.answer_index, tuple(r.captions)) for r in reads}) > 10  # re-drawn per epoch
    # every caption of the image is a candidate
    img = a.image_ids[0]
    assert {r.captions[0] for r in reads} == set(index.captions_for(img))


def test_global_and_per_rank_seeding(index):
    specs = [questions.GenSpec("R1", 30, 4, 5)]
    g0 = pv.PseudoVideoSource(index, specs, 5, seeding="global", rank=0).formations
    g1 = pv.PseudoVideoSource(index, specs, 5, seeding="global", rank=3).formations
    r3 = pv.PseudoVideoSource(index, specs, 5, seeding="per-rank", rank=3).formations
    g8 = pv.PseudoVideoSource(index, specs, 8).formations
    assert g0 == g1  # one table for all ranks
    assert r3 == g8 != g0  # per-rank: rank r uses seed + r (paper_code.md 1.8, checklist 24)


# --- formatting (checklist 8, 9) ---------------------------------------------------------------


@pytest.mark.parametrize("qtype", questions.QUESTION_TYPES)
def test_prompt_target_and_letters(index, qtype):
    src = make(index, qtype, n=200)
    for s in samples(src):
        lines = s.prompt.split("\n")
        assert lines[0] == "<image>" and lines[1] == s.question
        assert lines[2:] == [f"({'ABCDEFGH'[i]}) {o}" for i, o in enumerate(s.options)]
        assert s.target == f"({s.letter}) {s.options[s.answer_index]}"
        assert len(set(s.options)) == len(s.options)
        rec = s.record()
        for k in ("question_type", "question", "options", "answer_index", "target", "prompt",
                  "image_ids", "captions", "frame_counts", "num_frames"):
            assert k in rec
        json.dumps(rec)


@pytest.mark.parametrize("qtype", ["R4", "A1", "A2", "WIO", "TG"])
def test_gt_position_uniform_four_options(index, qtype):
    ss = [s for s in samples(make(index, qtype)) if s.num_frames >= 3]  # TG: T=2 has 3 ranges
    assert all(len(s.options) == 4 for s in ss)
    assert all(0.19 < v < 0.31 for v in letters(ss).values()) and len(letters(ss)) == 4


# --- R1 (checklist 10, 11) ---------------------------------------------------------------------


def test_r1_options(index):
    for s in samples(make(index, "R1", n=600, mode="compat")):
        S = len(s.captions)
        assert len(set(s.captions)) == S
        gt = s.options[s.answer_index]
        assert gt == " ".join(f"Scene {i + 1}: {c}." for i, c in enumerate(s.captions))
        assert len(s.options) == 1 + min(3, math.factorial(S) - 1)
        for o in s.options:  # distractors: permutations of the same captions, same format
            parts = re.findall(r"Scene (\d+): (.*?)\.(?: |$)", o)
            assert [int(p[0]) for p in parts] == list(range(1, S + 1))
            assert sorted(p[1] for p in parts) == sorted(s.captions)


def test_r1_varied_wording(index):
    """R1:wording=varied tells each question's options in one of R1_WORDINGS (all options of a
    question alike), the right one in scene order; Scene Transition's "From ... to ..." never."""
    paper = samples(make(index, "R1", n=400, mode="compat"))
    varied = samples(make(index, "R1", n=400, mode="compat", wording="varied"))
    said = Counter()
    for a, s in zip(paper, varied):
        assert s.captions == a.captions and s.frame_counts == a.frame_counts  # same videos
        name = next(k for k, say in questions.R1_WORDINGS.items()
                    if s.options[s.answer_index] == say(s.captions))
        said[name] += 1
        others = [list(p) for p in itertools.permutations(s.captions) if list(p) != s.captions]
        assert all(o in [questions.R1_WORDINGS[name](p) for p in others]
                   for i, o in enumerate(s.options) if i != s.answer_index)
        assert not any(o.startswith("From ") for o in s.options)
    assert set(said) == set(questions.R1_WORDINGS) and min(said.values()) > 60
    assert questions.parse_mix("R1:S=2:wording=varied", 8)[0].wording == "varied"
    with pytest.raises(ValueError, match="wording is paper, or varied for R1"):
        questions.parse_mix("R3:wording=varied", 8)


def test_r1_single_scene_compat_vs_fixed(index):
    comp = samples(make(index, "R1", n=40, s=1, s_min=1, mode="compat"))
    assert all(len(s.options) == 1 and s.options[0] == f"Scene 1: {s.captions[0]}." for s in comp)
    assert all(len(s.options) == 4 for s in samples(make(index, "R1", n=40, s=1, s_min=1)))


def test_letter_skew_compat_vs_fixed(index):
    comp = samples(make(index, "R1", mode="compat"))
    fixed = samples(make(index, "R1", mode="fixed"))
    lc, lf = letters(comp), letters(fixed)
    assert lc["A"] > 0.29 and lc["D"] < 0.21  # the paper's skew (A 33, D 17 %)
    assert all(0.19 < v < 0.31 for v in lf.values())
    assert all(len(s.options) == 4 for s in fixed)
    for s in fixed:  # extra R1 options name an image that is not in the video: wrong by design
        gt = s.options[s.answer_index]
        assert all(o != gt for i, o in enumerate(s.options) if i != s.answer_index)
    r3c = letters(samples(make(index, "R3", s=6, mode="compat", k_max=6)))
    r3f = letters(samples(make(index, "R3", s=6, mode="fixed", k_max=6)))
    assert r3c["D"] < 0.15 and all(0.19 < v < 0.31 for v in r3f.values())


# --- R2 (checklist 12, 13) ---------------------------------------------------------------------


def test_r2(index):
    ss = samples(make(index, "R2", mode="compat"))
    adj = []
    for s in ss:
        m = s.meta
        assert sorted(s.options) == ["after", "before"]
        want = "before" if m["requested"] < m["reference"] else "after"
        assert s.options[s.answer_index] == want
        assert s.question == questions.Q_R2.format(s.captions[m["requested"]],
                                                   s.captions[m["reference"]])
        if m["reference"] == 0:
            assert want == "after"
        if m["reference"] == len(s.captions) - 1:
            assert want == "before"
        adj.append(m["adjacent"])
    assert 0.15 < 1 - np.mean(adj) < 0.37  # non-adjacent pairs, ~26 % at S 2-4
    assert 0.4 < letters(ss)["A"] < 0.6


# --- R3 (checklist 14, 15) ---------------------------------------------------------------------


def test_r3(index):
    for mode in ("compat", "fixed"):
        for s in samples(make(index, "R3", n=600, s=6, mode=mode, k_max=6)):
            m = s.meta
            listed = [s.captions[j] for j in m["listed"]]
            assert 2 <= len(listed) <= len(s.captions)
            assert ", ".join(f'"{c}"' for c in listed) in s.question
            g = min(m["listed"]) if m["which"] == "first" else max(m["listed"])
            assert s.options[s.answer_index] == s.captions[g]
            if mode == "compat":
                assert len(s.options) == min(len(listed), 4)
                assert set(s.options) <= set(listed)  # only captions of this video
            else:
                assert len(s.options) == 4
                extra = set(s.options) - set(listed)  # top-up: images not in the video
                assert len(extra) == max(0, 4 - len(listed))
                assert not extra & video_caption_sets(index, s)


# --- R4 (checklist 16, 17, 18) -----------------------------------------------------------------


def test_r4_structure(index):
    ss = samples(make(index, "R4", s=3, s_min=3, mode="compat"))
    specials = set(questions.R4_SPECIAL_COMPAT.values())
    n_special = 0
    for s in ss:
        m = s.meta
        assert abs(m["asked"] - m["reference"]) == 1
        word = "before" if m["asked"] < m["reference"] else "after"
        assert s.question == questions.Q_R4_COMPAT.format(s.captions[m["reference"]], word)
        present = specials & set(s.options)
        gt = s.options[s.answer_index]
        assert bool(present) == m["special"] == (gt in specials)  # compat: iff correct
        if m["special"]:
            n_special += 1
            assert gt == questions.R4_SPECIAL_COMPAT[word]
            assert gt[0].isupper() and gt.endswith(".")
        else:
            assert gt == s.captions[m["asked"]]
        assert len(s.options) == 4
    assert abs(n_special / len(ss) - 1 / 3) < 0.05  # P(special) = 1/S


def test_r4_fixed_lists_both_specials(index):
    fixed = {coco.clean_caption(t) for t in questions.R4_SPECIAL.values()}
    for s in samples(make(index, "R4", n=400, s=6)):
        assert fixed <= set(s.options) and len(s.options) == 4
        assert all(not o.endswith(".") for o in s.options)  # styled like cleaned captions
        if s.meta["special"]:
            word = "before" if s.meta["asked"] < s.meta["reference"] else "after"
            assert s.options[s.answer_index] == coco.clean_caption(questions.R4_SPECIAL[word])


def test_r4_a2_distractors_from_video_first(index):
    for s in samples(make(index, "R4", n=300, s=6, s_min=5, mode="compat")):
        captions = set(s.options) - set(questions.R4_SPECIAL_COMPAT.values())
        assert captions <= set(s.captions)  # >= 3 other scenes: no outside captions
    for s in samples(make(index, "A2", n=300, s=6, s_min=4)):
        assert set(s.options) <= set(s.captions)  # checklist 20: S >= 4 all from the video
    for s in samples(make(index, "A2", n=300, s=2, s_min=2)):
        others = [c for c in s.captions if c != s.options[s.answer_index]]
        assert set(others) <= set(s.options) and len(s.options) == 4  # the other scene first


# --- A1, A2 (checklist 19, 20) -----------------------------------------------------------------


def test_a1(index):
    for s in samples(make(index, "A1", n=600, s=6, s_min=1, mode="compat")):
        S = len(s.image_ids)
        assert s.options[s.answer_index] == str(S) and len(s.options) == 4
        assert {int(o) for o in s.options} - {S} <= set(range(1, S + 4)) - {S}
        if S == 1:
            assert sorted(s.options) == ["1", "2", "3", "4"]


def test_a2(index):
    for s in samples(make(index, "A2", n=600, s=6)):
        k = s.meta["k"]
        assert 1 <= k <= len(s.captions)
        assert f"scene {k} depict" in s.question and str(len(s.captions)) in s.question
        assert s.options[s.answer_index] == s.captions[k - 1]


# --- which-is-or-isn't (checklist 21) and temporal grounding ------------------------------------


def _quoted_list(q):
    return re.findall(r'"(.*?)"', q)


def test_which_is_or_isnt_compat_leak_and_fixed(index):
    comp = samples(make(index, "WIO", s=6, mode="compat"))
    for s in comp:
        gt, S = s.options[s.answer_index], len(s.captions)
        assert _quoted_list(s.question)[0] == gt  # the paper's leak
        vid = video_caption_sets(index, s)
        if s.meta["occurs"]:
            assert gt in s.captions and len(s.options) == 4
            assert not (set(s.options) - {gt}) & vid
        else:
            assert gt not in vid and len(s.options) == 1 + min(3, S)
            assert set(s.options) - {gt} <= set(s.captions)
    fixed = samples(make(index, "WIO", s=6))
    first = np.mean([_quoted_list(s.question)[0] == s.options[s.answer_index] for s in fixed])
    assert 0.15 < first < 0.35 and all(len(s.options) == 4 for s in fixed)
    for s in fixed:
        assert sorted(_quoted_list(s.question)) == sorted(s.options)
        if not s.meta["occurs"]:  # fill for S < 3: other captions of the video's images occur
            assert set(s.options) - {s.options[s.answer_index]} <= video_caption_sets(index, s)


def test_temporal_grounding(index):
    for s in samples(make(index, "TG", n=400, s=4, f=6)):
        j = s.meta["scene"]
        a = 1 + sum(s.frame_counts[:j])
        assert s.options[s.answer_index] == f"frames {a}-{a + s.frame_counts[j] - 1}"
        assert s.question == questions.Q_TG.format(s.captions[j])
        for o in s.options:
            lo, hi = map(int, re.fullmatch(r"frames (\d+)-(\d+)", o).groups())
            assert 1 <= lo <= hi <= s.num_frames


# --- CLI determinism ---------------------------------------------------------------------------


def _cli(smoke_assets, out, *extra, seed=0):
    args = ["sample", "--coco", str(smoke_assets / "coco"), "--split", "train", "--questions",
            "R1,R2,R3,R4,A1,A2", "--S", "4", "--F", "5", "--n", "60", "--seed", str(seed),
            "--mode", "fixed", "--out", str(out), *extra]
    assert pv.main(args) == 0
    return out.read_bytes()


def test_cli_byte_identical(smoke_assets, tmp_path):
    a = _cli(smoke_assets, tmp_path / "a.jsonl")
    b = _cli(smoke_assets, tmp_path / "b.jsonl")
    assert a == b
    assert a != _cli(smoke_assets, tmp_path / "c.jsonl", seed=1)
    recs = [json.loads(x) for x in a.decode().splitlines()]
    assert len(recs) == 60 and {r["question_type"] for r in recs} == set(questions.PAPER_TYPES)
    for r in recs:
        assert r["options"][r["answer_index"]] in r["target"]


def test_cli_frames_out_and_val_split(smoke_assets, tmp_path):
    _cli(smoke_assets, tmp_path / "f.jsonl", "--frames-out", str(tmp_path / "fr"))
    r = json.loads((tmp_path / "f.jsonl").read_text().splitlines()[5])
    fr = np.load(r["frames_file"])
    assert fr.dtype == np.uint8 and fr.shape[0] == r["num_frames"] and fr.shape[3] == 3
    val = coco.CaptionIndex.from_root(smoke_assets / "coco", "val")
    out = tmp_path / "v.jsonl"
    assert pv.main(["sample", "--coco", str(smoke_assets / "coco"), "--split", "val", "--n", "5",
                    "--out", str(out)]) == 0
    assert all(set(json.loads(x)["image_ids"]) <= set(val.image_ids)
               for x in out.read_text().splitlines())


def test_cli_missing_captions(tmp_path, capsys):
    assert pv.main(["sample", "--coco", str(tmp_path), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "captions_train2017.json" in capsys.readouterr().err


# --- Dataset, workers, bad input ---------------------------------------------------------------


def test_dataset_items_and_epochs(index):
    src = pv.PseudoVideoSource(index, questions.parse_mix("R1,R3", 20, 3, 3), 0)
    ds = pv.PseudoVideoDataset(src, jitter="mild", size=(32, 48))
    it = ds[4]
    assert it["frames"].shape == (it["num_frames"], 32, 48, 3) and it["frames"].dtype == np.uint8
    assert it["prompt"].startswith("<image>\n") and it["target"].startswith("(")
    assert it["errors"] == [] and it["substituted_for"] is None
    again = ds[4]
    assert np.array_equal(it["frames"], again["frames"]) and it["prompt"] == again["prompt"]
    ds.set_epoch(1)
    assert ds[4]["image_ids"] == it["image_ids"]


def test_answer_format_text_targets_the_option_alone(index):
    src = pv.PseudoVideoSource(index, questions.parse_mix("R1,R3", 8, 3, 2), 0)
    letter = pv.PseudoVideoDataset(src, jitter="none", size=16)
    text = pv.PseudoVideoDataset(src, jitter="none", size=16, answer_format="text")
    for i in range(8):
        a, b = letter[i], text[i]
        right = a["options"][a["answer_index"]]
        assert a["target"] == f"({questions.LETTERS[a['answer_index']]}) {right}"
        assert b["target"] == right and b["prompt"] == a["prompt"]
    with pytest.raises(ValueError, match="answer_format 'A': choose from"):
        pv.PseudoVideoDataset(src, answer_format="A")


def test_prompt_format_eval_asks_as_the_evaluator(index):
    src = pv.PseudoVideoSource(index, questions.parse_mix("R1,R3", 8, 3, 2), 0)
    fork = pv.PseudoVideoDataset(src, jitter="none", size=16)
    asked = pv.PseudoVideoDataset(src, jitter="none", size=16, prompt_format="eval")
    for i in range(8):
        a, b = fork[i], asked[i]
        assert b["prompt"] == "<image>\n" + prompts.mc_user_text(a["question"], a["options"])
        assert b["prompt"].startswith("<image>\nQuestion: ") and a["prompt"] != b["prompt"]
        assert b["target"] == a["target"] and b["options"] == a["options"]
        assert (b["frames"] == a["frames"]).all()
    with pytest.raises(ValueError, match="prompt_format 'x': choose from"):
        pv.PseudoVideoDataset(src, prompt_format="x")


def test_dataloader_workers(index):
    import torch.utils.data as tud

    src = pv.PseudoVideoSource(index, questions.parse_mix("R1", 6, 2, 2), 0)
    ds = pv.PseudoVideoDataset(src, jitter="none", size=16)
    got = [b for b in tud.DataLoader(ds, batch_size=3, num_workers=2, collate_fn=pv.collate)]
    assert sum(len(b["prompt"]) for b in got) == 6
    assert [p for b in got for p in b["prompt"]] == [ds[i]["prompt"] for i in range(6)]


def test_dataset_bad_images_counted_not_silent(smoke_assets, tmp_path):
    root = tmp_path / "coco"
    shutil.copytree(smoke_assets / "coco", root)
    idx = coco.CaptionIndex.from_root(root, "train")
    src = pv.PseudoVideoSource(idx, [questions.GenSpec("A1", 10, 2, 2)], 0)
    bad = src.formations[0].image_ids[0]
    idx.image_path(bad).unlink()
    strict = pv.PseudoVideoDataset(src, on_error="raise")
    with pytest.raises(coco.CocoError, match=rf"image id {bad}"):
        strict[0]
    ds = pv.PseudoVideoDataset(src, on_error="substitute")
    item = ds[0]
    assert item["substituted_for"] == 0 and item["sample_id"] != 0
    assert len(item["errors"]) == 1 and f"image id {bad}" in item["errors"][0]
    assert ds.bad_report(0) == {0: 1}


def test_image_without_captions_named(smoke_assets, tmp_path):
    idx = coco.CaptionIndex.from_root(smoke_assets / "coco", "train")
    src = pv.PseudoVideoSource(idx, [questions.GenSpec("A1", 3, 2, 2)], 0)
    src.formations[1] = pv.Formation("A1", (999999, idx.image_ids[0]), (1, 1), 0)
    with pytest.raises(coco.CocoError, match="image id 999999"):
        src.sample(1)
    with pytest.raises(coco.CocoError, match="image id 999999"):  # default: nothing replaced
        pv.PseudoVideoDataset(src)[1]
    ds = pv.PseudoVideoDataset(src, on_error="substitute")
    assert ds[1]["substituted_for"] == 1 and "999999" in ds[1]["errors"][0]


# --- TVBench-layout export --------------------------------------------------------------------


def test_export_tvbench_layout(index, tmp_path):
    src = pv.PseudoVideoSource(index, questions.parse_mix("R1,R2", 6, 3, 2), 0)
    counts = pv.export_tvbench(src, tmp_path / "bench", size=(32, 32))
    assert counts == {"pseudo_R1": 3, "pseudo_R2": 3}
    rep = tvbench.validate(tmp_path / "bench")
    assert rep.ok and rep.num_questions == 6
    qs = tvbench.load(tmp_path / "bench")
    s = src.sample(0)
    q = next(q for q in qs if q.video.endswith("000000.mp4"))
    assert q.candidates == tuple(s.options) and q.answer_index == s.answer_index
    import av

    with av.open(str(q.video_path)) as c:
        n = sum(1 for _ in c.decode(video=0))
    assert n == s.num_frames


# --- previews (notebook 02's renderer) ---------------------------------------------------------


def test_static_and_interactive_preview(index):
    import matplotlib.pyplot as plt

    from lib import preview

    src = pv.PseudoVideoSource(index, questions.parse_mix("R1,R4", 4, 3, 3), 0)
    s = src.sample(0)
    fig = preview.static_preview(s, src.frames(s, "mild"), max_frames=5)
    assert len(fig.axes) == min(5, s.num_frames) + 2
    plt.close(fig)
    ui = preview.interactive_preview(src, "none", 24)
    pick, play, frame = ui.children[0].children
    frame.value = 1  # scrub, then switch sample: both redraw without error
    pick.value = 3
    assert frame.value == 0 and frame.max == src.sample(3).num_frames - 1
    table = preview.sample_table(src)
    assert list(table["question_type"]) == ["R1", "R1", "R4", "R4"]
    assert src.first_per_type() == [0, 2]  # one example per question type
    plt.close("all")


# --- the t2vid source (lib.t2vid text frames) --------------------------------------------------


@pytest.mark.parametrize("mode", questions.MODES)
@pytest.mark.parametrize("qtype", questions.QUESTION_TYPES)
def test_t2vid_every_question_type(index, qtype, mode):
    """Same formation, question, options and answer as the image source; each scene renders a
    caption of its own image that the question and options do not quote (when there is one);
    frames as large as the image frames, with the same jitter path."""
    kw = {"s_min": 1} if qtype in ("A1", "A2") else {}
    img = make(index, qtype, n=12, s=4, f=3, mode=mode, **kw)
    txt = pv.PseudoVideoSource(index, img.specs, 0, mode, source="t2vid")
    for i in range(len(img)):
        a, b = img.sample(i), txt.sample(i)
        rec = b.record()
        assert rec["source"] == "t2vid" and "source" not in a.record()
        assert {k: v for k, v in rec.items() if k in a.record()} == a.record()
        shown = "\n".join([b.question, *b.options])
        for img_id, k, text in zip(b.image_ids, b.rendered_caption_index, b.rendered_captions):
            caps = index.captions_for(img_id)
            assert caps[k] == text
            if any(c not in shown for c in caps):
                assert text not in shown
    s = txt.sample(0)
    fr = txt.frames(s, "mild")
    assert fr.shape == img.frames(img.sample(0), "mild").shape and fr.dtype == np.uint8
    assert np.array_equal(fr, txt.frames(s, "mild"))


def test_t2vid_frames_seeded_and_jittered_like_images(index):
    src = pv.PseudoVideoSource(index, questions.parse_mix("R1", 4, 3, 3), 0, source="t2vid")
    again = pv.PseudoVideoSource(index, questions.parse_mix("R1", 4, 3, 3), 0, source="t2vid")
    other = pv.PseudoVideoSource(index, questions.parse_mix("R1", 4, 3, 3), 1, source="t2vid")
    s = src.sample(2)
    fr = src.frames(s, "mild", 64)
    assert fr.tobytes() == again.frames(again.sample(2), "mild", 64).tobytes()
    assert not np.array_equal(fr, other.frames(other.sample(2), "mild", 64))
    assert src.sample(2, epoch=1).seed != s.seed  # re-drawn per epoch like every read
    still = src.frames(s, "none", 64)
    t0 = s.frame_counts[0]
    assert np.array_equal(still[0], still[t0 - 1])  # a scene repeats one text image
    assert not np.array_equal(fr[0], still[0])  # ... under the per-frame jitter
    dims = [(index.coco.imgs[i]["height"], index.coco.imgs[i]["width"]) for i in s.image_ids]
    assert src.text_size(s, None) == (max(h for h, _ in dims), max(w for _, w in dims))
    assert src.frames(s, "none").shape[1:3] == make(index, "R1", n=4, s=3, f=3).frames(
        s, "none").shape[1:3]  # as large as the image frames of the same scenes
    with pytest.raises(ValueError, match="not a t2vid sample"):
        src.frames(make(index, "R1", n=2).sample(0))
    with pytest.raises(ValueError, match="source 'video'"):
        pv.PseudoVideoSource(index, questions.parse_mix("R1", 2), 0, source="video")


def test_t2vid_dataset_and_build_source(smoke_assets):
    src = pv.build_source(smoke_assets / "coco", questions="R1,A1", n=4, s=2, f=2,
                          source="t2vid")
    ds = pv.PseudoVideoDataset(src, jitter="mild", size=(48, 64))
    it = ds[1]
    assert it["source"] == "t2vid" and it["frames"].shape == (it["num_frames"], 48, 64, 3)
    assert len(it["rendered_captions"]) == len(it["image_ids"])
    coco_ds = pv.PseudoVideoDataset(pv.build_source(smoke_assets / "coco", questions="R1,A1",
                                                    n=4, s=2, f=2), size=(48, 64))
    assert coco_ds[1]["source"] == "coco" and coco_ds[1]["prompt"] == it["prompt"]


# --- issue 15 item 11: the sample CLI validates captions and never truncates a good --out ------


def test_sample_cli_runs_the_caption_validator(smoke_assets, tmp_path, capsys):
    root = tmp_path / "coco"
    shutil.copytree(smoke_assets / "coco", root)
    f = coco.captions_path(root, "train")
    data = json.loads(f.read_text())
    del data["annotations"][3]["caption"]
    del data["images"][1]["file_name"]
    f.write_text(json.dumps(data))
    out = tmp_path / "s.jsonl"
    assert pv.main(["sample", "--coco", str(root), "--n", "4", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert str(f) in err and "annotations[3]" in err and "'caption'" in err
    assert "images[1]" in err and "'file_name'" in err
    assert not out.exists()


def test_sample_cli_failure_keeps_previous_out_and_frames(smoke_assets, tmp_path, capsys):
    """A bad image mid-run leaves the earlier --out and --frames-out files as they were."""
    root = tmp_path / "coco"
    shutil.copytree(smoke_assets / "coco", root)
    out, frames = tmp_path / "s.jsonl", tmp_path / "frames"
    args = ["sample", "--coco", str(root), "--n", "6", "--S", "2", "--F", "2",
            "--frames-out", str(frames), "--out", str(out)]
    assert pv.main(args) == 0
    before = {p.name: p.read_bytes() for p in [out, *frames.iterdir()]}
    src = pv.build_source(root, n=6, s=2, f=2)
    early = {i for k in (0, 1) for i in src.sample(k).image_ids}
    victim = next(i for i in src.sample(3).image_ids if i not in early)
    src.index.image_path(victim).write_bytes(b"not a jpeg")
    capsys.readouterr()
    assert pv.main(args + ["--epoch", "1"]) == 2  # another epoch: other frames, other captions
    assert f"image id {victim}" in capsys.readouterr().err
    after = {p.name: p.read_bytes() for p in [out, *frames.iterdir()]}
    assert after == before  # nothing replaced, nothing half-written, no temporary files left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco", "frames", "s.jsonl"]
