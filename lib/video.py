"""Video files: frame sampling, decoding, the decoded-clip cache and the one video writer.

Used by ``lib.evaluate`` (clips of benchmark questions, notebooks 01 and 04), ``lib.tvbench``
(the TVBench-layout writer) and through it ``lib.assets`` and ``lib.pseudo_video`` (generated
videos). ``Sampler("paper")`` is the paper's protocol (LongVU's MVBench script retargeted to
TVBench): every ``round(fps/2)``-th frame of the clip, or of the [start, end] window for the
bounded tasks; ``Sampler("uniform", n)`` takes n segment midpoints.

Nothing is substituted silently: a clip whose frames are not what its window or header promise
carries a note (``Clip.note``, each prediction's ``frame_note``) that ``lib.metrics`` counts and
``lib.evaluate`` refuses by default: ``empty-window`` (no frame inside [start, end]: the
window's first frame clamped to the clip), ``window-past-end`` (the window ends more than
``WINDOW_TOLERANCE_S`` after the clip), ``one-frame`` (a 1-frame video) and ``short-stream:N``
(the stream stopped after N frames; later indices repeat frame N-1). ``fps<1`` only says that
the step fell back to 1. Unreadable files raise ``VideoError`` naming the file and the fix.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import av
import numpy as np

# A window may end this far after the clip (float noise, a window that runs to the end) before
# its clipping is noted: half a step of the paper's 2 fps sampling.
WINDOW_TOLERANCE_S = 0.5
# Notes that mean the frames are not the ones the question promises (counted as short video).
SHORT_NOTES = ("empty-window", "window-past-end", "one-frame", "short-stream")
FIX = "re-download or re-encode it (ffmpeg -i IN -c:v libx264 OUT.mp4)"


class VideoError(ValueError):
    """A video that cannot be sampled or decoded (the message names the file and the fix)."""


class ClipSource(Protocol):
    """What sampling needs of a question (``lib.tvbench.Question`` is one)."""

    video_path: Path
    start: float | None
    end: float | None


@dataclass(frozen=True)
class Sampler:
    """``paper``: every round(fps/2)-th frame (~2 fps, no cap) as in the paper's eval;
    ``uniform``: ``num_frames`` segment midpoints (the TVBench notebook's protocol)."""

    kind: str = "paper"
    num_frames: int = 16

    def __post_init__(self):
        if self.kind not in ("paper", "uniform"):
            raise ValueError(f"sampler must be 'paper' or 'uniform', got {self.kind!r}")

    @property
    def spec(self) -> str:
        return "paper-2fps" if self.kind == "paper" else f"uniform-{self.num_frames}"

    def indices(self, n_frames: int, fps: float, start: float | None = None,
                end: float | None = None) -> tuple[list[int], str]:
        if self.kind == "paper":
            return paper_indices(n_frames, fps, start, end)
        return uniform_indices(n_frames, fps, self.num_frames, start, end)


def _window(n_frames: int, fps: float, start: float | None, end: float | None
            ) -> tuple[int, int]:
    """[first, stop) frame range: the whole clip, or the paper's [round(s*fps), min(round(e*fps),
    n-1)) window (the last frame is never in a bounded window, as in the reference code)."""
    if start is None or end is None:
        return 0, n_frames
    return max(0, round(start * fps)), min(round(end * fps), n_frames - 1)


def _notes(*parts: str) -> str:
    return ";".join(p for p in parts if p)


def _coverage_note(n_frames: int, fps: float, end: float | None, empty: bool) -> str:
    """``empty-window``, ``window-past-end`` or ``one-frame`` (the strongest that applies)."""
    if empty:
        return "empty-window:first-frame"
    if end is not None and end - n_frames / fps > WINDOW_TOLERANCE_S:
        return f"window-past-end:{end:.2f}s>{n_frames / fps:.2f}s"
    return "one-frame" if n_frames == 1 else ""


def paper_indices(n_frames: int, fps: float, start: float | None = None,
                  end: float | None = None) -> tuple[list[int], str]:
    """``range(first, stop, round(fps/2))`` plus a note for the cases the reference code
    crashes on (step 0 when fps < 1, an empty window), which here fall back to step 1 / the
    window's first frame (clamped to the clip) instead, and for a window past the clip's end
    (clipped, as in the reference) or a 1-frame clip."""
    if n_frames <= 0:
        raise VideoError("video has no frames; re-download or re-encode it.")
    note = ""
    step = round(fps / 2)
    if step < 1:
        step, note = 1, "fps<1:step=1"
    a, b = _window(n_frames, fps, start, end)
    idx = list(range(a, b, step))
    empty = not idx
    if empty:
        idx = [min(a, n_frames - 1)]
    return idx, _notes(note, _coverage_note(n_frames, fps, end, empty))


def uniform_indices(n_frames: int, fps: float, num: int, start: float | None = None,
                    end: float | None = None) -> tuple[list[int], str]:
    """Midpoints of ``num`` equal segments of the clip or window (repeats if it is shorter)."""
    if n_frames <= 0:
        raise VideoError("video has no frames; re-download or re-encode it.")
    a, b = _window(n_frames, fps, start, end)
    empty = b <= a
    if empty:
        a, b = min(a, n_frames - 1), min(a, n_frames - 1) + 1
    seg = (b - a) / num
    return ([min(b - 1, a + int(seg / 2 + seg * i)) for i in range(num)],
            _coverage_note(n_frames, fps, end, empty))


def note_kinds(note: str) -> list[str]:
    """The kinds in a clip note (``"fps<1:step=1;short-stream:25"`` -> fps<1, short-stream)."""
    return [part.split(":")[0] for part in note.split(";") if part] if note else []


def is_short(note: str) -> bool:
    """Whether a clip note says the frames are not the ones the question promises."""
    return any(k in SHORT_NOTES for k in note_kinds(note))


@dataclass
class Clip:
    frames: np.ndarray  # uint8 (T, H, W, 3) RGB
    indices: list[int]
    fps: float
    n_frames: int
    note: str = ""


def _unreadable(path: Path | str, err: Exception) -> VideoError:
    what = "is empty (0 bytes)" if Path(path).exists() and not Path(path).stat().st_size \
        else f"cannot be read ({type(err).__name__}: {err})"
    return VideoError(f"{path} {what}; the file is corrupt or incomplete: {FIX}.")


def probe(path: Path | str) -> tuple[int, float]:
    """(frame count, average fps) with PyAV; the count comes from the container or, when the
    container does not say, from counting packets (what decord's index gives)."""
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise VideoError(f"{path}: no video stream; {FIX}.")
            s = c.streams.video[0]
            rate = s.average_rate or s.guessed_rate or s.base_rate
            fps = float(rate) if rate else 0.0
            n = int(s.frames or 0)
            if n <= 0:
                n = sum(1 for p in c.demux(s) if p.size)
    except (av.error.FFmpegError, OSError, IndexError) as e:
        raise _unreadable(path, e) from e
    if fps <= 0:
        raise VideoError(f"{path}: no frame rate in the container; re-encode it.")
    if n <= 0:
        raise VideoError(f"{path}: the container holds no frames; {FIX}.")
    return n, fps


def decode_frames(path: Path | str, indices: Sequence[int]) -> tuple[np.ndarray, str]:
    """RGB frames at ``indices`` (sequential PyAV decode, stops after the last one needed).
    If the stream holds fewer frames than its header claimed, the missing tail indices repeat
    the last decoded frame and the note says so."""
    want = sorted(set(indices))
    last = want[-1]
    got: dict[int, np.ndarray] = {}
    final = None
    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]  # no frame threading: workers give the parallelism (it
            for i, fr in enumerate(c.decode(s)):  # cost 1.7x per clip on a busy 2-core CPU)
                if i in want or i == last:
                    got[i] = fr.to_ndarray(format="rgb24")
                final = (i, fr)
                if i >= last:
                    break
    except (av.error.FFmpegError, OSError, IndexError) as e:
        if final is None:  # a corrupt tail after good frames reads as a short stream below
            raise _unreadable(path, e) from e
    if final is None:
        raise VideoError(f"{path}: no frame could be decoded; {FIX}.")
    note = ""
    if final[0] < last:
        tail = got.get(final[0]) if final[0] in got else final[1].to_ndarray(format="rgb24")
        for i in want:
            got.setdefault(i, tail)
        note = f"short-stream:{final[0] + 1}"
    return np.stack([got[i] for i in indices]), note


