"""Run a video LLM on a TVBench-layout benchmark: parsers, scorers, the resumable runner, finalize.

Used by notebooks 01 (image- vs video-trained checkpoints) and 04 (base vs fine-tuned adapters),
by ``python -m lib.tvbench eval|score|compare`` (its body is ``lib.eval_cli``) and by
benchmarks/tvbench_throughput.py. Metrics live in ``lib.metrics`` and work from the predictions
file alone; tables and report.md text in ``lib.tables``; models in ``lib.models``.

Any model works that implements ``lib.models.VideoQAModel`` (``prompt``, ``preprocessor``,
the batched ``generate_batch`` and ``likelihood_batch``, ``session``/``end_batch``/``timing``);
``--model fake:hash`` is the deterministic stand-in for tests and dry runs.

Scorings: ``paper`` (LongVU's prompt, greedy 5 tokens, its regex parser whose misses fall back
to option C, counted), ``strict`` (same generation, an unparsable answer is wrong),
``letter`` (log-probability that the answer starts with each valid letter, as "X" or "(X",
restricted to the valid letters) and ``option``
(summed log-likelihood of each option's text); ``likelihood`` means letter + option.

The runner decodes each question's frames once in DataLoader workers (``lib.eval_data``),
applies every condition there, preprocesses on the CPU, and scores ``batch_size`` (question,
condition) rows at a time (``EvalSpec.batch_size``; None: the model's default for its device;
smaller batches while the first clips arrive and for the last ones, ``ramp``): one generation
call for the paper/strict scorers, one prefill per prompt for the letter and option scorers
(options scored over its key/value cache), towers and connector once per (clip, condition)
for every scorer and for every model variant sharing the visual path (``run_many``,
``lib.variants``: a start checkpoint and its decoder-only LoRA adapters), and once per frame
for every frame-order condition showing it (``frame_keys``). It appends one line
per (question, condition, scoring) to ``predictions.jsonl``
(flushed per batch, fsynced every 2 s) and the time split (decode wait; decode and preprocess
in workers; visual; decoder; frames through the towers and the sampler, and reused) to
``timing.json``, which ``finalize`` puts in metrics.json. A
rerun skips finished keys, so a killed run resumes to exactly the same metrics; one process at
a time holds a run folder, and a folder made with another model, data or sampler is refused
(``lib.run_folder``). A rerun with a smaller LIMIT (or fewer tasks) scores its own questions
and counts the others (``outside_selection``). Under torchrun/accelerate (``WORLD_SIZE`` > 1)
rank r takes questions r, r+W, ...; rank 0 merges the shard files and scores. Questions
evaluated on short video frames (``lib.video.SHORT_NOTES``)
are counted in metrics.json, report.md and stdout, and stop ``finalize`` unless
``on_short_video="report"`` (``--on-short-video``). The ``eval`` command records each group as a
row of ``outputs/results/tvbench.csv`` (``lib.results``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from lib import diagnostics, metrics, predictions, run_folder, tables, tvbench, video
from lib.config import ON_SHORT_VIDEO, EvalSpec
from lib.metrics import SCORINGS
from lib.predictions import PredictionSet, group_of
from lib.eval_data import ClipDataset, loader
from lib.run_folder import merge, predictions_path
from lib.tvbench import LETTERS, Benchmark, Question
from lib.video import VideoError, is_short

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
    """One record per scoring; ``paper`` and ``strict`` share one generation, and every scorer
    one visual encoding."""
    with model.session():
        out = score_rows(model, [(q, prepared, scorings)], max_new_tokens)[0]
        model.end_batch()
    return out


def score_rows(model: VideoQAModel, rows: Sequence[tuple[Question, object, Sequence[str]]],
               max_new_tokens: int = 5) -> list[list[dict]]:
    """Records of several (question, prepared clip, scorings) rows, batched: one
    ``generate_batch`` over the rows that need a generation, one ``likelihood_batch`` over those
    that need letter or option scores. Row i's records are those ``score_question`` gives it."""
    prompts = [model.prompt(q.question, q.candidates) for q, _, _ in rows]
    gen = [i for i, (_, _, sc) in enumerate(rows) if {"paper", "strict"} & set(sc)]
    raws = dict(zip(gen, model.generate_batch([rows[i][1] for i in gen],
                                              [prompts[i] for i in gen], max_new_tokens)
                    if gen else []))
    lik = [i for i, (_, _, sc) in enumerate(rows) if {"letter", "option"} & set(sc)]
    lets: dict = {}
    opts: dict = {}
    if lik:
        la, oa = model.likelihood_batch(
            [rows[i][1] for i in lik], [prompts[i] for i in lik],
            [LETTERS[:len(rows[i][0].candidates)] if "letter" in rows[i][2] else None
             for i in lik],
            [rows[i][0].candidates if "option" in rows[i][2] else None for i in lik])
        lets, opts = dict(zip(lik, la)), dict(zip(lik, oa))
    out = []
    for i, (q, _, scorings) in enumerate(rows):
        k = len(q.candidates)
        recs = []
        for s in scorings:
            if s in ("paper", "strict"):
                idx, status = (parse_paper if s == "paper" else parse_strict)(raws[i], k)
                recs.append({"scoring": s, "pred_index": idx, "parse": status, "raw": raws[i]})
            elif s == "letter":
                lp = lets[i]
                recs.append({"scoring": s, "pred_index": int(np.argmax(lp)), "parse": "ok",
                             "letter_logprobs": [round(x, 5) for x in lp]})
            elif s == "option":
                lp, nt = opts[i]
                recs.append({"scoring": s, "pred_index": int(np.argmax(lp)), "parse": "ok",
                             "option_logprobs": [round(x, 5) for x in lp],
                             "option_ntokens": list(nt),
                             "pred_index_mean": int(np.argmax(np.asarray(lp)
                                                              / np.maximum(nt, 1)))})
        out.append(recs)
    return out


