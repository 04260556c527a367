"""T2Vid-style text frames: one caption rendered as an RGB image, seeded.

After *T2Vid: Translating Long Text into Multi-Image is the Catalyst for Video-LLMs*
(arXiv 2411.19951), which turns text into video-like samples by rendering it as a sequence of
images. ``lib.pseudo_video`` (``source="t2vid"``) draws each scene as one caption of its image
rendered by ``render_caption`` and repeats it for the scene's frames under the same affine
jitter as image scenes (``lib.jitter``). Used by notebooks 02 (previews) and 03 (training),
and by the ``source-compare`` preset.

Everything that varies is drawn from the ``seed`` given (the per-read seed of the sample, so
the same seed gives the same bytes): a background/foreground colour pair with a WCAG contrast
ratio of at least ``MIN_CONTRAST``, the font size (between ``font_range``'s bounds), the wrap
width, the alignment and the position of the text block. The font is Pillow's embedded one
(``ImageFont.load_default(size=...)``, Pillow >= 10.1 with FreeType), so no font file is needed.

Legibility: the font is at least 1/20 of the short side (19 px at the real towers' 384x384,
whose SigLIP patches are 14 px; each text line is at least 16 px of ink there) and never under
``FONT_MIN_PX`` (8 px: the demo's 96-128 px frames, where every shapes-COCO caption fits
uncut). The demo geometry's towers see those frames at 64 px, about half that size, so the
text is legible in the demo's frames but small for its tiny towers. A caption that does not
fit at the smallest size is cut at a word with "...". Which caption a scene renders is
``lib.pseudo_video``'s choice (one the question does not quote; see its docstring).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_MAX_FRAC = 1 / 8  # largest font size, as a fraction of the short side
FONT_MIN_FRAC = 1 / 20  # smallest (19 px at 384)
FONT_MIN_PX = 8  # absolute floor: the demo's small frames
MARGIN_FRAC = 0.06  # kept free on every side: mild jitter moves content by < 3 %
LINE_SPACING = 1.15  # line pitch in font sizes
MIN_CONTRAST = 7.0  # WCAG AAA for normal text
ALIGNS = ("left", "center", "right")
# What a pseudo-video scene can show (lib.pseudo_video): its image, or one of its captions as
# text drawn here. Kept here, not in lib.pseudo_video, so that lib.config needs no torch.
SOURCES = ("coco", "t2vid")
ELLIPSIS = "..."


@lru_cache(maxsize=64)
def font(px: int) -> ImageFont.FreeTypeFont:
    """Pillow's embedded font at ``px`` pixels (cached: loading costs about a millisecond)."""
    f = ImageFont.load_default(size=px)
    if not isinstance(f, ImageFont.FreeTypeFont):
        raise RuntimeError("Pillow without FreeType: text frames need ImageFont.load_default("
                           "size=...) from Pillow >= 10.1 built with FreeType")
    return f


def font_range(hw: tuple[int, int]) -> tuple[int, int]:
    """(smallest, largest) font size in pixels for an (H, W) frame."""
    short = min(hw)
    lo = max(FONT_MIN_PX, round(short * FONT_MIN_FRAC))
    return lo, max(lo, round(short * FONT_MAX_FRAC))


# ---------------------------------------------------------------------------------------------
# Colours


def luminance(rgb: Sequence[int]) -> float:
    """WCAG relative luminance of an sRGB colour (0-255 channels)."""
    c = np.asarray(rgb, float) / 255
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return float(lin @ [0.2126, 0.7152, 0.0722])


def contrast(a: Sequence[int], b: Sequence[int]) -> float:
    """WCAG contrast ratio, 1 (same) to 21 (black on white)."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def colour_pair(rng: np.random.Generator, min_contrast: float = MIN_CONTRAST
                ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(background, foreground) with a WCAG contrast of at least ``min_contrast``: a random
    background light or dark enough for it, then a random tint blended towards black (light
    backgrounds) or white (dark ones) just far enough."""
    black, white = np.zeros(3), np.full(3, 255.0)
    bg = white
    for _ in range(256):  # mid-luminance backgrounds cannot reach 7:1 with any text colour
        cand = rng.integers(0, 256, 3).astype(float)
        if max(contrast(cand, black), contrast(cand, white)) >= min_contrast:
            bg = cand
            break
    end = black if contrast(bg, black) >= contrast(bg, white) else white
    tint = rng.integers(0, 256, 3).astype(float)
    for k in np.linspace(1.0, 0.0, 21):  # k = 1: the tint itself; k = 0: black or white
        fg = np.round(end + (tint - end) * k)
        if contrast(bg, fg) >= min_contrast:
            break
    return tuple(int(x) for x in bg), tuple(int(x) for x in fg)


# ---------------------------------------------------------------------------------------------
# Layout


