"""Predictions files: reading them, one prediction per question, and matching records to the
benchmark's questions.

A record written by ``lib.evaluate`` carries ``sample_id`` (``<task>/<json index>``). A record
from another harness has no ``sample_id``; it is matched by ``question_id`` where both the record
and the data have one, else by (task, video, question, candidates), else by (task, video,
question); where several questions share that key (real TVBench's action_sequence asks "What did
the person do first?" of every item) the records take them in file order, and only when the
counts agree. Every record's method is counted (``matched_by``) and reported by ``lib.metrics``.

Nothing is dropped or guessed silently: a record that matches nothing, two different answers for
one question (both lines are named), a ``pred_index`` that is not an option index, and candidates
or answers that disagree with the data are errors; identical repeats are counted once and
reported. Used by ``lib.metrics`` (scoring) and ``lib.run_folder`` (resume, merge).
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lib.conditions import unit_label
from lib.tvbench import Benchmark, BenchmarkError, Question, sample_id

REQUIRED_FIELDS = ("task", "video", "question", "pred_index", "answer_index")
METHODS = ("sample_id", "question_id", "video+question+candidates", "video+question", "order")


def prediction_key(rec: dict) -> tuple:
    """One prediction per (question, condition, seed, scoring)."""
    return (rec.get("sample_id") or f"{rec['task']}|{rec['video']}|{rec['question']}",
            rec.get("condition", "normal"), rec.get("seed"), rec.get("scoring", "paper"))


def group_of(rec: dict) -> str:
    """``condition[@seed]/scoring`` of a record, e.g. ``shuffled@0/paper``."""
    seed = rec.get("seed")
    seed = None if seed is None or (isinstance(seed, float) and math.isnan(seed)) else int(seed)
    return f"{unit_label(rec.get('condition', 'normal'), seed)}/{rec.get('scoring', 'paper')}"


def prediction_files(path: Path | str) -> list[Path]:
    """A file, or a run dir's predictions.jsonl plus any per-rank shard files."""
    p = Path(path)
    if p.is_dir():
        return sorted(p.glob("predictions*.jsonl"))
    return [p]


@dataclass
class PredictionSet:
    """Records with where each came from (``file line n``) and the identical repeats dropped
    (one group label per dropped record)."""

    records: list[dict]
    where: list[str]
    duplicates: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, records: Sequence[dict]) -> PredictionSet:
        return cls(list(records), [f"record {i + 1}" for i in range(len(records))])


def _identity(rec: dict) -> tuple | None:
    """What makes a record one question's without the data: its sample_id (a foreign
    harness's question_id is only trusted once the data confirms it, in ``match``)."""
    return ("sample_id", rec["sample_id"]) if rec.get("sample_id") else None


def _same_answer(a: dict, b: dict) -> bool:
    return (a.get("pred_index"), a.get("answer_index")) == (b.get("pred_index"),
                                                            b.get("answer_index"))


def _dedupe(pset: PredictionSet, key_of) -> tuple[PredictionSet, list[int]]:
    """Drop identical repeats of a key (counted); two different answers for one key raise.
    Returns the kept records and their positions in ``pset``."""
    first: dict[tuple, int] = {}
    keep = []
    dups = list(pset.duplicates)
    for i, r in enumerate(pset.records):
        k = key_of(i, r)
        if k is None:
            keep.append(i)
            continue
        k = (k, group_of(r))
        if k not in first:
            first[k] = i
            keep.append(i)
            continue
        j = first[k]
        if not _same_answer(pset.records[j], r):
            name = k[0][1]
            raise BenchmarkError(
                f"{pset.where[j]} and {pset.where[i]}: two different predictions for {name} "
                f"({k[1]}): pred_index {pset.records[j].get('pred_index')!r} vs "
                f"{r.get('pred_index')!r}, answer_index {pset.records[j].get('answer_index')!r}"
                f" vs {r.get('answer_index')!r}; a predictions file holds one answer per "
                "question, condition and scorer: delete the wrong line.")
        dups.append(k[1])
    return (PredictionSet([pset.records[i] for i in keep], [pset.where[i] for i in keep], dups),
            keep)


def read_prediction_set(path: Path | str) -> PredictionSet:
    """All complete records of a file or run dir (a torn last line from a killed run is
    ignored), repeats of a sample_id counted once (``duplicates``)."""
    files = prediction_files(path)
    if not files or not all(f.exists() for f in files):
        raise FileNotFoundError(f"{path}: no predictions file (expected predictions.jsonl)")
    recs, where = [], []
    for f in files:
        for n, line in enumerate(f.read_text().splitlines()):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # torn write; the question is redone on resume
            lacking = [k for k in REQUIRED_FIELDS if k not in rec] if isinstance(rec, dict) \
                else list(REQUIRED_FIELDS)
            if lacking:
                raise BenchmarkError(f"{f} line {n + 1}: missing field(s) {lacking}; a "
                                     f"prediction needs {list(REQUIRED_FIELDS)}")
            recs.append(rec)
            where.append(f"{f} line {n + 1}")
    return _dedupe(PredictionSet(recs, where), lambda i, r: _identity(r))[0]


def read_predictions(path: Path | str) -> list[dict]:
    """The records of ``read_prediction_set`` (records without a sample_id are all kept: real
    TVBench repeats (video, question), so only the data can tell them apart)."""
    return read_prediction_set(path).records


