"""Evaluation diagnostics that change the questions, not the frames: perm_k, the paper code's
letter-bias probe (checklist item 29; the frame diagnostics, one black frame and the repeated
first frame, are the ``blind`` and ``static`` conditions of ``lib.conditions``).

perm_k swaps the correct option with the option k places later, cyclically; the content of the
options is unchanged, only where the answer sits. The fork builds ``perm_1..3.json`` this way
(VisualComputingInstitute/videollm-pseudovideo-training at 0bf2d48,
``longvu/custom_datasets/val_set_creation/motion_val_set_creation.py`` L163-180).

Used by ``lib.eval_cli`` (``python -m lib.tvbench eval|score --perm-k K``) and ``lib.md_sets``
(the fork's ``perm_K`` Moving-Direction files); notebook 04 reaches it through the eval CLI.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from lib.tvbench import Benchmark, BenchmarkError, Question


def permute_gt(candidates: Sequence[str], answer_index: int, k: int) -> tuple[list[str], int]:
    """The fork's perm_k (L175-179): the answer trades places with the option at
    ``(answer_index + k) % n``. Returns (options, new answer index); needs 1 <= k < n."""
    n = len(candidates)
    if not 1 <= k < n:
        raise ValueError(f"perm_k {k} needs 1 <= k < {n} (the number of options)")
    new = (answer_index + k) % n
    out = list(candidates)
    out[answer_index], out[new] = out[new], out[answer_index]
    return out, new


def permute_question(q: Question, k: int) -> Question:
    cands, a = permute_gt(q.candidates, q.answer_index, k)
    return dataclasses.replace(q, candidates=tuple(cands), answer_index=a)


def perm_k_benchmark(bench: Benchmark, k: int) -> Benchmark:
    """``bench`` with every question's answer moved k options later (k = 0: ``bench`` itself).

    Every question needs more than k options; otherwise ``BenchmarkError`` names each task
    that has fewer and how many. ``json_sha256`` gets ``+perm_k=K`` folded in, so a run folder
    evaluated under another k refuses to resume into this one.
    """
    if k == 0:
        return bench
    if k < 0:
        raise BenchmarkError(f"--perm-k {k}: must be 0 (off) or a positive shift")
    short = Counter(q.task for q in bench.questions + bench.skipped if len(q.candidates) <= k)
    if short:
        listing = ", ".join(f"{t}: {c}" for t, c in sorted(short.items()))
        raise BenchmarkError(f"{bench.root}: --perm-k {k} needs more than {k} options per "
                             f"question; questions with {k} or fewer ({listing}); fix: a "
                             "smaller k, or --tasks without those tasks")
    sha = {t: hashlib.sha256(f"{h}+perm_k={k}".encode()).hexdigest()
           for t, h in bench.json_sha256.items()}
    return dataclasses.replace(
        bench, questions=[permute_question(q, k) for q in bench.questions],
        skipped=[permute_question(q, k) for q in bench.skipped], json_sha256=sha)


def run_perm_k(predictions: Path | str) -> int:
    """The ``perm_k`` a run dir was evaluated with (its config.json), 0 for a predictions file
    or a run without one."""
    cfg = Path(predictions) / "config.json"
    if not cfg.is_file():
        return 0
    return int(json.loads(cfg.read_text()).get("spec", {}).get("perm_k", 0))
