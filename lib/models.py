"""Models behind one small protocol: what the evaluator asks of a video QA model.

``VideoQAModel`` is the protocol (``prompt``, ``preprocessor``, ``generate``,
``letter_logprobs``, ``option_logprobs``, their batched forms ``generate_batch`` and
``likelihood_batch`` over several (question, clip) rows, ``session`` / ``end_batch`` around the
evaluator's batches, ``timing`` and ``default_batch_size``); ``LongVUModel`` wraps ``lib.longvu``
and ``FakeModel`` is a deterministic stand-in for tests and dry runs (``--model fake:hash``).
``ModelSpec`` names a checkpoint + adapter + quantization to load; ``pick_device`` is the one
device rule (used by ``lib.train`` too). Used by ``lib.evaluate``, ``lib.profiles`` and
notebooks 01 and 04.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from lib import longvu
from lib.longvu import prompts
from lib.longvu.model import VideoPreprocessor
from lib.tvbench import LETTERS


def pick_device(requested: str | None = "auto") -> torch.device:
    """``auto``/None: this process's GPU (``LOCAL_RANK`` under torchrun), else the CPU."""
    if requested and requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)  # the original eval put every rank on GPU 0
        return torch.device("cuda", local)
    return torch.device("cpu")


class VideoQAModel(Protocol):
    """What the evaluator needs from a model. ``preprocessor()`` returns a picklable
    CPU-only callable (frames uint8 (T,H,W,3) -> model input) that runs in DataLoader workers;
    if it has ``reorder(prepared, order)``, the workers preprocess a clip once for all its
    frame-order conditions (``lib.eval_data``)."""

    name: str

    def prompt(self, question: str, candidates: Sequence[str]) -> str: ...

    def preprocessor(self) -> Callable[[np.ndarray], Any]: ...

    def generate(self, prepared: Any, prompt: str, max_new_tokens: int = 5) -> str: ...

    def letter_logprobs(self, prepared: Any, prompt: str, letters: Sequence[str]
                        ) -> list[float]: ...

    def option_logprobs(self, prepared: Any, prompt: str, options: Sequence[str]
                        ) -> tuple[list[float], list[int]]: ...

    def generate_batch(self, prepared: Sequence[Any], prompts: Sequence[str],
                       max_new_tokens: int = 5) -> list[str]: ...

    def likelihood_batch(self, prepared: Sequence[Any], prompts: Sequence[str],
                         letters: Sequence[Sequence[str] | None],
                         options: Sequence[Sequence[str] | None]
                         ) -> tuple[list[list[float] | None],
                                    list[tuple[list[float], list[int]] | None]]: ...

    def session(self) -> contextlib.AbstractContextManager: ...

    def end_batch(self) -> None: ...

    def timing(self) -> dict[str, float]: ...

    def default_batch_size(self) -> int: ...


# Rows per decoder forward when --batch-size is not given. CPU: measured with
# benchmarks/tvbench_throughput.py --batch-sizes on the 2-core machine (docs/benchmarks.md).
BATCH_SIZE_CUDA = 8
BATCH_SIZE_CPU = 8


