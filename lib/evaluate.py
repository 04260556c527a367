"""Run a video LLM on a TVBench-layout benchmark: parsers, scorers, the resumable runner, the CLI.

Used by notebooks 01 (image- vs video-trained checkpoints) and 04 (base vs fine-tuned adapters),
by ``python -m lib.tvbench eval|score|compare`` (``main`` here is that CLI's body) and by
benchmarks/tvbench_throughput.py. Metrics live in ``lib.metrics`` and work from the predictions
file alone; tables and report.md text in ``lib.tables``; models in ``lib.models``.

Any model works that implements ``lib.models.VideoQAModel`` (``prompt``, ``preprocessor``,
``generate``, ``letter_logprobs``, ``option_logprobs``); ``--model fake:hash`` is the
deterministic stand-in for tests and dry runs.

Scorings: ``paper`` (LongVU's prompt, greedy 5 tokens, its regex parser whose misses fall back
to option C, counted), ``strict`` (same generation, an unparsable answer is wrong),
``letter`` (log-probability that the answer starts with each valid letter, as "X" or "(X",
restricted to the valid letters) and ``option``
(summed log-likelihood of each option's text); ``likelihood`` means letter + option.

The runner decodes each question's frames once in DataLoader workers, applies every condition
there, preprocesses on the CPU, and appends one line per (question, condition, scoring) to
``predictions.jsonl`` (flushed per question, fsynced every 2 s). A rerun skips finished keys,
so a killed run resumes to exactly the same metrics. The scorers of one question share one
visual encoding. Under torchrun/accelerate (``WORLD_SIZE`` > 1)
rank r takes questions r, r+W, ...; rank 0 merges the shard files and scores. The ``eval``
command records each group as a row of ``outputs/results/tvbench.csv`` (``lib.results``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from lib import metrics, results, runs, tables, tvbench, video
from lib.config import EvalSpec, default_workers
from lib.metrics import SCORINGS
from lib.tvbench import LETTERS, Benchmark, BenchmarkError, Question
from lib.video import Sampler

if TYPE_CHECKING:  # type hints only: lib.models imports torch (see cli_eval)
    from lib.models import ModelSpec, VideoQAModel

PAPER_FALLBACK = 2  # option C, what the reference parser answers when it cannot read a letter


# ---------------------------------------------------------------------------------------------
# Parsing


def parse_paper(text: str, num_options: int) -> tuple[int | None, str]:
    """LongVU's MVBench parser: delete "Answer", take the first match of an optional run of
    "(", ",", " ", a letter A..last, an optional run of ")", ",", " "; strip spaces then
    parentheses. Returns (index, status): status "ok" when that leaves a valid letter,
    "fallback" when a match does not clean up (e.g. "A,") and "nomatch" when nothing matches;
    both fall back to option C (None when the question has fewer than 3 options, i.e. wrong).
    Case-sensitive like the original, so "Based on" reads as B."""
    letters = LETTERS[:num_options]
    t = text.replace("Answer", "")
    hits = re.findall(rf"[\(,\ ]*[{letters[0]}-{letters[-1]}][\),\ ]*", t)
    fallback = PAPER_FALLBACK if num_options > PAPER_FALLBACK else None
    if not hits:
        return fallback, "nomatch"
    s = hits[0].strip().strip("()")
    if s in letters:
        return letters.index(s), "ok"
    return fallback, "fallback"


def parse_strict(text: str, num_options: int) -> tuple[int | None, str]:
    """The same reading without the fallback: anything but a clean letter is wrong."""
    idx, status = parse_paper(text, num_options)
    return (idx if status == "ok" else None), status


def expand_scorings(scorings: Sequence[str]) -> list[str]:
    """The scorers to run, ``likelihood`` expanded to letter + option, duplicates dropped."""
    out = []
    for s in scorings:
        parts = ["letter", "option"] if s == "likelihood" else [s]
        for p in parts:
            if p not in SCORINGS:
                raise ValueError(f"unknown scoring {s!r}; choose from "
                                 f"{SCORINGS + ('likelihood',)}")
            out.append(p)
    return list(dict.fromkeys(out))


# ---------------------------------------------------------------------------------------------
# Scoring one question


def score_question(model: VideoQAModel, q: Question, prepared, scorings: Sequence[str],
                   max_new_tokens: int = 5) -> list[dict]:
    """One record per scoring; ``paper`` and ``strict`` share one generation."""
    prompt = model.prompt(q.question, q.candidates)
    k = len(q.candidates)
    out = []
    raw = None
    if "paper" in scorings or "strict" in scorings:
        raw = model.generate(prepared, prompt, max_new_tokens=max_new_tokens)
    for s in scorings:
        if s in ("paper", "strict"):
            idx, status = (parse_paper if s == "paper" else parse_strict)(raw, k)
            out.append({"scoring": s, "pred_index": idx, "parse": status, "raw": raw})
        elif s == "letter":
            lp = model.letter_logprobs(prepared, prompt, LETTERS[:k])
            out.append({"scoring": s, "pred_index": int(np.argmax(lp)), "parse": "ok",
                        "letter_logprobs": [round(x, 5) for x in lp]})
        elif s == "option":
            lp, nt = model.option_logprobs(prepared, prompt, q.candidates)
            out.append({"scoring": s, "pred_index": int(np.argmax(lp)), "parse": "ok",
                        "option_logprobs": [round(x, 5) for x in lp],
                        "option_ntokens": list(nt),
                        "pred_index_mean": int(np.argmax(np.asarray(lp) / np.maximum(nt, 1)))})
    return out


# ---------------------------------------------------------------------------------------------
# Data pipeline


class _ClipDataset:
    """Map-style dataset: question i -> frames decoded once, every condition preprocessed."""

    def __init__(self, questions: list[Question], sampler: Sampler,
                 units: list[tuple[str, int | None]], preprocess: Callable,
                 frame_cache: str | None = None, backend: str = "pyav"):
        self.questions, self.sampler, self.units = questions, sampler, units
        self.preprocess, self.frame_cache, self.backend = preprocess, frame_cache, backend

    def __len__(self) -> int:
        return len(self.questions)

    def __getitem__(self, i: int) -> dict:
        q = self.questions[i]
        t0 = time.perf_counter()
        if self.frame_cache:
            clip = video.FrameCache(self.frame_cache).get(q, self.sampler, self.backend)
        else:
            clip = video.read_clip(q, self.sampler, self.backend)
        t1 = time.perf_counter()
        prepared = {}
        for c, s in self.units:
            frames, _ = tvbench.apply_condition(clip.frames, c, s, tvbench.sample_id(q))
            prepared[(c, s)] = self.preprocess(frames)
        return {"i": i, "prepared": prepared, "n_frames": len(clip.indices),
                "video_frames": clip.n_frames, "fps": clip.fps, "note": clip.note,
                "decode_s": t1 - t0, "prep_s": time.perf_counter() - t1}


def _first(batch):
    return batch[0]


def _worker_init(_):
    import torch

    torch.set_num_threads(1)  # workers decode; the model keeps the cores


def _loader(ds: _ClipDataset, num_workers: int):
    from torch.utils.data import DataLoader

    kw = {"num_workers": num_workers, "batch_size": 1, "collate_fn": _first, "shuffle": False}
    if num_workers > 0:
        kw.update(worker_init_fn=_worker_init, prefetch_factor=2)
    return DataLoader(ds, **kw)


# ---------------------------------------------------------------------------------------------
# The runner


def _fingerprint(model: VideoQAModel, bench: Benchmark, spec: EvalSpec) -> dict:
    """What must not change between a run and its resumption."""
    return {"model": model.name, "data": str(bench.root.resolve()),
            "json_sha256": bench.json_sha256, "sampler": spec.sampler.spec,
            "max_new_tokens": spec.max_new_tokens, "backend": spec.backend}


def _done_keys(out_dir: Path) -> set:
    files = sorted(out_dir.glob("predictions*.jsonl"))
    if not files:
        return set()
    return {metrics.prediction_key(r) for r in metrics.read_predictions(out_dir)}


def _open_append(path: Path):
    """Append handle; a torn last line from a killed run is cut off first."""
    if path.exists() and path.stat().st_size:
        data = path.read_bytes()
        if not data.endswith(b"\n"):
            with open(path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
    return open(path, "a", encoding="utf-8")


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """Temporarily set torch's intra-op threads (None: leave as is). Tiny models on a busy CPU
    run several times faster on one thread than on two that spin-wait for each other."""
    if not n:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def dist_info() -> tuple[int, int]:
    """(rank, world size) from torchrun/accelerate environment variables."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def predictions_path(out_dir: Path | str, rank: int = 0, world_size: int = 1) -> Path:
    name = "predictions.jsonl" if world_size == 1 else f"predictions.rank{rank}.jsonl"
    return Path(out_dir) / name