# ---------------------------------------------------------------------------------------------
# The runner


def _fingerprint(model: VideoQAModel, bench: Benchmark, spec: EvalSpec) -> dict:
    """What must not change between a run and its resumption."""
    inner = getattr(model, "model", None)  # a LongVU's dtype and drop_threshold (lib.recipes)
    return {"model": model.name, "data": str(bench.root.resolve()),
            "json_sha256": bench.json_sha256, "sampler": spec.sampler.spec,
            "max_new_tokens": spec.max_new_tokens, "backend": spec.backend,
            "dtype": str(getattr(inner, "dtype", "")),
            "drop_threshold": getattr(getattr(inner, "config", None), "drop_threshold", None)}


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


def run(model: VideoQAModel, bench: Benchmark, out_dir: Path | str, spec: EvalSpec,
        rank: int = 0, world_size: int = 1, progress: bool = True) -> dict:
    """Evaluate this rank's share, appending to its predictions file; returns run stats.

    Safe to call again on the same ``out_dir``: finished (question, condition, scoring) keys
    are skipped. Refuses, before writing anything, an ``out_dir`` whose predictions came from
    another model, data or sampler, and one that another process is evaluating into.
    """
    return run_many([model], bench, [out_dir], spec, rank, world_size, progress)[0]


def run_many(models: Sequence[VideoQAModel], bench: Benchmark, out_dirs: Sequence[Path | str],
             spec: EvalSpec, rank: int = 0, world_size: int = 1, progress: bool = True
             ) -> list[dict]:
    """``run`` for variants of one loaded model that share its visual path
    (``lib.variants.Variant``), each into its own folder with its own finished keys, in one
    pass over the clips: each batch's visual tokens are computed once and every variant scores
    its rows from them. Stats per variant; ``visual_passes`` / ``visual_uses`` count the visual
    blocks a variant computed / was served, and ``shared_visual`` (several variants) the
    group's passes and the passes saved (uses - passes)."""
    outs = [Path(o) for o in out_dirs]
    check_short_windows(bench, spec)
    fps = [_fingerprint(m, bench, spec) for m in models]
    for o, fp in zip(outs, fps):
        run_folder.check_config(o, fp)
    with contextlib.ExitStack() as held:
        for o, fp in zip(outs, fps):
            held.enter_context(run_folder.locked(o, rank))
            run_folder.check_config(o, fp)  # again: another run may have started meanwhile
        return _run_locked(models, bench, outs, spec, fps, rank, world_size, progress)


