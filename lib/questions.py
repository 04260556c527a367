"""Question templates and generators for pseudo-videos: R1-R4, A1, A2 (the paper's Table 1) and
two of ours, which-is-or-isn't (WIO) and temporal grounding (TG); mixtures of generators.

A question is drawn for one video (its images in scene order and frames per scene) from a
caption index and a per-read RNG: captions, distractors and option order change on every read.
Used by ``lib.pseudo_video`` (notebooks 02 and 03).

``mode="compat"`` reproduces the paper code's multiple-choice strings and question defects
(the fork VisualComputingInstitute/videollm-pseudovideo-training at 0bf2d48,
``longvu/custom_datasets/spliced_imgs_q_gens.py``, cited by line below); ``mode="fixed"``
(default) repairs the defects and keeps our wording where it differs (R4's question and special
sentences, A2 with one scene, which-is-or-isn't):

- R4: compat shows the "it is the first/last scene" option only when it is the answer, styled
  unlike captions (capital, final period). Fixed always lists both special options, styled
  like a cleaned caption.
- Letter skew: compat has fewer than 4 options for R1 with S<=2, R3 with <4 listed captions and
  which-is-or-isn't "doesn't occur" with S<3, so letters lean to A/B. Fixed tops these up to
  ``num_options`` with options that are wrong by construction (captions of images not in the
  video, or another caption of a video image for "doesn't occur"), so the gt letter is uniform.
  R2 keeps its two options (before/after) in both modes; its letters are already uniform.
- which-is-or-isn't: compat quotes the gt first in the question; fixed shuffles the list.
- One scene (S=1): A1 and A2 are legal in both modes; R1 with S=1 is the fork's one-scene
  control (one option in compat, four in fixed); R4 with S=1 always asks for a special sentence
  (compat, as in the fork's mixes); fixed R4 refuses S=1, since both of its special sentences
  are then true. S=1 must be asked for with ``Smin=1``: an S range that only holds one scene by
  accident of ``S`` raises. TG (ours) has no fork counterpart and reads the same in both modes.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lib.coco import CaptionIndex, clean_caption
from lib.longvu import prompts
from lib.tvbench import LETTERS

QUESTION_TYPES = ("R1", "R2", "R3", "R4", "A1", "A2", "WIO", "TG")
PAPER_TYPES = ("R1", "R2", "R3", "R4", "A1", "A2")
# The paper code's registry names, accepted as aliases.
ALIASES = {"scenes_descr": "R1", "before_or_after": "R2", "which_first_last": "R3",
           "descr_adjacent_scene": "R4", "count_scenes": "A1", "describe_nth_scene": "A2",
           "which_is_or_isnt": "WIO", "temporal_grounding": "TG"}
# Smallest scene count that is not trivial (paper_code.md 1.3, 7.2): one scene is enough to count
# or describe scene k; every relative question needs two.
MIN_SCENES = {"R1": 2, "R2": 2, "R3": 2, "R4": 2, "A1": 1, "A2": 1, "WIO": 2, "TG": 2}
MODES = ("fixed", "compat")
# What a training sample's target holds: "(A) text" (the fork's, checklist 9) or the right
# option's text alone, which is what option likelihood scores (the demo's: docs/demo.md)
ANSWER_FORMATS = ("letter", "text")
# The user turn a sample is trained with: the fork's ("<image>\n" + question + option lines,
# checklist 9) or the one the evaluator asks TVBench in (LongVU's MVBench text: "Question:",
# "Options:", the answer-with-a-letter instruction), which the fork's training never shows
# (paper_code.md 1.4). The tiny demo model does not carry R1 across that change (docs/demo.md).
PROMPT_FORMATS = ("fork", "eval")

# The paper's best configurations (Table 4), as mix strings for ``parse_mix``.
PAPER_MIXES = {
    "llama_best": "R1:S=4:F=20,R3:S=6:F=5",
    "qwen_best": "R1:S=4:F=5",
    "r1_r2_r3": "R1:S=4:F=20,R2:S=4:F=5,R3:S=6:F=5",
}

# Templates of both modes; R1, R2, R3 and A1 are the fork's MC strings (spliced_imgs_q_gens.py
# L61-63, L477-480, L554-557, L227-229), the others are ours (compat ones below).
Q_R1 = "Which of the following options best describes the order of scenes in the video?"
Q_R2 = ('In the given video, does the scene that can be captioned as "{}" happen before or after '
        'the scene that can be captioned as "{}"?')
Q_R3 = ("The following scenes appear in the video, not necessarily in this order: {}. "
        "Of those scenes, which occurs {}?")
Q_R4 = ('One of the scenes in the video can be described as "{}". '
        "Describe the scene immediately {} it.")
Q_A1 = "How many different scenes appear in the video?"
Q_A2 = "There {} in the video. What does scene {} depict?"
Q_WIO = "Exactly one of the following scenes {} in the video: {}. Which one is it?"
Q_TG = 'During which frames does the scene captioned "{}" appear?'
# R1's option texts: the paper's "Scene 1: ... Scene 2: ..." (spliced_imgs_q_gens.py L70-73) and,
# with R1:wording=varied (ours, for the tiny demo model, which does not carry an order told one
# way to another way of telling it: docs/demo.md section 8), three more ways to tell the same
# order. TVBench's Scene Transition wording ("From ... to ...") is left out on purpose.
R1_WORDINGS: dict[str, Callable[[Sequence[str]], str]] = {
    "paper": lambda caps: " ".join(f"Scene {i + 1}: {c}." for i, c in enumerate(caps)),
    "first": lambda caps: "First " + ", then ".join(caps) + ".",
    "followed": lambda caps: ", followed by ".join(caps) + ".",
    "after": lambda caps: ", and after that ".join(caps) + ".",
}
R1_WORDING_MODES = ("paper", "varied")  # GenSpec.wording: the paper's only, or any of the above
R4_SPECIAL = {"before": "It is the first scene, nothing is before it.",
              "after": "It is the last scene, nothing is after it."}
# compat: the fork's multiple-choice strings where ours differ (spliced_imgs_q_gens.py at 0bf2d48).
# R4's MC template, L265-268 (Table 1 prints the free-form one, L271-272, which no config uses).
Q_R4_COMPAT = ('One of the scenes in the video can be described as "{}". What description best '
               "fits the scene immediately {} it?")
# R4's special answers of the MC path, L311-312 (the free-form path's L283-284 lack the period).
R4_SPECIAL_COMPAT = {"before": "This is the first scene; there is no scene before it.",
                     "after": "This is the last scene; there is no scene after it."}
# A2, L151-153: "There are 1 scenes" with one scene too. which-is-or-isn't, L641-643 and L724.
Q_A2_COMPAT = "There are {} scenes in the video. What does scene {} depict?"
Q_WIO_COMPAT = "Exactly one of the following scenes {} in the video: {}. Indicate which."
WIO_VERBS = {"compat": ("occurs", "doesn't occur"), "fixed": ("occurs", "does not occur")}


# ---------------------------------------------------------------------------------------------
# Generator specs and mixtures


@dataclass(frozen=True)
class GenSpec:
    """One generator of a mixture: its question type, table size and scene/frame ranges."""

    qtype: str
    n: int
    s_max: int = 4
    f_max: int = 5
    s_min: int | None = None  # None: MIN_SCENES[qtype], capped at s_max
    f_min: int = 1
    k_min: int = 2  # R3: captions listed in the question
    k_max: int = 4
    wording: str = "paper"  # R1_WORDING_MODES: paper ("Scene 1: ...") | varied (any R1_WORDINGS)

    def __post_init__(self):
        if self.qtype not in QUESTION_TYPES:
            raise ValueError(f"unknown question type {self.qtype!r}; choose from "
                             f"{QUESTION_TYPES} or a paper name {sorted(ALIASES)}")
        if self.wording not in R1_WORDING_MODES or (self.wording == "varied"
                                                    and self.qtype != "R1"):
            raise ValueError(f"{self.qtype}:wording={self.wording}: wording is paper, or "
                             "varied for R1 (its options told in one of R1_WORDINGS)")
        need = MIN_SCENES[self.qtype]
        if self.s_min is None and self.s_max < need:
            raise ValueError(f"{self.qtype} needs at least {need} scenes (got S up to "
                             f"{self.s_max}); fix: S >= {need}"
                             + (f", or {self.qtype}:S={self.s_max}:Smin=1 to ask for "
                                "one-scene videos on purpose" if self.qtype not in ("R2", "R3")
                                else ""))
        lo = self.scene_range[0]
        if self.qtype in ("R2", "R3") and lo < 2:  # the fork raises too (L471-473, L548-550)
            raise ValueError(f"{self.qtype} needs at least 2 scenes "
                             f"(got S range {lo}..{self.s_max})")
        if not (1 <= lo <= self.s_max and 1 <= self.f_min <= self.f_max and self.n >= 0):
            raise ValueError(f"{self}: need 1 <= S_min <= S_max, 1 <= F_min <= F_max, n >= 0")

    @property
    def scene_range(self) -> tuple[int, int]:
        lo = self.s_min if self.s_min is not None else MIN_SCENES[self.qtype]
        return lo, self.s_max


def check_mode(specs: Sequence[GenSpec], mode: str) -> None:
    """Refuse a (spec, mode) pair whose questions would be wrong: fixed R4 with one scene lists
    both special sentences, and a lone scene is both first and last, so both are true."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: choose from {MODES}")
    for x in specs:
        if x.qtype == "R4" and mode == "fixed" and x.scene_range[0] < 2:
            raise ValueError(f"R4 with S={x.scene_range[0]} in fixed mode: one scene is both "
                             "first and last, so both listed special options are true; fix: "
                             "Smin=2, or mode compat (the fork's R4 lists only the correct one)")


