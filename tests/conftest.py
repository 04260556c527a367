"""Shared test set-up: offline hub, and outputs, figures and data redirected to a temp folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Set before any test module imports lib or transformers; papermill kernels inherit them.
_TMP = Path(tempfile.mkdtemp(prefix="workbook-tests-"))
os.environ.update({
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "MPLBACKEND": "Agg",
    "WORKBOOK_DATA_DIR": str(_TMP / "data"),
    "WORKBOOK_OUTPUTS_DIR": str(_TMP / "outputs"),
    "WORKBOOK_FIGURES_DIR": str(_TMP / "figures"),
})


@pytest.fixture(scope="session")
def smoke_assets() -> Path:
    """The smoke-profile shapes-COCO + MiniTVBench, built once per session (about 1 s)."""
    from lib import assets, paths

    out = paths.demo_assets_dir("smoke")
    assets.build("smoke", out)
    return out
