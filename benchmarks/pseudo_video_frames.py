"""Frames/s of on-the-fly pseudo-video generation vs a naive per-frame PIL pipeline.

All pipelines decode each scene's JPEG once, stretch it to 384x384 and apply the same per-frame
mild affine (bilinear, black fill). The naive one does what the paper's loader does, frame by
frame with PIL (bicubic resize and affine per frame). Ours is ``lib.jitter.render_frames``:
the default ``backend=cv2`` (one cubic ``cv2.resize`` per scene, then ``cv2.warpAffine`` per
frame, as imgaug in the paper's loader; the number on the last line) and the ``torch``
reference (a PIL bicubic resize per scene, then all its frames in batched ``grid_sample``),
each with ``resample=paper`` (the default) and ``fused`` (the stretch folded into the warp).
Formations follow the paper's R1 config with S=4, F=20 (S ~ U{2..4}, F_j ~ U{1..20}). Sources
are 640x480 JPEGs (COCO's typical size), made by upscaling shapes-COCO images, so no download
is needed. All pipelines run interleaved per video in one process, so load from other jobs hits
them alike.

Usage: ``python benchmarks/pseudo_video_frames.py [--videos 24] [--size 384] [--threads 1]``.
Last line: ``speedup Nx, F frames/s`` (cv2, resample=paper, vs naive).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TQDM_DISABLE", "1")  # asset-building progress bars

import cv2  # noqa: E402  (torch imports tqdm, which reads TQDM_DISABLE then)
import torch  # noqa: E402

from lib import assets, coco  # noqa: E402
from lib import jitter, questions  # noqa: E402
from lib import pseudo_video as pv  # noqa: E402

# A LongVU-3B training step takes ~0.35-0.5 s per sample on an H100 (finetune_anchors.md 2.4).
GPU_SECONDS_PER_SAMPLE = 0.35


def coco_like(out: Path, n: int = 64) -> Path:
    """shapes-COCO (smoke) with its train images upscaled to 640x480 JPEGs."""
    assets.build("smoke", out / "smoke")
    root = out / "coco"
    (root / "train2017").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    src = out / "smoke" / "coco"
    data = json.loads((src / "annotations" / "captions_train2017.json").read_text())
    for img in data["images"][:n]:
        im = Image.open(src / "train2017" / img["file_name"]).resize((640, 480), Image.BICUBIC)
        im.save(root / "train2017" / img["file_name"], quality=90)
        img.update(width=640, height=480)
    keep = {i["id"] for i in data["images"][:n]}
    data["images"] = data["images"][:n]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    (root / "annotations" / "captions_train2017.json").write_text(json.dumps(data))
    return root


def naive_frames(paths: list[Path], counts: list[int], params: np.ndarray,
                 size: int) -> np.ndarray:
    """The per-frame PIL pipeline: per frame resize (bicubic), then affine (bilinear)."""
    frames, t = [], 0
    for p, f in zip(paths, counts):
        stack = np.repeat(np.asarray(Image.open(p).convert("RGB"))[None], f, 0)
        for frame in stack:  # the paper's loader: decode once, repeat, then per frame
            img = Image.fromarray(frame)
            a, s, tr = params[t]
            r = np.deg2rad(a)
            inv = np.array([[np.cos(r), np.sin(r)], [-np.sin(r), np.cos(r)]]) / s
            c = np.array([size / 2, size / 2])
            off = c - inv @ (c + np.array([tr * size, tr * size]))
            fr = img.resize((size, size), Image.BICUBIC).transform(
                (size, size), Image.AFFINE, (*inv[0], off[0], *inv[1], off[1]),
                resample=Image.BILINEAR)
            frames.append(np.asarray(fr))
            t += 1
    return np.stack(frames)


def ours(index: coco.CaptionIndex, sample: questions.Sample, params: np.ndarray, size: int,
         backend: str, resample: str) -> np.ndarray:
    """``PseudoVideoSource.frames`` for the image source, with the backend as an argument."""
    images = [index.load_image(i) for i in sample.image_ids]
    return jitter.render_frames(images, sample.frame_counts, params, size, resample=resample,
                                backend=backend)


PIPELINES = {  # name: (backend, resample); None: naive
    "naive per-frame PIL": None,
    "cv2, resample=paper": ("cv2", "paper"),
    "cv2, resample=fused": ("cv2", "fused"),
    "torch, resample=paper": ("torch", "paper"),
    "torch, resample=fused": ("torch", "fused"),
}
NAIVE, DEFAULT = "naive per-frame PIL", "cv2, resample=paper"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=24)
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--threads", type=int, default=jitter.CV2_THREADS,
                    help="torch and OpenCV threads: 1, as in a DataLoader worker and like "
                         "single-threaded PIL")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root = coco_like(Path(tmp))
        index = coco.CaptionIndex.from_root(root, "train")
        src = pv.PseudoVideoSource(index, [questions.GenSpec("R1", args.videos, 4, 20)], seed=0)
        samples = [src.sample(i) for i in range(len(src))]
        total = sum(s.num_frames for s in samples)
        params = [jitter.jitter_params(np.random.default_rng([s.seed, 1]), s.num_frames, "mild")
                  for s in samples]
        # warm-up (torch, OpenCV, page cache); the helper is the library's default path
        for spec in PIPELINES.values():
            if spec is not None:
                ours(index, samples[0], params[0], args.size, *spec)
        assert np.array_equal(ours(index, samples[0], params[0], args.size, "cv2", "paper"),
                              src.frames(samples[0], "mild", args.size))
        naive_frames([index.image_path(i) for i in samples[0].image_ids],
                     samples[0].frame_counts, params[0], args.size)

        t = dict.fromkeys(PIPELINES, 0.0)
        out: dict[str, list] = {k: [] for k in t}
        for s, p in zip(samples, params):
            for k, spec in PIPELINES.items():
                t0 = time.perf_counter()
                if spec is None:
                    fr = naive_frames([index.image_path(i) for i in s.image_ids], s.frame_counts,
                                      p, args.size)
                else:
                    fr = ours(index, s, p, args.size, *spec)
                t[k] += time.perf_counter() - t0
                out[k].append(fr)
    fps = {k: total / v for k, v in t.items()}
    need = total / len(samples) / GPU_SECONDS_PER_SAMPLE
    print(f"machine: {os.cpu_count()} CPU cores, OpenCV {cv2.__version__} with "
          f"{cv2.getNumThreads()} thread(s), torch {torch.__version__} with "
          f"{torch.get_num_threads()} thread(s); PIL single-threaded; load average "
          f"{os.getloadavg()[0]:.1f} at the end")
    print(f"{len(samples)} videos, {total} frames at {args.size}x{args.size} "
          f"(R1, S=4, F=20: mean {total / len(samples):.1f} frames/video)")
    for k in PIPELINES:
        diff = np.mean([np.abs(a.astype(int) - b.astype(int)).mean()
                        for a, b in zip(out[k], out[NAIVE])])
        print(f"{k:22s}: {fps[k]:7.1f} frames/s {len(samples) / t[k]:6.2f} videos/s "
              f"{fps[k] / fps[NAIVE]:5.1f}x  mean |diff to naive| {diff:.2f} grey levels")
    print(f"a GPU step consumes ~{need:.0f} frames/s (one {total / len(samples):.0f}-frame sample "
          f"per {GPU_SECONDS_PER_SAMPLE} s, LongVU-3B on an H100); {DEFAULT} covers "
          f"{fps[DEFAULT] / need:.1f}x that per process")
    print(f"speedup {fps[DEFAULT] / fps[NAIVE]:.1f}x, {fps[DEFAULT]:.0f} frames/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
