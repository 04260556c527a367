"""The embedded default: shapes-COCO and MiniTVBench, generated from a seed, never downloaded.

Used by notebook 00 (builds them) and, through the demo/smoke presets, by every later notebook.

* shapes-COCO: procedurally drawn scenes (background plus 1-3 shapes with colour, size and
  position) saved as JPEGs in COCO's layout (``annotations/captions_{train,val}2017.json``,
  ``train2017/``, ``val2017/``), each image with 5 differently worded captions that all name every
  attribute, so a caption identifies its image.
* MiniTVBench: synthetic temporal multiple-choice tasks in TVBench's layout (``json/<task>.json``,
  ``video/<task>/<file>.mp4`` written with PyAV). Every task needs time: the candidate set is the
  same whatever the answer (text alone gives chance) and no single frame tells the answer.

CLI: ``python -m lib.assets build --profile demo|smoke --out DIR``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lib import paths, tvbench
from lib.video import write_video

ASSETS_VERSION = 1

# ---------------------------------------------------------------------------------------------
# Scene vocabulary and drawing


BACKGROUNDS = {
    "white": (235, 235, 235), "gray": (128, 128, 128), "black": (20, 20, 20),
    "beige": (225, 205, 160), "light blue": (150, 200, 240), "light green": (160, 225, 150),
    "pink": (240, 170, 200), "navy": (25, 35, 100),
}
COLOURS = {
    "red": (220, 30, 30), "green": (30, 160, 50), "blue": (30, 70, 220), "yellow": (245, 215, 30),
    "purple": (140, 40, 170), "orange": (245, 130, 20), "white": (250, 250, 250),
    "black": (10, 10, 10),
}
SHAPES = ["circle", "square", "triangle", "diamond", "star", "ring"]
SIZES = {"small": 0.2, "medium": 0.3, "large": 0.42}  # of the shorter image side
POSITIONS = {  # name -> (column, row) in a 3x3 grid
    "top left": (0, 0), "top": (1, 0), "top right": (2, 0),
    "left": (0, 1), "center": (1, 1), "right": (2, 1),
    "bottom left": (0, 2), "bottom": (1, 2), "bottom right": (2, 2),
}
_CLASHES = {("white", "white"), ("black", "black"), ("navy", "black"), ("light blue", "blue"),
            ("light green", "green"), ("pink", "purple"), ("gray", "black")}
IMAGE_SIZES = [(96, 96), (128, 96), (96, 128), (112, 112), (128, 112)]  # (width, height)


@dataclass(frozen=True)
class Shape:
    shape: str
    colour: str
    size: str
    position: str


@dataclass(frozen=True)
class Scene:
    background: str
    objects: tuple[Shape, ...]

    def key(self) -> tuple:
        return (self.background, tuple(sorted(self.objects, key=lambda o: o.position)))


def random_scene(rng: random.Random, max_objects: int = 3) -> Scene:
    bg = rng.choice(list(BACKGROUNDS))
    n = rng.randint(1, max_objects)
    cells = rng.sample(list(POSITIONS), n)
    objs = []
    for pos in cells:
        colour = rng.choice([c for c in COLOURS if (bg, c) not in _CLASHES])
        objs.append(Shape(rng.choice(SHAPES), colour, rng.choice(list(SIZES)), pos))
    return Scene(bg, tuple(objs))


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float,
               fill: tuple[int, int, int], bg: tuple[int, int, int]) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        draw.rectangle([cx - r * 0.85, cy - r * 0.85, cx + r * 0.85, cy + r * 0.85], fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r * 0.8), (cx + r, cy + r * 0.8)], fill=fill)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
    elif shape == "star":
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * 0.45
            a = np.pi / 2 + k * np.pi / 5
            pts.append((cx + rad * np.cos(a), cy - rad * np.sin(a)))
        draw.polygon(pts, fill=fill)
    elif shape == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        draw.ellipse([cx - r * 0.5, cy - r * 0.5, cx + r * 0.5, cy + r * 0.5], fill=bg)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")


def render_scene(scene: Scene, width: int, height: int, rng: random.Random) -> Image.Image:
    """Draw a scene; positions get a little random offset inside their grid cell."""
    bg = BACKGROUNDS[scene.background]
    arr = np.empty((height, width, 3), np.uint8)
    arr[:] = bg
    # A faint vertical gradient keeps JPEGs from being flat colour fields.
    shade = np.linspace(-12, 12, height, dtype=np.float32)[:, None, None]
    arr = np.clip(arr.astype(np.float32) + shade, 0, 255).astype(np.uint8)
    img = Image.fromarray(arr)
    draw = ImageDraw.Draw(img)
    side = min(width, height)
    for o in scene.objects:
        col, row = POSITIONS[o.position]
        r = SIZES[o.size] * side / 2
        cx = (col + 0.5) * width / 3 + rng.uniform(-0.06, 0.06) * width
        cy = (row + 0.5) * height / 3 + rng.uniform(-0.06, 0.06) * height
        draw_shape(draw, o.shape, cx, cy, r, COLOURS[o.colour], bg)
    return img


# ---------------------------------------------------------------------------------------------
# Captions


def _at(position: str) -> str:
    return "in the center" if position == "center" else (
        f"on the {position}" if position in ("left", "right") else f"at the {position}")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def captions(scene: Scene, rng: random.Random) -> list[str]:
    """Five captions of varied wording; every one names all attributes of every object."""
    objs = list(scene.objects)
    bg = scene.background

    def phrase(o: Shape, style: int) -> str:
        if style == 0:
            return f"{_article(o.size)} {o.size} {o.colour} {o.shape} {_at(o.position)}"
        if style == 1:
            return f"{_article(o.colour)} {o.colour} {o.shape} of {o.size} size {_at(o.position)}"
        return f"{_article(o.size)} {o.size} {o.shape} in {o.colour} {_at(o.position)}"

    shuffled = objs[:]
    rng.shuffle(shuffled)
    caps = [
        f"A picture of {_join([phrase(o, 0) for o in objs])} on {_article(bg)} {bg} background.",
        f"{_article(bg).capitalize()} {bg} background with {_join([phrase(o, 1) for o in shuffled])}.",
        f"There is {_join([phrase(o, 2) for o in objs])}, all against {bg}.",
        f"On {_article(bg)} {bg} backdrop we see {_join([phrase(o, 0) for o in shuffled])}.",
        f"{_join([phrase(o, 1) for o in objs])[0].upper()}{_join([phrase(o, 1) for o in objs])[1:]}"
        f" shown over a plain {bg} backdrop.",
    ]
    return caps


def short_caption(scene: Scene) -> str:
    o = scene.objects[0]
    return f"{_article(o.colour)} {o.colour} {o.shape} on {_article(scene.background)} " \
           f"{scene.background} background"


# ---------------------------------------------------------------------------------------------
# shapes-COCO


@dataclass(frozen=True)
class Profile:
    name: str
    train_images: int
    val_images: int
    questions_per_task: int
    video_size: int = 96
    fps: int = 8


PROFILES = {
    "demo": Profile("demo", train_images=2400, val_images=300, questions_per_task=128),
    "smoke": Profile("smoke", train_images=48, val_images=16, questions_per_task=8),
}


def build_shapes_coco(out: Path, train_images: int, val_images: int, seed: int = 0) -> dict:
    """Write shapes-COCO under ``out`` in COCO's layout; returns counts per split."""
    rng = random.Random(seed)
    seen: set[tuple] = set()
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    counts = {}
    image_id, ann_id = 1, 1
    for split, n in (("train", train_images), ("val", val_images)):
        img_dir = out / f"{split}2017"
        img_dir.mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        while len(images) < n:
            scene = random_scene(rng)
            if scene.key() in seen:
                continue
            seen.add(scene.key())
            w, h = rng.choice(IMAGE_SIZES)
            name = f"{image_id:012d}.jpg"
            render_scene(scene, w, h, rng).save(img_dir / name, quality=92)
            images.append({"id": image_id, "file_name": name, "height": h, "width": w,
                           "license": 1, "scene": _scene_json(scene)})
            for cap in captions(scene, rng):
                anns.append({"id": ann_id, "image_id": image_id, "caption": cap})
                ann_id += 1
            image_id += 1
        data = {
            "info": {"description": f"shapes-COCO {split} (generated by lib.assets, seed {seed})",
                     "version": str(ASSETS_VERSION), "year": 2026},
            "licenses": [{"id": 1, "name": "generated", "url": ""}],
            "images": images,
            "annotations": anns,
        }
        (out / "annotations" / f"captions_{split}2017.json").write_text(json.dumps(data))
        counts[split] = {"images": len(images), "captions": len(anns)}
    return counts