def _run_locked(models: Sequence[VideoQAModel], bench: Benchmark, outs: list[Path],
                spec: EvalSpec, fps: list[dict], rank: int, world_size: int, progress: bool
                ) -> list[dict]:
    scorings = expand_scorings(spec.scorings)
    units = spec.units()
    if rank == 0:
        for o, fp in zip(outs, fps):
            run_folder.write_config(o, fp, {
                "spec": {**asdict(spec), "sampler": spec.sampler.spec, "scorings": scorings},
                "skipped_missing_video": len(bench.skipped),
                "skipped_videos": bench.skipped_videos, "release": bench.release,
                "world_size": world_size})
    mine = tvbench.select(bench.questions, spec.limit)[rank::world_size]
    dones = [run_folder.done_keys(o) for o in outs]
    need = [{tvbench.sample_id(q) for q in mine
             if any((tvbench.sample_id(q), c, s, m) not in done for c, s in units
                    for m in scorings)} for done in dones]
    todo = [q for q in mine if any(tvbench.sample_id(q) in n for n in need)]
    ds = ClipDataset(todo, spec.sampler, units, models[0].preprocessor(), spec.frame_cache,
                      spec.backend)
    bs = spec.batch_size or models[0].default_batch_size()
    stats = [{"questions": len(mine), "todo": len(n), "records": 0, "batch_size": bs,
              "model_s": 0.0, "visual_s": 0.0, "decoder_s": 0.0} for n in need]
    io = {"decode_wait_s": 0.0, "decode_s": 0.0, "prep_s": 0.0}
    t_start = time.perf_counter()
    with contextlib.ExitStack() as files, _torch_threads(spec.threads), models[0].session():
        sinks = [run_folder.LineSink(files.enter_context(run_folder.open_append(
            predictions_path(o, rank, world_size))), st) for o, st in zip(outs, stats)]
        bar = tqdm(total=len(todo), disable=not progress,
                   desc=f"TVBench {', '.join(m.name for m in models)}"
                   + (f" rank {rank}" if world_size > 1 else ""))
        items = iter(loader(ds, spec.num_workers, bs))
        pending: list[dict] = []
        scored, batches = 0, 0
        while True:
            t0 = time.perf_counter()
            item = next(items, None)
            io["decode_wait_s"] += time.perf_counter() - t0
            if item is not None:
                if "error" in item:
                    raise VideoError(item["error"])
                io["decode_s"] += item["decode_s"]
                io["prep_s"] += item["prep_s"]
                pending.append(item)
            if pending and (item is None
                            or len(pending) >= ramp(batches, len(todo) - scored, bs)):
                batch = [(todo[it["i"]], it) for it in pending]
                for m, st, sink, done in zip(models, stats, sinks, dones):
                    t0, before = time.perf_counter(), m.timing()
                    sink.write(_score_items(m, batch, scorings, done, bs,
                                            spec.max_new_tokens))
                    st["model_s"] += time.perf_counter() - t0
                    for k, v in m.timing().items():
                        st[k] = st.get(k, 0) + v - before.get(k, 0)
                models[0].end_batch()  # after every variant: they share the visual tokens
                bar.update(len(pending))
                scored, batches, pending = scored + len(pending), batches + 1, []
            if item is None:
                break
        bar.close()
        for sink in sinks:
            sink.sync()
    wall = time.perf_counter() - t_start
    passes = sum(st.get("visual_passes", 0) for st in stats)
    uses = sum(st.get("visual_uses", 0) for st in stats)
    for o, st in zip(outs, stats):
        st.update(io, wall_s=wall)
        if len(models) > 1:
            st["shared_visual"] = {"variants": [m.name for m in models], "visual_passes": passes,
                                   "visual_uses": uses, "passes_saved": uses - passes,
                                   "fingerprint": getattr(models[0], "fingerprint", None)}
        if st["todo"]:
            run_folder.write_timing(o, rank, st)
    return stats