class LongVUModel:
    """``lib.longvu.LongVU`` behind the evaluator protocol; prompts come from the checkpoint's
    own template (``LongVU.prompt``) with LongVU's MVBench multiple-choice text."""

    def __init__(self, model, name: str | None = None):
        self.model = model
        self.name = name or Path(str(getattr(model, "source", "longvu"))).name
        tok = model.tokenizer
        if tok is None:
            raise ValueError(f"{self.name}: checkpoint has no tokenizer; the evaluator needs one")
        self._letter_ids = []
        for ch in LETTERS[:8]:
            ids = tok(ch, add_special_tokens=False)["input_ids"]
            self._letter_ids.append(ids[0])
        if len(set(self._letter_ids)) != len(self._letter_ids):
            raise ValueError(f"{self.name}: option letters do not map to distinct first tokens")

    @classmethod
    def load(cls, path_or_id: str, adapter: str | None = None, device: str = "cpu",
             quantization: str = "none", dtype=None, name: str | None = None,
             token_layout: str | None = None, layout_seed: int = 0) -> LongVUModel:
        """token_layout / layout_seed: see ``lib.longvu.load`` ("video": an image-stage
        checkpoint in the paper's video layout, absent ``pos_embed_*`` drawn from the seed)."""
        m = longvu.load(path_or_id, quantization=quantization, dtype=dtype, device=device,
                        adapter=adapter, token_layout=token_layout, layout_seed=layout_seed)
        label = name or (Path(str(path_or_id)).name
                         + (f"+{Path(adapter).name}" if adapter else ""))
        return cls(m, label)

    def prompt(self, question: str, candidates: Sequence[str]) -> str:
        return self.model.prompt(prompts.mc_user_text(question, candidates))

    def preprocessor(self) -> Callable[[np.ndarray], Any]:
        # picklable for DataLoader workers; a test checks it matches LongVU.preprocess("video")
        return VideoPreprocessor(tuple(self.model.towers.sizes),
                                 self.model.flags.legacy_video_size_swap)

    def generate(self, prepared, prompt: str, max_new_tokens: int = 5) -> str:
        return self.model.generate(prepared, prompt, max_new_tokens=max_new_tokens)

    def letter_logprobs(self, prepared, prompt: str, letters: Sequence[str]) -> list[float]:
        # LongVU's own: p("X...") + p("(X...") so that a model fine-tuned on "(X) text" targets
        # is not scored as if it had to answer with a bare letter.
        return self.model.letter_logprobs(prepared, prompt, list(letters))

    def option_logprobs(self, prepared, prompt: str, options: Sequence[str]
                        ) -> tuple[list[float], list[int]]:
        # The option text right after the assistant header, as an answer would start.
        lps = self.model.sequence_logprob(prepared, prompt, list(options))
        return lps, self._ntokens(options)

    def _ntokens(self, options: Sequence[str]) -> list[int]:
        tok = self.model.tokenizer
        return [len(tok(o, add_special_tokens=False)["input_ids"]) for o in options]

    def generate_batch(self, prepared: Sequence, prompts: Sequence[str],
                       max_new_tokens: int = 5) -> list[str]:
        return self.model.generate_batch(list(prepared), list(prompts), max_new_tokens)

    def likelihood_batch(self, prepared: Sequence, prompts: Sequence[str],
                         letters: Sequence[Sequence[str] | None],
                         options: Sequence[Sequence[str] | None]
                         ) -> tuple[list[list[float] | None],
                                    list[tuple[list[float], list[int]] | None]]:
        """Letter scores (``letter_logprobs``) and option scores (``option_logprobs``) of
        several rows from one prefill of each prompt (``lib.longvu.batched``)."""
        lets, opts = self.model.likelihood_batch(
            list(prepared), list(prompts), [None if x is None else list(x) for x in letters],
            [None if x is None else list(x) for x in options])
        return lets, [None if o is None else (o, self._ntokens(options[i]))
                      for i, o in enumerate(opts)]

    def session(self) -> contextlib.AbstractContextManager:
        """The evaluator's scope: towers and connector run once per prepared clip for every
        scorer (``LongVU.visual_cache``)."""
        return self.model.visual_cache()

    def end_batch(self) -> None:
        self.model.clear_visual_cache()

    def timing(self) -> dict[str, float]:
        """Seconds spent so far in the towers + connector (``visual_s``) and the decoder
        (``decoder_s``) inside ``session``."""
        return dict(self.model.timing)

    def default_batch_size(self) -> int:
        return BATCH_SIZE_CUDA if self.model.device.type == "cuda" else BATCH_SIZE_CPU


def _fake_preprocess(frames: np.ndarray) -> np.ndarray:
    """Per-frame mean colour, quantised: order-sensitive and cheap."""
    return np.round(np.asarray(frames, np.float32).mean(axis=(1, 2)) / 8).astype(np.int16)


