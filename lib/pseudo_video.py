"""Pseudo-videos from captioned images: formations, question generators, frames, datasets.

The paper's method (paper_code.md sections 1-3). Used by notebook 02 (previews and statistics),
the training notebook (``PseudoVideoDataset``) and the evaluation notebook (``export_tvbench``
writes a held-out pseudo-video set in TVBench layout).

* A *formation* is a list of (distinct image, frame count) pairs in temporal order. A table of
  them is drawn once from ``seed`` (``seeding="global"``) or, as the paper's code does, from
  ``seed + rank`` (``"per-rank"``).
* Every read of index i re-draws captions, the question variant, distractors and option order
  from a per-read seed (seed, epoch, i), so a run is reproducible and an epoch differs from the
  last one as in the paper.
* ``mode="compat"`` reproduces the paper code's question defects; ``mode="fixed"`` (default)
  repairs them:

  - R4: compat shows the "it is the first/last scene" option only when it is the answer, styled
    unlike captions (capital, final period). Fixed always lists both special options, styled
    like a cleaned caption.
  - Letter skew: compat has fewer than 4 options for R1 with S<=2, R3 with <4 listed captions and
    which-is-or-isn't "doesn't occur" with S<3, so letters lean to A/B. Fixed tops these up to
    ``num_options`` with options that are wrong by construction (captions of images not in the
    video, or another caption of a video image for "doesn't occur"), so the gt letter is uniform.
    R2 keeps its two options (before/after) in both modes; its letters are already uniform.
  - which-is-or-isn't: compat quotes the gt first in the question; fixed shuffles the list.

CLI: ``python -m lib.pseudo_video sample|export ...`` (see ``main``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch.utils.data as tud

from lib.coco import CaptionIndex, CocoError, clean_caption
from lib import tvbench
from lib.tvbench import LETTERS
from lib.video import write_video

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
SEEDINGS = ("global", "per-rank")

# The paper's best configurations (Table 4), as mix strings for ``parse_mix``.
PAPER_MIXES = {
    "llama_best": "R1:S=4:F=20,R3:S=6:F=5",
    "qwen_best": "R1:S=4:F=5",
    "r1_r2_r3": "R1:S=4:F=20,R2:S=4:F=5,R3:S=6:F=5",
}

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
R4_SPECIAL = {"before": "It is the first scene, nothing is before it.",
              "after": "It is the last scene, nothing is after it."}

# Affine jitter ranges (paper_code.md 1.6): max |rotation| degrees, scale range, max |shift|.
JITTER = {"none": None, "mild": (2.5, 0.98, 1.02, 0.02), "strong": (15.0, 0.9, 1.1, 0.1)}
CHUNK_PIXELS = 600_000  # output pixels per grid_sample call (4 frames at 384x384)


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

    def __post_init__(self):
        if self.qtype not in QUESTION_TYPES:
            raise ValueError(f"unknown question type {self.qtype!r}; choose from "
                             f"{QUESTION_TYPES} or a paper name {sorted(ALIASES)}")
        lo = self.scene_range[0]
        if self.qtype in ("R2", "R3") and lo < 2:
            raise ValueError(f"{self.qtype} needs at least 2 scenes (got S range {lo}..{self.s_max})")
        if not (1 <= lo <= self.s_max and 1 <= self.f_min <= self.f_max and self.n >= 0):
            raise ValueError(f"{self}: need 1 <= S_min <= S_max, 1 <= F_min <= F_max, n >= 0")

    @property
    def scene_range(self) -> tuple[int, int]:
        lo = self.s_min if self.s_min is not None else min(MIN_SCENES[self.qtype], self.s_max)
        return lo, self.s_max


def parse_mix(text: str, n: int, s: int = 4, f: int = 5) -> list[GenSpec]:
    """``"R1:S=4:F=20,R3:S=6:F=5:w=1"`` -> specs sharing ``n`` formations by weight ``w``.

    Keys per generator: S, Smin, F, Fmin, k, kmin (R3 listed captions), w (weight, default 1).
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
            elif key in keys:
                kw[keys[key]] = int(val)
            else:
                raise ValueError(f"mix {text!r}: unknown key {key!r} in {tok!r} "
                                 f"(use {sorted(keys) + ['w']})")
        items.append((name, w, kw))
    if not items:
        raise ValueError("empty question mix; give e.g. 'R1' or 'R1,R3'")
    total_w = sum(w for _, w, _ in items)
    counts = [int(n * w / total_w) for _, w, _ in items]
    counts[-1] += n - sum(counts)  # the rounding remainder goes to the last generator
    return [GenSpec(name, c, **kw) for (name, _, kw), c in zip(items, counts)]