def run(model: VideoQAModel, bench: Benchmark, out_dir: Path | str, spec: EvalSpec,
        rank: int = 0, world_size: int = 1, progress: bool = True) -> dict:
    """Evaluate this rank's share, appending to its predictions file; returns run stats.

    Safe to call again on the same ``out_dir``: finished (question, condition, scoring) keys
    are skipped. Refuses an ``out_dir`` whose predictions came from another model, data or
    sampler.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scorings = expand_scorings(spec.scorings)
    units = spec.units()
    fp = _fingerprint(model, bench, spec)
    cfg_file = out / "config.json"
    if cfg_file.exists():
        old = json.loads(cfg_file.read_text()).get("fingerprint")
        if old is not None and old != fp:
            diff = sorted(k for k in fp if old.get(k) != fp[k])
            raise BenchmarkError(
                f"{out}: holds predictions made with a different {diff}; use another --out "
                "or delete the folder.")
    if rank == 0:
        cfg = {"fingerprint": fp, "spec": {**asdict(spec), "sampler": spec.sampler.spec,
                                           "scorings": scorings},
               "skipped_missing_video": len(bench.skipped), "skipped_videos": bench.skipped_videos,
               "release": bench.release, "world_size": world_size}
        runs.write_json(cfg_file, {**cfg, "env": runs.env_report()})
    questions = tvbench.select(bench.questions, spec.limit)
    mine = questions[rank::world_size]
    done = _done_keys(out)

    def keys(q: Question) -> list[tuple]:
        return [(tvbench.sample_id(q), c, s, m) for c, s in units for m in scorings]

    todo = [q for q in mine if any(k not in done for k in keys(q))]
    ds = _ClipDataset(todo, spec.sampler, units, model.preprocessor(), spec.frame_cache,
                      spec.backend)
    stats = {"questions": len(mine), "todo": len(todo), "records": 0, "decode_s": 0.0,
             "prep_s": 0.0, "model_s": 0.0}
    t_start = time.perf_counter()
    path = predictions_path(out, rank, world_size)
    last_sync = time.perf_counter()
    with _open_append(path) as f, _torch_threads(spec.threads):
        bar = tqdm(_loader(ds, spec.num_workers), total=len(todo), disable=not progress,
                   desc=f"TVBench {model.name}" + (f" rank {rank}" if world_size > 1 else ""))
        for item in bar:
            q = todo[item["i"]]
            sid = tvbench.sample_id(q)
            lines = []
            t0 = time.perf_counter()
            for (c, s), prepared in item["prepared"].items():
                need = [m for m in scorings if (sid, c, s, m) not in done]
                for rec in score_question(model, q, prepared, need, spec.max_new_tokens):
                    lines.append({"sample_id": sid, "task": q.task, "index": q.index,
                                  "video": q.video, "question": q.question,
                                  "num_options": len(q.candidates),
                                  "answer_index": q.answer_index, "condition": c, "seed": s,
                                  **rec, "n_frames": item["n_frames"] if c != "blind" else 1,
                                  "frame_note": item["note"], "model": model.name})
            stats["model_s"] += time.perf_counter() - t0
            stats["decode_s"] += item["decode_s"]
            stats["prep_s"] += item["prep_s"]
            f.write("".join(json.dumps(r) + "\n" for r in lines))
            f.flush()  # in the OS after each question: a killed process loses nothing
            if time.perf_counter() - last_sync > 2.0:  # on disk every 2 s (power loss)
                os.fsync(f.fileno())
                last_sync = time.perf_counter()
            stats["records"] += len(lines)
        os.fsync(f.fileno())
    stats["wall_s"] = time.perf_counter() - t_start
    return stats


def merge(out_dir: Path | str, bench: Benchmark | None = None) -> Path:
    """Fold per-rank shard files into predictions.jsonl (de-duplicated, in question order)."""
    out = Path(out_dir)
    recs = metrics.read_predictions(out)
    order = {tvbench.sample_id(q): i for i, q in enumerate(bench.questions)} if bench else {}
    urank = {c: i for i, c in enumerate(tvbench.CONDITIONS)}
    srank = {s: i for i, s in enumerate(SCORINGS)}
    recs.sort(key=lambda r: (order.get(r.get("sample_id"), 1 << 30), r.get("sample_id", ""),
                             urank.get(r.get("condition"), 99), r.get("seed") or 0,
                             srank.get(r.get("scoring"), 99)))
    final = out / "predictions.jsonl"
    tmp = out / "predictions.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in recs))
    os.replace(tmp, final)
    for shard in out.glob("predictions.rank*.jsonl"):
        shard.unlink()
    return final


def finalize(out_dir: Path | str, bench: Benchmark, n_boot: int = 2000, seed: int = 0,
             limit: int | None = None) -> dict[str, dict]:
    """Merge shards, score every group, write metrics.json and report.md."""
    out = Path(out_dir)
    merge(out, bench)
    scored = Benchmark(bench.root, bench.tasks, tvbench.select(bench.questions, limit),
                       bench.skipped, bench.release, bench.json_sha256)
    res = metrics.score(out / "predictions.jsonl", scored, n_boot=n_boot, seed=seed)
    (out / "metrics.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / "report.md").write_text(tables.run_report(res, bench.root))
    return res


def evaluate(model: VideoQAModel, bench: Benchmark, out_dir: Path | str, spec: EvalSpec,
             n_boot: int = 2000, progress: bool = True) -> dict[str, dict]:
    """Single-process convenience for notebooks: run (resumably) then finalize; returns the
    groups of ``spec`` only (a shared folder may also hold other conditions or scorers)."""
    run(model, bench, out_dir, spec, progress=progress)
    res = finalize(out_dir, bench, n_boot=n_boot, limit=spec.limit)
    wanted = {metrics.group_label(c, s, sc) for c, s in spec.units()
              for sc in expand_scorings(spec.scorings)}
    return {k: v for k, v in res.items() if k in wanted}


def evaluate_models(models: Sequence[ModelSpec], run_dirs: Mapping[str, Path | str],
                    bench: Benchmark, spec: EvalSpec, n_boot: int = 2000, progress: bool = True
                    ) -> dict[str, dict[str, dict]]:
    """``evaluate`` each model (notebooks 01, 04) into ``run_dirs[label]``, one loaded at a
    time: label -> its groups' metrics."""
    out = {}
    for ms in models:
        model = ms.load()
        out[ms.label] = evaluate(model, bench, run_dirs[ms.label], spec, n_boot=n_boot,
                                 progress=progress)
        del model  # free it before the next one loads
    return out