class FakeModel:
    """Deterministic stand-in: answers from a hash of the prompt and the frame sequence, so it is
    sensitive to frame order, and emits a share of unparsable replies to exercise the parser.
    ``delay`` (seconds per call) makes kill-and-resume tests practical."""

    def __init__(self, kind: str = "hash", delay: float = 0.0):
        self.name, self.delay = f"fake:{kind}", delay

    def prompt(self, question: str, candidates: Sequence[str]) -> str:
        lines = "".join(f"({LETTERS[i]}) {c}\n" for i, c in enumerate(candidates))
        return f"Question: {question}\nOptions:\n{lines}"

    def preprocessor(self) -> Callable[[np.ndarray], Any]:
        return _fake_preprocess

    def _h(self, prepared, prompt: str, salt: str = "") -> int:
        if self.delay:
            time.sleep(self.delay)
        h = hashlib.sha256(np.asarray(prepared).tobytes() + prompt.encode() + salt.encode())
        return int.from_bytes(h.digest()[:8], "little")

    def generate(self, prepared, prompt: str, max_new_tokens: int = 5) -> str:
        k = prompt.count("\n(")
        h = self._h(prepared, prompt)
        r = h % 20
        if r == 0:
            return "I cannot tell"  # nomatch
        if r == 1:
            return "A, maybe"  # regex hit that does not clean up -> fallback
        return ["{}", "({})", "{}.", "Answer: {}"][h // 20 % 4].format(LETTERS[h // 80 % k])

    def letter_logprobs(self, prepared, prompt: str, letters: Sequence[str]) -> list[float]:
        rng = np.random.default_rng(self._h(prepared, prompt, "letter"))
        z = rng.normal(size=len(letters))
        return (z - np.log(np.exp(z).sum())).tolist()

    def option_logprobs(self, prepared, prompt: str, options: Sequence[str]
                        ) -> tuple[list[float], list[int]]:
        rng = np.random.default_rng(self._h(prepared, prompt, "option"))
        return (-rng.uniform(1, 10, size=len(options))).tolist(), [len(o) for o in options]

    def generate_batch(self, prepared: Sequence, prompts: Sequence[str],
                       max_new_tokens: int = 5) -> list[str]:
        return [self.generate(p, q, max_new_tokens) for p, q in zip(prepared, prompts)]

    def likelihood_batch(self, prepared: Sequence, prompts: Sequence[str],
                         letters: Sequence[Sequence[str] | None],
                         options: Sequence[Sequence[str] | None]
                         ) -> tuple[list[list[float] | None],
                                    list[tuple[list[float], list[int]] | None]]:
        return ([None if ls is None else self.letter_logprobs(p, q, ls)
                 for p, q, ls in zip(prepared, prompts, letters)],
                [None if os_ is None else self.option_logprobs(p, q, os_)
                 for p, q, os_ in zip(prepared, prompts, options)])

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        yield

    def end_batch(self) -> None:
        pass

    def timing(self) -> dict[str, float]:
        return {}

    def default_batch_size(self) -> int:
        return 1


def load_model(spec: str, adapter: str | None = None, device: str = "auto",
               quantization: str = "none", dtype: str | None = None,
               token_layout: str | None = None, layout_seed: int = 0,
               drop_threshold: float | None = None) -> VideoQAModel:
    """``fake:<kind>[?delay=S]`` or a LongVU checkpoint dir / hub id (token_layout: see
    ``lib.longvu.load``; ignored by fakes). drop_threshold: replaces config.json's (the paper's
    evaluation forces 0.8, lib.recipes)."""
    if spec.startswith("fake:"):
        kind, _, q = spec[5:].partition("?")
        opts = dict(kv.split("=") for kv in q.split("&") if kv)
        return FakeModel(kind or "hash", float(opts.get("delay", 0)))
    tdtype = getattr(torch, dtype) if dtype else None
    m = LongVUModel.load(spec, adapter=adapter, device=str(pick_device(device)),
                         quantization=quantization, dtype=tdtype, token_layout=token_layout,
                         layout_seed=layout_seed)
    if drop_threshold is not None:
        m.model.config.drop_threshold = float(drop_threshold)
    return m


@dataclass(frozen=True)
class ModelSpec:
    """A model to evaluate: checkpoint, optional adapter, the quantization it needs and the
    token layout it is loaded in (None: the checkpoint's own; "video": see lib.longvu.load)."""

    label: str
    checkpoint: str
    adapter: str | None = None
    quantization: str = "none"
    token_layout: str | None = None
    layout_seed: int = 0  # draws the pos_embed_* a "video" conversion creates
    dtype: str | None = None  # e.g. "float16" (the paper's evaluation; lib.recipes)
    drop_threshold: float | None = None  # None: config.json's

    def load(self, device: str = "auto") -> LongVUModel:
        m = load_model(self.checkpoint, self.adapter, device, self.quantization, self.dtype,
                       token_layout=self.token_layout, layout_seed=self.layout_seed,
                       drop_threshold=self.drop_threshold)
        m.name = self.label
        return m