# ---------------------------------------------------------------------------------------------
# Formations


@dataclass(frozen=True)
class Formation:
    qtype: str
    image_ids: tuple[int, ...]  # temporal order
    frame_counts: tuple[int, ...]
    spec: int  # index into the spec list

    @property
    def num_frames(self) -> int:
        return sum(self.frame_counts)


def draw_formations(image_ids: list[int], specs: list[GenSpec], seed: int,
                    seeding: str = "global", rank: int = 0) -> list[Formation]:
    """The table of formations, generators concatenated in spec order (paper_code.md 1.3-1.4).

    Per formation, in this RNG order: S ~ U{S_min..S_max}, F_1..F_S ~ U{F_min..F_max} i.i.d.,
    then S distinct images. ``per-rank`` seeds with ``seed + rank`` as the paper's code does.
    """
    if seeding not in SEEDINGS:
        raise ValueError(f"seeding {seeding!r}: choose from {SEEDINGS}")
    rng = random.Random(seed + rank if seeding == "per-rank" else seed)
    out = []
    for si, spec in enumerate(specs):
        lo, hi = spec.scene_range
        if hi > len(image_ids):
            raise ValueError(f"{spec.qtype}: S up to {hi} needs at least {hi} images, the index "
                             f"has {len(image_ids)}")
        for _ in range(spec.n):
            s = rng.randint(lo, hi)
            fr = tuple(rng.randint(spec.f_min, spec.f_max) for _ in range(s))
            ids = tuple(image_ids[j] for j in rng.sample(range(len(image_ids)), s))
            out.append(Formation(spec.qtype, ids, fr, si))
    return out


def read_seed(seed: int, epoch: int, index: int, rank: int | None = None) -> int:
    """The per-read seed: the same (seed, epoch, index) always gives the same sample."""
    words = [seed, epoch, index] if rank is None else [seed, rank, epoch, index]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0])


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
        return "<image>\n" + self.question + "\n" + option_lines(self.options)

    def record(self) -> dict:
        d = asdict(self)
        d.update(target=self.target, prompt=self.prompt, num_frames=self.num_frames,
                 answer_letter=self.letter)
        return d


def option_lines(options: list[str]) -> str:
    return "\n".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(options))


def _quoted(caps: list[str]) -> str:
    return ", ".join(f'"{c}"' for c in caps)


def _frame_range(a: int, b: int) -> str:
    return f"frames {a}-{b}"


