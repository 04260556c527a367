"""MiniTVBench: synthetic temporal multiple-choice tasks in TVBench's layout, from a seed.

Six tasks (scene transition, action sequence, action localization, moving direction, object and
action count) drawn with shapes-COCO's vocabulary. Every task needs time: the candidate set is the
same whatever the answer (text alone gives chance) and no single frame tells the answer. Written
with ``lib.tvbench.write_benchmark`` and ``lib.video.write_video``; built by ``lib.assets``
(notebook 00) and evaluated like TVBench (notebooks 01, 04); ``lib.demo_stages`` reuses the
generators for the demo's video stage.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from lib import tvbench
from lib.shapes_coco import (BACKGROUNDS, CLASHES, COLOURS, SHAPES, draw_shape,
                             random_scene, render_scene, short_caption)
from lib.video import write_video

# ---------------------------------------------------------------------------------------------
# MiniTVBench: one generator per task. Each returns (frames, question, answer_text,
# candidates_without_order, extra) where extra may hold start/end seconds.


MINI_TASKS = [
    # key, display name, abbreviation, bound, options
    ("scene_transition", "Scene Transition", "ST", False, 2),
    ("action_sequence", "Action Sequence", "AS", True, 2),
    ("action_localization", "Action Localization", "AL", True, 4),
    ("moving_direction", "Moving Direction", "MD", False, 4),
    ("object_count", "Object Count", "OC", False, 4),
    ("action_count", "Action Count", "AC", False, 4),
]


class _Canvas:
    """Frames of one video: a background, static distractors and one actor shape."""

    def __init__(self, size: int, rng: random.Random, n_distractors: int = 1):
        self.size = size
        self.bg_name = rng.choice(list(BACKGROUNDS))
        self.bg = BACKGROUNDS[self.bg_name]
        base = Image.new("RGB", (size, size), self.bg)
        d = ImageDraw.Draw(base)
        self.free_colours = [c for c in COLOURS if (self.bg_name, c) not in CLASHES]
        for _ in range(n_distractors):  # small static shapes in the corners
            cx = rng.choice([0.12, 0.88]) * size
            cy = rng.choice([0.12, 0.88]) * size
            draw_shape(d, rng.choice(SHAPES), cx, cy, size * 0.06,
                       COLOURS[rng.choice(self.free_colours)], self.bg)
        self.base = base

    def frame(self, actors: list[tuple[str, str, float, float, float]]) -> np.ndarray:
        """actors: (shape, colour, cx, cy, radius) in pixels."""
        img = self.base.copy()
        d = ImageDraw.Draw(img)
        for shape, colour, cx, cy, r in actors:
            draw_shape(d, shape, cx, cy, r, COLOURS[colour], self.bg)
        return np.asarray(img)


def _seconds(rng: random.Random, lo: float, hi: float, fps: int) -> int:
    return int(round(rng.uniform(lo, hi) * fps))


def gen_scene_transition(rng, size, fps, answer_slot):
    a = random_scene(rng, max_objects=1)
    while True:
        b = random_scene(rng, max_objects=1)
        if b.background != a.background and b.objects[0].shape != a.objects[0].shape:
            break
    na, nb = _seconds(rng, 3, 5, fps), _seconds(rng, 3, 5, fps)
    ia = np.asarray(render_scene(a, size, size, rng))
    ib = np.asarray(render_scene(b, size, size, rng))
    frames = np.stack([ia] * na + [ib] * nb)
    ca, cb = short_caption(a), short_caption(b)
    right, wrong = f"From {ca} to {cb}.", f"From {cb} to {ca}."
    q = "What's the right option for how the scenes in the video change?"
    return frames, q, right, [wrong], {}


_ACTIONS = ["jumped", "shook", "grew bigger", "blinked"]


def _action_pose(action: str, t: float, cx: float, cy: float, r: float):
    """Position and radius at phase t in [0, 1) of an action (None: invisible)."""
    if action == "jumped":
        return cx, cy - r * 1.2, r
    if action == "shook":
        return cx + (r * 0.8 if int(t * 4) % 2 == 0 else -r * 0.8), cy, r
    if action == "grew bigger":
        return cx, cy, r * 1.7
    if action == "blinked":
        return None
    raise ValueError(action)


def _actor_video(canvas: _Canvas, shape: str, colour: str, n_frames: int,
                 events: list[tuple[int, int, str]], r: float) -> np.ndarray:
    """A centred actor that performs ``events`` (start frame, length, action)."""
    cx = cy = canvas.size / 2
    frames = []
    for f in range(n_frames):
        pose = (cx, cy, r)
        for s, n, act in events:
            if s <= f < s + n:
                pose = _action_pose(act, (f - s) / n, cx, cy, r)
        frames.append(canvas.frame([] if pose is None else [(shape, colour, *pose)]))
    return np.stack(frames)


def gen_action_sequence(rng, size, fps, answer_slot):
    canvas = _Canvas(size, rng)
    shape, colour = rng.choice(SHAPES), rng.choice(canvas.free_colours)
    first, second = rng.sample(_ACTIONS, 2)
    pre, win, post = _seconds(rng, 2, 3, fps), _seconds(rng, 4.5, 5.5, fps), _seconds(rng, 2, 3, fps)
    act = fps  # each action lasts one second: two frames at the evaluator's 2 fps
    # Outside [start, end] the actor does the two actions in the opposite order: a model that
    # ignores the bounds is pulled towards the wrong answer.
    events = [
        (int(pre * 0.3), act, second),
        (pre + int(win * 0.15), act, first),
        (pre + int(win * 0.6), act, second),
        (pre + win + int(post * 0.3), act, first),
    ]
    frames = _actor_video(canvas, shape, colour, pre + win + post, events, size * 0.16)
    q = f"What did the {colour} {shape} do first?"
    return frames, q, first, [second], {"start": pre / fps, "end": (pre + win) / fps}


_WHEN = ["At the beginning of the video.", "In the middle of the video.",
         "At the end of the video.", "Throughout the entire video."]


def gen_action_localization(rng, size, fps, answer_slot):
    canvas = _Canvas(size, rng)
    shape, colour = rng.choice(SHAPES), rng.choice(canvas.free_colours)
    action = rng.choice(_ACTIONS)
    which = answer_slot % 4
    pre, win, post = _seconds(rng, 2, 3, fps), 6 * fps, _seconds(rng, 2, 3, fps)
    third = win // 3
    act = fps
    thirds = [0, 1, 2] if which == 3 else [which]
    events = [(pre + k * third + (third - act) // 2, act, action) for k in thirds]
    # Decoys outside the window, so the answer depends on the bounds.
    events += [(max(0, pre - act - 2), act, action), (pre + win + 2, act, action)]
    frames = _actor_video(canvas, shape, colour, pre + win + post, events, size * 0.16)
    verb = {"jumped": "jump", "shook": "shake", "grew bigger": "grow bigger",
            "blinked": "blink"}[action]
    q = f"When does the {colour} {shape} {verb}?"
    right = _WHEN[which]
    return frames, q, right, [w for w in _WHEN if w != right], {
        "start": pre / fps, "end": (pre + win) / fps}


_DIRECTIONS = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}


def gen_moving_direction(rng, size, fps, answer_slot):
    canvas = _Canvas(size, rng)
    shape, colour = rng.choice(SHAPES), rng.choice(canvas.free_colours)
    name = list(_DIRECTIONS)[answer_slot % 4]
    dx, dy = _DIRECTIONS[name]
    n = _seconds(rng, 4, 6, fps)
    r = size * 0.12
    travel = size * 0.45
    # The path is centred on a random point, so the middle frame looks the same for every
    # direction; the direction is only in the change between frames.
    mx = rng.uniform(r + travel / 2, size - r - travel / 2)
    my = rng.uniform(r + travel / 2, size - r - travel / 2)
    frames = []
    for f in range(n):
        s = (f / (n - 1) - 0.5) * travel
        frames.append(canvas.frame([(shape, colour, mx + dx * s, my + dy * s, r)]))
    q = f"What direction is the {colour} {shape} moving in?"
    return np.stack(frames), q, name, [d for d in _DIRECTIONS if d != name], {}


def gen_object_count(rng, size, fps, answer_slot):
    canvas = _Canvas(size, rng, n_distractors=0)
    k = (answer_slot // 4) % 4 + 1
    gap, show = _seconds(rng, 0.5, 1.0, fps), fps
    frames = [canvas.frame([])] * gap
    for _ in range(k):  # one object at a time, so no frame shows more than one
        shape, colour = rng.choice(SHAPES), rng.choice(canvas.free_colours)
        cx, cy = rng.uniform(0.3, 0.7) * size, rng.uniform(0.3, 0.7) * size
        frames += [canvas.frame([(shape, colour, cx, cy, size * 0.14)])] * show
        frames += [canvas.frame([])] * _seconds(rng, 0.5, 1.0, fps)
    frames += [canvas.frame([])] * _seconds(rng, 0.0, (4 - k) * 1.5, fps)  # similar lengths
    q = "How many objects appear in the video, one after another?"
    return np.stack(frames), q, str(k), [str(j) for j in range(1, 5) if j != k], {}


def gen_action_count(rng, size, fps, answer_slot):
    canvas = _Canvas(size, rng)
    shape, colour = rng.choice(SHAPES), rng.choice(canvas.free_colours)
    k = (answer_slot // 4) % 4 + 1
    t, events = _seconds(rng, 0.5, 1.0, fps), []
    for _ in range(k):
        events.append((t, fps, "jumped"))
        t += fps + _seconds(rng, 1.0, 1.5, fps)
    n = t + _seconds(rng, 0.0, (4 - k) * 2.0, fps)
    frames = _actor_video(canvas, shape, colour, n, events, size * 0.16)
    q = f"How many times does the {colour} {shape} jump?"
    return frames, q, str(k), [str(j) for j in range(1, 5) if j != k], {}


GENERATORS = {
    "scene_transition": gen_scene_transition,
    "action_sequence": gen_action_sequence,
    "action_localization": gen_action_localization,
    "moving_direction": gen_moving_direction,
    "object_count": gen_object_count,
    "action_count": gen_action_count,
}



def build_minitvbench(out: Path, questions_per_task: int, size: int = 96, fps: int = 8,
                      seed: int = 0) -> dict:
    """Write MiniTVBench in TVBench layout; returns questions per task."""
    tasks, items = [], {}
    for t_idx, (key, name, abbr, bound, n_opts) in enumerate(MINI_TASKS):
        rng = random.Random(seed * 1000 + t_idx)
        its = []
        # Slot i fixes the answer letter (i % n_opts) and, for the class-balanced tasks, the class;
        # the slot order is then shuffled so neighbouring questions do not share letters.
        slots = list(range(questions_per_task))
        for i in tqdm(slots, desc=f"MiniTVBench {key}", leave=False):
            frames, q, right, wrong, extra = GENERATORS[key](rng, size, fps, i)
            letter = i % n_opts
            rng.shuffle(wrong)
            cands = wrong[:letter] + [right] + wrong[letter:]
            video = f"{key}_{i:04d}.mp4"
            write_video(tvbench.video_path(out, key, video), frames, fps)
            its.append({"video": video, "question": q, "candidates": cands, "answer": right,
                        **extra})
        rng.shuffle(its)
        items[key] = its
        tasks.append(tvbench.Task(key, name, abbr, bound, questions_per_task, n_opts))
    return tvbench.write_benchmark(out, tasks, items)
