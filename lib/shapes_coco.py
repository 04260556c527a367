"""shapes-COCO: procedurally drawn captioned images in COCO's layout, from a seed.

Each scene is a background plus 1-3 shapes (1 in the demo profile) with colour, size and
position, saved as a JPEG in COCO's layout (``annotations/captions_{train,val}2017.json``,
``train2017/``, ``val2017/``) with 6 differently worded short captions. Three name every
shape's colour, kind and position and the background (not its size), so they identify their
image; three leave the positions out, as COCO's captions vary in detail, and may be shared by
images whose shapes differ only in where they are.
The drawing vocabulary is shared with ``lib.minitvbench``. Built by ``lib.assets`` (notebook 00)
and read like real COCO by ``lib.coco`` and ``lib.pseudo_video`` (notebooks 02, 03).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

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
CLASHES = {("white", "white"), ("black", "black"), ("navy", "black"), ("light blue", "blue"),
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
        """What the captions say (sizes left out): no two images of a build share it."""
        return (self.background, tuple(sorted((o.position, o.shape, o.colour)
                                              for o in self.objects)))


def random_scene(rng: random.Random, max_objects: int = 3) -> Scene:
    bg = rng.choice(list(BACKGROUNDS))
    n = rng.randint(1, max_objects)
    cells = rng.sample(list(POSITIONS), n)
    objs = []
    for pos in cells:
        colour = rng.choice([c for c in COLOURS if (bg, c) not in CLASHES])
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
    """Six captions of varied wording, each naming every shape's colour and kind and the
    background (not sizes): three name the positions too (scenes are drawn so that no two
    share those), three do not."""
    objs = list(scene.objects)
    bg = scene.background

    def phrase(o: Shape, where: bool = True) -> str:
        return f"{_article(o.colour)} {o.colour} {o.shape}" + (f" {_at(o.position)}" if where
                                                              else "")

    shuffled = objs[:]
    rng.shuffle(shuffled)
    # Short, and every wording opens with a shape, colour first, as COCO's captions are short
    # and open with their subject ("A man riding a horse ..."). Both matter to the demo: with
    # captions that also named sizes its R1 fine-tune learned to copy the options but not the
    # order of the scenes; with short ones it does. The position-free half is what lets its
    # order knowledge reach MiniTVBench's position-free scene descriptions (docs/demo.md 8).
    said = _join([phrase(o) for o in objs])
    plain, plain_shuffled = (_join([phrase(o, False) for o in x]) for x in (objs, shuffled))
    caps = [
        f"{said} on {_article(bg)} {bg} background.",
        f"{said}, all against {bg}.",
        f"{_join([phrase(o) for o in shuffled])} shown over a plain {bg} backdrop.",
        f"{plain} on {_article(bg)} {bg} background.",
        f"{plain_shuffled} against {_article(bg)} {bg} background.",
        f"{plain} in front of {_article(bg)} {bg} backdrop.",
    ]
    return [c[0].upper() + c[1:] for c in caps]


def short_caption(scene: Scene) -> str:
    o = scene.objects[0]
    return f"{_article(o.colour)} {o.colour} {o.shape} on {_article(scene.background)} " \
           f"{scene.background} background"


# ---------------------------------------------------------------------------------------------
# shapes-COCO


def build_shapes_coco(out: Path, train_images: int, val_images: int, seed: int, version: int,
                      max_objects: int = 3) -> dict:
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
            scene = random_scene(rng, max_objects)
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
                     "version": str(version), "year": 2026},
            "licenses": [{"id": 1, "name": "generated", "url": ""}],
            "images": images,
            "annotations": anns,
        }
        (out / "annotations" / f"captions_{split}2017.json").write_text(json.dumps(data))
        counts[split] = {"images": len(images), "captions": len(anns)}
    return counts


def _scene_json(scene: Scene) -> dict:
    return {"background": scene.background, "objects": [asdict(o) for o in scene.objects]}
