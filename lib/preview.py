"""Pseudo-video previews, static (figures/) and interactive (ipywidgets), and the per-sample
statistics table (``lib.plots`` draws its figures).

Used by notebook 02. One renderer draws a frame strip or a single frame, a timeline bar coloured by
scene and the question with its options (the right one highlighted); ``static_preview`` saves it as
a figure, ``interactive_preview`` redraws it from a sample selector and a frame scrubber with play.
"""

from __future__ import annotations

import io
import textwrap
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from lib.pseudo_video import PseudoVideoSource
    from lib.questions import Sample

WRAP = 110  # characters per QA line
FONT = 8  # points
LINE = 1.25  # line height in font sizes


def scene_colours(n: int) -> list:
    import seaborn as sns

    return sns.color_palette("husl" if n > 10 else "colorblind", n)


def scene_of_frame(frame_counts: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(frame_counts)), frame_counts)


def draw_timeline(ax, frame_counts: list[int], marks: list[int] | None = None) -> None:
    """One cell per frame, coloured by scene; ``marks`` are frames outlined (strip or scrubber)."""
    cols = scene_colours(len(frame_counts))
    for t, j in enumerate(scene_of_frame(frame_counts)):
        ax.add_patch(_rect(t, cols[j], edge="white"))
    t0 = 0
    for j, f in enumerate(frame_counts):
        ax.text(t0 + f / 2, 0.5, f"S{j + 1}", ha="center", va="center", fontsize=8, color="black")
        t0 += f
    for t in marks or []:
        ax.add_patch(_rect(t, "none", edge="black", lw=2))
    ax.set_xlim(0, sum(frame_counts))
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_xlabel("frame")
    ax.grid(False)


def _rect(t: int, face, edge, lw: float = 0.5):
    from matplotlib.patches import Rectangle

    return Rectangle((t, 0), 1, 1, facecolor=face, edgecolor=edge, lw=lw)


def qa_lines(sample: "Sample") -> list[tuple[str, bool]]:
    """Wrapped text blocks (question, then options) and whether each is the right option."""
    out = [(textwrap.fill(f"[{sample.question_type}, {sample.mode}] {sample.question}", WRAP),
            False)]
    for i, o in enumerate(sample.options):
        out.append((textwrap.fill(f"({'ABCDEFGH'[i]}) {o}", WRAP, subsequent_indent="    "),
                    i == sample.answer_index))
    return out


def qa_height(sample: "Sample") -> float:
    """Inches the QA block needs at ``FONT`` points."""
    n = sum(t.count("\n") + 1 for t, _ in qa_lines(sample)) + len(sample.options) * 0.5
    return n * FONT * LINE / 72 + 0.2


def draw_qa(ax, sample: "Sample") -> None:
    """The question and its lettered options; the right option in bold on a green band."""
    from matplotlib.transforms import offset_copy

    ax.axis("off")
    y = 0.0  # points below the top of the axes
    for text, right in qa_lines(sample):
        tr = offset_copy(ax.transAxes, fig=ax.figure, y=-y, units="points")
        ax.text(0, 1, text, va="top", ha="left", fontsize=FONT, family="monospace",
                transform=tr, fontweight="bold" if right else "normal",
                bbox=dict(facecolor="#b7e4c7", edgecolor="none", pad=1.0) if right else None)
        y += (text.count("\n") + 1.5) * FONT * LINE


def draw_frame(ax, frame: np.ndarray, t: int, scene: int, colour) -> None:
    ax.imshow(frame)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t={t + 1} S{scene + 1}", fontsize=8)
    for s in ax.spines.values():
        s.set_edgecolor(colour)
        s.set_linewidth(3)


def strip_frames(num_frames: int, max_frames: int) -> list[int]:
    """Evenly spaced frame indices, always including the first and last."""
    k = min(num_frames, max_frames)
    return sorted({int(round(x)) for x in np.linspace(0, num_frames - 1, k)})


def static_preview(sample: "Sample", frames: np.ndarray, max_frames: int = 10):
    """Frame strip + timeline + QA in one figure."""
    import matplotlib.pyplot as plt

    ts = strip_frames(len(frames), max_frames)
    width = max(8.0, 1.3 * len(ts))
    strip = min(2.2, width / len(ts) * frames.shape[1] / frames.shape[2])
    heights = [strip, 0.35, qa_height(sample)]
    fig = plt.figure(figsize=(width, sum(heights) + 1.4))
    gs = fig.add_gridspec(3, len(ts), height_ratios=heights, hspace=0.6)
    scenes = scene_of_frame(sample.frame_counts)
    cols = scene_colours(len(sample.frame_counts))
    for k, t in enumerate(ts):
        draw_frame(fig.add_subplot(gs[0, k]), frames[t], t, scenes[t], cols[scenes[t]])
    draw_timeline(fig.add_subplot(gs[1, :]), sample.frame_counts, ts)
    draw_qa(fig.add_subplot(gs[2, :]), sample)
    fig.suptitle(f"sample {sample.sample_id}: {len(sample.frame_counts)} scenes, "
                 f"{sample.num_frames} frames {frames.shape[1]}x{frames.shape[2]}", fontsize=10)
    return fig


