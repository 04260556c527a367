"""Models behind one small protocol: what the evaluator asks of a video QA model.

``VideoQAModel`` is the protocol (``prompt``, ``preprocessor``, ``generate``,
``letter_logprobs``, ``option_logprobs``); ``LongVUModel`` wraps ``lib.longvu`` and ``FakeModel``
is a deterministic stand-in for tests and dry runs (``--model fake:hash``). ``ModelSpec`` names
a checkpoint + adapter + quantization to load; ``pick_device`` is the one device rule (used by
``lib.train`` too). Used by ``lib.evaluate``, ``lib.profiles`` and notebooks 01 and 04.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from lib import longvu
from lib.longvu import prompts
from lib.longvu.model import preprocess_visual
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
    CPU-only callable (frames uint8 (T,H,W,3) -> model input) that runs in DataLoader workers."""

    name: str

    def prompt(self, question: str, candidates: Sequence[str]) -> str: ...

    def preprocessor(self) -> Callable[[np.ndarray], Any]: ...

    def generate(self, prepared: Any, prompt: str, max_new_tokens: int = 5) -> str: ...

    def letter_logprobs(self, prepared: Any, prompt: str, letters: Sequence[str]
                        ) -> list[float]: ...

    def option_logprobs(self, prepared: Any, prompt: str, options: Sequence[str]
                        ) -> tuple[list[float], list[int]]: ...


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
        self._memoize_visual_embedding()

    def _memoize_visual_embedding(self) -> None:
        """Scorers of one question share one tower + connector pass: LongVU's generate,
        next_token_logits and sequence_logprob each call ``embed_one(ids, visual)`` with the same
        prompt and visual input, so the last result is kept (one entry; the visual object is
        held, so identity cannot be reused by another input)."""
        embed = type(self.model).embed_one
        model, last = self.model, {}

        def embed_one(input_ids, visual, trace=None):
            key = tuple(input_ids)
            if trace is None and last.get("ids") == key and last.get("visual") is visual:
                return last["out"]
            out = embed(model, input_ids, visual, trace)
            if trace is None:
                last.update(ids=key, visual=visual, out=out)
            return out

        model.embed_one = embed_one

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
        return partial(preprocess_visual, kind="video", sizes=tuple(self.model.towers.sizes),
                       legacy_video_size_swap=self.model.flags.legacy_video_size_swap)

    def generate(self, prepared, prompt: str, max_new_tokens: int = 5) -> str:
        return self.model.generate(prepared, prompt, max_new_tokens=max_new_tokens)

    def letter_logprobs(self, prepared, prompt: str, letters: Sequence[str]) -> list[float]:
        # LongVU's own: p("X...") + p("(X...") so that a model fine-tuned on "(X) text" targets
        # is not scored as if it had to answer with a bare letter.
        return self.model.letter_logprobs(prepared, prompt, list(letters))

    def option_logprobs(self, prepared, prompt: str, options: Sequence[str]
                        ) -> tuple[list[float], list[int]]:
        tok = self.model.tokenizer
        # The option text right after the assistant header, as an answer would start.
        lps = self.model.sequence_logprob(prepared, prompt, list(options))
        return lps, [len(tok(o, add_special_tokens=False)["input_ids"]) for o in options]


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


def load_model(spec: str, adapter: str | None = None, device: str = "auto",
               quantization: str = "none", dtype: str | None = None,
               token_layout: str | None = None, layout_seed: int = 0) -> VideoQAModel:
    """``fake:<kind>[?delay=S]`` or a LongVU checkpoint dir / hub id (token_layout: see
    ``lib.longvu.load``; ignored by fakes)."""
    if spec.startswith("fake:"):
        kind, _, q = spec[5:].partition("?")
        opts = dict(kv.split("=") for kv in q.split("&") if kv)
        return FakeModel(kind or "hash", float(opts.get("delay", 0)))
    tdtype = getattr(torch, dtype) if dtype else None
    return LongVUModel.load(spec, adapter=adapter, device=str(pick_device(device)),
                            quantization=quantization, dtype=tdtype, token_layout=token_layout,
                            layout_seed=layout_seed)


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

    def load(self, device: str = "auto") -> LongVUModel:
        m = load_model(self.checkpoint, self.adapter, device, self.quantization,
                       token_layout=self.token_layout, layout_seed=self.layout_seed)
        m.name = self.label
        return m