def decode_frames_decord(path: Path | str, indices: Sequence[int]) -> np.ndarray:
    """The reference code's decoder (optional: ``pip install decord``)."""
    from decord import VideoReader, cpu  # lazy: decord is optional

    vr = VideoReader(str(path), ctx=cpu(0), num_threads=1)
    return vr.get_batch(list(indices)).asnumpy()


def read_clip(q: ClipSource, sampler: Sampler = Sampler(), backend: str = "pyav") -> Clip:
    """Sample and decode one question's frames (window for bounded tasks)."""
    if backend == "decord":
        from decord import VideoReader, cpu

        vr = VideoReader(str(q.video_path), ctx=cpu(0), num_threads=1)
        n, fps = len(vr), float(vr.get_avg_fps())
        idx, note = sampler.indices(n, fps, q.start, q.end)
        return Clip(vr.get_batch(idx).asnumpy(), idx, fps, n, note)
    n, fps = probe(q.video_path)
    idx, note = sampler.indices(n, fps, q.start, q.end)
    frames, dnote = decode_frames(q.video_path, idx)
    return Clip(frames, idx, fps, n, _notes(note, dnote))


class FrameCache:
    """Sampled clips on disk (``.npz`` per question), shared by runs, conditions and scorers.

    The key covers the file (path, size, mtime), the window and the sampler, so an edited
    video or another sampler never hits a stale entry. Safe with several DataLoader workers
    (atomic rename). Real TVBench at 2 fps is tens of GB: point it at a large disk.
    """

    def __init__(self, directory: Path | str):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def key(self, q: ClipSource, sampler: Sampler) -> str:
        st = q.video_path.stat()
        # notes-v2: entries cached before window-past-end/one-frame notes existed lack them
        raw = f"{q.video_path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{q.start}|{q.end}|" \
              f"{sampler.spec}|notes-v2"
        return hashlib.sha1(raw.encode()).hexdigest()

    def get(self, q: ClipSource, sampler: Sampler, backend: str = "pyav") -> Clip:
        f = self.dir / f"{self.key(q, sampler)}.npz"
        if f.exists():
            try:
                z = np.load(f, allow_pickle=False)
                return Clip(z["frames"], z["indices"].tolist(), float(z["fps"]),
                            int(z["n_frames"]), str(z["note"]))
            except (OSError, ValueError, KeyError):
                pass  # a torn file from a killed run: decode again
        clip = read_clip(q, sampler, backend)
        tmp = f.with_name(f"{f.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, frames=clip.frames, indices=np.asarray(clip.indices), fps=clip.fps,
                 n_frames=clip.n_frames, note=clip.note)
        os.replace(tmp, f)
        return clip


def write_video(path: Path, frames: np.ndarray, fps: int) -> None:
    """MPEG-4 Part 2 in mp4 with PyAV: FFmpeg's own single-threaded encoder gives the same bytes
    for the same frames (libx264 was seen to differ between runs under load)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "3"}
        stream.codec_context.qscale = 3
        stream.codec_context.thread_count = 1
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
