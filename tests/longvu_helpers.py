"""Shared helpers for the tests/test_longvu_*.py files: fixture location, tiny checkpoints."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
# A copy of the team's shared fixtures is committed so that CI runs parity on a clean clone;
# LONGVU_PARITY_DIR points the tests at another fixture set with the same layout.
PARITY_DIR = Path(os.environ.get("LONGVU_PARITY_DIR",
                                 REPO / "tests" / "fixtures" / "longvu_parity"))


def parity_dir() -> Path:
    if not (PARITY_DIR / "cases").is_dir():
        pytest.skip(f"parity fixtures not found at {PARITY_DIR} (set LONGVU_PARITY_DIR)")
    return PARITY_DIR


@lru_cache(maxsize=None)
def tiny_ckpt(backbone: str = "qwen", stage: str = "video", geometry: str = "real",
              seed: int = 0) -> Path:
    """A tiny checkpoint written once per session under a temp dir."""
    import tempfile

    from lib.longvu.tiny import write_tiny
    root = Path(tempfile.mkdtemp(prefix="longvu_tiny_"))
    return write_tiny(root / f"{backbone}_{stage}_{geometry}_{seed}", backbone, stage, geometry,
                      seed)
