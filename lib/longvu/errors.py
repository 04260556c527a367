"""Loading errors and how to fix them: the exception types, the exact re-download commands,
and a JSON reader whose errors name the damaged file. Used by ``config`` and ``loading``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class LongVULoadError(RuntimeError):
    """A checkpoint (or one of its files) cannot be loaded as the model it claims to be."""


class LongVUConfigError(LongVULoadError, ValueError):
    """config.json lacks a field, has a field of the wrong type, or asks for something
    this implementation does not reproduce. The message names the file, the field and the fix."""


def download_hint(repo_id: str, files: list[str] | None = None, force: bool = False) -> str:
    """The `hf download` command that (re-)fetches `repo_id` (or some of its files)."""
    what = " ".join(files) if files else \
        '--include "*.json" --include "*.safetensors" --include "*.txt"'
    extra = " --force-download" if force else ""
    return (f"download it (needs network):\n    hf download {repo_id} {what}{extra}\n"
            f"(or add --local-dir <dir> and pass <dir>); then run with HF_HUB_OFFLINE=1. "
            "See docs/longvu.md for all four checkpoints and both towers.")


def refetch_hint(path: str | Path) -> str:
    """How to replace a damaged file: the exact re-download for HF-cache files, else re-copy."""
    p = Path(path)
    parts = p.parts
    for i, part in enumerate(parts):
        if part.startswith("models--") and i + 2 < len(parts) and parts[i + 1] == "snapshots":
            repo = part[len("models--"):].replace("--", "/", 1)
            rel = "/".join(parts[i + 3:]) or None
            return "re-" + download_hint(repo, [rel] if rel else None, force=True)
    return ("replace it with an intact copy: re-download or re-copy the checkpoint (a hub "
            "checkpoint: hf download <repo> --force-download; one we wrote: lib.longvu.save / "
            "lib/adapters.py save_adapter write complete dirs).")


def read_json(path: str | Path, what: str = "") -> Any:
    """json.loads of a file, or LongVULoadError naming the file, what is wrong and the fix."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise LongVULoadError(f"{p}: cannot read {what or 'this file'} ({e}); "
                              f"{refetch_hint(p)}") from None
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        state = "empty (0 bytes)" if not data else f"not valid JSON ({e}; {len(data)} bytes)"
        raise LongVULoadError(f"{p}: {what or 'file'} is {state}: truncated or corrupt. Fix: "
                              f"{refetch_hint(p)}") from None
