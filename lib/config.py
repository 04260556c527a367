"""Run configurations: one frozen dataclass per kind of run, built from a notebook's parameters
or a CLI's flags.

``EvalSpec`` says what an evaluation run computes (conditions, seeds, scorers, sampler, limits);
``lib.evaluate`` runs it. Used by notebooks 01 and 04 and the ``lib.tvbench eval`` CLI.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from lib import tvbench
from lib.video import Sampler


@dataclass
class EvalSpec:
    conditions: tuple[str, ...] = ("normal",)
    seeds: tuple[int, ...] = (0,)
    scorings: tuple[str, ...] = ("paper",)
    sampler: Sampler = field(default_factory=Sampler)
    max_new_tokens: int = 5
    limit: int | None = None  # first N questions of each task
    num_workers: int = field(default_factory=lambda: default_workers())
    frame_cache: str | None = None
    backend: str = "pyav"
    threads: int | None = None  # torch intra-op threads while running (1 suits tiny CPU models)

    def units(self) -> list[tuple[str, int | None]]:
        return tvbench.condition_units(self.conditions, self.seeds)


def default_workers() -> int:
    """Decode workers: leave one core to the model (0 = decode in the main process)."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))
