"""Pseudo-videos from captioned images: formations, the source that draws them, the torch
dataset, the TVBench-layout export and the ``sample``/``export`` CLI.

The paper's method (paper_code.md sections 1-3). Used by notebook 02 (previews and statistics),
notebook 03 (``PseudoVideoDataset`` through ``lib.train``) and the evaluation side
(``export_tvbench`` writes a held-out pseudo-video set in TVBench layout). Questions come from
``lib.questions``, frames from ``lib.jitter``.

* A *formation* is a list of (distinct image, frame count) pairs in temporal order. A table of
  them is drawn once from ``seed`` (``seeding="global"``) or, as the paper's code does, from
  ``seed + rank`` (``"per-rank"``).
* Every read of index i re-draws captions, the question variant, distractors and option order
  from a per-read seed (seed, epoch, i), so a run is reproducible and an epoch differs from the
  last one as in the paper.
* ``mode`` is the question mode of ``lib.questions``: ``fixed`` (default) or ``compat`` (the
  paper code's multiple-choice strings and defects). ``export_tvbench`` refuses questions a
  benchmark cannot hold (fewer than 2 options, a repeated option) before writing anything.
* ``source`` is what a scene shows: ``coco`` (default), its image, or ``t2vid``, one caption of
  its image rendered as text (``lib.t2vid``, after T2Vid, arXiv 2411.19951), repeated F_j times
  under the same jitter. Formations, questions, options and jitter are the same for both
  sources at the same seed; only the pixels differ. The rendered caption is, per scene, one the
  question and its options do not quote (drawn from its own stream of the per-read seed), so
  R1-R4, A2, WIO and TG cannot be answered by matching the frame's text to an option's: the
  model has to match a paraphrase, as it matches a picture to a caption. Only when every caption
  of the image is quoted (images with one caption; COCO has five) is the quoted one rendered,
  T2Vid's literal case. ``T2VidSample`` records carry ``"source": "t2vid"``,
  ``rendered_caption_index`` (into ``CaptionIndex.captions_for``) and ``rendered_captions``.
  Image-source records have no ``source`` key, so their bytes are those of earlier versions.
  Text frames are as large as the scene images would be (their size in the captions file).

CLI: ``python -m lib.pseudo_video sample|export ...`` (see ``main``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch.utils.data as tud
from tqdm.auto import tqdm

from lib import paths, t2vid, tvbench
from lib.coco import CaptionIndex, CocoError, captions_path, images_dir, validate_captions
from lib.jitter import JITTER, RESAMPLE, jitter_params, render_frames
from lib.questions import (ANSWER_FORMATS, MODES, PROMPT_FORMATS, GenSpec, Sample, check_mode,
                           draw_question, parse_mix, user_turn)
from lib.video import write_video

SEEDINGS = ("global", "per-rank")
SOURCES = t2vid.SOURCES  # what a scene shows: its image, or one of its captions as text
T2VID_SIZE = (384, 384)  # text frames of images whose size the captions file does not give

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Formations


@dataclass(frozen=True)
class Formation:
    qtype: str
    image_ids: tuple[int, ...]  # temporal order
    frame_counts: tuple[int, ...]
    spec: int  # index into the spec list

    @property
    def num_frames(self) -> int:
        return sum(self.frame_counts)


def draw_formations(image_ids: list[int], specs: list[GenSpec], seed: int,
                    seeding: str = "global", rank: int = 0) -> list[Formation]:
    """The table of formations, generators concatenated in spec order (paper_code.md 1.3-1.4).

    Per formation, in this RNG order: S ~ U{S_min..S_max}, F_1..F_S ~ U{F_min..F_max} i.i.d.,
    then S distinct images. ``per-rank`` seeds with ``seed + rank`` as the paper's code does.
    """
    if seeding not in SEEDINGS:
        raise ValueError(f"seeding {seeding!r}: choose from {SEEDINGS}")
    rng = random.Random(seed + rank if seeding == "per-rank" else seed)
    out = []
    for si, spec in enumerate(specs):
        lo, hi = spec.scene_range
        if hi > len(image_ids):
            raise ValueError(f"{spec.qtype}: S up to {hi} needs at least {hi} images, the index "
                             f"has {len(image_ids)}")
        for _ in range(spec.n):
            s = rng.randint(lo, hi)
            fr = tuple(rng.randint(spec.f_min, spec.f_max) for _ in range(s))
            ids = tuple(image_ids[j] for j in rng.sample(range(len(image_ids)), s))
            out.append(Formation(spec.qtype, ids, fr, si))
    return out


def read_seed(seed: int, epoch: int, index: int, rank: int | None = None) -> int:
    """The per-read seed: the same (seed, epoch, index) always gives the same sample."""
    words = [seed, epoch, index] if rank is None else [seed, rank, epoch, index]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0])



@dataclass
class T2VidSample(Sample):
    """A sample of the ``t2vid`` source: the image source's question and, per scene, the
    caption its frames show (an index into ``CaptionIndex.captions_for`` and the text)."""

    source: str = "t2vid"
    rendered_caption_index: list[int] = field(default_factory=list)
    rendered_captions: list[str] = field(default_factory=list)


def rendered_captions(index: CaptionIndex, sample: Sample, rng: np.random.Generator
                      ) -> list[int]:
    """Per scene, the caption to render (index into ``captions_for``): a random one that the
    question and its options do not quote, else (every caption quoted) the scene's own."""
    shown = "\n".join([sample.question, *sample.options])
    out = []
    for image_id, used in zip(sample.image_ids, sample.captions):
        caps = index.captions_for(image_id)
        free = [k for k, c in enumerate(caps) if c not in shown]
        out.append(int(free[rng.integers(len(free))]) if free else caps.index(used))
    return out


