"""An evaluation run folder: one evaluation at a time, what must not change between a run and
its resumption, the predictions files and the merge of per-rank shards.

``locked`` holds an ``fcntl`` lock on ``<run>/.eval.lock`` (rank r > 0 of a sharded run:
``.eval.rank<r>.lock``) while a process evaluates or merges, so a second evaluation on the same
folder stops at once with an error naming the folder and the holder's pid instead of replacing
``predictions.jsonl`` under the first one's appends. The lock goes with its process (a killed
run leaves nothing to clean up). ``check_config`` compares a folder's ``config.json``
fingerprint with this run's and refuses a mismatch before anything is written, saying what
differs. ``LineSink`` appends prediction lines; ``write_timing``/``read_timing`` keep each
rank's time split for metrics.json. Used by ``lib.evaluate``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from lib import runs
from lib.metrics import SCORINGS
from lib.predictions import prediction_key, read_predictions
from lib.conditions import CONDITIONS
from lib.tvbench import Benchmark, BenchmarkError, sample_id

_held: dict[str, list] = {}  # lock path -> [open file, depth]: re-entrant within a process


def lock_path(out_dir: Path | str, rank: int = 0) -> Path:
    return Path(out_dir) / (".eval.lock" if rank == 0 else f".eval.rank{rank}.lock")


@contextlib.contextmanager
def locked(out_dir: Path | str, rank: int = 0) -> Iterator[None]:
    """Hold the folder's evaluation lock (re-entrant in this process); ``BenchmarkError``
    naming the folder and the other process if it is taken."""
    path = lock_path(out_dir, rank)
    key = str(path.absolute())
    if key in _held:
        _held[key][1] += 1
        try:
            yield
        finally:
            _held[key][1] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise BenchmarkError(
            f"{Path(out_dir)}: another evaluation is running in this folder ({holder}); wait "
            "for it to finish or pass another --out (two runs on one folder would lose "
            "predictions).") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()} since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    f.flush()
    _held[key] = [f, 1]
    try:
        yield
    finally:
        if _held[key][1] == 1:
            del _held[key]
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            f.close()
        else:
            _held[key][1] -= 1


def _differences(old: dict, new: dict) -> list[str]:
    """The fingerprint fields that differ, with both values. Task files are compared on the
    tasks both runs read (a run may evaluate a subset with --tasks)."""
    out = []
    for k in new:
        a, b = old.get(k), new[k]
        if k == "json_sha256" and isinstance(a, dict):
            changed = sorted(t for t in set(a) & set(b) if a[t] != b[t])
            if changed:
                out.append(f"json_sha256: json/{{{','.join(changed)}}}.json changed since the "
                           "folder's predictions were made")
        elif a != b:
            out.append(f"{k}: {a!r} in the folder, {b!r} in this run")
    return out


def check_config(out_dir: Path | str, fingerprint: dict) -> None:
    """Refuse a folder whose predictions came from another model, data or sampler (nothing
    is written); the error lists each difference."""
    cfg = Path(out_dir) / "config.json"
    if not cfg.exists():
        return
    old = json.loads(cfg.read_text()).get("fingerprint")
    if old is None:
        return
    diff = _differences(old, fingerprint)
    if diff:
        keys = [d.split(":")[0] for d in diff]
        raise BenchmarkError(
            f"{Path(out_dir)}: holds predictions made with a different {keys}:\n  "
            + "\n  ".join(diff) + "\nUse another --out, or delete the folder to start over.")


def write_config(out_dir: Path | str, fingerprint: dict, extra: dict) -> None:
    """config.json: the fingerprint (task-file hashes of every run on the folder) and
    ``extra`` (this run's spec, skips, environment)."""
    cfg = Path(out_dir) / "config.json"
    fp = dict(fingerprint)
    if cfg.exists():
        old = json.loads(cfg.read_text()).get("fingerprint") or {}
        if isinstance(old.get("json_sha256"), dict):
            fp["json_sha256"] = {**old["json_sha256"], **fp["json_sha256"]}
    runs.write_json(cfg, {"fingerprint": fp, **extra, "env": runs.env_report()})


def done_keys(out_dir: Path | str) -> set:
    """The (question, condition, seed, scoring) keys already in the folder."""
    if not sorted(Path(out_dir).glob("predictions*.jsonl")):
        return set()
    return {prediction_key(r) for r in read_predictions(out_dir)}


def open_append(path: Path):
    """Append handle; a torn last line from a killed run is cut off first."""
    if path.exists() and path.stat().st_size:
        data = path.read_bytes()
        if not data.endswith(b"\n"):
            with open(path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
    return open(path, "a", encoding="utf-8")


class LineSink:
    """Prediction lines into an ``open_append`` handle: in the OS after each write (a killed
    process loses nothing written), on disk every 2 s (power loss); ``stats["records"]``
    counts them."""

    def __init__(self, f, stats: dict):
        self.f, self.stats, self.last = f, stats, time.perf_counter()

    def write(self, lines: list[dict]) -> None:
        self.f.write("".join(json.dumps(r) + "\n" for r in lines))
        self.f.flush()
        self.stats["records"] += len(lines)
        if time.perf_counter() - self.last > 2.0:
            self.sync()

    def sync(self) -> None:
        os.fsync(self.f.fileno())
        self.last = time.perf_counter()


TIMING = "timing.json"


def write_timing(out_dir: Path | str, rank: int, stats: dict) -> None:
    """Record this rank's last run time split (seconds: decode wait in the main process,
    decode and preprocess summed over workers, visual and decoder, model, wall) in
    ``timing.json`` under ``rank<r>``; ``read_timing`` gives it to metrics.json."""
    path = Path(out_dir) / TIMING
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[f"rank{rank}"] = {k: round(v, 3) if isinstance(v, float) else v
                           for k, v in stats.items()}
    runs.write_json(path, data)


def read_timing(out_dir: Path | str) -> dict:
    """``timing.json`` of a run folder ({} when none was written)."""
    path = Path(out_dir) / TIMING
    return json.loads(path.read_text()) if path.is_file() else {}


def predictions_path(out_dir: Path | str, rank: int = 0, world_size: int = 1) -> Path:
    name = "predictions.jsonl" if world_size == 1 else f"predictions.rank{rank}.jsonl"
    return Path(out_dir) / name


def merge(out_dir: Path | str, bench: Benchmark | None = None) -> Path:
    """Fold per-rank shard files into predictions.jsonl (de-duplicated, in question order)."""
    out = Path(out_dir)
    with locked(out):
        recs = read_predictions(out)
        order = {sample_id(q): i for i, q in enumerate(bench.questions)} if bench else {}
        urank = {c: i for i, c in enumerate(CONDITIONS)}
        srank = {s: i for i, s in enumerate(SCORINGS)}
        recs.sort(key=lambda r: (order.get(r.get("sample_id"), 1 << 30),
                                 r.get("sample_id", ""), urank.get(r.get("condition"), 99),
                                 r.get("seed") or 0, srank.get(r.get("scoring"), 99)))
        final = out / "predictions.jsonl"
        tmp = out / "predictions.jsonl.tmp"
        tmp.write_text("".join(json.dumps(r) + "\n" for r in recs))
        os.replace(tmp, final)
        for shard in out.glob("predictions.rank*.jsonl"):
            shard.unlink()
    return final
