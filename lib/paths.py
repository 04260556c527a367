"""Where things live: repository folders, the data cache, run outputs and figures.

Used by every notebook and module. The only machine-specific knob is the data cache, set with
the environment variable ``WORKBOOK_DATA_DIR`` (default ``<repo>/outputs/data``).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = ROOT / "notebooks"
PARAMS_DIR = NOTEBOOKS_DIR / "params"
OUTPUTS_DIR = ROOT / "outputs"
RESULTS_DIR = OUTPUTS_DIR / "results"
FIGURES_DIR = ROOT / "figures"
DOCS_DIR = ROOT / "docs"


def data_dir() -> Path:
    """The cache for generated and downloaded data (``WORKBOOK_DATA_DIR`` overrides it)."""
    env = os.environ.get("WORKBOOK_DATA_DIR")
    return Path(env).expanduser().resolve() if env else OUTPUTS_DIR / "data"


def demo_assets_dir(profile: str = "demo") -> Path:
    """Where ``lib.assets`` writes the embedded default for a profile (demo or smoke)."""
    return data_dir() / "assets" / profile
