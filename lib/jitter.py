"""Pseudo-video frames: each scene's image stretched to the frame size and repeated F_j times,
every frame under its own mild affine jitter (paper_code.md 1.5-1.6).

``render_frames`` is the one renderer: ``lib.pseudo_video`` uses it for training items, the
``sample``/``export`` CLIs and notebook 02's previews; ``warp`` does all frames of a scene in one
batched ``grid_sample``. Used by notebooks 02 and 03 through ``lib.pseudo_video``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# Affine jitter ranges (paper_code.md 1.6): max |rotation| degrees, scale range, max |shift|.
JITTER = {"none": None, "mild": (2.5, 0.98, 1.02, 0.02), "strong": (15.0, 0.9, 1.1, 0.1)}
CHUNK_PIXELS = 600_000  # output pixels per grid_sample call (4 frames at 384x384)
RESAMPLE = ("paper", "fused")


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
    return np.asarray(Image.fromarray(image).resize((hw[1], hw[0]), Image.BICUBIC))


def frame_size(images: list[np.ndarray], size: int | tuple[int, int] | None) -> tuple[int, int]:
    """(H, W) of a video's frames: ``size`` (an int means square) or the images' max sides."""
    if size is None:  # the paper: the video's max height and max width
        return max(i.shape[0] for i in images), max(i.shape[1] for i in images)
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


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