# ---------------------------------------------------------------------------------------------
# CLI: python -m lib.tvbench eval|score|compare


def add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="LongVU dir or hub id, or fake:hash")
    p.add_argument("--adapter", default=None, help="PEFT adapter dir for the decoder")
    p.add_argument("--data", required=True, help="TVBench-layout folder")
    p.add_argument("--out", required=True, help="run dir (resumed if it exists)")
    p.add_argument("--condition", "--conditions", dest="conditions", nargs="+",
                   default=["normal"], choices=tvbench.CONDITIONS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="shuffle seeds")
    p.add_argument("--scoring", "--scorings", dest="scorings", nargs="+", default=["paper"],
                   choices=SCORINGS + ("likelihood",))
    p.add_argument("--sampler", choices=["paper", "uniform"], default="paper")
    p.add_argument("--num-frames", type=int, default=16, help="uniform sampler only")
    p.add_argument("--limit", type=int, default=None, help="first N questions of each task")
    p.add_argument("--tasks", nargs="+", default=None)
    p.add_argument("--on-missing", choices=tvbench.ON_MISSING, default="error")
    p.add_argument("--release", default="auto", help="auto | none | tvbench-2525")
    p.add_argument("--workers", type=int, default=default_workers(),
                   help="DataLoader decode workers (default: cores - 1, at most 4)")
    p.add_argument("--frame-cache", default=None, help="dir for decoded clips (reused)")
    p.add_argument("--backend", choices=["pyav", "decord"], default="pyav")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16")
    p.add_argument("--quantization", choices=["none", "nf4"], default="none")
    p.add_argument("--max-new-tokens", type=int, default=5)
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads while scoring (1 is fastest for tiny models)")
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--label", default=None, help="row label in outputs/results/tvbench.csv")
    p.add_argument("--no-record", action="store_true", help="do not append to tvbench.csv")
    p.add_argument("--quiet", action="store_true")