# ---------------------------------------------------------------------------------------------
# The source: formations + questions + frames


class PseudoVideoSource:
    """A formation table over a caption index; ``sample(i, epoch)`` draws question i's read.

    ``source``: ``coco`` (scenes show their images) or ``t2vid`` (one caption of the image as
    text, ``lib.t2vid``; samples are ``T2VidSample``). Picklable (DataLoader workers get a copy);
    every draw depends only on (seed, epoch, i).
    """

    def __init__(self, index: CaptionIndex, specs: list[GenSpec], seed: int = 0,
                 mode: str = "fixed", seeding: str = "global", rank: int = 0,
                 num_options: int = 4, source: str = "coco"):
        check_mode(specs, mode)
        if source not in SOURCES:
            raise ValueError(f"source {source!r}: choose from {SOURCES}")
        if len(index) < 2:
            raise CocoError(f"{index.captions_file}: needs at least 2 captioned images")
        self.index, self.specs, self.seed, self.mode = index, list(specs), seed, mode
        self.seeding, self.rank, self.num_options = seeding, rank, num_options
        self.source = source
        self.formations = draw_formations(index.image_ids, self.specs, seed, seeding, rank)

    def __len__(self) -> int:
        return len(self.formations)

    def first_per_type(self) -> list[int]:
        """Index of the first formation of each generator's question type (generators with
        n > 0, in spec order): one example per type for previews."""
        return [next(i for i, fm in enumerate(self.formations) if fm.qtype == x.qtype)
                for x in self.specs if x.n]

    def read_seed(self, i: int, epoch: int = 0) -> int:
        return read_seed(self.seed, epoch, i, self.rank if self.seeding == "per-rank" else None)

    def sample(self, i: int, epoch: int = 0) -> Sample:
        form = self.formations[i]
        s = self.read_seed(i, epoch)
        q, captions = draw_question(self.index, form.image_ids, form.frame_counts,
                                    self.specs[form.spec], random.Random(s), self.mode,
                                    self.num_options)
        out = Sample(sample_id=i, epoch=epoch, seed=s, mode=self.mode,
                     question_type=form.qtype, question=q["question"], options=q["options"],
                     answer_index=q["answer_index"], image_ids=list(form.image_ids),
                     captions=captions, frame_counts=list(form.frame_counts),
                     meta=q.get("meta", {}))
        if self.source == "coco":
            return out
        # Its own stream of the per-read seed: the question draw above stays the image source's.
        ks = rendered_captions(self.index, out, np.random.default_rng([s, 2]))
        return T2VidSample(**vars(out), rendered_caption_index=ks, rendered_captions=[
            self.index.captions_for(img)[k] for img, k in zip(out.image_ids, ks)])

    def frames(self, sample: Sample, jitter: str = "mild",
               size: int | tuple[int, int] | None = None, resample: str = "paper") -> np.ndarray:
        if self.source == "t2vid":
            hw = self.text_size(sample, size)
            texts = getattr(sample, "rendered_captions", None)
            if texts is None:
                raise ValueError(f"sample {sample.sample_id} is not a t2vid sample; draw it "
                                 "with this source's sample()")
            images = [t2vid.render_caption(t, hw, [sample.seed, 3, j])
                      for j, t in enumerate(texts)]
            size = hw
        else:
            images = [self.index.load_image(i) for i in sample.image_ids]
        rng = np.random.default_rng([sample.seed, 1])  # jitter stream, apart from the questions
        return render_frames(images, sample.frame_counts,
                             jitter_params(rng, sample.num_frames, jitter), size, resample)

    def text_size(self, sample: Sample, size: int | tuple[int, int] | None) -> tuple[int, int]:
        """(H, W) of t2vid frames: ``size``, else the video's max image height and width as the
        captions file gives them (``T2VID_SIZE`` where it does not), as for image frames."""
        if size is not None:
            return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        meta = [self.index.coco.imgs.get(i, {}) for i in sample.image_ids]
        dims = [(m.get("height"), m.get("width")) for m in meta]
        dims = [(int(h), int(w)) if isinstance(h, int) and isinstance(w, int) else T2VID_SIZE
                for h, w in dims]
        return max(h for h, _ in dims), max(w for _, w in dims)


