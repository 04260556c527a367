"""Questions/s of the TVBench evaluator vs a naive loop, same model, same questions, same run.

The naive loop is what the reference scripts do: decode the clip in the main thread, one
question at a time, generation scoring (paper parser), and for several conditions decode again
per condition. The evaluator (``lib.evaluate.run``) decodes in DataLoader workers while the model
runs, decodes each clip once for all conditions, and writes resumable predictions. Both use a
tiny random LongVU (small towers) on the CPU and the paper's 2-fps sampler; the benchmark videos
are MiniTVBench clips rendered larger and at a higher frame rate than the test assets so that
decoding costs what it does on real clips (about 10 s at 16 fps, 224x224).

Usage: ``python benchmarks/tvbench_throughput.py [--questions 8] [--workers 1] [--threads 1]``.
Last line: ``speedup Nx, Q questions/s`` (single condition, evaluator vs naive).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lib import config, evaluate, minitvbench, models, tvbench, video  # noqa: E402


def naive(model: models.LongVUModel, questions, conditions) -> float:
    """The reference loop: per question and condition, decode, preprocess, generate, parse."""
    t = time.perf_counter()
    for q in questions:
        for cond, seed in conditions:
            clip = video.read_clip(q)  # decoded again for every condition
            frames, _ = tvbench.apply_condition(clip.frames, cond, seed, tvbench.sample_id(q))
            prepared = model.model.preprocess(frames)
            raw = model.generate(prepared, model.prompt(q.question, q.candidates))
            evaluate.parse_paper(raw, len(q.candidates))
    return time.perf_counter() - t


class _Unshared(models.LongVUModel):
    """The adapter without the shared visual embedding: every scorer encodes the video again,
    as a harness that sends each scoring request on its own does."""

    def _memoize_visual_embedding(self) -> None:
        pass


def naive_scorers(model, questions, scorings) -> float:
    t = time.perf_counter()
    for q in questions:
        prepared = model.model.preprocess(video.read_clip(q).frames)
        evaluate.score_question(model, q, prepared, scorings)
    return time.perf_counter() - t


def ours(model, bench, out: Path, conditions, workers: int, threads: int, limit: int,
         frame_cache: str | None = None, scorings=("paper",)) -> tuple[float, dict]:
    spec = config.EvalSpec(conditions=tuple(dict.fromkeys(c for c, _ in conditions)),
                             seeds=(0,), scorings=scorings, limit=limit, num_workers=workers,
                             threads=threads, frame_cache=frame_cache)
    t = time.perf_counter()
    stats = evaluate.run(model, bench, out, spec, progress=False)
    return time.perf_counter() - t, stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--questions", type=int, default=8, help="per task (6 tasks)")
    ap.add_argument("--workers", type=int, default=config.default_workers())
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both loops")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--fps", type=int, default=16)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="tvbench-bench-"))
    t0 = time.perf_counter()
    minitvbench.build_minitvbench(tmp / "bench", args.questions, args.size, args.fps, seed=0)
    print(f"benchmark data: {6 * args.questions} questions, {args.size}px at {args.fps} fps "
          f"(built in {time.perf_counter() - t0:.0f} s)")
    from lib.longvu.tiny import write_tiny

    ckpt = write_tiny(tmp / "tiny", "qwen", "video", "small", 0)
    model = models.LongVUModel.load(str(ckpt), device="cpu")
    bench = tvbench.open_benchmark(tmp / "bench")
    qs = bench.questions
    n = len(qs)
    one = [("normal", None)]
    three = [("normal", None), ("shuffled", 0), ("reversed", None)]
    clips = [video.read_clip(q) for q in qs[:6]]
    print(f"frames per question at 2 fps: {sum(len(c.indices) for c in clips) / len(clips):.1f} "
          f"(of {sum(c.n_frames for c in clips) / len(clips):.0f} decoded-through)")

    rows = {}
    ours(model, bench, tmp / "warmup", one, 0, args.threads, 1)  # first-call overheads
    t_naive1 = naive(model, qs, one)
    rows["naive, 1 condition"] = (n, t_naive1)
    t, st = ours(model, bench, tmp / "r1", one, args.workers, args.threads, None)
    rows[f"evaluator, 1 condition, {args.workers} worker(s)"] = (n, t)
    t_ours1 = t
    t, _ = ours(model, bench, tmp / "r0", one, 0, args.threads, None)
    rows["evaluator, 1 condition, 0 workers"] = (n, t)
    t_naive3 = naive(model, qs, three)
    rows["naive, 3 conditions"] = (3 * n, t_naive3)
    t, st3 = ours(model, bench, tmp / "r3", three, args.workers, args.threads, None,
                  str(tmp / "cache"))
    rows[f"evaluator, 3 conditions, {args.workers} worker(s)"] = (3 * n, t)
    t, _ = ours(model, bench, tmp / "r3b", three, args.workers, args.threads, None,
                str(tmp / "cache"))
    rows["evaluator, 3 conditions, warm frame cache"] = (3 * n, t)

    three_scorers = ["paper", "letter", "option"]
    t_ns = naive_scorers(_Unshared(model.model), qs, three_scorers)
    rows["naive, 3 scorers (video encoded per scorer)"] = (n, t_ns)
    t, _ = ours(model, bench, tmp / "s3", one, args.workers, args.threads, None,
                scorings=tuple(three_scorers))
    rows[f"evaluator, 3 scorers, {args.workers} worker(s)"] = (n, t)

    base = {"1": n / t_naive1, "3": 3 * n / t_naive3, "s": n / t_ns}
    out = {}
    for label, (k, secs) in rows.items():
        rate = k / secs
        ref = base["3" if "3 conditions" in label else "s" if "3 scorers" in label else "1"]
        out[label] = {"question_conditions": k, "seconds": secs, "per_s": rate,
                      "speedup": rate / ref}
        print(f"{label:<46}: {rate:6.2f} question-conditions/s  {rate / ref:4.1f}x")
    print(f"evaluator time split (1 condition): decode {st['decode_s']:.1f} s and preprocess "
          f"{st['prep_s']:.1f} s in workers, model {st['model_s']:.1f} s in the main process")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print(f"speedup {t_naive1 / t_ours1:.1f}x, {n / t_ours1:.2f} questions/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