def cli_eval(args) -> int:
    rank, world = dist_info()
    group = None
    if world > 1 and os.environ.get("MASTER_ADDR"):
        import datetime

        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=datetime.timedelta(hours=8))
        group = dist
    release = None if args.release == "none" else args.release
    bench = tvbench.open_benchmark(args.data, args.tasks, args.on_missing, release)
    # Imported here so that `score` and `compare` never load torch and transformers.
    from lib.models import load_model

    model = load_model(args.model, args.adapter, args.device, args.quantization, args.dtype)
    spec = EvalSpec.from_args(args)
    stats = run(model, bench, args.out, spec, rank, world, progress=not args.quiet)
    if world > 1 and group is None:
        print(f"rank {rank} done ({stats['records']} records); with no process group (no "
              "MASTER_ADDR) nothing is merged: score the run dir once every rank has finished, "
              f"`python -m lib.tvbench score --data {args.data} --predictions {args.out}`")
        return 0
    if group is not None:
        group.barrier()
    if rank != 0:
        group.destroy_process_group()
        return 0
    res = finalize(args.out, bench, n_boot=args.n_boot, limit=args.limit)
    if group is not None:
        group.destroy_process_group()
    print(tables.format_groups(res))
    if not args.no_record:
        results.record(res, args.label or Path(args.out).name, args.out, model.name, args.data)
    return 0


