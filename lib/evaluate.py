"""Run a video LLM on a TVBench-layout benchmark: model protocol, scorers, resumable runner.

Used by notebooks 01 (image- vs video-trained checkpoints) and 04 (base vs fine-tuned adapters),
by ``python -m lib.tvbench eval`` and by benchmarks/tvbench_throughput.py. Metrics live in
``lib.tvbench`` and work from the predictions file alone.

Any model works that implements ``VideoQAModel`` (``prompt``, ``preprocessor``, ``generate``,
``letter_logprobs``, ``option_logprobs``); ``LongVUModel`` wraps ``lib.longvu`` and
``FakeModel`` is a deterministic stand-in for tests and dry runs (``--model fake:hash``).

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
rank r takes questions r, r+W, ...; rank 0 merges the shard files and scores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lib import tvbench, video
from lib.config import EvalSpec, default_workers
from lib.models import VideoQAModel, load_model
from lib.tvbench import LETTERS, Benchmark, Question
from lib.video import Sampler

SCORINGS = ("paper", "strict", "letter", "option")
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
    out = []
    for s in scorings:
        parts = ["letter", "option"] if s == "likelihood" else [s]
        for p in parts:
            if p not in SCORINGS:
                raise ValueError(f"unknown scoring {s!r}; choose from {SCORINGS + ('likelihood',)}")
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


def select(questions: list[Question], limit: int | None) -> list[Question]:
    """The first ``limit`` questions of each task (all with None)."""
    if limit is None:
        return list(questions)
    seen: dict[str, int] = {}
    out = []
    for q in questions:
        if seen.get(q.task, 0) < limit:
            out.append(q)
            seen[q.task] = seen.get(q.task, 0) + 1
    return out


def _fingerprint(model: VideoQAModel, bench: Benchmark, spec: EvalSpec) -> dict:
    """What must not change between a run and its resumption."""
    return {"model": model.name, "data": str(bench.root.resolve()),
            "json_sha256": bench.json_sha256, "sampler": spec.sampler.spec,
            "max_new_tokens": spec.max_new_tokens, "backend": spec.backend}


def _done_keys(out_dir: Path) -> set:
    files = sorted(out_dir.glob("predictions*.jsonl"))
    if not files:
        return set()
    return {tvbench.prediction_key(r) for r in tvbench.read_predictions(out_dir)}


def _open_append(path: Path):
    """Append handle; a torn last line from a killed run is cut off first."""
    if path.exists() and path.stat().st_size:
        data = path.read_bytes()
        if not data.endswith(b"\n"):
            with open(path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
    return open(path, "a", encoding="utf-8")


class _torch_threads:
    """Temporarily set torch's intra-op threads (None: leave as is). Tiny models on a busy CPU
    run several times faster on one thread than on two that spin-wait for each other."""

    def __init__(self, n: int | None):
        self.n, self.old = n, None

    def __enter__(self):
        if self.n:
            import torch

            self.old = torch.get_num_threads()
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        if self.old:
            import torch

            torch.set_num_threads(self.old)


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
    from tqdm.auto import tqdm

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
            raise tvbench.BenchmarkError(
                f"{out}: holds predictions made with a different {diff}; use another --out "
                "or delete the folder.")
    if rank == 0:
        cfg = {"fingerprint": fp, "spec": {**asdict(spec), "sampler": spec.sampler.spec,
                                           "scorings": scorings},
               "skipped_missing_video": len(bench.skipped), "skipped_videos": bench.skipped_videos,
               "release": bench.release, "world_size": world_size}
        from lib.runs import env_report, write_json

        write_json(cfg_file, {**cfg, "env": env_report()})
    questions = select(bench.questions, spec.limit)
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
    recs = tvbench.read_predictions(out)
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
    scored = Benchmark(bench.root, bench.tasks, select(bench.questions, limit), bench.skipped,
                       bench.release, bench.json_sha256)
    res = tvbench.score(out / "predictions.jsonl", scored, n_boot=n_boot, seed=seed)
    (out / "metrics.json").write_text(json.dumps(res, indent=1) + "\n")
    rows = {label: m for label, m in res.items()}
    table = tvbench.results_table(rows, ci=True)
    parts = ["# TVBench run", "", f"data: {bench.root}", "",
             table.to_markdown() if _has_tabulate() else table.to_string(), ""]
    for label, m in res.items():
        parts += [f"## {label}", "", "```", tvbench.format_table(m), "```", ""]
    (out / "report.md").write_text("\n".join(parts))
    return res


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
        return True
    except ImportError:
        return False


def result_row(label: str, metrics: dict, run_dir: Path | str, model: str, data: str,
               group: str) -> dict:
    """A row for outputs/results/tvbench.csv."""
    cond, _, scoring = group.partition("/")
    row = {"label": label, "model": model, "data": str(data), "group": group,
           "condition": cond, "scoring": scoring, "n": metrics["n"],
           "skipped_missing_video": metrics.get("skipped_missing_video", 0),
           "micro": round(metrics["micro"], 2), "macro": round(metrics["macro"], 2),
           "micro_lo": round(metrics["micro_ci"][0], 2) if metrics.get("micro_ci") else "",
           "micro_hi": round(metrics["micro_ci"][1], 2) if metrics.get("micro_ci") else "",
           "chance_micro": round(metrics["chance_micro"], 2),
           "chance_macro": round(metrics["chance_macro"], 2), "run_dir": str(run_dir)}
    for t in metrics["tasks"].values():
        row[t["abbr"]] = round(t["acc"], 2)
        # Per-task 95% CIs (clustered bootstrap) and chance, so notebook 05 plots from the CSV.
        row[f"{t['abbr']}_lo"] = round(t["ci"][0], 2) if t.get("ci") else ""
        row[f"{t['abbr']}_hi"] = round(t["ci"][1], 2) if t.get("ci") else ""
        row[f"{t['abbr']}_chance"] = round(t["chance"], 2)
        row[f"{t['abbr']}_n"] = t["n"]
    p = metrics.get("parse", {})
    row["parse_fail"] = sum(v for k, v in p.items() if k != "ok")
    return row


def record(res: dict[str, dict], label: str, run_dir: Path | str, model: str, data: str) -> Path:
    """Append (or replace) one row per group in outputs/results/tvbench.csv."""
    from lib import runs

    f = None
    for group, m in res.items():
        f = runs.append_result("tvbench", result_row(label, m, run_dir, model, data, group),
                               key=["run_dir", "group"])
    return f


def evaluate(model: VideoQAModel, bench: Benchmark, out_dir: Path | str, spec: EvalSpec,
             n_boot: int = 2000, progress: bool = True) -> dict[str, dict]:
    """Single-process convenience for notebooks: run (resumably) then finalize; returns the
    groups of ``spec`` only (a shared folder may also hold other conditions or scorers)."""
    run(model, bench, out_dir, spec, progress=progress)
    res = finalize(out_dir, bench, n_boot=n_boot, limit=spec.limit)
    wanted = {tvbench.group_label(c, s, sc) for c, s in spec.units()
              for sc in expand_scorings(spec.scorings)}
    return {k: v for k, v in res.items() if k in wanted}


# ---------------------------------------------------------------------------------------------
# CLI (python -m lib.tvbench eval ...)


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
    model = load_model(args.model, args.adapter, args.device, args.quantization, args.dtype)
    spec = EvalSpec(tuple(args.conditions), tuple(args.seeds), tuple(args.scorings),
                    Sampler(args.sampler, args.num_frames), args.max_new_tokens, args.limit,
                    args.workers, args.frame_cache, args.backend, args.threads)
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
    for label, m in res.items():
        print(f"== {label}")
        print(tvbench.format_table(m))
    if not args.no_record:
        record(res, args.label or Path(args.out).name, args.out, model.name, args.data)
    first = next(iter(res.values()))
    print(f"micro {first['micro']:.2f} macro {first['macro']:.2f} n {first['n']}")
    return 0


# ---------------------------------------------------------------------------------------------
# Notebook support: which checkpoints, adapters from notebook 03, figures


def group_records(source: Path | str | list[dict], group: str,
                  questions: Sequence[Question] | None = None) -> list[dict]:
    """The records of one ``condition[@seed]/scoring`` group, e.g. ``shuffled@0/paper``;
    with ``questions``, only theirs (a shared folder may hold more, from a larger LIMIT)."""
    recs = tvbench.read_predictions(source) if not isinstance(source, list) else source
    keep = None if questions is None else {tvbench.sample_id(q) for q in questions}
    return [r for r in recs if tvbench.group_label(r.get("condition", "normal"), r.get("seed"),
                                                   r.get("scoring", "paper")) == group
            and (keep is None or r.get("sample_id") in keep)]


def seed_summary(res: dict[str, dict], condition: str = "shuffled", scoring: str = "paper"
                 ) -> dict | None:
    """Mean and sd of micro accuracy over the shuffle seeds of a run."""
    vals = [m["micro"] for g, m in res.items()
            if g.startswith(condition + "@") and g.endswith("/" + scoring)]
    if not vals:
        return None
    return {"mean": float(np.mean(vals)), "sd": float(np.std(vals, ddof=1)) if len(vals) > 1
            else 0.0, "seeds": len(vals)}


def plot_per_task(rows: dict[str, dict], title: str = ""):
    """Grouped bars: per-task accuracy with 95% CIs for each labelled run, chance as ticks."""
    import matplotlib.pyplot as plt

    first = next(iter(rows.values()))
    tasks = list(first["tasks"])
    abbr = [first["tasks"][t]["abbr"] for t in tasks] + ["micro"]
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(abbr) * max(1, len(rows)) / 2, 3.6))
    w = 0.8 / len(rows)
    x = np.arange(len(abbr))
    for j, (label, m) in enumerate(rows.items()):
        acc = [m["tasks"][t]["acc"] for t in tasks] + [m["micro"]]
        ci = [m["tasks"][t]["ci"] for t in tasks] + [m["micro_ci"]]
        err = np.maximum(0, np.array([[a - c[0], c[1] - a] if c else [0, 0]
                                      for a, c in zip(acc, ci)]).T)
        ax.bar(x + (j - (len(rows) - 1) / 2) * w, acc, w, yerr=err, capsize=2, label=label,
               error_kw={"lw": 1, "ecolor": "0.35"})
    chance = [first["tasks"][t]["chance"] for t in tasks] + [first["chance_micro"]]
    ax.scatter(x, chance, marker="_", s=600, color="black", zorder=3, label="chance (data)")
    ax.set(xticks=x, xticklabels=abbr, ylabel="accuracy (%)", ylim=(0, 100), title=title)
    ax.legend(fontsize=8, ncol=min(3, len(rows) + 1), loc="upper right")
    fig.tight_layout()
    return fig


def plot_paired(diffs: dict[str, dict], title: str = ""):
    """Horizontal bars: paired micro-accuracy differences (B - A) with bootstrap 95% CIs."""
    import matplotlib.pyplot as plt

    labels = list(diffs)
    d = np.array([diffs[k]["micro_diff"] for k in labels])
    lo = np.array([diffs[k]["micro_ci"][0] for k in labels])
    hi = np.array([diffs[k]["micro_ci"][1] for k in labels])
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(labels) + 1.2))
    y = np.arange(len(labels))
    ax.barh(y, d, xerr=np.maximum(0, [d - lo, hi - d]), capsize=3, color=["C3" if v < 0 else "C0" for v in d])
    ax.axvline(0, color="black", lw=0.8)
    ax.set(yticks=y, yticklabels=labels, xlabel="paired difference in micro accuracy (points)",
           title=title)
    ax.invert_yaxis()
    fig.tight_layout()
    return fig


def summary_frame(results: dict[str, dict[str, dict]]):
    """One row per (model, condition group, scoring): micro with CI, macro, n, parse failures."""
    import pandas as pd

    rows = []
    for model, res in results.items():
        for group, m in res.items():
            cond, _, scoring = group.partition("/")
            p = m.get("parse", {})
            rows.append({"model": model, "condition": cond, "scoring": scoring,
                         "micro": m["micro"], "micro_lo": (m["micro_ci"] or [np.nan])[0],
                         "micro_hi": (m["micro_ci"] or [np.nan, np.nan])[1],
                         "macro": m["macro"], "n": m["n"], "chance_micro": m["chance_micro"],
                         "parse_fail_%": 100 * sum(v for k, v in p.items() if k != "ok")
                         / max(1, m["n"]) if scoring in ("paper", "strict") else np.nan})
    return pd.DataFrame(rows)


def scorer_agreement(source: Path | str | list[dict], condition: str = "normal",
                     seed: int | None = None):
    """How often the scorers pick the same option on the same questions (pairwise %)."""
    import pandas as pd

    recs = tvbench.read_predictions(source) if not isinstance(source, list) else source
    picks: dict[str, dict[str, Any]] = {}
    for r in recs:
        if r.get("condition", "normal") == condition and r.get("seed") == seed:
            picks.setdefault(r.get("scoring", "paper"), {})[r["sample_id"]] = r["pred_index"]
    names = [s for s in SCORINGS if s in picks]
    out = pd.DataFrame(index=names, columns=names, dtype=float)
    for a in names:
        for b in names:
            shared = picks[a].keys() & picks[b].keys()
            out.loc[a, b] = 100 * np.mean([picks[a][k] == picks[b][k] for k in shared]) \
                if shared else np.nan
    return out


def plot_conditions(summary, title: str = ""):
    """One panel per model: micro accuracy per condition, one bar per scorer, 95% CIs, and the
    data's micro chance as a dashed line (``summary`` from ``summary_frame``)."""
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(summary["model"]))
    scorings = list(dict.fromkeys(summary["scoring"]))
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models):
        s = summary[summary["model"] == model]
        conds = list(dict.fromkeys(s["condition"]))
        w = 0.8 / len(scorings)
        for j, sc in enumerate(scorings):
            r = s[s["scoring"] == sc].set_index("condition").reindex(conds)
            x = np.arange(len(conds)) + (j - (len(scorings) - 1) / 2) * w
            err = np.maximum(0, [r["micro"] - r["micro_lo"], r["micro_hi"] - r["micro"]])
            ax.bar(x, r["micro"], w, label=sc, yerr=np.nan_to_num(err), capsize=2)
        if "chance_micro" in s:
            ax.axhline(s["chance_micro"].iloc[0], color="black", ls="--", lw=0.8,
                       label="chance (data)")
        ax.set(xticks=range(len(conds)), xticklabels=conds, ylim=(0, 100), title=model,
               ylabel="micro accuracy (%)")
        ax.tick_params(axis="x", rotation=30)
    axes[0][0].legend(fontsize=8, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# The paper's phenomenon in one table: does pseudo-video training help on ordering tasks, and
# does the help vanish when the frame order is destroyed?

def ordering_effect(base_src: Path | str, tuned_src: Path | str, bench: Benchmark,
                    scoring: str, shuffle_seed: int = 0, tasks: Sequence[str] = tvbench.ORDERING_TASKS,
                    n_boot: int = 2000, seed: int = 0) -> dict[str, dict]:
    """Paired effects on the ordering tasks present: tuned - base under normal order (the gain),
    the same under shuffled frames (what survives without order), and tuned shuffled - normal."""
    present = [t for t in tasks if t in {q.task for q in bench.questions}]
    if not present:
        raise ValueError(f"none of the ordering tasks {list(tasks)} is in {bench.root}")
    shuf = f"shuffled@{shuffle_seed}/{scoring}"

    def recs(src, group):
        out = [r for r in group_records(src, group) if r["task"] in present]
        if not out:
            raise ValueError(f"{src}: no {group} predictions on {present}; evaluate that "
                             "condition and scorer first")
        return out

    pairs = {
        "gain_normal": (recs(base_src, f"normal/{scoring}"), recs(tuned_src, f"normal/{scoring}")),
        "gain_shuffled": (recs(base_src, shuf), recs(tuned_src, shuf)),
        "tuned_shuffled_minus_normal": (recs(tuned_src, f"normal/{scoring}"),
                                        recs(tuned_src, shuf)),
    }
    out = {}
    for name, (a, b) in pairs.items():
        p = tvbench.paired(a, b, bench, n_boot=n_boot, seed=seed)
        out[name] = {"tasks": "+".join(present), "scoring": scoring, "n": p["n"],
                     "a": p["micro_a"], "b": p["micro_b"], "diff": p["micro_diff"],
                     "ci_lo": p["micro_ci"][0], "ci_hi": p["micro_ci"][1],
                     "mcnemar_p": p["mcnemar_p"]}
    g, s = out["gain_normal"]["diff"], out["gain_shuffled"]["diff"]
    out["gain_normal"]["gain_kept_when_shuffled"] = (s / g) if g > 0 else None
    return out


def record_effect(effect: dict[str, dict], label: str, run_dir: Path | str) -> Path:
    """One row per comparison in outputs/results/tvbench_effects.csv (read by notebook 05)."""
    from lib import runs

    f = None
    for name, row in effect.items():
        f = runs.append_result("tvbench_effects", {"label": label, "comparison": name,
                                                   "run_dir": str(run_dir), **row},
                               key=["run_dir", "comparison", "scoring"])
    return f