def build_source(coco_root: Path | str, *, split: str = "train", questions: str = "R1",
                 n: int = 1000, s: int = 4, f: int = 5, seed: int = 0, mode: str = "fixed",
                 seeding: str = "global", rank: int = 0, source: str = "coco"
                 ) -> PseudoVideoSource:
    """Caption index of ``coco_root``/``split`` and a mix string (``parse_mix``) -> source of
    ``source`` frames (coco | t2vid)."""
    index = CaptionIndex.from_root(coco_root, split)
    return PseudoVideoSource(index, parse_mix(questions, n, s, f), seed, mode, seeding, rank,
                             source=source)


# ---------------------------------------------------------------------------------------------
# Torch dataset


class PseudoVideoDataset(tud.Dataset):
    """Training samples: frames + conversation + metadata, generated on the fly.

    Item: ``frames`` uint8 (T, H, W, 3) (``lib.jitter.render_frames``, OpenCV, contiguous);
    ``prompt`` (user turn: the fork's, or the evaluator's with ``prompt_format="eval"``);
    ``target`` ("(A) text", or the text alone with ``answer_format="text"``);
    ``question_type``, ``sample_id``, ``seed``, ``epoch``, ``options``, ``answer_index``,
    ``image_ids``, ``captions``, ``frame_counts``, ``num_frames``; ``source`` (coco | t2vid:
    images or text frames, the source's; t2vid items also carry ``rendered_caption_index`` and
    ``rendered_captions``); ``errors`` (list, empty unless this item substitutes for a bad one)
    and ``substituted_for`` (None or the bad index).

    A bad sample (missing or corrupt image, image without captions) raises with
    ``on_error="raise"`` (the default: nothing is replaced unless asked). Only with an explicit
    ``"substitute"`` is the next index served instead; the error is then logged, counted in
    ``bad[epoch]`` and carried in the item, so a training loop that runs DataLoader workers still
    reports every substitution. Call ``set_epoch`` before each epoch.
    """

    def __init__(self, source: PseudoVideoSource, jitter: str = "mild",
                 size: int | tuple[int, int] | None = None, on_error: str = "raise",
                 max_substitutions: int = 10, resample: str = "paper",
                 answer_format: str = "letter", prompt_format: str = "fork"):
        if on_error not in ("raise", "substitute"):
            raise ValueError("on_error: 'raise' or 'substitute'")
        if jitter not in JITTER:
            raise ValueError(f"jitter {jitter!r}: choose from {sorted(JITTER)}")
        if resample not in RESAMPLE:
            raise ValueError(f"resample {resample!r}: choose from {RESAMPLE}")
        if answer_format not in ANSWER_FORMATS:
            raise ValueError(f"answer_format {answer_format!r}: choose from {ANSWER_FORMATS}")
        if prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format {prompt_format!r}: choose from {PROMPT_FORMATS}")
        self.answer_format, self.prompt_format = answer_format, prompt_format
        self.source, self.jitter, self.size, self.on_error = source, jitter, size, on_error
        self.resample = resample
        self.max_substitutions = max_substitutions
        self.epoch = 0
        self.bad: dict[int, list[str]] = {}

    def __len__(self) -> int:
        return len(self.source)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def item(self, i: int) -> dict:
        s = self.source.sample(i, self.epoch)
        rec = s.record()
        if self.answer_format == "text":
            rec["target"] = rec["options"][rec["answer_index"]]
        if self.prompt_format != "fork":
            rec["prompt"] = user_turn(rec["question"], rec["options"], self.prompt_format)
        rec["frames"] = self.source.frames(s, self.jitter, self.size, self.resample)
        rec.update(source=self.source.source, errors=[], substituted_for=None)
        return rec

    def __getitem__(self, i: int) -> dict:
        errors = []
        for attempt in range(self.max_substitutions + 1):
            j = (i + attempt) % len(self)
            try:
                rec = self.item(j)
            except CocoError as e:
                if self.on_error == "raise":
                    raise
                msg = f"epoch {self.epoch} sample {j}: {e}"
                errors.append(msg)
                self.bad.setdefault(self.epoch, []).append(msg)
                log.warning("bad pseudo-video sample, substituting the next index: %s", msg)
                continue
            if errors:
                rec.update(errors=errors, substituted_for=i)
            return rec
        raise CocoError(f"{self.max_substitutions + 1} consecutive bad samples from index {i}:\n"
                        + "\n".join(errors))

    def bad_report(self, epoch: int | None = None) -> dict:
        """Counts of substituted samples per epoch (this process only; workers report theirs
        through the items' ``errors``)."""
        eps = [epoch] if epoch is not None else sorted(self.bad)
        return {e: len(self.bad.get(e, [])) for e in eps}