def parse_mix(text: str, n: int, s: int = 4, f: int = 5) -> list[GenSpec]:
    """``"R1:S=4:F=20,R3:S=6:F=5:w=1"`` -> specs sharing ``n`` formations by weight ``w``.

    Keys per generator: S, Smin, F, Fmin, k, kmin (R3 listed captions), w (weight, default 1),
    wording (R1: paper or varied).
    A name from ``PAPER_MIXES`` (e.g. ``llama_best``) is expanded first.
    """
    text = PAPER_MIXES.get(text, text)
    items = []
    for tok in [t.strip() for t in text.split(",") if t.strip()]:
        name, *kvs = tok.split(":")
        name = ALIASES.get(name, name.upper())
        kw: dict[str, Any] = {"s_max": s, "f_max": f}
        w = 1.0
        for kv in kvs:
            key, _, val = kv.partition("=")
            keys = {"S": "s_max", "Smin": "s_min", "F": "f_max", "Fmin": "f_min", "k": "k_max",
                    "kmin": "k_min"}
            if key == "w":
                w = float(val)
            elif key == "wording":
                kw["wording"] = val
            elif key in keys:
                kw[keys[key]] = int(val)
            else:
                raise ValueError(f"mix {text!r}: unknown key {key!r} in {tok!r} "
                                 f"(use {sorted(keys) + ['w', 'wording']})")
        items.append((name, w, kw))
    if not items:
        raise ValueError("empty question mix; give e.g. 'R1' or 'R1,R3'")
    total_w = sum(w for _, w, _ in items)
    counts = [int(n * w / total_w) for _, w, _ in items]
    counts[-1] += n - sum(counts)  # the rounding remainder goes to the last generator
    return [GenSpec(name, c, **kw) for (name, _, kw), c in zip(items, counts)]