class _Ctx:
    """What one question draw needs: the RNG, captions of the video and outside images."""

    def __init__(self, rng: random.Random, index: CaptionIndex, form: Formation, spec: GenSpec,
                 mode: str, num_options: int):
        self.rng, self.index, self.form, self.spec = rng, index, form, spec
        self.mode, self.k = mode, num_options - 1
        self.S = len(form.image_ids)
        self.captions = self._scene_captions()
        self.used = set(self.captions)

    def _scene_captions(self) -> list[str]:
        # One caption per scene, distinct strings within the video (paper: R1, R3, WIO; we do it
        # for every type so that no question quotes two scenes with the same words).
        out: list[str] = []
        for i in self.form.image_ids:
            caps = self.index.captions_for(i)
            order = self.rng.sample(caps, len(caps))
            out.append(next((c for c in order if c not in out), order[0]))
        return out

    def outside(self, n: int) -> list[str]:
        """Captions of ``n`` distinct images that are not in the video, unused so far."""
        ids, out, seen = self.index.image_ids, [], set(self.form.image_ids)
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

    def choose(self, gt: str, distractors: list[str], fill: Callable[[int], list[str]] | None = None,
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


def _r1_text(caps: list[str]) -> str:
    return " ".join(f"Scene {i + 1}: {c}." for i, c in enumerate(caps))


def q_r1(c: _Ctx) -> dict:
    caps, S = c.captions, c.S
    gt = _r1_text(caps)
    n_d = min(c.k, math.factorial(S) - 1)
    distractors: list[str] = []
    if S >= 3:  # rejection sampling as in the paper's code
        while len(distractors) < n_d:
            d = _r1_text(c.rng.sample(caps, S))
            if d != gt and d not in distractors:
                distractors.append(d)
    else:  # S <= 2: enumerate the few permutations
        distractors = [_r1_text(list(p)) for p in itertools.permutations(caps)][1:n_d + 1]

    def fill(m: int) -> list[str]:  # permutations with one scene swapped for an outside image
        out = []
        for o in c.outside(m):
            p = c.rng.sample(caps, S)
            p[c.rng.randrange(S)] = o
            out.append(_r1_text(p))
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
    specials = {w: (t if c.mode == "compat" else clean_caption(t)) for w, t in R4_SPECIAL.items()}
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
    return dict(question=Q_R4.format(c.captions[r], word), options=options, answer_index=a,
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
    there = "is 1 scene" if c.S == 1 else f"are {c.S} scenes"
    return dict(question=Q_A2.format(there, k), options=options, answer_index=a, meta={"k": k})


def q_wio(c: _Ctx) -> dict:
    occurs = c.rng.random() < 0.5
    if occurs:
        gt, distractors = c.captions[c.rng.randrange(c.S)], c.outside(c.k)
        fill = None
    else:
        gt = c.outside(1)[0]
        distractors = c.rng.sample(c.captions, c.S)[:c.k]

        def fill(m: int) -> list[str]:  # another caption of a video image: it does occur
            alts = [x for i in c.form.image_ids for x in c.index.captions_for(i) if x not in c.used]
            got = c.rng.sample(alts, min(m, len(alts)))
            c.used.update(got)
            return got
    options, a = c.choose(gt, distractors, fill)
    if c.mode == "compat":  # the paper's leak: gt quoted first
        listed = [gt] + [o for o in distractors if o in options]
    else:
        listed = c.rng.sample(options, len(options))
    verb = "occurs" if occurs else "does not occur"
    return dict(question=Q_WIO.format(verb, _quoted(listed)), options=options, answer_index=a,
                meta={"occurs": occurs})


def q_tg(c: _Ctx) -> dict:
    fc = c.form.frame_counts
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


# ---------------------------------------------------------------------------------------------
# Frames


def jitter_params(rng: np.random.Generator, n: int, jitter: str = "mild") -> np.ndarray:
    """(n, 3) per-frame (rotation degrees, isotropic scale, shift fraction for both axes)."""
    if jitter not in JITTER:
        raise ValueError(f"jitter {jitter!r}: choose from {sorted(JITTER)}")
    if JITTER[jitter] is None:
        return np.tile([0.0, 1.0, 0.0], (n, 1))
    rot, lo, hi, t = JITTER[jitter]
    return np.stack([rng.uniform(-rot, rot, n), rng.uniform(lo, hi, n), rng.uniform(-t, t, n)], 1)


def affine_theta(params: np.ndarray, h: int, w: int) -> np.ndarray:
    """(n, 2, 3) output->input maps in normalised coordinates (``F.affine_grid`` convention).

    Forward transform about the image centre (imgaug semantics): scale s, rotate by the angle,
    then shift by (t*W, t*H) pixels. The inverse is what grid sampling needs.
    """
    a = np.deg2rad(params[:, 0])
    s, t = params[:, 1], params[:, 2]
    cos, sin = np.cos(a) / s, np.sin(a) / s
    theta = np.empty((len(params), 2, 3))
    # D^-1 R^-1 D / s with D = diag(W/2, H/2), so rotation happens in pixel space.
    theta[:, 0, 0], theta[:, 0, 1] = cos, sin * h / w
    theta[:, 1, 0], theta[:, 1, 1] = -sin * w / h, cos
    tx, ty = t * w, t * h
    theta[:, 0, 2] = -(cos * tx + sin * ty) / (w / 2)
    theta[:, 1, 2] = -(-sin * tx + cos * ty) / (h / 2)
    return theta


def warp(image: np.ndarray, params: np.ndarray, hw: tuple[int, int] | None = None,
         out: np.ndarray | None = None) -> np.ndarray:
    """Frames (n, H, W, 3) uint8: ``image`` under each affine in ``params``, bilinear, black fill.

    ``hw`` (default: the image's size) is the output size: the image is stretched to it in the
    same bilinear pass ("fused" resampling). One batched ``grid_sample`` over all n frames; the
    grid is built by broadcasting, ~10x cheaper than ``F.affine_grid`` on CPU. The result is a
    (n, H, W, 3) view of channels-first memory (``out`` is (n, 3, H, W)), which saves the costly
    interleaving copy; ``np.transpose(frames, (0, 3, 1, 2))`` is contiguous.
    """
    import torch
    import torch.nn.functional as F

    h, w = hw if hw is not None else image.shape[:2]
    n = len(params)
    # Normalised coordinates do not depend on resolution, so the map rotates in output pixels.
    th = torch.from_numpy(affine_theta(params, h, w)).float()
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) * (2 / w) - 1
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) * (2 / h) - 1
    with torch.no_grad():
        # grid[t, y, x] = A_t (x, y) + b_t = (x-part)[t, x] + (y-part)[t, y]: one broadcast add
        row = th[:, None, :, 0] * xs[None, :, None]  # (n, W, 2)
        col = th[:, None, :, 1] * ys[None, :, None] + th[:, None, :, 2]  # (n, H, 2)
        img = image if image.flags.writeable else image.copy()  # torch wants writable memory
        # +0.5 before sampling = round half up after it (the weights sum to 1 inside the image;
        # at the black border the fill still truncates to 0), without a pass over the output.
        src = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() + 0.5
        if out is None:
            out = np.empty((n, 3, h, w), np.uint8)
        dst = torch.from_numpy(out)
        step = max(1, CHUNK_PIXELS // (h * w))  # a few frames per call stay in cache: ~1.6x
        for i in range(0, n, step):
            grid = row[i:i + step, None] + col[i:i + step, :, None]
            res = F.grid_sample(src.expand(len(grid), -1, -1, -1), grid, mode="bilinear",
                                padding_mode="zeros", align_corners=False)
            dst[i:i + step].copy_(res)
    return out.transpose(0, 2, 3, 1)


def resize(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Stretch to (H, W) without keeping the aspect ratio, bicubic (paper_code.md 1.5)."""
    if image.shape[:2] == tuple(hw):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((hw[1], hw[0]), Image.BICUBIC))


def frame_size(images: list[np.ndarray], size: int | tuple[int, int] | None) -> tuple[int, int]:
    if size is None:  # the paper: the video's max height and max width
        return max(i.shape[0] for i in images), max(i.shape[1] for i in images)
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


RESAMPLE = ("paper", "fused")


def render_frames(images: list[np.ndarray], frame_counts: list[int] | tuple[int, ...],
                  params: np.ndarray | None = None, size: int | tuple[int, int] | None = None,
                  resample: str = "paper") -> np.ndarray:
    """(T, H, W, 3) uint8: scene j is ``images[j]`` stretched to the frame size and repeated F_j
    times, each frame under its own affine ``params[t]`` (None: exact repeats).

    ``resample="paper"``: bicubic stretch once per scene, then the bilinear jitter (the paper's
    two interpolations). ``"fused"``: stretch and jitter in one bilinear pass from the decoded
    image (about 2x faster at 640x480 -> 384x384; no antialiasing, so keep downscales under 2x).
    Frames are a view of channels-first memory (see ``warp``).
    """
    if resample not in RESAMPLE:
        raise ValueError(f"resample {resample!r}: choose from {RESAMPLE}")
    hw = frame_size(images, size)
    T = sum(frame_counts)
    out = np.empty((T, 3, *hw), np.uint8)
    t0 = 0
    for img, f in zip(images, frame_counts):
        if params is None or np.all(params[t0:t0 + f] == [0.0, 1.0, 0.0]):
            out[t0:t0 + f] = resize(img, hw).transpose(2, 0, 1)
        elif resample == "fused":
            warp(img, params[t0:t0 + f], hw, out[t0:t0 + f])
        else:
            warp(resize(img, hw), params[t0:t0 + f], None, out[t0:t0 + f])
        t0 += f
    return out.transpose(0, 2, 3, 1)


# ---------------------------------------------------------------------------------------------
# The source: formations + questions + frames


class PseudoVideoSource:
    """A formation table over a caption index; ``sample(i, epoch)`` draws question i's read.

    Picklable (DataLoader workers get a copy); every draw depends only on (seed, epoch, i).
    """

    def __init__(self, index: CaptionIndex, specs: list[GenSpec], seed: int = 0,
                 mode: str = "fixed", seeding: str = "global", rank: int = 0,
                 num_options: int = 4):
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: choose from {MODES}")
        if len(index) < 2:
            raise CocoError(f"{index.captions_file}: needs at least 2 captioned images")
        self.index, self.specs, self.seed, self.mode = index, list(specs), seed, mode
        self.seeding, self.rank, self.num_options = seeding, rank, num_options
        self.formations = draw_formations(index.image_ids, self.specs, seed, seeding, rank)

    def __len__(self) -> int:
        return len(self.formations)

    def read_seed(self, i: int, epoch: int = 0) -> int:
        return read_seed(self.seed, epoch, i, self.rank if self.seeding == "per-rank" else None)

    def sample(self, i: int, epoch: int = 0) -> Sample:
        form = self.formations[i]
        s = self.read_seed(i, epoch)
        ctx = _Ctx(random.Random(s), self.index, form, self.specs[form.spec], self.mode,
                   self.num_options)
        q = GENERATORS[form.qtype](ctx)
        return Sample(sample_id=i, epoch=epoch, seed=s, mode=self.mode,
                      question_type=form.qtype, question=q["question"], options=q["options"],
                      answer_index=q["answer_index"], image_ids=list(form.image_ids),
                      captions=ctx.captions, frame_counts=list(form.frame_counts),
                      meta=q.get("meta", {}))

    def frames(self, sample: Sample, jitter: str = "mild",
               size: int | tuple[int, int] | None = None, resample: str = "paper") -> np.ndarray:
        images = [self.index.load_image(i) for i in sample.image_ids]
        rng = np.random.default_rng([sample.seed, 1])  # jitter stream, apart from the questions
        return render_frames(images, sample.frame_counts,
                             jitter_params(rng, sample.num_frames, jitter), size, resample)


def build_source(coco_root: Path | str, split: str = "train", questions: str = "R1", n: int = 1000,
                 s: int = 4, f: int = 5, seed: int = 0, mode: str = "fixed",
                 seeding: str = "global", rank: int = 0) -> PseudoVideoSource:
    """Convenience: caption index of ``coco_root``/``split`` and a mix string -> source."""
    index = CaptionIndex.from_root(coco_root, split)
    return PseudoVideoSource(index, parse_mix(questions, n, s, f), seed, mode, seeding, rank)


# ---------------------------------------------------------------------------------------------
# Torch dataset


class PseudoVideoDataset(tud.Dataset):
    """Training samples: frames + conversation + metadata, generated on the fly.

    Item: ``frames`` uint8 (T, H, W, 3) (a view of channels-first memory, see ``warp``); ``prompt`` (user turn); ``target`` ("(A) text");
    ``question_type``, ``sample_id``, ``seed``, ``epoch``, ``options``, ``answer_index``,
    ``image_ids``, ``captions``, ``frame_counts``, ``num_frames``; ``errors`` (list, empty unless
    this item substitutes for a bad one) and ``substituted_for`` (None or the bad index).

    A bad sample (missing or corrupt image, image without captions) raises with
    ``on_error="raise"`` (the default: nothing is replaced unless asked). Only with an explicit
    ``"substitute"`` is the next index served instead; the error is then logged, counted in
    ``bad[epoch]`` and carried in the item, so a training loop that runs DataLoader workers still
    reports every substitution. Call ``set_epoch`` before each epoch.
    """

    def __init__(self, source: PseudoVideoSource, jitter: str = "mild",
                 size: int | tuple[int, int] | None = None, on_error: str = "raise",
                 max_substitutions: int = 10, resample: str = "paper"):
        if on_error not in ("raise", "substitute"):
            raise ValueError("on_error: 'raise' or 'substitute'")
        if jitter not in JITTER:
            raise ValueError(f"jitter {jitter!r}: choose from {sorted(JITTER)}")
        if resample not in RESAMPLE:
            raise ValueError(f"resample {resample!r}: choose from {RESAMPLE}")
        self.source, self.jitter, self.size, self.on_error = source, jitter, size, on_error
        self.resample = resample
        self.max_substitutions = max_substitutions
        self.epoch = 0
        self.bad: dict[int, list[str]] = {}

    def __len__(self) -> int:
        return len(self.source)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def item(self, i: int) -> dict:
        s = self.source.sample(i, self.epoch)
        rec = s.record()
        rec["frames"] = self.source.frames(s, self.jitter, self.size, self.resample)
        rec.update(errors=[], substituted_for=None)
        return rec

    def __getitem__(self, i: int) -> dict:
        errors = []
        for attempt in range(self.max_substitutions + 1):
            j = (i + attempt) % len(self)
            try:
                rec = self.item(j)
            except CocoError as e:
                if self.on_error == "raise":
                    raise
                msg = f"epoch {self.epoch} sample {j}: {e}"
                errors.append(msg)
                self.bad.setdefault(self.epoch, []).append(msg)
                import logging

                logging.getLogger(__name__).warning("bad pseudo-video sample, substituting "
                                                    "the next index: %s", msg)
                continue
            if errors:
                rec.update(errors=errors, substituted_for=i)
            return rec
        raise CocoError(f"{self.max_substitutions + 1} consecutive bad samples from index {i}:\n"
                        + "\n".join(errors))

    def bad_report(self, epoch: int | None = None) -> dict:
        """Counts of substituted samples per epoch (this process only; workers report theirs
        through the items' ``errors``)."""
        eps = [epoch] if epoch is not None else sorted(self.bad)
        return {e: len(self.bad.get(e, [])) for e in eps}


def collate(items: list[dict]) -> dict:
    """Keep a batch as lists (frame counts differ); ``errors`` flattened for per-epoch counts."""
    out = {k: [it[k] for it in items] for k in items[0]}
    out["errors"] = [e for it in items for e in it["errors"]]
    return out


# ---------------------------------------------------------------------------------------------
# Export for the benchmark evaluator


def export_tvbench(source: PseudoVideoSource, out: Path | str, n: int | None = None,
                   jitter: str = "mild", size: int | tuple[int, int] | None = None,
                   fps: int = 2, task_prefix: str = "pseudo_", resample: str = "paper"
                   ) -> dict[str, int]:
    """Write samples 0..n-1 in TVBench layout: ``json/<prefix><qtype>.json`` + ``video/.../*.mp4``.

    Videos are written at ``fps`` = 2, so the paper's ~2 fps evaluation sampler takes every
    frame. Items carry the question (without options), candidates, answer and, as extra fields,
    the sample's question type, image ids and frame counts. Returns questions per task.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    n = len(source) if n is None else min(n, len(source))
    items: dict[str, list[dict]] = {}
    for i in tqdm(range(n), desc="export pseudo-videos", leave=False):
        s = source.sample(i)
        frames = source.frames(s, jitter, size, resample)
        pad = ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0))
        frames = np.pad(frames, pad)  # yuv420p needs even sides
        task = f"{task_prefix}{s.question_type}"
        video = f"{task}_{i:06d}.mp4"
        write_video(tvbench.video_path(out, task, video), frames, fps)
        items.setdefault(task, []).append({
            "video": video, "question": s.question, "candidates": s.options,
            "answer": s.options[s.answer_index], "question_type": s.question_type,
            "sample_id": i, "image_ids": s.image_ids, "frame_counts": s.frame_counts,
            "mode": s.mode})
    tasks = [tvbench.Task(task, f"Pseudo-video {task[len(task_prefix):]}",
                          task[len(task_prefix):], False, len(its),
                          max(len(x["candidates"]) for x in its))
             for task, its in items.items()]
    return tvbench.write_benchmark(out, tasks, items)


# ---------------------------------------------------------------------------------------------
# CLI


def write_samples(source: PseudoVideoSource, out: Path | str, frames_out: Path | str | None = None,
                  jitter: str = "mild", size: int | tuple[int, int] | None = None,
                  epoch: int = 0, resample: str = "paper") -> int:
    """One JSON object per sample (sorted keys), optionally frames as ``<id>.npy``."""
    from tqdm.auto import tqdm

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if frames_out is not None:
        Path(frames_out).mkdir(parents=True, exist_ok=True)
    with out.open("w") as fh:
        for i in tqdm(range(len(source)), desc="pseudo-video samples", leave=False):
            s = source.sample(i, epoch)
            rec = s.record()
            if frames_out is not None:
                f = Path(frames_out) / f"{i:06d}.npy"
                np.save(f, source.frames(s, jitter, size, resample))
                rec["frames_file"] = str(f)
            fh.write(json.dumps(rec, sort_keys=True) + "\n")
    return len(source)


def _size_arg(text: str | None):
    if text in (None, "", "max"):
        return None
    h, _, w = text.partition("x")
    return (int(h), int(w or h))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lib.pseudo_video",
                                 description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, help_ in (("sample", "write samples as JSON lines"),
                        ("export", "write a held-out set in TVBench layout")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--coco", type=Path, required=True, help="COCO root (annotations/, <split>2017/)")
        p.add_argument("--split", default="train", choices=["train", "val"])
        p.add_argument("--questions", default="R1",
                       help="mix, e.g. R1 | R1,R3 | R1:S=4:F=20,R3:S=6:F=5 | llama_best")
        p.add_argument("--S", type=int, default=4, help="max scenes per video")
        p.add_argument("--F", type=int, default=5, help="max frames per scene")
        p.add_argument("--n", type=int, default=200, help="formations in the table (N)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--mode", choices=MODES, default="fixed")
        p.add_argument("--seeding", choices=SEEDINGS, default="global")
        p.add_argument("--rank", type=int, default=0)
        p.add_argument("--jitter", choices=sorted(JITTER), default="mild")
        p.add_argument("--size", default=None, help="HxW or H (square); default: video max H, W")
        p.add_argument("--resample", choices=RESAMPLE, default="paper",
                       help="paper: bicubic stretch then bilinear jitter; fused: one pass")
        p.add_argument("--out", type=Path, required=True)
        if name == "sample":
            p.add_argument("--frames-out", type=Path, default=None, help="write <id>.npy frames")
            p.add_argument("--epoch", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        src = build_source(a.coco, a.split, a.questions, a.n, a.S, a.F, a.seed, a.mode,
                           a.seeding, a.rank)
        if a.cmd == "sample":
            k = write_samples(src, a.out, a.frames_out, a.jitter, _size_arg(a.size), a.epoch,
                              a.resample)
            print(f"wrote {k} samples to {a.out}")
        else:
            counts = export_tvbench(src, a.out, None, a.jitter, _size_arg(a.size),
                                    resample=a.resample)
            print(f"wrote {sum(counts.values())} questions to {a.out}: {counts}")
    except (CocoError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