def _check_pred(r: dict, k: int | None, where: str, name: str) -> None:
    p = r["pred_index"]
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return  # unanswered
    ok = (not isinstance(p, bool) and isinstance(p, (int, float)) and float(p).is_integer()
          and (k is None or 0 <= p < k) and p >= 0)
    if not ok:
        top = "" if k is None else k - 1
        raise BenchmarkError(
            f"{where}: pred_index {p!r} of {name} is not an option index 0..{top} (null means "
            "unanswered); a harness with 1-based or re-ordered options would score wrongly: fix "
            "the predictions file.")


def match(pset: PredictionSet, bench: Benchmark) -> tuple[PredictionSet, list[Question],
                                                           list[str]]:
    """Each record's question and how it was found (``METHODS``), after dropping identical
    repeats of a question; raises ``BenchmarkError`` naming the line for anything else."""
    qs = bench.questions + bench.skipped
    by_id = {sample_id(q): q for q in qs}
    by_qid = {(q.task, q.question_id): q for q in qs if q.question_id is not None}
    qid_tasks = {q.task for q in qs if q.question_id is not None}
    pools: dict[str, dict[tuple, list[Question]]] = {
        "video+question+candidates": defaultdict(list), "video+question": defaultdict(list)}
    for q in qs:
        pools["video+question+candidates"][(q.task, q.video, q.question, q.candidates)].append(q)
        pools["video+question"][(q.task, q.video, q.question)].append(q)
    found: list[Question | None] = [None] * len(pset.records)
    how: list[str] = [""] * len(pset.records)
    pending: dict[tuple, list[int]] = defaultdict(list)
    for i, r in enumerate(pset.records):
        sid, qid = r.get("sample_id"), r.get("question_id")
        if sid:
            q = by_id.get(sid)
            if q is None:
                raise BenchmarkError(f"{pset.where[i]}: sample_id {sid!r} is not a question of "
                                     f"{bench.root}; wrong --data, or the json changed since "
                                     "the run.")
            if (q.task, q.video, q.question) != (r["task"], r["video"], r["question"]):
                raise BenchmarkError(f"{pset.where[i]}: {sid} is {q.video!r} / "
                                     f"{q.question[:60]!r} in {bench.root} but the record says "
                                     f"{r['video']!r} / {r['question'][:60]!r}; the json "
                                     "changed since the run: evaluate again.")
            found[i], how[i] = q, "sample_id"
        elif qid is not None and r["task"] in qid_tasks:
            q = by_qid.get((r["task"], str(qid)))
            if q is None:
                raise BenchmarkError(f"{pset.where[i]}: question_id {qid!r} is not in "
                                     f"{bench.root}/json/{r['task']}.json; wrong --data?")
            found[i], how[i] = q, "question_id"
        else:
            cands = r.get("candidates")
            method = "video+question+candidates" if isinstance(cands, list) else "video+question"
            key = (r["task"], r["video"], r["question"]) + (
                (tuple(cands),) if isinstance(cands, list) else ())
            pending[(method, key, group_of(r))].append(i)
    for (method, key, group), idxs in pending.items():
        pool = pools[method].get(key, [])
        if not pool:
            i = idxs[0]
            raise BenchmarkError(f"{pset.where[i]}: prediction for task {key[0]!r} video "
                                 f"{key[1]!r} question {key[2][:60]!r}"
                                 + (f" candidates {list(key[3])}" if len(key) > 3 else "")
                                 + f" matches no question in {bench.root}; wrong --data?")
        if len(pool) == 1:
            for i in idxs:
                found[i], how[i] = pool[0], method
        elif len(idxs) == len(pool):
            for i, q in zip(idxs, pool):  # file order = json order among identical texts
                found[i], how[i] = q, "order"
        else:
            raise BenchmarkError(
                f"{pset.where[idxs[0]]}: {key[1]} ({key[0]}): {len(idxs)} prediction(s) for "
                f"{len(pool)} question(s) with the same video and question {key[2][:60]!r} "
                f"({group}); in file order they only match when the counts agree. Add "
                "question_id (or sample_id) to the records.")
    for i, r in enumerate(pset.records):
        q = found[i]
        name = sample_id(q)
        if int(r["answer_index"]) != q.answer_index:
            raise BenchmarkError(f"{pset.where[i]}: prediction for {name} (matched by {how[i]}) "
                                 f"has answer_index {r['answer_index']} but the data says "
                                 f"{q.answer_index}")
        if isinstance(r.get("candidates"), list) and tuple(r["candidates"]) != q.candidates:
            raise BenchmarkError(f"{pset.where[i]}: candidates {r['candidates']} of {name} "
                                 f"differ from the data's {list(q.candidates)} (another option "
                                 "order makes every index wrong); wrong --data?")
        _check_pred(r, len(q.candidates), pset.where[i], name)
    out, kept = _dedupe(pset, lambda i, r: ("sample_id", sample_id(found[i])))
    return out, [found[i] for i in kept], [how[i] for i in kept]


def check_unmatched(pset: PredictionSet) -> None:
    """Without the data: every pred_index within its record's num_options."""
    for r, w in zip(pset.records, pset.where):
        k = r.get("num_options")
        _check_pred(r, int(k) if isinstance(k, (int, float)) else None, w,
                    r.get("sample_id") or f"{r['task']}/{r['video']}")


def method_counts(how: Sequence[str]) -> dict[str, int]:
    """``{method: records}`` in ``METHODS`` order."""
    c = Counter(how)
    return {m: c[m] for m in METHODS if c[m]}
