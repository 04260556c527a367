"""Frame-order conditions: what a model sees of a sampled clip under normal, shuffled (seeded),
reversed, static and blind order, and the labels of (condition, seed) units.

``static`` and ``blind`` are the paper code's "repeated first frame" and "single black frame"
diagnostics (checklist item 29; the fork's ``eval/eval_tvbench_format.py`` L234-238 and
L275-285): the first sampled frame repeated as many times as the sampler took frames (the fork
repeats the video's frame 0, the same frame for the unbounded Moving-Direction task it runs this
on), and one 1024x1024 black frame. The letter-bias probe perm_k changes the options instead
(``lib.diagnostics``).

Used by ``lib.evaluate`` (every condition is built from the same sampled frames), ``lib.config``
(``EvalSpec.units``), ``lib.metrics`` (group labels) and ``lib.run_folder``; notebooks 01 and 04
through them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

CONDITIONS = ("normal", "shuffled", "reversed", "static", "blind")
BLIND_SIZE = 1024  # the paper's "single black frame" control is one 1024x1024 black frame


def condition_units(conditions: Iterable[str], seeds: Sequence[int] = (0,)
                    ) -> list[tuple[str, int | None]]:
    """(condition, seed) pairs to run: every seed for ``shuffled``, seed None otherwise."""
    out: list[tuple[str, int | None]] = []
    for c in conditions:
        if c not in CONDITIONS:
            raise ValueError(f"unknown condition {c!r}; choose from {CONDITIONS}")
        out.extend([(c, int(s)) for s in seeds] if c == "shuffled" else [(c, None)])
    return list(dict.fromkeys(out))


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def apply_condition(frames: np.ndarray, condition: str, seed: int | None = None,
                    key: str = "") -> tuple[np.ndarray, list[int] | None]:
    """The frames a model sees under ``condition`` and the order used (None for blind).

    shuffled: a permutation drawn from (seed, key), so every question gets its own order, the
    same one on every run and process (the paper's shuffle was unseeded).
    """
    t = len(frames)
    if condition == "normal":
        return frames, list(range(t))
    if condition == "shuffled":
        if seed is None:
            raise ValueError("the shuffled condition needs a seed")
        perm = np.random.default_rng([int(seed), _stable_int(key)]).permutation(t)
        return frames[perm], perm.tolist()
    if condition == "reversed":
        return frames[::-1].copy(), list(range(t - 1, -1, -1))
    if condition == "static":
        return np.repeat(frames[:1], t, axis=0), [0] * t
    if condition == "blind":
        return np.zeros((1, BLIND_SIZE, BLIND_SIZE, 3), np.uint8), None
    raise ValueError(f"unknown condition {condition!r}; choose from {CONDITIONS}")


def unit_label(condition: str, seed: int | None) -> str:
    """``condition``, or ``condition@seed`` for a seeded one (``shuffled@0``)."""
    return condition if seed is None else f"{condition}@{seed}"