def _cmd_score(args) -> int:
    res = metrics.score(args.predictions, args.data, n_boot=args.n_boot, seed=args.seed)
    if args.group:
        if args.group not in res:
            print(f"no group {args.group!r}; have {list(res)}", file=sys.stderr)
            return 2
        res = {args.group: res[args.group]}
    print(tables.format_groups(res))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


def _cmd_compare(args) -> int:
    res = metrics.paired(args.a, args.b, args.data, n_boot=args.n_boot, seed=args.seed)
    print(tables.format_paired(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m lib.tvbench eval|score|compare``."""
    ap = argparse.ArgumentParser(prog="python -m lib.tvbench", description=(
        "Evaluate a video LLM on a TVBench-layout benchmark, score predictions, compare runs."))
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("eval", help="run a model on a TVBench-layout folder (resumable)")
    add_eval_args(e)
    s = sub.add_parser("score", help="all metrics from a predictions file, no model")
    s.add_argument("--data", required=True, help="TVBench-layout folder (videos not needed)")
    s.add_argument("--predictions", required=True, help="predictions .jsonl or a run dir")
    s.add_argument("--json", help="write all metrics here")
    s.add_argument("--group", help="only this condition/scoring group, e.g. normal/paper")
    s.add_argument("--n-boot", type=int, default=2000)
    s.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("compare", help="paired difference B - A on shared questions")
    c.add_argument("--data", default=None)
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--json")
    c.add_argument("--n-boot", type=int, default=2000)
    c.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "score":
            return _cmd_score(args)
        if args.cmd == "compare":
            return _cmd_compare(args)
        return cli_eval(args)
    except BenchmarkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