# ---------------------------------------------------------------------------------------------
# Questions


@dataclass
class Sample:
    """One training sample without its frames (those come from ``render_frames``)."""

    sample_id: int
    epoch: int
    seed: int
    mode: str
    question_type: str
    question: str
    options: list[str]
    answer_index: int
    image_ids: list[int]
    captions: list[str]  # one per scene, as used, in scene order
    frame_counts: list[int]
    meta: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return sum(self.frame_counts)

    @property
    def letter(self) -> str:
        return LETTERS[self.answer_index]

    @property
    def target(self) -> str:
        """The training target, ``(L) gt text`` (paper_code.md 2.1; checklist 9)."""
        return f"({self.letter}) {self.options[self.answer_index]}"

    @property
    def prompt(self) -> str:
        """The user turn as LongVU sees it: ``<image>\\n`` + question + option lines."""
        return user_turn(self.question, self.options)

    def record(self) -> dict:
        d = asdict(self)
        d.update(target=self.target, prompt=self.prompt, num_frames=self.num_frames,
                 answer_letter=self.letter)
        return d


def option_lines(options: list[str]) -> str:
    return "\n".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(options))


def user_turn(question: str, options: Sequence[str], prompt_format: str = "fork") -> str:
    """A multiple-choice user turn in one of ``PROMPT_FORMATS``, ``<image>`` first."""
    if prompt_format == "eval":
        return "<image>\n" + prompts.mc_user_text(question, options)
    if prompt_format != "fork":
        raise ValueError(f"prompt_format {prompt_format!r}: choose from {PROMPT_FORMATS}")
    return "<image>\n" + question + "\n" + option_lines(list(options))