def collate(items: list[dict]) -> dict:
    """Keep a batch as lists (frame counts differ); ``errors`` flattened for per-epoch counts."""
    out = {k: [it[k] for it in items] for k in items[0]}
    out["errors"] = [e for it in items for e in it["errors"]]
    return out


# ---------------------------------------------------------------------------------------------
# Export for the benchmark evaluator


def export_tvbench(source: PseudoVideoSource, out: Path | str, n: int | None = None,
                   jitter: str = "mild", size: int | tuple[int, int] | None = None,
                   fps: int = 2, task_prefix: str = "pseudo_", resample: str = "paper"
                   ) -> dict[str, int]:
    """Write samples 0..n-1 in TVBench layout: ``json/<prefix><qtype>.json`` + ``video/.../*.mp4``.

    Videos are written at ``fps`` = 2, so the paper's ~2 fps evaluation sampler takes every
    frame. Items carry the question (without options), candidates, answer and, as extra fields,
    the sample's question type, image ids and frame counts. Returns questions per task.
    """
    out = Path(out)
    n = len(source) if n is None else min(n, len(source))
    drawn = [source.sample(i) for i in range(n)]
    check_exportable(drawn)  # before any video is written
    items: dict[str, list[dict]] = {}
    for i, s in enumerate(tqdm(drawn, desc="export pseudo-videos", leave=False)):
        frames = source.frames(s, jitter, size, resample)
        pad = ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0))
        frames = np.pad(frames, pad)  # yuv420p needs even sides
        task = f"{task_prefix}{s.question_type}"
        video = f"{task}_{i:06d}.mp4"
        write_video(tvbench.video_path(out, task, video), frames, fps)
        items.setdefault(task, []).append({
            "video": video, "question": s.question, "candidates": s.options,
            "answer": s.options[s.answer_index], "question_type": s.question_type,
            "sample_id": i, "image_ids": s.image_ids, "frame_counts": s.frame_counts,
            "mode": s.mode})
    tasks = [tvbench.Task(task, f"Pseudo-video {task[len(task_prefix):]}",
                          task[len(task_prefix):], False, len(its),
                          max(len(x["candidates"]) for x in its))
             for task, its in items.items()]
    return tvbench.write_benchmark(out, tasks, items)


def check_exportable(drawn: list[Sample]) -> None:
    """Refuse samples a benchmark cannot hold, all listed at once: fewer than 2 options (compat
    R1 with S=1, TG with one frame) or a repeated option (``lib.tvbench`` refuses both: chance
    and the letters would be wrong). Nothing is dropped or padded; the fix is in the message."""
    bad = []
    for s in drawn:
        stripped = [o.strip() for o in s.options]
        if len(stripped) < 2 or len(set(stripped)) != len(stripped):
            bad.append(f"sample {s.sample_id} ({s.question_type}, {s.mode} mode, S="
                       f"{len(s.image_ids)}): options {s.options}")
    if bad:
        raise ValueError(
            f"{len(bad)} of {len(drawn)} samples cannot be a benchmark question (a TVBench-"
            "layout item needs 2 or more distinct candidates):\n  " + "\n  ".join(bad[:20])
            + ("\n  ..." if len(bad) > 20 else "") + "\nfix: export with Smin >= 2 for R1 "
            "(compat R1 with one scene has one option), Fmin >= 2 for one-scene TG, or "
            "--mode fixed")


