"""lib.train as 2 CPU processes (torchrun, gloo) through the CLI entry point: per-rank
pseudo-video tables (the paper recipe, checklist 24) or one shared table (global), the global
batch as asked, and a run killed after a checkpoint that resumes to the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lib import train
from tests.longvu_helpers import tiny_ckpt

REPO = Path(__file__).resolve().parents[1]


def _torchrun(ckpt: Path, coco: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "lib.train", "--model", str(ckpt), "--coco", str(coco), "--recipe",
           "paper", "--questions", "R1", "--S", "2", "--F", "1", "--N", "8", "--global-batch",
           "4", "--max-steps", "2", "--save-steps", "1", "--out", str(out), *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def ckpt() -> Path:
    return tiny_ckpt("qwen", "image", "small")


def test_two_ranks_own_tables_global_batch_and_resume(ckpt, smoke_assets, tmp_path):
    out = tmp_path / "run"
    killed = _torchrun(ckpt, smoke_assets / "coco", out, "--fail-at-step", "1")
    assert killed.returncode != 0 and "simulated kill after step 1" in killed.stderr
    assert [d.name for d in train.complete_checkpoints(out / "checkpoints")] == ["checkpoint-1"]
    assert not (out / train.DONE_FLAG).exists()

    res = _torchrun(ckpt, smoke_assets / "coco", out, "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["finished"] and m["steps"] == 2
    assert m["resumed_from"].endswith("checkpoint-1")
    # global batch 4 = micro-batch 1 x 2 ranks x accumulation 2, counted over both ranks
    assert m["gradient_accumulation"] == 2
    assert [r["samples"] for r in train.read_log(out)] == [4, 4]
    # each rank drew its own table from seed + rank (the fork's train_modified.py:964)
    t0, t1 = (json.loads((out / f"data_rank{r}.json").read_text()) for r in (0, 1))
    assert (t0["seeding"], t0["table_seed"], t1["table_seed"]) == ("per-rank", 0, 1)
    assert t0["n"] == t1["n"] == 8 and t0["sha256"] != t1["sha256"]


def test_global_seeding_shares_one_table(ckpt, smoke_assets, tmp_path):
    out = tmp_path / "run"
    res = _torchrun(ckpt, smoke_assets / "coco", out, "--seeding", "global", "--max-steps", "1")
    assert res.returncode == 0, res.stderr[-3000:]
    t0, t1 = (json.loads((out / f"data_rank{r}.json").read_text()) for r in (0, 1))
    assert t0["sha256"] == t1["sha256"] and t0["table_seed"] == t1["table_seed"] == 0