def _quoted(caps: list[str]) -> str:
    return ", ".join(f'"{c}"' for c in caps)


def _frame_range(a: int, b: int) -> str:
    return f"frames {a}-{b}"


class _Ctx:
    """What one question draw needs: the RNG, captions of the video and outside images."""

    def __init__(self, rng: random.Random, index: CaptionIndex, image_ids: Sequence[int],
                 frame_counts: Sequence[int], spec: GenSpec, mode: str, num_options: int):
        self.rng, self.index, self.spec = rng, index, spec
        self.image_ids, self.frame_counts = tuple(image_ids), tuple(frame_counts)
        self.mode, self.k = mode, num_options - 1
        self.S = len(self.image_ids)
        self.captions = self._scene_captions()
        self.used = set(self.captions)

    def _scene_captions(self) -> list[str]:
        # One caption per scene, distinct strings within the video (paper: R1, R3, WIO; we do it
        # for every type so that no question quotes two scenes with the same words).
        out: list[str] = []
        for i in self.image_ids:
            caps = self.index.captions_for(i)
            order = self.rng.sample(caps, len(caps))
            out.append(next((c for c in order if c not in out), order[0]))
        return out

    def outside(self, n: int) -> list[str]:
        """Captions of ``n`` distinct images that are not in the video, unused so far."""
        ids, out, seen = self.index.image_ids, [], set(self.image_ids)
        for _ in range(100 * n + 100):
            if len(out) == n:
                break
            j = ids[self.rng.randrange(len(ids))]
            if j in seen:
                continue
            c = self.rng.choice(self.index.captions_for(j))
            if c in self.used:
                continue
            seen.add(j)
            self.used.add(c)
            out.append(c)
        return out

    def choose(self, gt: str, distractors: list[str],
               fill: Callable[[int], list[str]] | None = None,
               k: int | None = None) -> tuple[list[str], int]:
        """The paper's MC formatter: shuffle distractors, keep k, put gt at a uniform position.

        In fixed mode ``fill(m)`` supplies m wrong-by-construction options when fewer than k
        distractors exist, so every question has k + 1 options.
        """
        k = self.k if k is None else k
        kept = self.rng.sample(distractors, len(distractors))[:k]
        if self.mode == "fixed" and fill is not None and len(kept) < k:
            kept += fill(k - len(kept))
        pos = self.rng.randint(0, len(kept))
        options = kept[:pos] + [gt] + kept[pos:]
        if len(set(options)) != len(options):
            raise AssertionError(f"duplicate options {options}")  # a generator bug, never data
        return options, pos


