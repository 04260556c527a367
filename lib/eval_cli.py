"""The ``python -m lib.tvbench eval|score|compare`` command line (``main``).

``eval`` opens and checks the benchmark, takes the run folder's lock before the model loads (a
busy folder fails at once), runs ``lib.evaluate.run`` on this rank's share, and on rank 0
finalizes (merge, metrics.json, report.md) and records each group in
``outputs/results/tvbench.csv``. ``score`` computes every metric from a predictions file or run
dir alone (records from another harness are matched to the data and the method is printed);
``compare`` gives the paired difference of two runs. Every error ends in one ``error:`` line on
stderr (the file, the item, the fix) and exit status 2, never a traceback. Used by
``lib.tvbench``'s ``__main__``, the tests and the README's recipes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lib import (conditions, diagnostics, metrics, paths, recipes, results, run_folder, tables,
                 tvbench)
from lib.config import ON_SHORT_VIDEO, EvalSpec, default_workers
from lib.evaluate import check_short_windows, dist_info, finalize, run, summary_lines
from lib.metrics import SCORINGS
from lib.tvbench import Benchmark, BenchmarkError
from lib.video import VideoError

if TYPE_CHECKING:  # type hints only: lib.models imports torch (see cli_eval)
    from lib.models import VideoQAModel


def add_eval_args(p: argparse.ArgumentParser) -> None:
    """The ``eval`` flags (``lib.config.EvalSpec.from_args`` reads them)."""
    p.add_argument("--model", required=True, help="LongVU dir or hub id, or fake:hash")
    p.add_argument("--adapter", default=None, help="PEFT adapter dir for the decoder")
    p.add_argument("--data", required=True, help="TVBench-layout folder")
    p.add_argument("--out", required=True, help="run dir (resumed if it exists)")
    p.add_argument("--condition", "--conditions", dest="conditions", nargs="+",
                   default=["normal"], choices=conditions.CONDITIONS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="shuffle seeds")
    p.add_argument("--scoring", "--scorings", dest="scorings", nargs="+", default=["paper"],
                   choices=SCORINGS + ("likelihood",))
    p.add_argument("--sampler", choices=["paper", "uniform"], default="paper")
    p.add_argument("--num-frames", type=int, default=16, help="uniform sampler only")
    p.add_argument("--limit", type=int, default=None, help="first N questions of each task")
    p.add_argument("--tasks", nargs="+", default=None)
    p.add_argument("--on-missing", choices=tvbench.ON_MISSING, default="error")
    p.add_argument("--on-short-video", choices=ON_SHORT_VIDEO, default="fail",
                   help="questions whose frames fall short of their window or header (window "
                        "past the video's end, 1-frame video, truncated stream): stop before "
                        "writing results (fail) or count them in every result (report)")
    p.add_argument("--release", default="auto", help="auto | none | tvbench-2525")
    p.add_argument("--workers", type=int, default=default_workers(),
                   help="DataLoader decode workers (default: cores - 1, at most 4)")
    p.add_argument("--frame-cache", default=None, help="dir for decoded clips (reused)")
    p.add_argument("--backend", choices=["pyav", "decord"], default="pyav")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: the "
                   "recipe's; ours: float32 on CPU, bfloat16 on CUDA)")
    p.add_argument("--recipe", choices=recipes.RECIPE_NAMES, default="ours",
                   help="paper: the fork's evaluation (fp16, drop_threshold 0.8); ours: the "
                        "checkpoint's config and load dtype (lib.recipes); flags win")
    p.add_argument("--drop-threshold", type=float, default=None,
                   help="LongVU's frame-drop threshold (default: the recipe's, else config.json)")
    p.add_argument("--quantization", choices=["none", "nf4"], default="none")
    p.add_argument("--token-layout", choices=["image", "video"], default=None,
                   help="load --model in this token layout (video: an _img checkpoint in the "
                        "paper's video layout, new pos_embed_* drawn from --layout-seed)")
    p.add_argument("--layout-seed", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=5)
    p.add_argument("--perm-k", type=int, default=0, help="move each answer K options later, "
                   "cyclically (the paper code's perm_K letter-bias probe; 0: off)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="(question, condition) rows per decoder forward (default: the model's "
                        "for its device, 8 for LongVU on CUDA or CPU; predictions do not "
                        "depend on it)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads while scoring (1 is fastest for tiny models)")
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--label", default=None, help="row label in outputs/results/tvbench.csv")
    p.add_argument("--no-record", action="store_true", help="do not append to tvbench.csv")
    p.add_argument("--quiet", action="store_true")


def cli_eval(args: argparse.Namespace) -> int:
    """``eval``: 0 when done, or raises ``BenchmarkError`` / ``VideoError`` (``main`` prints)."""
    paths.writable_dir(args.out, "--out", error=BenchmarkError)  # before any work
    rank, world = dist_info()
    group = None
    if world > 1 and os.environ.get("MASTER_ADDR"):
        import datetime

        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=datetime.timedelta(hours=8))
        group = dist
    release = None if args.release == "none" else args.release
    spec = EvalSpec.from_args(args)
    bench = tvbench.open_benchmark(args.data, args.tasks, args.on_missing, release)
    bench = diagnostics.perm_k_benchmark(bench, spec.perm_k)
    # Imported here so that `score` and `compare` never load torch and transformers.
    from lib.models import load_model

    check_short_windows(bench, spec)  # before the model loads
    with run_folder.locked(args.out, rank):  # before the model loads: a busy folder fails fast
        recipe = recipes.get(args.recipe)  # its dtype and drop_threshold unless given
        dtype = args.dtype or recipe.eval_dtype
        drop = recipe.eval_drop_threshold if args.drop_threshold is None else args.drop_threshold
        model = load_model(args.model, args.adapter, args.device, args.quantization, dtype,
                           token_layout=args.token_layout, layout_seed=args.layout_seed,
                           drop_threshold=drop)
        return _eval_locked(args, model, bench, spec, rank, world, group,
                            recipes.eval_record(args.recipe, dtype, drop))


def _eval_locked(args: argparse.Namespace, model: VideoQAModel, bench: Benchmark,
                 spec: EvalSpec, rank: int, world: int, group, record: dict) -> int:
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
    try:
        res = finalize(args.out, bench, n_boot=args.n_boot, limit=args.limit,
                       on_short_video=spec.on_short_video)
    finally:
        if group is not None:
            group.destroy_process_group()
    print("\n".join(summary_lines(res) + [tables.format_groups(res)]))
    if not args.no_record:
        results.record(res, args.label or Path(args.out).name, args.out, model.name, args.data,
                       record)
    return 0


def _cmd_score(args) -> int:
    k = diagnostics.run_perm_k(args.predictions) if args.perm_k is None else args.perm_k
    data = args.data if not k else diagnostics.perm_k_benchmark(tvbench.open_benchmark(
        args.data, on_missing="skip", release=None, require_videos=False), k)
    res = metrics.score(args.predictions, data, n_boot=args.n_boot, seed=args.seed)
    if args.group:
        if args.group not in res:
            print(f"no group {args.group!r}; have {list(res)}", file=sys.stderr)
            return 2
        res = {args.group: res[args.group]}
    print("\n".join(summary_lines(res) + [tables.format_groups(res)]))
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
    s.add_argument("--perm-k", type=int, default=None, help="answers sit K options later "
                   "(default: the run dir's own --perm-k, else 0)")
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
    except (BenchmarkError, VideoError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