@dataclass(frozen=True)
class Layout:
    """Where the text goes: font size, lines, their top-left corners, colours."""

    px: int
    lines: tuple[str, ...]
    xy: tuple[tuple[int, int], ...]
    background: tuple[int, ...]
    foreground: tuple[int, ...]
    align: str
    truncated: bool


def wrap(text: str, px: int, width: float) -> list[str]:
    """Greedy word wrap to ``width`` pixels; a word wider than a line is split by characters."""
    f, lines, cur = font(px), [], ""
    for word in text.split():
        trial = f"{cur} {word}" if cur else word
        if f.getlength(trial) <= width:
            cur = trial
            continue
        if cur:
            lines.append(cur)
        while f.getlength(word) > width and len(word) > 1:
            k = 1  # the longest prefix that fits, at least one character
            while k < len(word) and f.getlength(word[:k + 1]) <= width:
                k += 1
            lines.append(word[:k])
            word = word[k:]
        cur = word
    if cur:
        lines.append(cur)
    return lines


def _pitch(px: int) -> int:
    return max(px + 1, round(px * LINE_SPACING))


def _block_height(n: int, px: int) -> int:
    """Pixels from the first line's top to the last line's lowest descender."""
    return (n - 1) * _pitch(px) + sum(font(px).getmetrics())


def _cut(lines: list[str], px: int, width: float, max_lines: int) -> list[str]:
    """The first ``max_lines`` lines, the last ending in "..." and still within ``width``."""
    kept = lines[:max_lines]
    words = kept[-1].split()
    while words and font(px).getlength(" ".join(words) + ELLIPSIS) > width:
        words.pop()
    kept[-1] = " ".join(words) + ELLIPSIS
    return kept


def layout(text: str, hw: tuple[int, int], rng: np.random.Generator) -> Layout:
    """Draw a layout of ``text`` on an (H, W) frame: colours, then a starting font size in the
    upper half of ``font_range``, shrunk until the wrapped text fits inside the margins with no
    word split across lines (a short caption's long last word at a large size was); a random
    wrap width (75-100 % of the free width), alignment and block position."""
    h, w = hw
    bg, fg = colour_pair(rng)
    lo, hi = font_range(hw)
    mx, my = max(1, round(w * MARGIN_FRAC)), max(1, round(h * MARGIN_FRAC))
    box_w = (w - 2 * mx) * rng.uniform(0.75, 1.0)
    align = ALIGNS[int(rng.integers(len(ALIGNS)))]
    px = int(rng.integers((lo + hi) // 2, hi + 1))
    text = " ".join(text.split()) or ELLIPSIS
    while True:
        lines = wrap(text, px, box_w)
        whole = max(font(px).getlength(word) for word in text.split()) <= box_w
        if (whole and _block_height(len(lines), px) <= h - 2 * my) or px <= lo:
            break
        px -= 1
    max_lines = max(1, (h - 2 * my - sum(font(px).getmetrics())) // _pitch(px) + 1)
    truncated = len(lines) > max_lines
    if truncated:
        lines = _cut(lines, px, box_w, max_lines)
    f = font(px)
    block_w = max(f.getlength(ln) for ln in lines)
    block_h = _block_height(len(lines), px)
    x0 = mx + rng.uniform(0, 1) * max(0.0, w - 2 * mx - block_w)
    y0 = my + rng.uniform(0, 1) * max(0, h - 2 * my - block_h)
    xy = []
    for i, ln in enumerate(lines):
        free = block_w - f.getlength(ln)
        dx = {"left": 0.0, "center": free / 2, "right": free}[align]
        xy.append((int(round(x0 + dx)), int(round(y0 + i * _pitch(px)))))
    return Layout(px, tuple(lines), tuple(xy), bg, fg, align, truncated)


def draw(lay: Layout, hw: tuple[int, int]) -> np.ndarray:
    """The layout as a uint8 (H, W, 3) image."""
    im = Image.new("RGB", (hw[1], hw[0]), lay.background)
    d = ImageDraw.Draw(im)
    f = font(lay.px)
    for (x, y), ln in zip(lay.xy, lay.lines):
        # Top of the line box at y ("la": left, ascender), so lines never overlap.
        d.text((x, y), ln, font=f, fill=lay.foreground, anchor="la")
    return np.asarray(im)


def render_caption(text: str, size: int | tuple[int, int],
                   seed: int | Sequence[int]) -> np.ndarray:
    """``text`` rendered on a (H, W) (an int: square) uint8 RGB image; the same seed gives the
    same bytes."""
    hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if min(hw) < 2 * FONT_MIN_PX:
        raise ValueError(f"text frames need at least {2 * FONT_MIN_PX} px a side, got {hw}")
    return draw(layout(text, hw, np.random.default_rng(seed)), hw)
