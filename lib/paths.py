"""Where things live: repository folders, the data cache, run outputs and figures.

Used by every notebook and module. The only machine-specific knob is the data cache, set with
the environment variable ``WORKBOOK_DATA_DIR`` (default ``<repo>/outputs/data``). Tests also
redirect run outputs and figures with ``WORKBOOK_OUTPUTS_DIR`` and ``WORKBOOK_FIGURES_DIR`` so
that they never write into the tracked folders.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = ROOT / "notebooks"
PARAMS_DIR = NOTEBOOKS_DIR / "params"
DOCS_DIR = ROOT / "docs"


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


def outputs_dir() -> Path:
    """Run dirs ``<outputs>/<notebook>/<run>/`` and result tables ``<outputs>/results/``."""
    return _env_path("WORKBOOK_OUTPUTS_DIR", ROOT / "outputs")


def results_dir() -> Path:
    return outputs_dir() / "results"


def figures_dir() -> Path:
    return _env_path("WORKBOOK_FIGURES_DIR", ROOT / "figures")


def data_dir() -> Path:
    """The cache for generated and downloaded data (``WORKBOOK_DATA_DIR`` overrides it)."""
    return _env_path("WORKBOOK_DATA_DIR", ROOT / "outputs" / "data")


def demo_assets_dir(profile: str = "demo") -> Path:
    """Where ``lib.assets`` writes the embedded default for a profile (demo or smoke)."""
    return data_dir() / "assets" / profile


def checkpoints_dir() -> Path:
    """Local copies of the official LongVU checkpoints and tower weights (full profile)."""
    return data_dir() / "checkpoints"


def absolute(path: Path | str) -> Path:
    """A path as written in a results table or metrics.json: relative ones are relative to the
    repository root (see ``relative``)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else ROOT / p


def relative(path: Path | str) -> str:
    """A path for a results table: relative to the repository root when inside it, so tables
    read the same on every machine; hub ids and paths elsewhere are kept as written."""
    p = Path(path)
    if not p.is_absolute():
        return str(path)
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)