def q_r1(c: _Ctx) -> dict:
    caps, S = c.captions, c.S
    # the draw happens only for varied wording, so paper-wording questions stay as they were
    say = c.rng.choice(sorted(R1_WORDINGS)) if c.spec.wording == "varied" else "paper"
    text = R1_WORDINGS[say]
    gt = text(caps)
    n_d = min(c.k, math.factorial(S) - 1)
    distractors: list[str] = []
    if S >= 3:  # rejection sampling as in the paper's code
        while len(distractors) < n_d:
            d = text(c.rng.sample(caps, S))
            if d != gt and d not in distractors:
                distractors.append(d)
    else:  # S <= 2: enumerate the few permutations
        distractors = [text(list(p)) for p in itertools.permutations(caps)][1:n_d + 1]

    def fill(m: int) -> list[str]:  # permutations with one scene swapped for an outside image
        out = []
        for o in c.outside(m):
            p = c.rng.sample(caps, S)
            p[c.rng.randrange(S)] = o
            out.append(text(p))
        return out

    options, a = c.choose(gt, distractors, fill)
    return dict(question=Q_R1, options=options, answer_index=a)


def q_r2(c: _Ctx) -> dict:
    S, r = c.S, c.rng.randrange(c.S)
    rel = "after" if r == 0 else "before" if r == S - 1 else c.rng.choice(["before", "after"])
    side = list(range(r)) if rel == "before" else list(range(r + 1, S))
    q = c.rng.choice(side)
    options, a = c.choose(rel, ["after" if rel == "before" else "before"], k=1)
    return dict(question=Q_R2.format(c.captions[q], c.captions[r]), options=options,
                answer_index=a, meta={"requested": q, "reference": r, "adjacent": abs(q - r) == 1})


def q_r3(c: _Ctx) -> dict:
    k = min(c.rng.randint(c.spec.k_min, c.spec.k_max), c.S)
    listed = c.rng.sample(range(c.S), k)
    which = c.rng.choice(["first", "last"])
    g = min(listed) if which == "first" else max(listed)
    options, a = c.choose(c.captions[g], [c.captions[j] for j in listed if j != g], c.outside)
    return dict(question=Q_R3.format(_quoted([c.captions[j] for j in listed]), which),
                options=options, answer_index=a, meta={"listed": listed, "which": which,
                                                        "gt_scene": g})


def q_r4(c: _Ctx) -> dict:
    S, r = c.S, c.rng.randrange(c.S)
    a_sc = r + c.rng.choice([-1, 1])
    word = "before" if a_sc < r else "after"
    specials = (R4_SPECIAL_COMPAT if c.mode == "compat"
                else {w: clean_caption(t) for w, t in R4_SPECIAL.items()})
    special = not 0 <= a_sc < S
    gt = specials[word] if special else c.captions[a_sc]
    others = [c.captions[j] for j in range(S) if j not in (r, a_sc)]
    if c.mode == "fixed":  # both special sentences always listed, the rest from captions
        extra = [t for t in specials.values() if t != gt]
        pool = others + c.outside(max(0, c.k - len(extra) - len(others)))
        kept = c.rng.sample(pool, len(pool))[:c.k - len(extra)]
        options, a = c.choose(gt, extra + kept)
    else:  # the paper's list never holds a special sentence (paper_code.md 2.2 R4)
        pool = others + c.outside(max(0, c.k - len(others)))
        options, a = c.choose(gt, pool)
    template = Q_R4_COMPAT if c.mode == "compat" else Q_R4
    return dict(question=template.format(c.captions[r], word), options=options, answer_index=a,
                meta={"reference": r, "asked": a_sc, "special": special})