def ramp(batches: int, remaining: int, batch_size: int) -> int:
    """Loader items in the next model batch: 1, 2, 4, ... up to ``batch_size`` at the start, so
    the model starts on the first decoded clip instead of waiting for a full batch, and about
    half the remaining items at the end, so little model work is left after the decode workers
    finish (the time a decode-bound run adds after its last clip)."""
    return max(1, min(batch_size, 2 ** min(batches, 30), -(-remaining // 2)))


def _score_items(model: VideoQAModel, items: list[tuple[Question, dict]], scorings: list[str],
                 done: set, batch_size: int, max_new_tokens: int) -> list[dict]:
    """Prediction lines of several loader items (a question, every condition prepared), in
    (question, condition, scoring) order; rows go to the model ``batch_size`` at a time. The
    caller ends the batch (``end_batch``), so that other variants reuse its visual tokens."""
    rows, meta = [], []
    for q, item in items:
        sid = tvbench.sample_id(q)
        for (c, s), prepared in item["prepared"].items():
            need = [m for m in scorings if (sid, c, s, m) not in done]
            if need:
                rows.append((q, prepared, need))
                meta.append((q, item, c, s))
    lines = []
    for start in range(0, len(rows), batch_size):
        recs = score_rows(model, rows[start:start + batch_size], max_new_tokens)
        for (q, item, c, s), rr in zip(meta[start:start + batch_size], recs):
            lines += [{"sample_id": tvbench.sample_id(q), "task": q.task, "index": q.index,
                       "video": q.video, "question": q.question,
                       "num_options": len(q.candidates), "answer_index": q.answer_index,
                       "condition": c, "seed": s, **rec,
                       "n_frames": item["n_frames"] if c != "blind" else 1,
                       "frame_note": item["note"], "model": model.name} for rec in rr]
    return lines


def finalize(out_dir: Path | str, bench: Benchmark, n_boot: int = 2000, seed: int = 0,
             limit: int | None = None, on_short_video: str = "fail") -> dict[str, dict]:
    """Merge shards, score every group on the asked questions (the first ``limit`` of each
    task), write metrics.json (the groups, and ``time_split``: each rank's last run's seconds
    from timing.json) and report.md; returns the groups. With ``on_short_video="fail"`` a question
    evaluated on short video frames stops it first (``VideoError`` listing them all)."""
    if on_short_video not in ON_SHORT_VIDEO:
        raise ValueError(f"on_short_video must be one of {ON_SHORT_VIDEO}, got "
                         f"{on_short_video!r}")
    out = Path(out_dir)
    with run_folder.locked(out):
        merge(out, bench)
        asked = tvbench.select(bench.questions, limit)
        scored = Benchmark(bench.root, bench.tasks, asked, bench.skipped, bench.release,
                           bench.json_sha256)
        pset = predictions.read_prediction_set(out)
        keep = {tvbench.sample_id(q) for q in asked + bench.skipped}
        mine = [i for i, r in enumerate(pset.records)
                if not r.get("sample_id") or r["sample_id"] in keep]
        outside = Counter(group_of(pset.records[i])
                          for i in sorted(set(range(len(pset.records))) - set(mine)))
        res = metrics.score(PredictionSet([pset.records[i] for i in mine],
                                          [pset.where[i] for i in mine], pset.duplicates),
                            scored, n_boot=n_boot, seed=seed)
        for label, m in res.items():
            m["outside_selection"] = outside.get(label, 0)
        if on_short_video == "fail":
            _refuse_short(out, [pset.records[i] for i in mine])
        timing = run_folder.read_timing(out)  # the run's, not a group's: beside the groups
        (out / "metrics.json").write_text(json.dumps(
            {**res, **({"time_split": timing} if timing else {})}, indent=1) + "\n")
        report = tables.run_report(res, bench.root)
        notes = summary_lines(res)
        if notes:
            head = f"data: {bench.root}\n"
            report = report.replace(head, head + "\n" + "".join(f"- {x}\n" for x in notes), 1)
        (out / "report.md").write_text(report)
    return res


SHORT_FIX = ("Their frames are not what the question promises: a [start, end] window past the "
             "video's end (the window is clipped), no frame inside the window (its first frame "
             "is used), a 1-frame video, or a stream that stops early (its last frame is "
             "repeated). Fix those videos or windows, or evaluate them and count them in every "
             "result with --on-short-video report (ON_SHORT_VIDEO = \"report\" in notebooks 01 "
             "and 04).")


def _listing(lines: Sequence[str]) -> str:
    return "\n  " + "\n  ".join(lines[:20]) + (
        f"\n  ... and {len(lines) - 20} more" if len(lines) > 20 else "") + "\n"


def check_short_windows(bench: Benchmark, spec: EvalSpec) -> None:
    """With ``on_short_video="fail"``, stop before evaluating when an asked question's window
    ends after its video or its video has 1 frame (``Benchmark.short_windows``, found when the
    benchmark was opened); a stream that stops early is only found by decoding (``finalize``)."""
    if spec.on_short_video != "fail":
        return
    asked = {tvbench.sample_id(q) for q in tvbench.select(bench.questions, spec.limit)}
    lines = [f"{sid} {why}" for sid, why in bench.short_windows.items() if sid in asked]
    if lines:
        raise VideoError(f"{bench.root}: {len(lines)} question(s) would be evaluated on short "
                         "video frames, so nothing is evaluated:" + _listing(lines) + SHORT_FIX)


def _refuse_short(out: Path, records: Sequence[dict]) -> None:
    short: dict[str, str] = {}
    for r in records:
        if is_short(r.get("frame_note") or ""):
            short.setdefault(r["sample_id"], f"{r['sample_id']} video/{r['task']}/{r['video']}: "
                                             f"{r['frame_note']}")
    if short:
        raise VideoError(f"{out}: {len(short)} question(s) were evaluated on short video "
                         "frames, so no result is written:" + _listing(list(short.values()))
                         + SHORT_FIX + " The predictions are kept: that rerun computes nothing "
                         "again.")


def summary_lines(res: Mapping[str, dict]) -> list[str]:
    """What the CLI prints above the tables and report.md lists under the data line: how
    foreign records were matched, repeats, short video frames, predictions not scored."""
    groups = list(res.values())
    out = []
    how: Counter = Counter()
    for m in groups:
        how.update(m.get("matched_by") or {})
    if set(how) - {"sample_id"}:
        out.append(f"matched {sum(how.values())} prediction(s) to questions: "
                   + ", ".join(f"{v} by {k}" for k, v in how.items()))
    dups = sum(m.get("duplicate_records", 0) for m in groups)
    if dups:
        out.append(f"duplicate records (identical, counted once): {dups}")
    short = sorted({s for m in groups for s in m.get("short_video_questions", [])})
    if short:
        kinds: Counter = Counter()
        for m in groups:
            kinds |= Counter({k: v for k, v in m.get("frame_notes", {}).items()
                              if k in video.SHORT_NOTES})
        out.append(f"short video frames: {len(short)} question(s) ("
                   + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + "): "
                   + ", ".join(short[:10]) + (" ..." if len(short) > 10 else ""))
    outside = sum(m.get("outside_selection", 0) for m in groups)
    if outside:
        out.append(f"{outside} prediction(s) of questions outside this run's selection "
                   "(--limit/--tasks) are kept in the folder, not scored here")
    return out


def evaluate(model: VideoQAModel, bench: Benchmark, out_dir: Path | str, spec: EvalSpec,
             n_boot: int = 2000, progress: bool = True) -> dict[str, dict]:
    """Single-process convenience for notebooks: run (resumably) then finalize; returns the
    groups of ``spec`` only (a shared folder may also hold other conditions or scorers)."""
    bench = diagnostics.perm_k_benchmark(bench, spec.perm_k)  # checklist 29 (0: unchanged)
    with run_folder.locked(out_dir):
        run(model, bench, out_dir, spec, progress=progress)
        res = finalize(out_dir, bench, n_boot=n_boot, limit=spec.limit,
                       on_short_video=spec.on_short_video)
    wanted = {metrics.group_label(c, s, sc) for c, s in spec.units()
              for sc in expand_scorings(spec.scorings)}
    return {k: v for k, v in res.items() if k in wanted}


def evaluate_models(models: Sequence[ModelSpec], run_dirs: Mapping[str, Path | str],
                    bench: Benchmark, spec: EvalSpec, n_boot: int = 2000, progress: bool = True
                    ) -> dict[str, dict[str, dict]]:
    """``evaluate`` each model (notebooks 01, 04) into ``run_dirs[label]``: label -> its
    groups' metrics. Models on one checkpoint, quantization and token layout that differ only
    in a decoder-only LoRA adapter (same towers and connector weights) are loaded once and
    evaluated in one pass (``lib.variants``, ``run_many``); the others one loaded at a time."""
    bench = diagnostics.perm_k_benchmark(bench, spec.perm_k)  # checklist 29 (0: unchanged)
    wanted = {metrics.group_label(c, s, sc) for c, s in spec.units()
              for sc in expand_scorings(spec.scorings)}
    # lib.variants imports torch and peft, which this module's CLI paths do without
    from lib import variants

    out = {}
    for specs, loaded in variants.groups(models):
        dirs = [run_dirs[ms.label] for ms in specs]
        with contextlib.ExitStack() as held:
            for d in dirs:
                held.enter_context(run_folder.locked(d))
            run_many(loaded, bench, dirs, spec, progress=progress)
            for ms, d in zip(specs, dirs):
                res = finalize(d, bench, n_boot=n_boot, limit=spec.limit,
                               on_short_video=spec.on_short_video)
                out[ms.label] = {k: v for k, v in res.items() if k in wanted}
        del loaded  # free it before the next group loads
    return {ms.label: out[ms.label] for ms in models}