def _scene_json(scene: Scene) -> dict:
    return {"background": scene.background, "objects": [asdict(o) for o in scene.objects]}


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
        self.free_colours = [c for c in COLOURS if (self.bg_name, c) not in _CLASHES]
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
    from tqdm.auto import tqdm

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


# ---------------------------------------------------------------------------------------------
# Both, with a manifest so a second build with the same settings is free


def tree_hash(root: Path) -> str:
    """sha256 over every file's relative path and bytes (the determinism check)."""
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file() and q.name != "assets.json"):
        h.update(str(p.relative_to(root)).encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def build(profile: str = "demo", out: Path | str | None = None, seed: int = 0,
          force: bool = False) -> dict:
    """Build shapes-COCO (``out/coco``) and MiniTVBench (``out/minitvbench``) for a profile."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    p = PROFILES[profile]
    out = Path(out) if out is not None else paths.demo_assets_dir(profile)
    manifest_file = out / "assets.json"
    settings = {"version": ASSETS_VERSION, "profile": asdict(p), "seed": seed}
    if manifest_file.exists() and not force:
        manifest = json.loads(manifest_file.read_text())
        if manifest.get("settings") == settings:
            return manifest
    out.mkdir(parents=True, exist_ok=True)
    coco = build_shapes_coco(out / "coco", p.train_images, p.val_images, seed)
    bench = build_minitvbench(out / "minitvbench", p.questions_per_task, p.video_size, p.fps,
                              seed)
    manifest = {"settings": settings, "coco": coco, "minitvbench": bench,
                "paths": {"coco": "coco", "minitvbench": "minitvbench"},
                "sha256": {"coco": tree_hash(out / "coco"),
                           "minitvbench": tree_hash(out / "minitvbench")}}
    manifest_file.write_text(json.dumps(manifest, indent=1))
    return manifest


def embedded(profile: str) -> dict[str, Path]:
    """The embedded default of a profile (built on first use; the manifest makes reuse cheap):
    ``{"coco": shapes-COCO root, "minitvbench": MiniTVBench root}``."""
    out = paths.demo_assets_dir(profile)
    manifest = build(profile, out)
    return {name: out / rel for name, rel in manifest["paths"].items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lib.assets", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="generate shapes-COCO and MiniTVBench")
    b.add_argument("--profile", choices=sorted(PROFILES), default="demo")
    b.add_argument("--out", type=Path, default=None,
                   help="output folder (default: $WORKBOOK_DATA_DIR/assets/<profile>)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--force", action="store_true", help="rebuild even if the manifest matches")
    args = ap.parse_args(argv)
    out = args.out or paths.demo_assets_dir(args.profile)
    m = build(args.profile, out, args.seed, args.force)
    print(f"wrote {out}")
    for split, c in m["coco"].items():
        print(f"  coco/{split}2017: {c['images']} images, {c['captions']} captions "
              f"(coco/annotations/captions_{split}2017.json)")
    for task, n in m["minitvbench"].items():
        print(f"  minitvbench/json/{task}.json: {n} questions, videos in minitvbench/video/{task}/")
    print(f"  sha256 coco {m['sha256']['coco'][:16]} minitvbench {m['sha256']['minitvbench'][:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