def source_preview(sources: dict[str, "PseudoVideoSource"], i: int, jitter: str = "mild",
                   size=None, max_frames: int = 8):
    """Read ``i`` of each source (``lib.pseudo_video.SOURCES``: image and T2Vid text frames) as
    frame strips one above the other, then the timeline and the question they share (the same
    seed gives the same formation, question and jitter in every source)."""
    import matplotlib.pyplot as plt

    reads = {name: src.sample(i) for name, src in sources.items()}
    frames = {name: sources[name].frames(s, jitter, size) for name, s in reads.items()}
    first = next(iter(reads.values()))
    fr0 = next(iter(frames.values()))
    ts = strip_frames(len(fr0), max_frames)
    width = max(8.0, 1.3 * len(ts))
    strip = min(2.2, width / len(ts) * fr0.shape[1] / fr0.shape[2])
    heights = [strip] * len(reads) + [0.35, qa_height(first)]
    fig = plt.figure(figsize=(width, sum(heights) + 1.0 + 0.4 * len(reads)))
    gs = fig.add_gridspec(len(heights), len(ts), height_ratios=heights, hspace=0.6)
    scenes = scene_of_frame(first.frame_counts)
    cols = scene_colours(len(first.frame_counts))
    for r, (name, fr) in enumerate(frames.items()):
        for k, t in enumerate(ts):
            ax = fig.add_subplot(gs[r, k])
            draw_frame(ax, fr[t], t, scenes[t], cols[scenes[t]])
            if k == 0:
                ax.set_ylabel(name, fontsize=10, fontweight="bold")
    draw_timeline(fig.add_subplot(gs[len(reads), :]), first.frame_counts, ts)
    draw_qa(fig.add_subplot(gs[len(reads) + 1, :]), first)
    fig.suptitle(f"sample {i} from each source ({', '.join(reads)}): {len(first.frame_counts)} "
                 f"scenes, {first.num_frames} frames {fr0.shape[1]}x{fr0.shape[2]}", fontsize=10)
    return fig


def frame_view(sample: "Sample", frames: np.ndarray, t: int):
    """One frame + timeline + QA: what the scrubber shows at frame t."""
    from matplotlib.figure import Figure

    # sized so that frame, timeline and all options fit a 1280x800 JupyterLab window; a bare
    # Figure (no pyplot): the player draws it from widget callbacks, off pyplot's global state
    heights = [2.4, 0.35, qa_height(sample)]
    fig = Figure(figsize=(9, sum(heights) + 0.6))
    gs = fig.add_gridspec(3, 1, height_ratios=heights, hspace=0.45)
    scenes = scene_of_frame(sample.frame_counts)
    cols = scene_colours(len(sample.frame_counts))
    draw_frame(fig.add_subplot(gs[0]), frames[t], t, scenes[t], cols[scenes[t]])
    draw_timeline(fig.add_subplot(gs[1]), sample.frame_counts, [t])
    draw_qa(fig.add_subplot(gs[2]), sample)
    return fig


def interactive_preview(source: "PseudoVideoSource", jitter: str = "mild", size=None,
                        interval_ms: int = 300):
    """Sample selector, frame scrubber with play, timeline and QA (needs a live kernel)."""
    import threading

    import ipywidgets as w
    from IPython.display import Image, display

    cache: dict[int, tuple] = {}
    # ipykernel 7 may run widget messages on a subshell thread beside the main shell, and
    # redraws through pyplot (whose inline backend also flushes figures from the main thread)
    # showed blank figures: draw without pyplot, one redraw at a time (re-entrant,
    # since a frame change inside new_sample redraws through the frame observer).
    lock = threading.RLock()

    def get(i: int):
        if i not in cache:
            s = source.sample(i)
            cache.clear()  # one video in memory at a time
            cache[i] = (s, source.frames(s, jitter, size))
        return cache[i]

    pick = w.IntSlider(0, 0, len(source) - 1, description="sample")
    frame = w.IntSlider(0, 0, 0, description="frame")
    play = w.Play(interval=interval_ms, min=0, max=0, step=1)
    w.jslink((play, "value"), (frame, "value"))
    out = w.Output()

    def redraw(*_):
        with lock:
            s, fr = get(pick.value)
            frame.max = play.max = len(fr) - 1
            png = io.BytesIO()
            fig = frame_view(s, fr, min(frame.value, len(fr) - 1))
            fig.savefig(png, format="png", dpi="figure", bbox_inches="tight")  # as inline does
            with out:
                out.clear_output(wait=True)
                display(Image(data=png.getvalue()))

    def new_sample(*_):
        with lock:
            moved = frame.value != 0
            frame.value = play.value = 0  # a frame change redraws through frame's observer
            if not moved:
                redraw()

    pick.observe(new_sample, "value")
    frame.observe(redraw, "value")
    ui = w.VBox([w.HBox([pick, play, frame]), out])
    redraw()
    display(ui)
    return ui


# ---------------------------------------------------------------------------------------------
# Statistics


def sample_table(source: "PseudoVideoSource", epoch: int = 0) -> "pd.DataFrame":
    """One row per sample: type, mode, scenes, frames, options and the gt letter."""
    import pandas as pd

    rows = []
    for i in range(len(source)):
        s = source.sample(i, epoch)
        rows.append({"question_type": s.question_type, "mode": s.mode, "scenes": len(s.image_ids),
                     "frames": s.num_frames, "options": len(s.options), "letter": s.letter})
    return pd.DataFrame(rows)
