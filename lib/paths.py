"""Where things live: repository folders, the data cache, run outputs and figures; and the one
check every command line runs on its output location before any work (``writable_dir``,
``writable_file_target``: a one-line error naming the flag, the path and the fix).

Used by every notebook and module. The only machine-specific knob is the data cache, set with
the environment variable ``WORKBOOK_DATA_DIR`` (default ``<repo>/outputs/data``). Tests also
redirect run outputs and figures with ``WORKBOOK_OUTPUTS_DIR`` and ``WORKBOOK_FIGURES_DIR`` so
that they never write into the tracked folders.
"""

from __future__ import annotations

import os
import tempfile
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


# ---------------------------------------------------------------------------------------------
# Output locations of the command lines: checked before any work, one line naming path and fix


class OutputPathError(ValueError):
    """A CLI's output location cannot be written; the message names the flag, path and fix."""


def _nearest_existing(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _probe(folder: Path, flag: str, target: Path, error: type[Exception]) -> None:
    """Create and remove a file in ``folder``: catches read-only mounts and permissions, which
    ``os.access`` misses for root."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise error(f"{flag} {target}: cannot write in {folder} ({e.strerror}); fix: choose "
                    "a location you can write to, or make that folder writable") from None


def _check_folder(folder: Path, flag: str, shown: Path, error: type[Exception]) -> None:
    if folder.exists() and not folder.is_dir():
        what = "is a file" if folder == shown else f"{folder} is a file"
        raise error(f"{flag} {shown}: {what}, not a folder; fix: pass a folder path (new or "
                    "existing) that does not go through a file, or move the file away")
    base = _nearest_existing(folder.absolute())
    if not base.is_dir():
        raise error(f"{flag} {shown}: {base} is a file, so no folder can be made under it; "
                    "fix: pass a path that does not go through a file")
    _probe(base, flag, shown, error)


def writable_dir(path: Path | str, flag: str, error: type[Exception] = OutputPathError) -> Path:
    """Check that ``path`` is, or can be created as, a folder this process can write in.

    Raises ``error`` (one line: flag, path, problem, fix) when it is a file, sits under a file
    or lies in a folder that cannot be written. Leaves nothing behind. Returns the path.
    """
    p = Path(path).expanduser()
    _check_folder(p, flag, p, error)
    return p


def writable_file_target(path: Path | str, flag: str,
                         error: type[Exception] = OutputPathError) -> Path:
    """Check that a file can be written at ``path`` (not a folder; its folder is, or can be
    made, writable). Raises ``error`` like ``writable_dir``. Leaves nothing behind."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise error(f"{flag} {p}: is a folder; fix: pass a file path, e.g. {p / 'out.jsonl'}")
    if p.exists() and not os.access(p, os.W_OK):
        raise error(f"{flag} {p}: the file is read-only; fix: make it writable or pass "
                    "another file path")
    _check_folder(p.parent, flag, p, error)
    return p
