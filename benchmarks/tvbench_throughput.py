"""Questions/s of the TVBench evaluator vs a naive loop, same model, same questions, same run.

The naive loop is what the reference scripts and a request-per-answer harness do, one question
at a time, one request per answer: each request decodes the clip in the main thread, applies the
condition, preprocesses and runs the towers and connector, then scores: one greedy generation
for the paper/strict parsers, one forward of the prompt + "(" for the letter scorer
(`LongVU.letter_logprobs`), and for the option scorer one request per option (the prompt and the
video again for each option: lmms-eval's log-likelihood requests load and preprocess the video
per (context, continuation) pair, `lmms_eval/models/llava_vid.py` `loglikelihood`). A second
naive loop decodes and preprocesses each clip once per question and condition and shares it
between that question's requests; its ratio is printed beside the first. The evaluator
(``lib.evaluate.run``) decodes in DataLoader workers while the model runs, decodes each clip
once for all conditions, runs the towers and connector once per (clip, condition) for every
scorer and once per frame for every condition showing it (normal and shuffled), batches
``--batch-size`` (question, condition) rows per decoder forward, scores every option from one
prefill of the prompt (key/value cache), and writes resumable predictions.
Both use a tiny random LongVU (Qwen template; ``--geometry small`` towers by default) on the
CPU and the paper's 2-fps sampler; the videos are MiniTVBench clips rendered larger and at a
higher frame rate than the test assets so that decoding costs what it does on real clips.

Usage: ``python benchmarks/tvbench_throughput.py [--questions 8] [--workers 1] [--threads 1]
[--batch-size 8] [--batch-sizes 1,4,8,16] [--geometry small|real] [--model-size tiny|full
--backbone qwen|llama]``. ``--model-size full`` (a CUDA GPU) builds the real-size LongVU with
random weights (``benchmarks/qlora_step.build_full``: Qwen2-7B or Llama3.2-3B, SigLIP-so400m,
DINOv2-giant, the SVA connector) with a word-level tokenizer trained on the benchmark's text
(real BPE makes about 1.3x as many tokens of the same words) and skips the adapters line, which
needs the checkpoint on disk. Settings: one condition
with the paper scorer, one condition with the option scorer, and normal+shuffled with all four
scorers; then the start checkpoint and two LoRA adapters (``lib.adapters``, random LoRA
weights), one condition and the option scorer, evaluated one after the other vs in one pass
that shares the visual tokens (``lib.variants``), with the ratio. Last line: ``speedup Nx, Q
questions/s`` for one condition and the option scorer, then the paper scorer's and the
all-scorers setting's ratios.
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

from lib import (adapters, conditions, config, evaluate, minitvbench, models,  # noqa: E402
                 tvbench, variants, video)
from lib.tvbench import LETTERS  # noqa: E402

ALL_SCORERS = ("paper", "strict", "letter", "option")


def several_requests(scorings) -> bool:
    """Whether one (question, condition) costs the naive loop more than one request (only then
    does decoding per request differ from decoding once per question)."""
    n = int(bool({"paper", "strict"} & set(scorings))) + int("letter" in scorings)
    return n > 1 or "option" in scorings


def naive(model: models.LongVUModel, questions, units, scorings, per_request: bool = True
          ) -> float:
    """The reference loop: per question and condition, one request per answer to score, each
    computing the visual tokens again; with ``per_request`` each request also decodes and
    preprocesses the clip again (lmms-eval), else that happens once per (question, condition)."""
    m = model.model
    t = time.perf_counter()
    for q in questions:
        prompt = model.prompt(q.question, q.candidates)
        for cond, seed in units:
            def load():
                clip = video.read_clip(q)
                frames, _ = conditions.apply_condition(clip.frames, cond, seed,
                                                       tvbench.sample_id(q))
                return m.preprocess(frames)

            shared = None if per_request else load()
            visual = load if per_request else (lambda: shared)
            if {"paper", "strict"} & set(scorings):
                raw = m.generate(visual(), prompt)
                evaluate.parse_paper(raw, len(q.candidates))
            if "letter" in scorings:
                m.letter_logprobs(visual(), prompt, list(LETTERS[:len(q.candidates)]))
            if "option" in scorings:
                for o in q.candidates:
                    m.sequence_logprob(visual(), prompt, [o])
    return time.perf_counter() - t


def ours(model, bench, out: Path, units, scorings, workers: int, threads: int,
         batch_size: int | None, limit: int | None = None) -> tuple[float, dict]:
    spec = config.EvalSpec(conditions=tuple(dict.fromkeys(c for c, _ in units)), seeds=(0,),
                           scorings=tuple(scorings), limit=limit, num_workers=workers,
                           threads=threads, batch_size=batch_size)
    t = time.perf_counter()
    stats = evaluate.run(model, bench, out, spec, progress=False)
    return time.perf_counter() - t, stats


def prefill_modes(model: models.LongVUModel, rows: int = 8, length: int = 1000) -> str:
    """Seconds for ``rows`` random prompts of about ``length`` tokens through the decoder: one
    padded batch, one by one, and an unpadded batch of equal lengths (best of 2)."""
    import torch

    from lib.longvu import batched

    dec = model.model.base_decoder.model
    h = model.model.embed_tokens.weight.shape[1]
    x = [torch.randn(length + 7 * i, h) for i in range(rows)]
    e, mask = batched.pad_rows(x, left=False)
    same = torch.stack([r[:length] for r in x])
    runs = {"padded batch": lambda: dec(inputs_embeds=e, attention_mask=mask),
            "one by one": lambda: [dec(inputs_embeds=r[None]) for r in x],
            "equal lengths, no mask": lambda: dec(inputs_embeds=same)}
    out = []
    with torch.no_grad():
        for label, fn in runs.items():
            best = float("inf")
            for _ in range(2):
                t = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t)
            out.append(f"{label} {best:.3f} s")
    return f"decoder prefill, {rows} rows of ~{length} tokens: " + ", ".join(out)


def variants_line(ckpt: Path, bench, tmp: Path, units, scorings, workers: int, threads: int,
                  batch_size: int) -> tuple[str, dict]:
    """The start checkpoint and two LoRA adapters: one after the other (each loaded and
    evaluated alone) vs one pass (``lib.variants``: loaded once, visual tokens shared); both
    timed from loading to the last prediction."""
    specs = [models.ModelSpec("start", str(ckpt))] + [
        models.ModelSpec(f"lora{k}", str(ckpt), str(adapters.write_random_lora(ckpt, tmp / f"lora{k}", k)))
        for k in (1, 2)]
    spec = config.EvalSpec(conditions=tuple(dict.fromkeys(c for c, _ in units)), seeds=(0,),
                           scorings=tuple(scorings), num_workers=workers, threads=threads,
                           batch_size=batch_size)
    t = time.perf_counter()
    for ms in specs:
        evaluate.run(ms.load("cpu"), bench, tmp / "seq" / ms.label, spec, progress=False)
    t_seq = time.perf_counter() - t
    t = time.perf_counter()
    for group, loaded in variants.groups(specs, "cpu"):
        stats = evaluate.run_many(loaded, bench, [tmp / "one" / ms.label for ms in group], spec,
                                  progress=False)
    t_one = time.perf_counter() - t
    shared = stats[0].get("shared_visual", {})
    return (f"start + 2 adapters, one pass vs one after the other: {t_seq:.1f} s -> "
            f"{t_one:.1f} s  {t_seq / t_one:.1f}x  (visual passes {shared.get('visual_passes')} "
            f"for {shared.get('visual_uses')} uses)"), {
        "one_after_the_other_s": t_seq, "one_pass_s": t_one, "ratio": t_seq / t_one,
        "shared_visual": shared}


def full_model(backbone: str, bench) -> models.LongVUModel:
    """Real-size LongVU with random weights in bf16 on CUDA, and a word-level tokenizer trained
    on the benchmark's questions, options and LongVU's instruction."""
    import torch

    from lib.longvu import prompts
    from lib.longvu.tiny import build_vocab_tokenizer
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from qlora_step import build_full

    if not torch.cuda.is_available():
        raise SystemExit("--model-size full needs a CUDA GPU (about 20 GB for Qwen2-7B in bf16)")
    text = [q.question + " " + " ".join(q.candidates) for q in bench.questions]
    model = build_full(backbone, torch.device("cuda"))
    model.tokenizer = build_vocab_tokenizer(backbone, text + [prompts.MC_INSTRUCTION])
    return models.LongVUModel(model, f"{backbone}-full-random")


def _split(st: dict) -> str:
    frames = st.get("dino_frames", 0)
    return (f"decode wait {st['decode_wait_s']:.1f} s, workers decode {st['decode_s']:.1f} s + "
            f"preprocess {st['prep_s']:.1f} s, visual {st['visual_s']:.1f} s, decoder "
            f"{st['decoder_s']:.1f} s, wall {st['wall_s']:.1f} s; frames through the towers "
            f"{frames} for {frames + st.get('dino_frames_reused', 0)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--questions", type=int, default=8, help="per task (6 tasks)")
    ap.add_argument("--workers", type=int, default=config.default_workers())
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both loops")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="evaluator rows per forward (default: the model's CPU default)")
    ap.add_argument("--batch-sizes", default="",
                    help="also time the 4-scorer setting at these batch sizes, e.g. 1,4,8,16")
    ap.add_argument("--geometry", choices=["small", "real"], default="small",
                    help="tiny LongVU tower geometry (real: 384/378 px towers)")
    ap.add_argument("--model-size", choices=["tiny", "full"], default="tiny",
                    help="full: real-size random LongVU on CUDA (see the module docstring)")
    ap.add_argument("--backbone", choices=["qwen", "llama"], default="qwen")
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
          f"(built in {time.perf_counter() - t0:.0f} s); load average "
          f"{os.getloadavg()[0]:.1f}; {os.cpu_count()} CPU cores, torch {args.threads} "
          f"thread(s), {args.workers} decode worker(s)")
    from lib.longvu.tiny import write_tiny

    bench = tvbench.open_benchmark(tmp / "bench")
    if args.model_size == "full":
        ckpt, model = None, full_model(args.backbone, bench)
    else:
        ckpt = write_tiny(tmp / "tiny", "qwen", "video", args.geometry, 0)
        model = models.LongVUModel.load(str(ckpt), device="cpu")
    bs = args.batch_size or model.default_batch_size()
    qs = bench.questions
    n = len(qs)
    clips = [video.read_clip(q) for q in qs[:6]]
    what = (f"full-size random LongVU ({args.backbone})" if ckpt is None
            else f"tiny LongVU ({args.geometry} geometry)")
    print(f"{what}, frames per question at 2 fps: "
          f"{sum(len(c.indices) for c in clips) / len(clips):.1f} (of "
          f"{sum(c.n_frames for c in clips) / len(clips):.0f} decoded-through); evaluator "
          f"batch size {bs}")
    one = [("normal", None)]
    two = [("normal", None), ("shuffled", 0)]
    settings = [("1 condition, paper", one, ("paper",)),
                ("1 condition, option", one, ("option",)),
                ("normal+shuffled, 4 scorers", two, ALL_SCORERS)]
    ours(model, bench, tmp / "warmup", one, ALL_SCORERS, 0, args.threads, bs, 1)  # first calls
    out, ratio, once = {}, {}, {}
    for k, (label, units, scorings) in enumerate(settings):
        t_naive = naive(model, qs, units, scorings)
        t_once = (naive(model, qs, units, scorings, per_request=False)
                  if several_requests(scorings) else t_naive)
        t_ours, st = ours(model, bench, tmp / f"s{k}", units, scorings, args.workers,
                          args.threads, bs)
        qc = n * len(units)
        ratio[label], once[label] = t_naive / t_ours, t_once / t_ours
        out[label] = {"question_conditions": qc, "naive_s": t_naive, "evaluator_s": t_ours,
                      "naive_decode_once_s": t_once, "naive_per_s": qc / t_naive,
                      "evaluator_per_s": qc / t_ours, "speedup": t_naive / t_ours,
                      "speedup_vs_decode_once": t_once / t_ours, "time_split": st}
        print(f"{label:<28}: naive {qc / t_naive:6.2f} (decoding once per question "
              f"{qc / t_once:6.2f}), evaluator {qc / t_ours:6.2f} question-conditions/s  "
              f"{t_naive / t_ours:4.1f}x ({t_once / t_ours:.1f}x)  ({_split(st)})")
    for b in [int(x) for x in args.batch_sizes.split(",") if x]:
        t, st = ours(model, bench, tmp / f"b{b}", two, ALL_SCORERS, args.workers, args.threads,
                     b)
        out[f"normal+shuffled, 4 scorers, batch {b}"] = {"evaluator_s": t, "per_s": 2 * n / t}
        print(f"4 scorers, batch size {b:<3}      : evaluator {2 * n / t:6.2f} "
              f"question-conditions/s ({_split(st)})")
    if ckpt is not None:
        line, out["start + 2 adapters"] = variants_line(ckpt, bench, tmp, one, ("option",),
                                                        args.workers, args.threads, bs)
        print(line)
    print(prefill_modes(model))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str) + "\n")
    rate = n / out["1 condition, option"]["evaluator_s"]
    opt, four = "1 condition, option", "normal+shuffled, 4 scorers"
    print(f"speedup {ratio[opt]:.1f}x, {rate:.2f} questions/s (1 condition, option scorer; "
          f"{once[opt]:.1f}x against the loop that decodes once per question); paper scorer "
          f"{ratio['1 condition, paper']:.1f}x; normal+shuffled with paper+strict+letter+option "
          f"{ratio[four]:.1f}x ({once[four]:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
