"""Pseudo-video frames: repetition, resizing and the affine jitter (checklist 6-7)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lib import jitter


def _blob(h=101, w=151, at=(0, 0)):
    """Black image with a white 5x5 square centred ``at`` (dx, dy) pixels from the centre."""
    img = np.zeros((h, w, 3), np.uint8)
    cx, cy = w / 2 + at[0], h / 2 + at[1]
    img[int(cy) - 2:int(cy) + 3, int(cx) - 2:int(cx) + 3] = 255
    return img, (int(cx) + 0.5, int(cy) + 0.5)  # pixel centres sit at i + 0.5


def _centroid(frame):
    m = frame[..., 0].astype(float)
    ys, xs = np.mgrid[:m.shape[0], :m.shape[1]]
    return (xs * m).sum() / m.sum() + 0.5, (ys * m).sum() / m.sum() + 0.5


@pytest.mark.parametrize("kind", ["mild", "strong"])
def test_jitter_ranges(kind):
    p = jitter.jitter_params(np.random.default_rng(0), 5000, kind)
    rot, lo, hi, t = jitter.JITTER[kind]
    assert p.shape == (5000, 3)
    assert np.abs(p[:, 0]).max() <= rot and np.abs(p[:, 0]).max() > 0.95 * rot
    assert p[:, 1].min() >= lo and p[:, 1].max() <= hi
    assert np.abs(p[:, 2]).max() <= t and np.abs(p[:, 2]).max() > 0.95 * t
    assert jitter.JITTER["mild"] == (2.5, 0.98, 1.02, 0.02)  # paper_code.md 1.6


def test_translation_is_one_fraction_for_both_axes():
    img, (x0, y0) = _blob()
    t = 0.02
    out = jitter.warp(img, np.array([[0.0, 1.0, t]]))[0]
    x1, y1 = _centroid(out)
    assert x1 - x0 == pytest.approx(t * 151, abs=0.05)  # t * W in x
    assert y1 - y0 == pytest.approx(t * 101, abs=0.05)  # the same t times H in y


def test_rotation_and_scale_about_the_centre():
    img, (x0, y0) = _blob(at=(40, 0))
    cx, cy = 151 / 2, 101 / 2
    out = jitter.warp(img, np.array([[10.0, 1.0, 0.0], [0.0, 1.1, 0.0]]))
    x1, y1 = _centroid(out[0])
    assert np.hypot(x1 - cx, y1 - cy) == pytest.approx(np.hypot(x0 - cx, y0 - cy), abs=0.1)
    assert abs(np.degrees(np.arctan2(y1 - cy, x1 - cx))) == pytest.approx(10.0, abs=0.3)
    x2, _ = _centroid(out[1])
    assert x2 - cx == pytest.approx(1.1 * (x0 - cx), abs=0.1)  # isotropic scale about the centre


def test_warp_matches_pil_bilinear_affine():
    """Our batched warp equals a per-frame PIL bilinear affine with the same inverse map."""
    rng = np.random.default_rng(1)
    img = np.asarray(Image.fromarray(rng.integers(0, 255, (30, 40, 3), np.uint8)).resize(
        (160, 120), Image.BICUBIC))
    params = jitter.jitter_params(rng, 4, "strong")
    ours = jitter.warp(img, params)
    inside = jitter.warp(np.full_like(img, 255), params)[..., 0] == 255
    for ax in (1, 2):  # 2 px away from the black fill, where PIL treats edges differently
        inside &= np.roll(inside, 2, ax) & np.roll(inside, -2, ax)
    h, w = img.shape[:2]
    for k, (a, s, t) in enumerate(params):
        r = np.deg2rad(a)
        inv = np.array([[np.cos(r), np.sin(r)], [-np.sin(r), np.cos(r)]]) / s  # (s R)^-1
        c = np.array([w / 2, h / 2])
        off = c - inv @ (c + np.array([t * w, t * h]))
        ref = np.asarray(Image.fromarray(img).transform(
            (w, h), Image.AFFINE, (*inv[0], off[0], *inv[1], off[1]), resample=Image.BILINEAR))
        d = np.abs(ours[k].astype(int) - ref.astype(int))[inside[k]]
        assert d.size > 0.4 * h * w * 3
        assert d.mean() < 0.6 and d.max() <= 3  # 8-bit rounding differences only


def test_render_frames_shape_repeat_and_resize():
    a = np.full((20, 30, 3), 50, np.uint8)
    b = np.full((24, 16, 3), 200, np.uint8)
    none = jitter.render_frames([a, b], [3, 2], None)
    assert none.shape == (5, 24, 30, 3) and none.dtype == np.uint8  # max H, max W
    assert (none[:3] == 50).all() and (none[3:] == 200).all()
    fixed = jitter.render_frames([a, b], [1, 1],
                                 jitter.jitter_params(np.random.default_rng(0), 2, "none"),
                                 size=(8, 12))
    assert fixed.shape == (2, 8, 12, 3)


def test_mild_jitter_independent_per_frame_none_identical():
    img = np.asarray(Image.fromarray(
        np.random.default_rng(0).integers(0, 255, (40, 40, 3), np.uint8)).resize((96, 80)))
    rng = np.random.default_rng(0)
    mild = jitter.render_frames([img], [4], jitter.jitter_params(rng, 4, "mild"))
    assert mild.shape == (4, 80, 96, 3)
    assert all(not np.array_equal(mild[i], mild[j]) for i in range(4) for j in range(i))
    assert not np.array_equal(mild[0], img)  # the first frame of a scene is perturbed too
    none = jitter.render_frames([img], [4], jitter.jitter_params(rng, 4, "none"))
    assert all(np.array_equal(f, img) for f in none)


def test_affine_theta_identity():
    th = jitter.affine_theta(np.array([[0.0, 1.0, 0.0]]), 10, 20)
    assert np.allclose(th[0], [[1, 0, 0], [0, 1, 0]])


def test_fused_resampling_matches_paper_path():
    """Stretch + jitter in one bilinear pass lands on the same geometry as bicubic-then-warp."""
    rng = np.random.default_rng(3)
    img = np.asarray(Image.fromarray(rng.integers(0, 255, (12, 16, 3), np.uint8)).resize(
        (160, 120), Image.BICUBIC))
    params = jitter.jitter_params(rng, 3, "mild")
    paper = jitter.render_frames([img], [3], params, size=(96, 96))
    fused = jitter.render_frames([img], [3], params, size=(96, 96), resample="fused")
    assert paper.shape == fused.shape == (3, 96, 96, 3)
    assert np.abs(paper.astype(int) - fused.astype(int)).mean() < 2.0
    assert np.transpose(paper, (0, 3, 1, 2)).flags.c_contiguous  # channels-first memory
    with pytest.raises(ValueError, match="resample"):
        jitter.render_frames([img], [1], params[:1], resample="cubic")
