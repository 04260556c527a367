"""Run a workbook CLI in a subprocess from the repository root (the tests that check exit codes,
stdout and stderr exactly as a user sees them)."""

from __future__ import annotations

import subprocess
import sys

from lib import paths


def tvbench_cli(*args, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m lib.tvbench ARGS``; with ``check`` a non-zero exit fails with its output."""
    out = subprocess.run([sys.executable, "-m", "lib.tvbench", *map(str, args)],
                         capture_output=True, text=True, cwd=paths.ROOT, timeout=timeout)
    if check:
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out