def q_a1(c: _Ctx) -> dict:
    pool = [str(i) for i in range(1, c.S + 4) if i != c.S]
    options, a = c.choose(str(c.S), pool)
    return dict(question=Q_A1, options=options, answer_index=a)


def q_a2(c: _Ctx) -> dict:
    k = c.rng.randint(1, c.S)
    others = [c.captions[j] for j in range(c.S) if j != k - 1]
    pool = others + c.outside(max(0, c.k - len(others)))
    options, a = c.choose(c.captions[k - 1], pool)
    if c.mode == "compat":  # the fork says "There are 1 scenes" too
        question = Q_A2_COMPAT.format(c.S, k)
    else:
        question = Q_A2.format("is 1 scene" if c.S == 1 else f"are {c.S} scenes", k)
    return dict(question=question, options=options, answer_index=a, meta={"k": k})


def q_wio(c: _Ctx) -> dict:
    occurs = c.rng.random() < 0.5
    if occurs:
        gt, distractors = c.captions[c.rng.randrange(c.S)], c.outside(c.k)
        fill = None
    else:
        gt = c.outside(1)[0]
        distractors = c.rng.sample(c.captions, c.S)[:c.k]

        def fill(m: int) -> list[str]:  # another caption of a video image: it does occur
            alts = [x for i in c.image_ids for x in c.index.captions_for(i) if x not in c.used]
            got = c.rng.sample(alts, min(m, len(alts)))
            c.used.update(got)
            return got
    options, a = c.choose(gt, distractors, fill)
    if c.mode == "compat":  # the paper's leak: gt quoted first
        listed = [gt] + [o for o in distractors if o in options]
    else:
        listed = c.rng.sample(options, len(options))
    verb = WIO_VERBS[c.mode][0 if occurs else 1]
    template = Q_WIO_COMPAT if c.mode == "compat" else Q_WIO
    return dict(question=template.format(verb, _quoted(listed)), options=options, answer_index=a,
                meta={"occurs": occurs})


def q_tg(c: _Ctx) -> dict:
    fc = c.frame_counts
    starts = [1 + sum(fc[:j]) for j in range(c.S)]
    ranges = [(s, s + f - 1) for s, f in zip(starts, fc)]
    j = c.rng.randrange(c.S)
    T, gt = sum(fc), _frame_range(*ranges[j])
    distractors = list(dict.fromkeys(_frame_range(*x) for x in ranges if x != ranges[j]))
    for _ in range(200):  # random ranges of scene-like length fill the rest
        if len(distractors) >= c.k:
            break
        length = c.rng.randint(1, min(T, max(fc) + 1))
        s = c.rng.randint(1, max(1, T - length + 1))
        d = _frame_range(s, min(T, s + length - 1))
        if d != gt and d not in distractors:
            distractors.append(d)
    options, a = c.choose(gt, distractors)
    return dict(question=Q_TG.format(c.captions[j]), options=options, answer_index=a,
                meta={"scene": j, "range": list(ranges[j])})


GENERATORS: dict[str, Callable[[_Ctx], dict]] = {
    "R1": q_r1, "R2": q_r2, "R3": q_r3, "R4": q_r4, "A1": q_a1, "A2": q_a2, "WIO": q_wio,
    "TG": q_tg}


def draw_question(index: CaptionIndex, image_ids: Sequence[int], frame_counts: Sequence[int],
                  spec: GenSpec, rng: random.Random, mode: str = "fixed", num_options: int = 4
                  ) -> tuple[dict[str, Any], list[str]]:
    """One read of a video's question -> (``question``, ``options``, ``answer_index`` and
    optional ``meta``; the caption used for each scene, in scene order). Captions are drawn from
    ``rng`` first, then the generator of ``spec.qtype``."""
    ctx = _Ctx(rng, index, image_ids, frame_counts, spec, mode, num_options)
    return GENERATORS[spec.qtype](ctx), ctx.captions
