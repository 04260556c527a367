"""lib.ablations (with lib.tables' writers and lib.plots' figures) on small synthetic result
tables, lib.paper, the sweep presets, and the paper-table6 smoke sweep end to end (train +
evaluate two rows, then a rerun skips them)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lib import ablations as abl
from lib import paper, paths, pipeline, plots, runs, tables

SWEEP_PRESETS = [f"paper-table{i}" for i in range(3, 9)] + ["demo-seeds", "source-compare"]


# ---------------------------------------------------------------------------------------------
# Synthetic tables shaped like lib.results.result_row / lib.pipeline.run_sweep output


def _eval_row(nb: str, run: str, model: str, group: str, micro: float, st: float = 60.0,
              ckpt: str = "/d/models/tiny_llama_image_small_s0") -> dict:
    cond, _, scoring = group.partition("/")
    return {"label": f"{nb}/{run}/{model}", "model": ckpt, "group": group, "condition": cond,
            "scoring": scoring, "n": 20, "micro": micro, "macro": micro, "micro_lo": micro - 5,
            "micro_hi": micro + 5, "chance_micro": 37.5, "chance_macro": 37.5,
            "run_dir": f"/x/outputs/{'04_tvbench_eval' if nb == '04' else '01_image_only_eval'}"
                       f"/{run}/eval/m0",
            "AC": micro - 10, "AC_lo": micro - 20, "AC_hi": micro, "AC_chance": 25.0, "AC_n": 10,
            "ST": st, "ST_lo": st - 10, "ST_hi": st + 10, "ST_chance": 50.0, "ST_n": 10}


def _tables():
    ev, sw = [], []
    # Demo F 1/2/4 scale the paper's F 1/5/20.
    for f, acc, paper_f in ((1, 40.0, 1), (2, 45.0, 5), (4, 50.0, 20)):
        run = f"paper-table6-demo-R1-F{f}"
        params = {"QUESTIONS": "R1", "F": f, "paper_row": f"R1, F={paper_f}"}
        sw.append({"sweep": "paper-table6", "profile": "demo", "row": f"R1-F{f}",
                   "run_name": run, "params": json.dumps(params), "seconds": 1.0})
        for model, a in (("base (nf4)", 35.0), (f"03:{run}", acc)):
            ev += [_eval_row("04", run, model, "normal/letter", a),
                   _eval_row("04", run, model, "shuffled@0/letter", a - 4),
                   _eval_row("04", run, model, "shuffled@1/letter", a - 6),
                   _eval_row("04", run, model, "normal/option", a + 1)]
    ev += [_eval_row("01", "demo", "image-trained", "normal/paper", 42.0),
           _eval_row("01", "demo", "image-trained", "normal/letter", 99.0),
           _eval_row("01", "demo", "image-trained", "shuffled@0/paper", 41.0),
           _eval_row("01", "demo", "video-trained", "normal/paper", 55.0,
                     ckpt="/d/models/tiny_llama_video_small_s0")]
    ft = pd.DataFrame([{"run": "paper-table6-demo-R1-F1", "last_loss": 1.5, "steps": 16}])
    return abl.evaluations(pd.DataFrame(ev)), pd.DataFrame(sw), ft


# ---------------------------------------------------------------------------------------------
# lib.paper


def test_paper_tables_shape_and_one_source():
    for n, table in paper.TABLES.items():
        for key, vals in table.items():
            assert len(vals) == len(paper.COLUMNS), (n, key)
            assert all(v is None or 0 <= v <= 100 for v in vals), (n, key)
    # Table 3 is lib.tables' source too, and Table 4's "videos" rows are Table 3's.
    t3 = tables.paper_frame("3")
    assert t3.loc[("image-trained", "Qwen2-7B", "normal"), "Avg"] == 50.5
    assert list(t3.columns) == paper.COLUMNS
    for llm in ("Llama3.2-3B", "Qwen2-7B"):
        assert paper.TABLE4[("videos", llm)] == paper.TABLE3[("video-trained", llm, "normal")]
    # The base R1 configuration (S=4, F=5, N=100k) is one run shared by Tables 6-8.
    assert paper.TABLE6["R1, F=5"] == paper.TABLE7["S=4, F=5"] == \
        paper.TABLE8["N=100,000; 3,125 steps"]


def test_paper_frame_marks_unknown_cells():
    t4 = tables.paper_frame("4")
    assert np.isnan(t4.loc[("pseudo-videos", "Llama3.2-3B"), "AS"])
    assert t4.loc[("pseudo-videos", "Llama3.2-3B"), "Avg"] == 53.5
    assert tables.paper_frame("6").index.name == "config"


# ---------------------------------------------------------------------------------------------
# Loading and joining


def test_load_tables_notes_missing():
    fake = {"tvbench": pd.DataFrame({"a": [1]})}
    tables, notes = abl.load_tables(lambda t: fake.get(t, pd.DataFrame()))
    assert len(tables["tvbench"]) == 1 and tables["sweeps"].empty
    assert len(notes) == 3 and "finetune.csv" in notes[0] and "sweeps.csv" in notes[1]
    assert "tvbench_effects.csv" in notes[2]


def test_run_name_from_run_dir_or_label():
    assert abl.run_name_of("/o/04_tvbench_eval/paper-table6-demo-F2/eval/m1") == \
        "paper-table6-demo-F2"
    assert abl.run_name_of("elsewhere", "04/r1/base") == "r1"
    # notebook 04's shared base folder is named by the label, not by the folder
    assert abl.run_name_of("/o/04_tvbench_eval/_shared/ckpt-nf4-0123", "04/r1/base (nf4)") == "r1"
    assert abl.run_name_of("/tmp/cli_eval_run", "r") == "cli_eval_run"  # lib.tvbench eval --out
    with pytest.raises(ValueError, match="names the run"):
        abl.run_name_of("", "")


def test_evaluations_parse_groups():
    ev, _, _ = _tables()
    r = ev[ev["group"] == "shuffled@1/letter"].iloc[0]
    assert (r["cond"], r["seed"], r["scoring"], r["notebook"]) == ("shuffled", 1, "letter", "04")
    assert r["model_label"] == "base (nf4)" and r["llm"] == "Llama3.2-3B"
    assert tables.task_columns(ev) == ["AC", "ST"]
    with pytest.raises(KeyError, match="tvbench.csv lacks"):
        abl.evaluations(pd.DataFrame({"label": ["x"]}))


def test_normal_rows_best_scorer_and_shuffled_mean():
    ev, _, _ = _tables()
    rows = abl.normal_rows(ev).set_index(["run_name", "model_label"])
    # paper is preferred where it was run; sweep rows only have letter/option: letter.
    assert rows.loc[("demo", "image-trained"), "micro"] == 42.0
    assert rows.loc[("demo", "image-trained"), "shuffled_micro"] == 41.0
    r = rows.loc[("paper-table6-demo-R1-F2", "03:paper-table6-demo-R1-F2")]
    assert (r["scoring"], r["micro"], r["shuffled_micro"], r["shuffled_seeds"]) == \
        ("letter", 45.0, 40.0, 2)
    assert abl.normal_rows(ev, "option").set_index(["run_name", "model_label"]).loc[
        ("paper-table6-demo-R1-F2", "03:paper-table6-demo-R1-F2"), "micro"] == 46.0


def test_sweep_results_join_and_ablation_frame():
    ev, sw, ft = _tables()
    res = abl.sweep_results(sw, ev, None, ft)
    assert len(res) == 6 and res["is_base"].sum() == 3
    assert set(abl.param_columns(res)) == {"QUESTIONS", "F"}
    assert res.set_index("run_name").loc["paper-table6-demo-R1-F1", "last_loss"].tolist() == \
        [1.5, 1.5]
    curve, axis = abl.ablation_frame(res, "paper-table6", "demo")
    assert axis == "F" and curve["x"].tolist() == [1, 2, 4]
    assert curve["micro"].tolist() == [40.0, 45.0, 50.0]
    assert set(curve["series"]) == {"QUESTIONS=R1"}
    assert abl.sweep_results(pd.DataFrame(), ev).empty
    with pytest.raises(KeyError, match="sweeps.csv lacks"):
        abl.sweep_results(sw.drop(columns="params"), ev)


def test_categorical_source_axis():
    """source-compare sweeps along SOURCE (coco | t2vid): positions in sorted order, labels
    kept, and the ablation figure draws them as tick labels."""
    import matplotlib.pyplot as plt

    ev, sw = [], []
    for src, acc in (("t2vid", 41.0), ("coco", 44.0)):
        run = f"source-compare-demo-{src}"
        sw.append({"sweep": "source-compare", "profile": "demo", "row": src, "run_name": run,
                   "params": json.dumps({"SOURCE": src}), "seconds": 1.0})
        ev += [_eval_row("04", run, f"03:{run}", "normal/letter", acc)]
    res = abl.sweep_results(pd.DataFrame(sw), abl.evaluations(pd.DataFrame(ev)))
    curve, axis = abl.ablation_frame(res, "source-compare", "demo")
    assert axis == "SOURCE" and curve["x_label"].tolist() == ["coco", "t2vid"]
    assert curve["x"].tolist() == [0.0, 1.0] and curve["micro"].tolist() == [44.0, 41.0]
    fig = plots.plot_ablation(curve, axis, ["AC", "ST"])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["coco", "t2vid"]
    plt.close(fig)


def test_series_label_prefers_explicit_series():
    r = pd.Series({"N": 10, "STEPS": 3, "QUESTIONS": "R1", "series": "fixed steps"})
    assert abl.series_label(r, "N", ["N", "STEPS", "QUESTIONS"]) == "fixed steps"
    assert abl.series_label(r.drop("series"), "N", ["N", "STEPS", "QUESTIONS"]) == "QUESTIONS=R1"


def test_seed_summary():
    ev, _, _ = _tables()
    sw = pd.DataFrame([{"sweep": "demo-seeds", "profile": "demo", "row": f"s{s}",
                        "run_name": f"paper-table6-demo-R1-F{f}",
                        "params": json.dumps({"SEED": s})} for s, f in ((0, 1), (1, 2), (2, 4))])
    seeds = abl.seed_summary(abl.sweep_results(sw, ev))
    a = seeds.loc[("demo", "adapter")]
    assert (a["seed 0"], a["seed 2"], a["mean"]) == (40.0, 50.0, 45.0)
    assert a["sd"] == pytest.approx(5.0)


# ---------------------------------------------------------------------------------------------
# Tables beside the paper


def test_beside_paper_and_table4_videos_row():
    ev, sw, _ = _tables()
    res = abl.sweep_results(sw, ev)
    ours = abl.ours_for_paper(res[res["sweep"] == "paper-table6"], "6")
    assert list(ours.index) == ["R1, F=1", "R1, F=5", "R1, F=20"]
    beside = abl.beside_paper(ours, "6")
    assert beside.loc[("R1, F=5", "paper"), "Avg"] == 50.3
    assert beside.loc[("R1, F=5", "ours"), "Avg"] == 45.0 and np.isnan(
        beside.loc[("R1, F=5", "ours"), "OS"])
    t4 = res.assign(sweep="paper-table4", paper_row="videos + pseudo-videos | Llama3.2-3B")
    ours4 = abl.ours_for_paper(t4[t4["run_name"].str.endswith("F1")], "4")
    assert sorted(ours4.index) == ["videos + pseudo-videos | Llama3.2-3B", "videos | Llama3.2-3B"]
    with pytest.raises(KeyError, match="not a row of the paper's Table 6"):
        abl.paper_key("6", "R1, F=3")


def test_table3_ours():
    ev, _, _ = _tables()
    t3 = abl.table3_ours(ev)
    assert t3.loc["image-trained | Llama3.2-3B | normal", "Avg"] == 42.0
    assert t3.loc["image-trained | Llama3.2-3B | shuffled", "Avg"] == 41.0
    assert "video-trained | Llama3.2-3B | shuffled" not in t3.index
    assert abl.beside_paper(t3, "3").loc[
        ("video-trained | Llama3.2-3B | normal", "paper"), "Avg"] == 51.2


def test_markdown_and_latex(tmp_path):
    ev, _, _ = _tables()
    rows = abl.normal_rows(ev)
    table = abl.accuracy_table(rows, ["AC", "ST"], ["run_name", "model_label"], ci=True)
    assert table.loc[("demo", "image-trained"), "Avg"] == "42.0 [37, 47]"
    df = pd.DataFrame({"a_b": [1.25, np.nan]}, index=pd.Index(["x%", "y"], name="row"))
    md = tables.to_markdown(df)
    assert md.splitlines()[0] == "| row | a_b |" and "| x% | 1.2 |" in md and "| y |  |" in md
    tex = tables.to_latex(df, "Acc (%)")
    assert r"a\_b" in tex and r"x\% & 1.2 \\" in tex and r"y & -- \\" in tex
    assert r"\caption{Acc (\%)}" in tex
    files = tables.write_table(df, tmp_path, "t", "cap")
    assert [f.name for f in files] == ["t.md", "t.tex"] and files[0].read_text().startswith("cap")


def test_paper_curves():
    c6 = abl.paper_curve("6", "F")
    assert c6[c6["series"] == "R1"]["x"].tolist() == [1, 5, 10, 20, 40]
    assert set(c6["series"]) == {"R1", "R3", "R4"}  # the mix row is left out
    c7 = abl.paper_curve("7", "S")
    assert c7[c7["series"] == "F=5"]["x"].tolist() == [2, 4, 8]
    assert abl.paper_curve("8", "N")["x"].tolist() == [10_000, 100_000, 500_000]


def test_figures_are_saved(tmp_path):
    import matplotlib.pyplot as plt

    ev, sw, _ = _tables()
    rows = abl.normal_rows(ev)
    res = abl.sweep_results(sw, ev)
    curve, axis = abl.ablation_frame(res, "paper-table6", "demo")
    beside = abl.beside_paper(abl.ours_for_paper(res, "6"), "6")
    figs = {"per_task": plots.plot_per_task(rows, ["AC", "ST"], abl.display_names(rows)),
            "shuffled": plots.plot_normal_vs_shuffled(rows, abl.display_names(rows)),
            "ablation": plots.plot_ablation(curve, axis, ["AC", "ST"], "t",
                                            abl.paper_curve("6", "F")),
            "vs_paper": plots.plot_vs_paper(beside)}
    for name, fig in figs.items():
        out = plots.save_figure(fig, f"05_{name}", tmp_path)
        assert all(p.stat().st_size > 0 for p in out)
        plt.close(fig)
    assert abl.slug("paper-table6", "demo") == "paper_table6_demo"


def test_sweep_reports_tables_and_figures(tmp_path, monkeypatch):
    """Notebook 05's sweep section: one report per sweep and profile, its tables written as
    Markdown and LaTeX, its two figures saved."""
    import matplotlib.pyplot as plt

    monkeypatch.setenv("WORKBOOK_FIGURES_DIR", str(tmp_path / "figures"))
    ev, sw, _ = _tables()
    res = abl.sweep_results(sw, ev)
    (rep,) = abl.sweep_reports(res, ["AC", "ST"])
    assert (rep.name, rep.title, rep.axis, rep.number) == (
        "paper_table6_demo", "paper-table6 (demo)", "F", "6")
    assert rep.curve["x"].tolist() == [1, 2, 4] and len(rep.paper_curve)
    assert rep.beside.loc[("R1, F=5", "ours"), "Avg"] == 45.0
    files = abl.write_sweep_tables(rep, tmp_path / "tables")
    assert sorted(f.name for f in files) == ["paper_table6_demo.md", "paper_table6_demo.tex",
                                             "paper_table6_demo_vs_paper.md",
                                             "paper_table6_demo_vs_paper.tex"]
    figs = plots.save_sweep_figures(rep, ["AC", "ST"])
    assert sorted(f.name for f in figs) == [
        "05_ablation_paper_table6_demo.pdf", "05_ablation_paper_table6_demo.png",
        "05_vs_paper_paper_table6_demo.pdf", "05_vs_paper_paper_table6_demo.png"]
    plt.close("all")
    assert abl.sweep_reports(pd.DataFrame(), ["AC"]) == []
    shuf = abl.shuffle_table(abl.normal_rows(ev).dropna(subset=["shuffled_micro"]))
    assert shuf.loc[("paper-table6-demo-R1-F2", "03:paper-table6-demo-R1-F2", "letter"),
                    "drop"] == 5.0


# ---------------------------------------------------------------------------------------------
# The presets


@pytest.mark.parametrize("preset", SWEEP_PRESETS)
def test_sweep_presets_are_well_formed(preset):
    """Rows for smoke/demo/full, smoke has 2 rows, every parameter is one the sweep's notebooks
    declare (or metadata), and every paper_row names a row of lib.paper."""
    import papermill as pm

    spec = pipeline.load_preset(preset)
    assert set(spec["rows"]) == {"smoke", "demo", "full"}
    assert len(spec["rows"]["smoke"]) == 2
    nbs = pipeline.select(pipeline.notebooks(), ",".join(spec["sweep"]["notebooks"]))
    declared = {nb.stem: set(pm.inspect_notebook(str(nb))) for nb in nbs}
    allowed = set().union(*declared.values()) | set(abl.META_KEYS)
    number = abl.table_number(preset)
    for profile, rows in spec["rows"].items():
        common = spec.get("common", {}).get(profile, {})
        for section, vals in common.items():
            keys = vals if isinstance(vals, dict) else {section: vals}
            target = declared.get(section, allowed) if isinstance(vals, dict) else allowed
            assert set(keys) <= target, f"{preset} common.{profile}.{section}: {keys}"
        for row, params in rows.items():
            flat = {k for k, v in params.items() if not isinstance(v, dict)}
            assert flat <= allowed, f"{preset} {profile}/{row}: undeclared {flat - allowed}"
            if number and "paper_row" in params:
                abl.paper_key(number, params["paper_row"])


@pytest.mark.slow
@pytest.mark.notebook
def test_paper_table6_smoke_sweep_end_to_end(smoke_assets, capsys):
    """Two smoke rows train (notebook 03) and evaluate (04), land in sweeps.csv and
    tvbench.csv, and notebook 05's join finds them; a second run skips both."""
    done = pipeline.run_sweep("paper-table6", "smoke")
    assert done == ["R1-F1", "R1-F2"]
    sweeps = runs.read_results("sweeps")
    mine = sweeps[sweeps["sweep"] == "paper-table6"]
    assert sorted(mine["row"]) == ["R1-F1", "R1-F2"]
    ev = abl.evaluations(runs.read_results("tvbench"))
    res = abl.sweep_results(mine, ev)
    tuned = res[~res["is_base"]]
    assert sorted(tuned["row"]) == ["R1-F1", "R1-F2"]
    assert set(tuned["scoring"]) == {"letter"} and tuned["shuffled_micro"].notna().all()
    curve, axis = abl.ablation_frame(res, "paper-table6", "smoke")
    assert axis == "F" and curve["x"].tolist() == [1, 2]
    assert (paths.outputs_dir() / "03_qlora_finetune" / "paper-table6-smoke-R1-F2" /
            "adapter").is_dir()
    capsys.readouterr()
    assert pipeline.run_sweep("paper-table6", "smoke") == []
    assert capsys.readouterr().out.count("already done") == 2
