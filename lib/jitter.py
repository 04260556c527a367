"""Pseudo-video frames: each scene's image stretched to the frame size and repeated F_j times,
every frame under its own mild affine jitter (paper_code.md 1.5-1.6).

``render_frames`` is the one renderer: ``lib.pseudo_video`` uses it for training items, the
``sample``/``export`` CLIs and notebook 02's previews. Two backends draw the same geometry from
the same ``jitter_params``:

* ``cv2`` (the default): a cubic ``cv2.resize`` per scene, then one ``cv2.warpAffine`` per frame
  (bilinear, black fill), the calls imgaug makes in the paper's loader (imgaug ``Resize``
  "cubic", ``Affine`` order=1, mode constant, cval 0). ``warp_cv2``.
* ``torch``: a PIL bicubic resize per scene, then all frames of a scene in one batched
  ``grid_sample`` (``warp``), about 4x slower. The reference the tests hold the default to:
  the warps agree to 1 grey level (mean 0.002). The resizers differ: PIL antialiases when
  shrinking, OpenCV's cubic (imgaug's) does not, and their cubic kernels differ. On photos
  that is a mean 1-2 grey levels shrinking 640x480-ish to 384x384, about 0.5 for the
  upscaling of the default frame size (the video's max H, W); images already at the frame
  size are not resized.

Both shift by t*W and t*H exactly; imgaug rounds the shift to whole pixels (under half a pixel
apart). Used by notebooks 02 and 03 through ``lib.pseudo_video``.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# Affine jitter ranges (paper_code.md 1.6): max |rotation| degrees, scale range, max |shift|.
JITTER = {"none": None, "mild": (2.5, 0.98, 1.02, 0.02), "strong": (15.0, 0.9, 1.1, 0.1)}
CHUNK_PIXELS = 600_000  # output pixels per grid_sample call (4 frames at 384x384)
RESAMPLE = ("paper", "fused")
BACKENDS = ("cv2", "torch")
# One OpenCV thread per process: DataLoader workers are the parallelism (torch sets itself to one
# thread in them too), a single thread never starts OpenCV's pool, so forked workers cannot
# inherit a broken one, and a second thread gained at most 18% on the shared 2-core machine.
CV2_THREADS = 1
cv2.setNumThreads(CV2_THREADS)
_WARP_FLAGS = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP


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
    The ``torch`` backend, kept as the reference for ``warp_cv2``.

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


def cv2_maps(params: np.ndarray, hw_in: tuple[int, int], hw_out: tuple[int, int]
             ) -> np.ndarray:
    """(n, 2, 3) output->input maps in OpenCV pixel coordinates (``WARP_INVERSE_MAP``).

    The same maps as ``affine_theta``, so both backends share one geometry: output pixel
    -> normalised output coordinates -> ``affine_theta`` -> input pixel. OpenCV puts pixel
    centres at integers, ``grid_sample`` (align_corners=False) at normalised (2i + 1) / W - 1.
    With ``hw_in`` != ``hw_out`` the map also stretches the input to the output size.
    """
    (h, w), (h0, w0) = hw_out, hw_in
    to_norm = np.array([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]])
    to_pix = np.array([[w0 / 2, 0, w0 / 2 - 0.5], [0, h0 / 2, h0 / 2 - 0.5]])
    theta = np.concatenate([affine_theta(params, h, w),
                            np.broadcast_to([[[0.0, 0.0, 1.0]]], (len(params), 1, 3))], 1)
    return to_pix @ theta @ to_norm


def warp_cv2(image: np.ndarray, params: np.ndarray, hw: tuple[int, int] | None = None,
             out: np.ndarray | None = None) -> np.ndarray:
    """Frames (n, H, W, 3) uint8, C-contiguous: ``image`` under each affine in ``params`` by
    ``cv2.warpAffine``, bilinear, black fill; ``warp``'s geometry (``cv2_maps``).

    ``hw`` (default: the image's size) is the output size; the stretch to it is folded into the
    warp ("fused"). ``out``: an (n, H, W, 3) uint8 array to fill.
    """
    h, w = hw if hw is not None else image.shape[:2]
    maps = cv2_maps(params, image.shape[:2], (h, w))
    if out is None:
        out = np.empty((len(params), h, w, 3), np.uint8)
    # OpenCV 5.0's bilinear warp has a vector path for 4 channels only: warping RGBA and
    # dropping alpha is ~2x faster than warping RGB (0.5 vs 1.0 ms per 384x384 frame).
    src = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2RGBA)
    tmp = np.empty((h, w, 4), np.uint8)
    for k in range(len(params)):
        cv2.warpAffine(src, maps[k], (w, h), dst=tmp, flags=_WARP_FLAGS,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
        cv2.cvtColor(tmp, cv2.COLOR_RGBA2RGB, dst=out[k])
    return out


def resize(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Stretch to (H, W) without keeping the aspect ratio, PIL bicubic (the torch backend's)."""
    if image.shape[:2] == tuple(hw):
        return image
    return np.asarray(Image.fromarray(image).resize((hw[1], hw[0]), Image.BICUBIC))


def resize_cv2(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Stretch to (H, W) without keeping the aspect ratio, ``cv2.INTER_CUBIC`` as imgaug's
    ``Resize`` (paper_code.md 1.5): no antialiasing when shrinking, unlike PIL."""
    if image.shape[:2] == tuple(hw):
        return image
    return cv2.resize(np.ascontiguousarray(image), (hw[1], hw[0]),
                      interpolation=cv2.INTER_CUBIC)


def frame_size(images: list[np.ndarray], size: int | tuple[int, int] | None) -> tuple[int, int]:
    """(H, W) of a video's frames: ``size`` (an int means square) or the images' max sides."""
    if size is None:  # the paper: the video's max height and max width
        return max(i.shape[0] for i in images), max(i.shape[1] for i in images)
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def render_frames(images: list[np.ndarray], frame_counts: list[int] | tuple[int, ...],
                  params: np.ndarray | None = None, size: int | tuple[int, int] | None = None,
                  resample: str = "paper", backend: str = "cv2") -> np.ndarray:
    """(T, H, W, 3) uint8: scene j is ``images[j]`` stretched to the frame size and repeated F_j
    times, each frame under its own affine ``params[t]`` (None: exact repeats).

    ``resample="paper"``: cubic stretch once per scene, then the bilinear jitter (the paper's
    two interpolations). ``"fused"``: stretch and jitter in one bilinear pass from the decoded
    image (no antialiasing, so keep downscales under 2x). At 640x480 -> 384x384 it is slower
    than "paper" with cv2 (it samples the larger decoded image), 1.1-2x faster with torch.
    ``backend``: ``cv2`` (default) returns C-contiguous frames; ``torch`` (the reference) a view
    of channels-first memory (``warp``).
    """
    if resample not in RESAMPLE:
        raise ValueError(f"resample {resample!r}: choose from {RESAMPLE}")
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: choose from {BACKENDS}")
    hw = frame_size(images, size)
    T = sum(frame_counts)
    torch_path = backend == "torch"
    out = np.empty((T, 3, *hw) if torch_path else (T, *hw, 3), np.uint8)
    t0 = 0
    warp_fn, resize_fn = (warp, resize) if torch_path else (warp_cv2, resize_cv2)
    for img, f in zip(images, frame_counts):
        scene, p = out[t0:t0 + f], None if params is None else params[t0:t0 + f]
        if p is None or np.all(p == [0.0, 1.0, 0.0]):
            scene[:] = resize_fn(img, hw).transpose(2, 0, 1) if torch_path else resize_fn(img, hw)
        elif resample == "fused":
            warp_fn(img, p, hw, scene)
        else:
            warp_fn(resize_fn(img, hw), p, None, scene)
        t0 += f
    return out.transpose(0, 2, 3, 1) if torch_path else out
