"""The embedded default: shapes-COCO and MiniTVBench for a profile, generated, never downloaded.

``build`` writes ``<out>/coco`` (``lib.shapes_coco``) and ``<out>/minitvbench``
(``lib.minitvbench``) with a manifest (settings, counts, sha256 of both trees), so a second build
with the same settings is free; ``embedded(profile)`` returns both roots (``lib.profiles`` maps a
profile to them). Used by notebook 00 (builds them) and, through the demo/smoke presets, by every
later notebook.

``check`` validates both and ``examples`` gives notebook 00 a first look.

CLI: ``python -m lib.assets build --profile demo|smoke --out DIR``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from PIL import Image

from lib import coco, paths, tvbench
from lib.minitvbench import build_minitvbench
from lib.shapes_coco import build_shapes_coco

ASSETS_VERSION = 3


@dataclass(frozen=True)
class Profile:
    name: str
    train_images: int
    val_images: int
    questions_per_task: int
    video_size: int = 96
    fps: int = 8
    max_objects: int = 3  # shapes per shapes-COCO image


PROFILES = {
    # One shape per demo image, like MiniTVBench's scenes: a 4-layer, 64-wide decoder grounds a
    # caption of one shape in pixels (docs/demo.md), not yet of three.
    "demo": Profile("demo", train_images=2400, val_images=300, questions_per_task=128,
                    max_objects=1),
    "smoke": Profile("smoke", train_images=48, val_images=16, questions_per_task=8),
}


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
    coco = build_shapes_coco(out / "coco", p.train_images, p.val_images, seed,
                             ASSETS_VERSION, p.max_objects)
    bench = build_minitvbench(out / "minitvbench", p.questions_per_task, p.video_size, p.fps,
                              seed)
    manifest = {"settings": settings, "coco": coco, "minitvbench": bench,
                "paths": {"coco": "coco", "minitvbench": "minitvbench"},
                "sha256": {"coco": tree_hash(out / "coco"),
                           "minitvbench": tree_hash(out / "minitvbench")}}
    manifest_file.write_text(json.dumps(manifest, indent=1))
    return manifest


def embedded(profile: str, seed: int = 0) -> dict[str, Path]:
    """The embedded default of a profile (built on first use; the manifest makes reuse cheap):
    ``{"coco": shapes-COCO root, "minitvbench": MiniTVBench root}``."""
    out = paths.demo_assets_dir(profile)
    manifest = build(profile, out, seed)
    return {name: out / rel for name, rel in manifest["paths"].items()}


def check(roots: dict[str, Path]) -> dict[str, pd.DataFrame]:
    """Validate both with the validators real COCO and TVBench go through (every image
    decoded); raises on any problem. Returns a table per dataset for notebook 00."""
    coco_rows = {}
    for split in ("train", "val"):
        rep = coco.validate_captions(coco.captions_path(roots["coco"], split),
                                     coco.images_dir(roots["coco"], split), check_images="decode")
        coco_rows[split] = {"images": rep.num_images, "captions": rep.num_captions,
                            "valid": rep.ok}
    bench = tvbench.validate(roots["minitvbench"])
    return {"coco": pd.DataFrame(coco_rows).T,
            "minitvbench": pd.DataFrame({"questions": bench.tasks, "videos": bench.videos})}


def examples(roots: dict[str, Path], n_questions: int = 8
             ) -> tuple[Image.Image, list[str], pd.DataFrame]:
    """A first look: the first shapes-COCO image (enlarged) with its captions, and every
    k-th MiniTVBench question so that about ``n_questions`` are shown."""
    index = coco.CaptionIndex.from_root(roots["coco"], "train")
    first = index.image_ids[0]
    questions = tvbench.load(roots["minitvbench"])
    table = pd.DataFrame([{"task": q.task, "question": q.question, "candidates": q.candidates,
                           "answer": q.candidates[q.answer_index], "start": q.start,
                           "end": q.end}
                          for q in questions[::max(1, len(questions) // n_questions)]])
    return Image.open(index.image_path(first)).resize((192, 192)), index.captions[first], table


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
    try:
        paths.writable_dir(out, "--out")
    except paths.OutputPathError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    m = build(args.profile, out, args.seed, args.force)
    print(f"wrote {out}")
    for split, c in m["coco"].items():
        print(f"  coco/{split}2017: {c['images']} images, {c['captions']} captions "
              f"(coco/annotations/captions_{split}2017.json)")
    for task, n in m["minitvbench"].items():
        print(f"  minitvbench/json/{task}.json: {n} questions, "
              f"videos in minitvbench/video/{task}/")
    sha = m["sha256"]
    print(f"  sha256 coco {sha['coco'][:16]} minitvbench {sha['minitvbench'][:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
