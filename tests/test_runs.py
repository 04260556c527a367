"""Run dirs, sidecar JSON files and append-or-replace result tables."""

import json

import pytest

from lib import paths, runs


def test_start_writes_params_and_env():
    run = runs.start("99_test", "r1", {"SEED": 3})
    assert run.dir == paths.outputs_dir() / "99_test" / "r1"
    assert json.loads(run.path("params.json").read_text()) == {"SEED": 3}
    env = json.loads(run.path("env.json").read_text())
    assert env["packages"]["numpy"] and env["python"]
    runs.save_metrics(run, {"a": 1})
    runs.save_metrics(run, {"b": 2})
    assert json.loads(run.path("metrics.json").read_text()) == {"a": 1, "b": 2}


def test_notebook_params_keeps_upper_case_literals():
    ns = {"SEED": 1, "N": [1, 2], "lower": 3, "OBJ": object(), "_X": 1}
    assert runs.notebook_params(ns) == {"SEED": 1, "N": [1, 2]}


def test_append_result_replaces_same_key():
    runs.append_result("t_runs", {"model": "a", "seed": 0, "acc": 0.1}, key=["model", "seed"])
    runs.append_result("t_runs", {"model": "a", "seed": 1, "acc": 0.2}, key=["model", "seed"])
    runs.append_result("t_runs", {"model": "a", "seed": 0, "acc": 0.3}, key=["model", "seed"])
    df = runs.read_results("t_runs")
    assert len(df) == 2
    assert df.set_index("seed").loc[0, "acc"] == 0.3
    assert runs.has_result("t_runs", {"model": "a", "seed": 1})
    assert not runs.has_result("t_runs", {"model": "b"})


def test_replace_results_drops_every_old_row_of_the_run():
    rows = [{"label": "04/r/m", "run_dir": "outputs/x", "group": g, "acc": 1} for g in "abc"]
    runs.replace_results("t_repl", rows, {"label": "04/r/m", "run_dir": "outputs/x"})
    other = {"label": "04/r/n", "run_dir": "outputs/x", "group": "a", "acc": 2}
    runs.replace_results("t_repl", [other], {"label": "04/r/n", "run_dir": "outputs/x"})
    # a rerun with fewer groups: b and c of 04/r/m go; 04/r/n, another model, stays
    runs.replace_results("t_repl", [{**rows[0], "acc": 3}],
                         {"label": "04/r/m", "run_dir": paths.ROOT / "outputs" / "x"})
    df = runs.read_results("t_repl")
    assert sorted(zip(df["label"], df["group"], df["acc"])) == [("04/r/m", "a", 3),
                                                                ("04/r/n", "a", 2)]
    with pytest.raises(ValueError, match="must all have"):
        runs.replace_results("t_repl", [other], {"label": "04/r/m"})


def test_result_tables_store_repo_relative_paths(tmp_path):
    inside = paths.ROOT / "outputs" / "03_qlora_finetune" / "r" / "adapter"
    runs.append_result("t_paths", {"run": "r", "adapter_dir": str(inside), "ckpt": inside,
                                   "hub": "Vision-CAIR/LongVU_Qwen2_7B",
                                   "outside": str(tmp_path)}, key=["run"])
    row = runs.read_results("t_paths").iloc[0]
    assert row["adapter_dir"] == row["ckpt"] == "outputs/03_qlora_finetune/r/adapter"
    assert paths.absolute(row["adapter_dir"]) == inside
    assert row["hub"] == "Vision-CAIR/LongVU_Qwen2_7B"  # a hub id is not a path
    assert row["outside"] == str(tmp_path)  # outside the repository: kept as written
