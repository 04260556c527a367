"""lib.evaluate: the paper parser, scorers, the resumable runner (kill and resume), 2-process
sharding, the tiny-LongVU integration through the `eval` CLI; lib.config.EvalSpec's builders and
lib.results' rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
import sys
import time

import numpy as np
import pytest

from lib import (config, eval_cli, evaluate, metrics, models, paths, predictions, profiles,
                 results, runs, tvbench, video)

PY = sys.executable
TORCHRUN = os.path.join(os.path.dirname(PY), "torchrun")


@pytest.fixture(scope="module")
def bench(smoke_assets):
    return smoke_assets / "minitvbench"


def _cli(*args, env=None, check=True, timeout=300):
    out = subprocess.run([PY, "-m", "lib.tvbench", *map(str, args)], capture_output=True,
                         text=True, cwd=paths.ROOT, env={**os.environ, **(env or {})},
                         timeout=timeout)
    if check:
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out


def _keys(run_dir):
    return sorted(map(str, (predictions.prediction_key(r)
                            for r in predictions.read_predictions(run_dir))))


# --- parser -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text,k,idx,status", [
    ("B", 4, 1, "ok"), ("(C)", 4, 2, "ok"), (" D ", 4, 3, "ok"), ("Answer: A", 4, 0, "ok"),
    ("(A) the cat", 4, 0, "ok"), ("Based on the video", 4, 1, "ok"),  # first capital A-D
    ("A,", 4, 2, "fallback"), ("A, maybe", 4, 2, "fallback"),  # "A," does not strip clean
    ("", 4, 2, "nomatch"), ("the end", 4, 2, "nomatch"), ("E", 4, 2, "nomatch"),
    ("c", 4, 2, "nomatch"),  # case-sensitive like the original
    ("B", 2, 1, "ok"), ("C", 2, None, "nomatch"), ("I do not know", 2, None, "nomatch"),
    ("A,", 2, None, "fallback"),  # no option C on 2-option tasks: the fallback is wrong
    ("D", 3, 2, "nomatch"), ("(B", 3, 1, "ok"),
])
def test_paper_parser(text, k, idx, status):
    assert evaluate.parse_paper(text, k) == (idx, status)
    strict = evaluate.parse_strict(text, k)
    assert strict == ((idx, status) if status == "ok" else (None, status))


def test_expand_scorings():
    assert evaluate.expand_scorings(["paper", "likelihood"]) == ["paper", "letter", "option"]
    with pytest.raises(ValueError, match="unknown scoring"):
        evaluate.expand_scorings(["vibes"])


# --- run configuration, result rows, no torch for scoring ---------------------------------------


def test_eval_spec_from_args_and_params():
    import argparse

    ap = argparse.ArgumentParser()
    eval_cli.add_eval_args(ap)
    args = ap.parse_args(["--model", "fake:hash", "--data", "d", "--out", "o", "--condition",
                          "normal", "shuffled", "--seeds", "0", "1", "--scoring", "likelihood",
                          "--sampler", "uniform", "--num-frames", "8", "--limit", "3",
                          "--workers", "0", "--threads", "1"])
    assert config.EvalSpec.from_args(args) == config.EvalSpec(
        ("normal", "shuffled"), (0, 1), ("likelihood",), video.Sampler("uniform", 8), 5, 3, 0,
        None, "pyav", 1)
    nb04 = {"CONDITIONS": ["normal", "blind"], "SHUFFLE_SEEDS": [0], "SCORINGS": ["paper"],
            "LIMIT": None, "WORKERS": 2, "FRAME_CACHE": True, "TORCH_THREADS": None}
    spec = config.EvalSpec.from_params(nb04, "/cache")
    assert (spec.conditions, spec.scorings, spec.num_workers, spec.frame_cache) == (
        ("normal", "blind"), ("paper",), 2, "/cache")
    nb01 = {"SHUFFLE_SEEDS": [0, 1], "SCORING": "letter", "LIMIT": 1, "WORKERS": None,
            "FRAME_CACHE": False, "TORCH_THREADS": 1}
    spec = config.EvalSpec.from_params(nb01, "/cache", conditions=("normal", "shuffled"))
    assert spec == config.EvalSpec(("normal", "shuffled"), (0, 1), ("letter",), limit=1,
                                   threads=1)


def test_result_rows_hold_repository_relative_paths(tmp_path):
    m = {"n": 2, "micro": 50.0, "macro": 50.0, "micro_ci": None, "chance_micro": 25.0,
         "chance_macro": 25.0, "tasks": {"t": {"abbr": "T", "acc": 50.0, "ci": None,
                                               "chance": 25.0, "n": 2}}}
    inside = paths.ROOT / "outputs" / "01_image_only_eval" / "r" / "eval" / "image"
    row = results.result_row("01/r/m", m, inside, "qwen", paths.ROOT / "outputs" / "data" / "b",
                             "normal/paper")
    assert row["run_dir"] == "outputs/01_image_only_eval/r/eval/image"
    assert row["data"] == "outputs/data/b" and paths.absolute(row["run_dir"]) == inside
    assert results.result_row("l", m, tmp_path, "x", "rel/b", "normal/paper")["run_dir"] == \
        str(tmp_path)  # outside the repository: kept as written
    ms = models.ModelSpec("03:r", str(paths.ROOT / "ckpt"), str(paths.ROOT / "run" / "adapter"))
    assert results.model_source(ms) == "ckpt+run/adapter"
    assert results.model_source(models.ModelSpec("b", "Vision-CAIR/x")) == "Vision-CAIR/x"


def test_recorded_rows_are_replaced_per_run_and_adapters_keep_theirs(tmp_path):
    m = {"n": 2, "micro": 50.0, "macro": 50.0, "micro_ci": None, "chance_micro": 25.0,
         "chance_macro": 25.0, "tasks": {"t": {"abbr": "T", "acc": 50.0, "ci": None,
                                               "chance": 25.0, "n": 2}}}
    run = tmp_path / "run"
    results.record({"normal/paper": m, "shuffled@0/paper": m}, "04/r/a", run, "x", "b")
    results.record({"normal/paper": m}, "04/r/a", run, "x", "b")  # rerun, one condition fewer
    rows = runs.read_results("tvbench")
    assert list(rows[rows["run_dir"] == str(run)]["group"]) == ["normal/paper"]
    eff = {"gain_normal": {"scoring": "option", "diff": 1.0},
           "gain_shuffled": {"scoring": "option", "diff": 0.0}}
    results.record_effect(eff, "04/r/a", run)  # two adapters of one notebook-04 run
    results.record_effect(eff, "04/r/b", run)
    rows = runs.read_results("tvbench_effects")  # other tests share the results dir
    rows = rows[rows["run_dir"] == str(run)]
    assert sorted(zip(rows["label"], rows["comparison"])) == [
        ("04/r/a", "gain_normal"), ("04/r/a", "gain_shuffled"), ("04/r/b", "gain_normal"),
        ("04/r/b", "gain_shuffled")]
    # a notebook's label (key: label) replaces its rows from another run dir, as a rebuilt
    # start evaluated in a new shared dir; the CLI's default key keeps both run dirs' rows
    label = f"04/{tmp_path.name}/base"
    for key in (("label", "run_dir"), ("label",)):
        results.record({"normal/paper": m}, label, tmp_path / "old", "x", "b", key=key)
        results.record({"normal/paper": m}, label, tmp_path / "new", "x", "b", key=key)
        rows = runs.read_results("tvbench")
        kept = sorted(Path(d).name for d in rows[rows["label"] == label]["run_dir"])
        assert kept == (["new", "old"] if len(key) == 2 else ["new"])


def test_scoring_needs_no_torch():
    """`score` and `compare` import lib.evaluate, which loads lib.models (torch) only for eval."""
    code = ("import sys; import lib.tvbench, lib.evaluate, lib.metrics, lib.tables; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, cwd=paths.ROOT)
    assert out.returncode == 0, out.stderr[-2000:]


# --- the runner with the fake model -----------------------------------------------------------


def test_run_records_and_counts(bench, tmp_path):
    b = tvbench.open_benchmark(bench)
    spec = config.EvalSpec(conditions=("normal", "shuffled", "blind"), seeds=(0, 1),
                             scorings=("paper", "strict", "likelihood"), limit=3,
                             num_workers=0)
    res = evaluate.evaluate(models.FakeModel(), b, tmp_path / "run", spec, n_boot=100,
                            progress=False)
    assert set(res) == {f"{u}/{s}" for u in ("normal", "shuffled@0", "shuffled@1", "blind")
                        for s in ("paper", "strict", "letter", "option")}
    recs = predictions.read_predictions(tmp_path / "run")
    assert len(recs) == 6 * 3 * 4 * 4
    by = {(r["sample_id"], r["condition"], r["seed"], r["scoring"]): r for r in recs}
    for (sid, c, s, m), r in by.items():
        if m == "strict":
            p = by[(sid, c, s, "paper")]
            assert r["raw"] == p["raw"]  # one generation for both
            assert r["pred_index"] == (p["pred_index"] if p["parse"] == "ok" else None)
    n = res["normal/paper"]
    assert sum(n["parse"].values()) == 18 and n["n"] == 18 and n["expected"] == 18
    assert {r["n_frames"] for r in recs if r["condition"] == "blind"} == {1}
    # the fake reads frame order, so the shuffled runs differ from the normal one somewhere
    raw = {(r["sample_id"], r["condition"], r["seed"]): r["raw"] for r in recs
           if r["scoring"] == "paper"}
    assert any(raw[(sid, "normal", None)] != raw[(sid, "shuffled", 0)]
               for sid, c, _ in raw if c == "normal")
    assert (tmp_path / "run" / "report.md").read_text().count("## ") == len(res)


def test_rerun_skips_and_refuses_other_config(bench, tmp_path):
    b = tvbench.open_benchmark(bench)
    spec = config.EvalSpec(limit=2, num_workers=0)
    st = evaluate.run(models.FakeModel(), b, tmp_path / "r", spec, progress=False)
    assert st["todo"] == 12
    st = evaluate.run(models.FakeModel(), b, tmp_path / "r", spec, progress=False)
    assert st["todo"] == 0 and st["records"] == 0
    wider = config.EvalSpec(limit=2, num_workers=0, scorings=("paper", "letter"))
    st = evaluate.run(models.FakeModel(), b, tmp_path / "r", wider, progress=False)
    assert st["todo"] == 12 and st["records"] == 12  # only the new scoring
    with pytest.raises(tvbench.BenchmarkError, match=r"different \['sampler'\]"):
        evaluate.run(models.FakeModel(), b, tmp_path / "r",
                     config.EvalSpec(sampler=video.Sampler("uniform", 4)), progress=False)


def test_shared_folder_returns_only_the_runs_groups(bench, tmp_path):
    b = tvbench.open_benchmark(bench)
    wide = config.EvalSpec(conditions=("normal", "shuffled"), scorings=("paper", "letter"),
                             limit=2, num_workers=0)
    evaluate.evaluate(models.FakeModel(), b, tmp_path / "shared", wide, n_boot=50,
                      progress=False)
    narrow = config.EvalSpec(scorings=("letter",), limit=2, num_workers=0)
    res = evaluate.evaluate(models.FakeModel(), b, tmp_path / "shared", narrow, n_boot=50,
                            progress=False)
    assert set(res) == {"normal/letter"}
    recs = metrics.group_records(tmp_path / "shared" / "predictions.jsonl", "normal/letter")
    asked = tvbench.select(b.questions, 1)
    mine = metrics.group_records(tmp_path / "shared" / "predictions.jsonl", "normal/letter",
                                 asked)
    assert len(recs) == 2 * len(b.tasks) and len(mine) == len(asked) == len(b.tasks)
    assert {r["sample_id"] for r in mine} == {tvbench.sample_id(q) for q in asked}


def test_shared_eval_dir_identity(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_OUTPUTS_DIR", str(tmp_path / "out"))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(b"v1")
    spec = models.ModelSpec("base", str(ckpt))
    d = profiles.shared_eval_dir(spec, tmp_path / "bench")
    assert d.parent == tmp_path / "out" / "04_tvbench_eval" / "_shared"
    assert profiles.shared_frame_cache() == d.parent / "frames"
    assert d == profiles.shared_eval_dir(models.ModelSpec("renamed", str(ckpt)),
                                         tmp_path / "bench")  # the label does not matter
    others = [profiles.shared_eval_dir(models.ModelSpec("base", str(ckpt), None, "nf4"),
                                       tmp_path / "bench"),
              profiles.shared_eval_dir(spec, tmp_path / "other_bench"),
              profiles.shared_eval_dir(models.ModelSpec("base", "Vision-CAIR/x"),
                                       tmp_path / "bench"),
              profiles.shared_eval_dir(models.ModelSpec("base", str(ckpt), dtype="float16"),
                                       tmp_path / "bench"),
              profiles.shared_eval_dir(models.ModelSpec("base", str(ckpt), drop_threshold=0.8),
                                       tmp_path / "bench")]
    assert len({d, *others}) == 6
    (ckpt / "model.safetensors").write_bytes(b"retrained")  # same path, new weights
    assert profiles.shared_eval_dir(spec, tmp_path / "bench") != d


def test_torn_line_is_redone(bench, tmp_path):
    b = tvbench.open_benchmark(bench)
    spec = config.EvalSpec(limit=2, num_workers=0)
    ref = evaluate.evaluate(models.FakeModel(), b, tmp_path / "ref", spec, n_boot=200,
                            progress=False)
    evaluate.run(models.FakeModel(), b, tmp_path / "r", spec, progress=False)
    f = tmp_path / "r" / "predictions.jsonl"
    lines = f.read_text().splitlines(keepends=True)
    f.write_text("".join(lines[:5]) + lines[5][:40])  # killed in the middle of a write
    st = evaluate.run(models.FakeModel(), b, tmp_path / "r", spec, progress=False)
    assert st["todo"] == 7
    res = evaluate.finalize(tmp_path / "r", b, n_boot=200, limit=2)
    assert res == ref


def test_resume_after_kill_gives_same_metrics(bench, tmp_path):
    args = ["eval", "--data", bench, "--condition", "normal", "shuffled",
            "--scoring", "paper", "--workers", "1", "--quiet", "--no-record"]
    _cli(*args, "--model", "fake:hash", "--out", tmp_path / "ref")
    run = tmp_path / "killed"
    proc = subprocess.Popen([PY, "-m", "lib.tvbench", *map(str, args), "--model",
                             "fake:hash?delay=0.05", "--out", str(run)], cwd=paths.ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    pred = run / "predictions.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if pred.exists() and pred.read_text().count("\n") >= 20:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # our own child's session only
    proc.wait()
    n_before = pred.read_text().count("\n")
    assert 20 <= n_before < 96 and not (run / "metrics.json").exists()
    _cli(*args, "--model", "fake:hash", "--out", run)
    assert _keys(run) == _keys(tmp_path / "ref")
    a = json.loads((run / "metrics.json").read_text())
    b = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    assert a.pop("time_split")["rank0"]["todo"] < b.pop("time_split")["rank0"]["todo"]
    assert a == b


def test_two_process_sharding_torchrun(bench, tmp_path):
    args = ["eval", "--model", "fake:hash", "--data", bench, "--condition", "normal",
            "shuffled", "--scoring", "paper", "letter", "--workers", "0", "--quiet",
            "--no-record"]
    _cli(*args, "--out", tmp_path / "one")
    out = subprocess.run([TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m",
                          "lib.tvbench", *map(str, args), "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, cwd=paths.ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    files = sorted(p.name for p in (tmp_path / "two").glob("predictions*.jsonl"))
    assert files == ["predictions.jsonl"]  # shards merged
    lines = (tmp_path / "two" / "predictions.jsonl").read_text().splitlines()
    keys = [str(predictions.prediction_key(json.loads(x))) for x in lines]
    assert len(keys) == len(set(keys)) == 48 * 2 * 2  # none duplicated
    assert sorted(keys) == _keys(tmp_path / "one")  # none lost
    a = json.loads((tmp_path / "one" / "metrics.json").read_text())
    b = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert set(b.pop("time_split")) == {"rank0", "rank1"} and "rank0" in a.pop("time_split")
    assert a == b
    assert out.stdout.strip().splitlines()[-1].startswith("micro ")


def test_sharding_without_process_group(bench, tmp_path):
    """RANK/WORLD_SIZE only (no MASTER_ADDR): each rank writes its shard; `score` reads both."""
    run = tmp_path / "plain"
    base = ["eval", "--model", "fake:hash", "--data", bench, "--workers", "0", "--quiet",
            "--no-record", "--out", run]
    for r in (0, 1):
        env = {"RANK": str(r), "WORLD_SIZE": "2"}
        env_clean = {k: v for k, v in os.environ.items() if k != "MASTER_ADDR"}
        out = subprocess.run([PY, "-m", "lib.tvbench", *map(str, base)], capture_output=True,
                             text=True, cwd=paths.ROOT, env={**env_clean, **env}, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
    assert sorted(p.name for p in run.glob("*.jsonl")) == ["predictions.rank0.jsonl",
                                                           "predictions.rank1.jsonl"]
    last = _cli("score", "--data", bench, "--predictions", run).stdout.splitlines()[-1]
    assert last.endswith("n 48")


def test_on_missing_skip_reported(bench, tmp_path):
    import shutil

    root = tmp_path / "b"
    shutil.copytree(bench, root)
    gone = sorted((root / "video" / "object_count").glob("*.mp4"))[:3]
    for v in gone:
        v.unlink()
    out = _cli("eval", "--model", "fake:hash", "--data", root, "--out", tmp_path / "r",
               "--quiet", "--no-record", check=False)
    assert out.returncode == 2 and "3 video file(s) missing" in out.stderr
    assert all(v.name in out.stderr for v in gone)
    out = _cli("eval", "--model", "fake:hash", "--data", root, "--out", tmp_path / "r",
               "--quiet", "--on-missing", "skip", "--workers", "0")
    assert "skipped (missing video): 3" in out.stdout
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())["normal/paper"]
    assert m["n"] == 45 and m["skipped_missing_video"] == 3 and len(m["skipped_videos"]) == 3
    s = _cli("score", "--data", root, "--predictions", tmp_path / "r").stdout
    assert "skipped (missing video): 3" in s
    import pandas as pd

    row = pd.read_csv(paths.results_dir() / "tvbench.csv").iloc[-1]
    assert row["skipped_missing_video"] == 3 and row["n"] == 45


# --- tiny LongVU ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from lib.longvu.tiny import write_tiny

    return write_tiny(tmp_path_factory.mktemp("tiny") / "qwen", "qwen", "video", "small", 0)


def test_longvu_adapter_matches_model(tiny_ckpt, bench):
    import torch

    from lib.longvu import prompts

    from lib import longvu

    m = models.LongVUModel.load(str(tiny_ckpt))
    raw = longvu.load(str(tiny_ckpt))  # no shared-embedding memo: the reference
    q = tvbench.load(bench)[0]
    clip = video.read_clip(q)
    a = m.preprocessor()(clip.frames)
    b = raw.preprocess(clip.frames)
    assert torch.equal(a["siglip"], b["siglip"]) and torch.equal(a["dino"], b["dino"])
    assert a["image_sizes"] == b["image_sizes"] and a["kind"] == b["kind"]
    p = m.prompt(q.question, q.candidates)
    assert p == m.model.prompt(prompts.mc_user_text(q.question, q.candidates))
    assert "Answer with the option's letter" in p and p.startswith("<|im_start|>system")
    k = len(q.candidates)
    gen = m.generate(a, p)  # fills the memo; the scorers below reuse the visual embedding
    lp = m.letter_logprobs(a, p, "ABCD"[:k])
    ol, nt = m.option_logprobs(a, p, q.candidates)
    assert gen == raw.generate(b, p, max_new_tokens=5)
    assert np.allclose(lp, raw.letter_logprobs(b, p, list("ABCD"[:k])), atol=1e-5)
    bare = torch.log_softmax(raw.next_token_logits(b, p), -1)  # "X" alone is a lower bound
    ids = [raw.tokenizer(c, add_special_tokens=False)["input_ids"][0] for c in "ABCD"[:k]]
    assert all(x >= y - 1e-5 for x, y in zip(lp, bare[ids].tolist()))
    assert np.allclose(ol, raw.sequence_logprob(b, p, list(q.candidates)), atol=1e-4)
    assert len(ol) == k and all(x < 0 for x in ol) and min(nt) >= 1


def test_eval_cli_tiny_longvu(tiny_ckpt, bench, tmp_path):
    out = _cli("eval", "--model", tiny_ckpt, "--data", bench, "--condition", "normal",
               "--scoring", "paper", "--out", tmp_path / "run", "--limit", "1", "--quiet",
               "--workers", "1", "--label", "tiny-test")
    last = out.stdout.strip().splitlines()[-1].split()
    assert last[0] == "micro" and last[-1] == "6"
    recs = predictions.read_predictions(tmp_path / "run")
    assert len(recs) == 6 and all(r["model"] == "qwen" for r in recs)
    assert all(r["parse"] in ("ok", "fallback", "nomatch") for r in recs)
    again = _cli("score", "--data", bench, "--predictions", tmp_path / "run")
    assert again.stdout.strip().splitlines()[-1] == out.stdout.strip().splitlines()[-1]
    import pandas as pd

    csv = pd.read_csv(paths.results_dir() / "tvbench.csv")
    assert (csv["label"] == "tiny-test").sum() == 1


def test_adapters_resolve_and_evaluate(tiny_ckpt, bench, tmp_path):
    """An adapter dir and a notebook-03 run name both resolve; the adapter changes the logits."""
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import save_file

    from lib import longvu

    m = longvu.load(str(tiny_ckpt))
    peft = get_peft_model(m.decoder, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                init_lora_weights=False))
    peft.save_pretrained(str(tmp_path / "adapter"))
    # an adapter dir holds the connector beside the LoRA weights (lib.longvu.load checks it)
    save_file(m.connector.state_dict(), str(tmp_path / "adapter" / "connector.safetensors"))
    spec = profiles.resolve_adapter(str(tmp_path / "adapter"), str(tiny_ckpt))
    assert spec.adapter == str(tmp_path / "adapter") and spec.checkpoint == str(tiny_ckpt)
    run03 = paths.outputs_dir() / "03_qlora_finetune" / "unit"
    run03.mkdir(parents=True, exist_ok=True)
    (run03 / "metrics.json").write_text(json.dumps({
        "adapter_dir": str(tmp_path / "adapter"), "quantization": "none",
        "start_checkpoint": str(tiny_ckpt)}))
    assert profiles.resolve_adapter("unit", "elsewhere") == models.ModelSpec(
        "03:unit", str(tiny_ckpt), str(tmp_path / "adapter"), "none")
    with pytest.raises(FileNotFoundError, match="notebook-03 run"):
        profiles.resolve_adapter("never-ran", str(tiny_ckpt))
    b = tvbench.open_benchmark(bench)
    q = b.questions[0]
    base = models.ModelSpec("base", str(tiny_ckpt)).load("cpu")
    tuned = spec.load("cpu")
    frames = video.read_clip(q).frames
    prep = base.preprocessor()(frames)
    p = base.prompt(q.question, q.candidates)
    assert not np.allclose(base.letter_logprobs(prep, p, "ABCD"),
                           tuned.letter_logprobs(prep, p, "ABCD"))
    res = evaluate.evaluate(tuned, b, tmp_path / "run", config.EvalSpec(
        scorings=("letter",), limit=1, num_workers=0, threads=1), n_boot=50, progress=False)
    assert res["normal/letter"]["n"] == 6 and torch.get_num_threads() >= 1