# ---------------------------------------------------------------------------------------------
# CLI


def write_samples(source: PseudoVideoSource, out: Path | str, frames_out: Path | str | None = None,
                  jitter: str = "mild", size: int | tuple[int, int] | None = None,
                  epoch: int = 0, resample: str = "paper") -> int:
    """One JSON object per sample (sorted keys), optionally frames as ``<id>.npy``.

    Everything goes to temporary files next to its destination and is renamed into place only
    once every sample succeeded: a failure (a bad image) leaves an earlier ``out`` and its
    frames as they were, and no partial file.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if frames_out is not None:
        Path(frames_out).mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    moves = [(tmp, out)]  # (temporary, final); the samples file is renamed last
    try:
        with tmp.open("w") as fh:
            for i in tqdm(range(len(source)), desc="pseudo-video samples", leave=False):
                s = source.sample(i, epoch)
                rec = s.record()
                if frames_out is not None:
                    f = Path(frames_out) / f"{i:06d}.npy"
                    part = f.with_name(f".{f.name}.{os.getpid()}.tmp")
                    moves.insert(-1, (part, f))
                    with part.open("wb") as fb:
                        np.save(fb, source.frames(s, jitter, size, resample))
                    rec["frames_file"] = str(f)
                fh.write(json.dumps(rec, sort_keys=True) + "\n")
        for part, final in moves:
            os.replace(part, final)
    finally:
        for part, _ in moves:
            part.unlink(missing_ok=True)
    return len(source)


def _size_arg(text: str | None):
    if text in (None, "", "max"):
        return None
    h, _, w = text.partition("x")
    return (int(h), int(w or h))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lib.pseudo_video", description=(
        "Pseudo-videos from captioned images: formations, question generators, frames, "
        "datasets."))
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, help_ in (("sample", "write samples as JSON lines"),
                        ("export", "write a held-out set in TVBench layout")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--coco", type=Path, required=True,
                       help="COCO root (annotations/, <split>2017/)")
        p.add_argument("--split", default="train", choices=["train", "val"])
        p.add_argument("--questions", default="R1",
                       help="mix, e.g. R1 | R1,R3 | R1:S=4:F=20,R3:S=6:F=5 | llama_best")
        p.add_argument("--S", type=int, default=4, help="max scenes per video")
        p.add_argument("--F", type=int, default=5, help="max frames per scene")
        p.add_argument("--n", type=int, default=200, help="formations in the table (N)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--mode", choices=MODES, default="fixed")
        p.add_argument("--seeding", choices=SEEDINGS, default="global")
        p.add_argument("--rank", type=int, default=0)
        p.add_argument("--source", choices=SOURCES, default="coco",
                       help="scenes show their image (coco) or one of its captions as text "
                            "(t2vid)")
        p.add_argument("--jitter", choices=sorted(JITTER), default="mild")
        p.add_argument("--size", default=None, help="HxW or H (square); default: video max H, W")
        p.add_argument("--resample", choices=RESAMPLE, default="paper",
                       help="paper: bicubic stretch then bilinear jitter; fused: one pass")
        p.add_argument("--out", type=Path, required=True)
        if name == "sample":
            p.add_argument("--frames-out", type=Path, default=None, help="write <id>.npy frames")
            p.add_argument("--epoch", type=int, default=0)
    a = ap.parse_args(argv)
    try:  # output locations, then the captions file, before any work
        if a.cmd == "sample":
            paths.writable_file_target(a.out, "--out")
            if a.frames_out is not None:
                paths.writable_dir(a.frames_out, "--frames-out")
        else:
            paths.writable_dir(a.out, "--out")
        frames = a.cmd == "export" or a.frames_out is not None
        validate_captions(captions_path(a.coco, a.split), images_dir(a.coco, a.split),
                          check_images="exists" if frames else "none")
        src = build_source(a.coco, split=a.split, questions=a.questions, n=a.n, s=a.S, f=a.F,
                           seed=a.seed, mode=a.mode, seeding=a.seeding, rank=a.rank,
                           source=a.source)
        if a.cmd == "sample":
            k = write_samples(src, a.out, a.frames_out, a.jitter, _size_arg(a.size), a.epoch,
                              a.resample)
            print(f"wrote {k} samples to {a.out}")
        else:
            counts = export_tvbench(src, a.out, None, a.jitter, _size_arg(a.size),
                                    resample=a.resample)
            print(f"wrote {sum(counts.values())} questions to {a.out}: {counts}")
    except (CocoError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
