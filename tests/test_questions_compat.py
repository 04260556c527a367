"""Compat questions read as the paper's code writes them (issue 11, item 4), and what one-scene
videos may ask (issue 11 leftovers).

The strings below are the data format of the fork VisualComputingInstitute/videollm-pseudovideo-
training at 0bf2d48, written out literally; file and line are cited at each. F is
longvu/custom_datasets/spliced_imgs_q_gens.py.
"""

from __future__ import annotations

import json
import re

import pytest

from lib import coco, questions
from lib import pseudo_video as pv

# F L265-268: the MC template of R4 (descr_adjacent_scene).
R4_COMPAT = re.compile(r'One of the scenes in the video can be described as "(.+)"\. What '
                       r"description best fits the scene immediately (before|after) it\?")
# F L311-312: R4's special answers on the MC path.
FIRST = "This is the first scene; there is no scene before it."
LAST = "This is the last scene; there is no scene after it."
# F L61-63 (R1), L227-229 (A1), L151-153 (A2), L477-480 (R2), L554-557 (R3), L641-643 (WIO).
R1 = "Which of the following options best describes the order of scenes in the video?"
A1 = "How many different scenes appear in the video?"
R2 = re.compile(r'In the given video, does the scene that can be captioned as "(.+)" happen '
                r'before or after the scene that can be captioned as "(.+)"\?')
R3 = re.compile(r"The following scenes appear in the video, not necessarily in this order: "
                r'(".+")\. Of those scenes, which occurs (first|last)\?')
WIO = re.compile(r"Exactly one of the following scenes (occurs|doesn't occur) in the video: "
                 r'(".+")\. Indicate which\.')


@pytest.fixture(scope="module")
def index(smoke_assets):
    return coco.CaptionIndex.from_root(smoke_assets / "coco", "train")


def draw(index, qtype, mode, n=300, s=4, **kw):
    src = pv.PseudoVideoSource(index, [questions.GenSpec(qtype, n, s, 5, **kw)], 0, mode)
    return [src.sample(i) for i in range(len(src))]


def test_r4_compat_wording_and_special_sentences(index):
    seen = set()
    for s in draw(index, "R4", "compat", s=3):
        m = R4_COMPAT.fullmatch(s.question)
        assert m, s.question
        ref, word = m.groups()
        assert ref == s.captions[s.meta["reference"]]
        gt = s.options[s.answer_index]
        if s.meta["special"]:
            assert gt == (FIRST if word == "before" else LAST)
            seen.add(gt)
        assert not {FIRST, LAST} - {gt} & set(s.options)  # the fork lists only the true one
    assert seen == {FIRST, LAST}
    for s in draw(index, "R4", "fixed", n=50):  # fixed keeps our wording (Table 1's)
        word = "before" if s.meta["asked"] < s.meta["reference"] else "after"
        assert s.question.endswith(f"Describe the scene immediately {word} it.")
        assert {"it is the first scene, nothing is before it",
                "it is the last scene, nothing is after it"} <= set(s.options)


def test_a2_one_scene_reads_as_the_fork(index):
    comp = draw(index, "A2", "compat", n=40, s=1, s_min=1)
    assert {s.question for s in comp} == {
        "There are 1 scenes in the video. What does scene 1 depict?"}
    assert all(len(s.options) == 4 for s in comp)  # F L191-208: filled from other images
    assert {s.question for s in draw(index, "A2", "fixed", n=40, s=1, s_min=1)} == {
        "There is 1 scene in the video. What does scene 1 depict?"}
    for s in draw(index, "A2", "compat", n=100, s=4):
        assert s.question == (f"There are {len(s.image_ids)} scenes in the video. What does "
                              f"scene {s.meta['k']} depict?")


def test_which_is_or_isnt_compat_wording(index):
    verbs = set()
    for s in draw(index, "WIO", "compat", s=4):
        m = WIO.fullmatch(s.question)
        assert m, s.question
        verbs.add(m.group(1))
        assert m.group(1) == ("occurs" if s.meta["occurs"] else "doesn't occur")
    assert verbs == {"occurs", "doesn't occur"}
    for s in draw(index, "WIO", "fixed", n=50):
        assert s.question.endswith(". Which one is it?") and "doesn't" not in s.question


@pytest.mark.parametrize("mode", questions.MODES)
def test_shared_templates_are_the_forks(index, mode):
    assert {s.question for s in draw(index, "R1", mode, n=30)} == {R1}
    assert {s.question for s in draw(index, "A1", mode, n=30)} == {A1}
    for s in draw(index, "R2", mode, n=60):
        req, ref = R2.fullmatch(s.question).groups()
        assert (req, ref) == (s.captions[s.meta["requested"]], s.captions[s.meta["reference"]])
    for s in draw(index, "R3", mode, n=60, s=6):
        listed, which = R3.fullmatch(s.question).groups()
        assert which == s.meta["which"]
        assert listed == ", ".join(f'"{s.captions[j]}"' for j in s.meta["listed"])


def test_one_scene_rules(index):
    for q in ("R1", "R4", "WIO", "TG"):  # an S range that reaches 1 by accident of S refuses
        with pytest.raises(ValueError, match=f"{q} needs at least 2 scenes .*{q}:S=1:Smin=1"):
            questions.GenSpec(q, 1, 1, 5)
    for q in ("A1", "A2"):  # legal with S=1 (the fork's A1/A2 configs draw 1..6 scenes)
        assert questions.GenSpec(q, 1, 1, 5).scene_range == (1, 1)
    # R1 with one scene is the fork's single-scene control: one option in compat
    assert all(len(s.options) == 1 for s in draw(index, "R1", "compat", n=20, s=1, s_min=1))
    # R4: compat always asks for the special sentence; fixed would list two true ones
    comp = draw(index, "R4", "compat", n=40, s=1, s_min=1)
    assert all(s.options[s.answer_index] in (FIRST, LAST) for s in comp)
    with pytest.raises(ValueError, match="R4 with S=1 in fixed mode.*both listed special"):
        draw(index, "R4", "fixed", n=5, s=3, s_min=1)
    assert all(len(s.options) >= 2 for s in draw(index, "WIO", "fixed", n=40, s=1, s_min=1))


def test_cli_sample_compat_r4(smoke_assets, tmp_path):
    out = tmp_path / "r4.jsonl"
    assert pv.main(["sample", "--coco", str(smoke_assets / "coco"), "--mode", "compat",
                    "--questions", "R4", "--S", "2", "--n", "40", "--out", str(out)]) == 0
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert all(R4_COMPAT.fullmatch(r["question"]) and r["mode"] == "compat" for r in recs)
    assert {FIRST, LAST} <= {r["options"][r["answer_index"]] for r in recs}
    assert all("\n(A) " in r["prompt"] for r in recs)


def test_export_refuses_one_option_questions(smoke_assets, tmp_path, capsys):
    out = tmp_path / "bench"
    argv = ["export", "--coco", str(smoke_assets / "coco"), "--mode", "compat", "--questions",
            "R1:S=2:Smin=1", "--n", "30", "--size", "32", "--out", str(out)]
    assert pv.main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot be a benchmark question" in err and "(R1, compat mode, S=1)" in err
    assert "fix: export with Smin >= 2 for R1" in err
    assert not list(out.rglob("*.mp4"))  # refused before any video was written
    assert pv.main(argv[:6] + ["R1:S=2", "--n", "6", "--size", "32", "--out",
                               str(tmp_path / "ok")]) == 0
