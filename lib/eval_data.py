"""The evaluator's data pipeline: each question's clip decoded once (in DataLoader workers
while the model runs), every frame-order condition applied and preprocessed there (once per
clip when the preprocessor can ``reorder``); a dict input gets ``frame_keys`` (video and frame
index of each frame) for models that share per-frame work across conditions.

Used by ``lib.evaluate`` (the runner behind notebooks 01 and 04 and ``python -m lib.tvbench
eval``). torch is imported where the workers need it, so that ``lib.evaluate`` imports without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from lib import conditions, tvbench, video
from lib.tvbench import Question
from lib.video import Sampler, VideoError


class ClipDataset:
    """Map-style dataset: question i -> frames decoded once, every condition preprocessed."""

    def __init__(self, questions: list[Question], sampler: Sampler,
                 units: list[tuple[str, int | None]], preprocess: Callable,
                 frame_cache: str | None = None, backend: str = "pyav"):
        self.questions, self.sampler, self.units = questions, sampler, units
        self.preprocess, self.frame_cache, self.backend = preprocess, frame_cache, backend

    def __len__(self) -> int:
        return len(self.questions)

    def __getitem__(self, i: int) -> dict:
        q = self.questions[i]
        t0 = time.perf_counter()
        try:
            if self.frame_cache:
                clip = video.FrameCache(self.frame_cache).get(q, self.sampler, self.backend)
            else:
                clip = video.read_clip(q, self.sampler, self.backend)
        except VideoError as e:  # raised in the main process, without a worker's traceback
            return {"i": i, "error": f"{tvbench.sample_id(q)}: {e}"}
        t1 = time.perf_counter()
        prepared, whole = {}, None
        reorder = getattr(self.preprocess, "reorder", None)
        for c, s in self.units:
            frames, order = conditions.apply_condition(clip.frames, c, s, tvbench.sample_id(q))
            if order is None or reorder is None:
                p = self.preprocess(frames)
            else:  # the clip's frames preprocessed once for every order
                whole = self.preprocess(clip.frames) if whole is None else whole
                p = whole if order == list(range(len(clip.frames))) else reorder(whole, order)
            if isinstance(p, dict) and order is not None:  # what each frame shows, so that a
                # model can encode a frame once for every condition (``LongVU.visual_cache``)
                p["frame_keys"] = [(str(q.video_path), int(clip.indices[k])) for k in order]
            prepared[(c, s)] = p
        return {"i": i, "prepared": prepared, "n_frames": len(clip.indices),
                "video_frames": clip.n_frames, "fps": clip.fps, "note": clip.note,
                "decode_s": t1 - t0, "prep_s": time.perf_counter() - t1}


def _first(batch):
    return batch[0]


def _worker_init(_):
    import torch

    torch.set_num_threads(1)  # workers decode; the model keeps the cores


def loader(ds: ClipDataset, num_workers: int, batch_size: int = 1) -> Iterable[dict]:
    """Items of ``ds`` in order, ``num_workers`` decoding ahead (0: in this process)."""
    from torch.utils.data import DataLoader

    kw = {"num_workers": num_workers, "batch_size": 1, "collate_fn": _first, "shuffle": False}
    if num_workers > 0:
        # two model batches in flight, so the workers keep decoding while a batch is scored
        kw.update(worker_init_fn=_worker_init,
                  prefetch_factor=max(2, -(-2 * batch_size // num_workers)))
    return DataLoader(ds, **kw)
