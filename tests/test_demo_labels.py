"""Notebook 05's comparisons with the paper (lib.vs_paper, lib.ablations, lib.plots): a tiny demo
model on MiniTVBench is compared by the directions of its effects and never carries a real model's
name; the full profile keeps the per-task numbers under the paper's names."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from lib import ablations as abl
from lib import paper, plots, tables, vs_paper

REAL_NAMES = tuple(paper.LLM_NAMES.values())  # Qwen2-7B, Llama3.2-3B
PATHS = {"demo": ("outputs/data/models/demo/{b}_{s}_trained_s0",
                  "outputs/data/assets/demo/minitvbench"),
         "full": ("Vision-CAIR/LongVU_{B}{S}", "outputs/data/tvbench")}


def _row(profile: str, backbone: str, stage: str, group: str, micro: float) -> dict:
    """A tvbench.csv row of notebook 01 as lib.results.result_row writes it."""
    model, data = PATHS[profile]
    official = {"qwen": "Qwen2_7B", "llama": "Llama3_2_3B"}[backbone]
    return {"label": f"01/{profile}-{backbone}/{stage}-trained",
            "model": model.format(b=backbone, s=stage, B=official,
                                  S="_img" if stage == "image" else ""),
            "data": data, "group": group, "micro": micro, "macro": micro, "micro_lo": micro - 5,
            "micro_hi": micro + 5, "chance_micro": 33.3, "run_dir":
            f"outputs/01_image_only_eval/{profile}-{backbone}/eval/{stage}",
            "AC": micro - 3, "AC_lo": micro - 9, "AC_hi": micro + 3, "AC_chance": 25.0,
            "ST": micro + 3, "ST_lo": micro - 3, "ST_hi": micro + 9, "ST_chance": 50.0}


def _table3_rows(profile: str, backbones=("qwen",)) -> list[dict]:
    rows = []
    for b in backbones:
        rows += [_row(profile, b, "image", "normal/paper", 30.0),
                 _row(profile, b, "image", "shuffled@0/paper", 31.0),
                 _row(profile, b, "video", "normal/paper", 40.0),
                 _row(profile, b, "video", "shuffled@0/paper", 35.0),
                 _row(profile, b, "video", "shuffled@1/paper", 33.0)]
    return rows


def _table3_ev(profile: str, backbones=("qwen",)) -> pd.DataFrame:
    return abl.evaluations(pd.DataFrame(_table3_rows(profile, backbones)))


def _texts(fig) -> list[str]:
    """Every text a reader sees: suptitle, titles, axis labels, tick labels, legend entries."""
    out = [t.get_text() for t in fig.texts]
    if fig._suptitle is not None:
        out.append(fig._suptitle.get_text())
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        out += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
        out += [t.get_text() for t in ax.texts]
        if ax.get_legend() is not None:
            out += [t.get_text() for t in ax.get_legend().get_texts()]
    return [t for t in out if t]


def _assert_tiny_only(texts: list[str]) -> None:
    """Ours is named as the tiny demo model; a real model's name appears only on the paper's
    side ("paper: LongVU <LLM> on TVBench"), never on ours."""
    assert any(vs_paper.TINY in t for t in texts), texts
    for t in (line for text in texts for line in text.split("\n")):
        if any(name in t for name in REAL_NAMES):
            assert t.startswith("paper: LongVU ") and t.endswith(" on TVBench"), t
            assert "MiniTVBench" not in t and "ours" not in t and "tiny" not in t, t


def test_profile_of_tells_tiny_rows_from_full_ones():
    assert vs_paper.profile_of("outputs/data/models/demo/qwen_image_trained_s0",
                               "outputs/data/assets/demo/minitvbench") == "demo"
    assert vs_paper.profile_of("x", "/d/assets/smoke/minitvbench") == "smoke"
    # notebook 04's adapters: "<start>+<adapter dir>"
    assert vs_paper.profile_of("outputs/data/models/smoke/qwen_image_trained_s0+outputs/03_"
                               "qlora_finetune/r/adapter", "") == "smoke"
    assert vs_paper.profile_of("Vision-CAIR/LongVU_Qwen2_7B_img", "outputs/data/tvbench") == "full"
    assert vs_paper.profile_of("/data/checkpoints/LongVU_Llama3_2_3B", "/mnt/TVBench") == "full"
    # nothing says which benchmark: never a real name, so counted as demo
    assert vs_paper.profile_of("/d/models/tiny_llama_image_small_s0", float("nan")) == "demo"
    ev = abl.evaluations(pd.DataFrame(_table3_rows("demo") + _table3_rows("full")))
    assert ev.groupby("profile").size().to_dict() == {"demo": 5, "full": 5}


def test_recorded_profile_wins_over_the_path_guess():
    """The shipped start lives under assets/demo_start/, where no path says "demo": notebooks
    01/04 record PROFILE, and only rows without it (the eval CLI's) are guessed from paths."""
    rows = _table3_rows("full")
    for r in rows:
        r["model"], r["profile"] = "assets/demo_start/qwen", "demo"
    guessed = [dict(r, profile="") for r in _table3_rows("full")]
    ev = abl.evaluations(pd.DataFrame(rows + guessed))
    assert ev.groupby("profile").size().to_dict() == {"demo": 5, "full": 5}


def test_demo_table3_compares_directions_under_the_tiny_name(tmp_path):
    ev = _table3_ev("demo")
    t3 = abl.table3_ours(ev, None, "demo")
    assert abl.table3_ours(ev, None, "full").empty  # profiles are never mixed
    cmp = vs_paper.compare(t3, "3", "demo")
    ref = tables.paper_frame("3")["Avg"]
    q = ("paper: LongVU Qwen2-7B on TVBench", "video-trained - image-trained, normal order")
    assert cmp.loc[q, "ours diff"] == 10.0
    assert cmp.loc[q, "paper diff"] == round(ref[("video-trained", "Qwen2-7B", "normal")]
                                             - ref[("image-trained", "Qwen2-7B", "normal")], 1)
    assert cmp.loc[q, "same direction"] and cmp.loc[q, "ours direction"] == "up"
    s = ("paper: LongVU Qwen2-7B on TVBench", "image-trained: normal - shuffled frames")
    assert (cmp.loc[s, "ours diff"], cmp.loc[s, "ours direction"]) == (-1.0, "down")
    assert not cmp.loc[s, "same direction"]  # the paper's image-trained model loses 10.5
    assert cmp.loc[("paper: LongVU Qwen2-7B on TVBench", "video-trained: normal - shuffled "
                    "frames"), "ours diff"] == 6.0  # 40 - mean(35, 33)
    assert set(cmp["ours model"]) == {"ours: tiny demo model on MiniTVBench (qwen-shaped)"}
    # no per-task numbers: only the averages' signed differences
    assert not set(cmp.columns) & set(paper.TASKS)
    (md,) = [p for p in tables.write_table(cmp, tmp_path, "t3", vs_paper.caption("3", "demo"))
             if p.suffix == ".md"]
    _assert_tiny_only([c.strip() for c in md.read_text().replace("\n", "|").split("|")])
    fig = plots.plot_comparison(cmp, "demo", "Table 3 (demo): directions of effects")
    texts = _texts(fig)
    plt.close(fig)
    _assert_tiny_only(texts)
    assert not any(t.startswith("image-trained | ") for t in texts)  # no per-row scatter


def test_full_table3_keeps_the_per_task_numbers_and_real_names():
    t3 = abl.table3_ours(_table3_ev("full"), None, "full")
    cmp = vs_paper.compare(t3, "3", "full")
    assert cmp.loc[("image-trained | Qwen2-7B | normal", "ours"), "ST"] == 33.0
    assert cmp.loc[("image-trained | Qwen2-7B | normal", "paper"), "Avg"] == 50.5
    fig = plots.plot_comparison(cmp, "full", "Table 3 (full): ours vs paper")
    texts = _texts(fig)
    plt.close(fig)
    assert "video-trained | Qwen2-7B | normal" in texts
    assert not any(vs_paper.TINY in t for t in texts)


def test_two_backbones_get_one_panel_each():
    cmp = vs_paper.directions(abl.table3_ours(_table3_ev("demo", ("qwen", "llama"))), "3")
    assert len(cmp) == 6
    assert set(cmp.index.get_level_values(0)) == {"paper: LongVU Qwen2-7B on TVBench",
                                                  "paper: LongVU Llama3.2-3B on TVBench"}
    assert "ours: tiny demo model on MiniTVBench (llama-shaped)" in set(cmp["ours model"])
    fig = plots.plot_directions(cmp, "t")
    assert len(fig.axes) == 2
    _assert_tiny_only(_texts(fig))
    plt.close(fig)
    with pytest.raises(KeyError, match="lack an 'Avg' column"):
        vs_paper.directions(pd.DataFrame({"AC": [1.0]}, index=["R1, F=1"]), "6")


def test_table4_directions_are_taken_against_the_videos_row():
    ours = pd.DataFrame({"Avg": [40.0, 42.0, 39.0]}, index=[
        "videos | Qwen2-7B", "pseudo-videos | Qwen2-7B", "videos + pseudo-videos | Qwen2-7B"])
    d = vs_paper.directions(ours, "4").xs("paper: LongVU Qwen2-7B on TVBench")
    assert d["ours diff"].to_dict() == {"pseudo-videos - videos": 2.0,
                                        "videos + pseudo-videos - videos": -1.0}
    assert d["paper diff"].to_dict() == {"pseudo-videos - videos": -3.9,  # 51.9 - 55.8
                                         "videos + pseudo-videos - videos": -1.4}  # 54.4 - 55.8
    assert d["same direction"].tolist() == [False, True]


def _sweep(profile: str):
    """A paper-table6 sweep (three F rows of R1) as lib.ablations.sweep_results rows."""
    ev, sw = [], []
    for f, acc, paper_f in ((1, 40.0, 1), (2, 45.0, 5), (4, 38.0, 20)):
        run = f"paper-table6-{profile}-R1-F{f}"
        sw.append({"sweep": "paper-table6", "profile": profile, "row": f"R1-F{f}",
                   "run_name": run, "params": json.dumps({"QUESTIONS": "R1", "F": f,
                                                          "paper_row": f"R1, F={paper_f}"})})
        r = _row(profile, "llama", "image", "normal/paper", acc)
        ev.append({**r, "label": f"04/{run}/03:{run}", "run_dir": f"outputs/04_tvbench_eval/"
                   f"{run}/eval/m1"})
    return abl.sweep_results(pd.DataFrame(sw), abl.evaluations(pd.DataFrame(ev)))


def test_demo_sweep_tables_and_figures_compare_directions(tmp_path, monkeypatch):
    figs = {}
    monkeypatch.setattr(plots, "save_figure", lambda fig, name, *a: figs.update({name: fig})
                        or [])
    (rep,) = abl.sweep_reports(_sweep("demo"), ["AC", "ST"])
    d = rep.vs_paper
    base = "paper: LongVU Llama3.2-3B on TVBench"
    assert d.loc[(base, "R1, F=5 - R1, F=1"), "ours diff"] == 5.0
    assert d.loc[(base, "R1, F=5 - R1, F=1"), "paper diff"] == 2.9  # 50.3 - 47.4
    assert d.loc[(base, "R1, F=20 - R1, F=1"), "ours direction"] == "down"
    assert not d.loc[(base, "R1, F=20 - R1, F=1"), "same direction"]
    md = [p for p in abl.write_sweep_tables(rep, tmp_path) if p.name.endswith("vs_paper.md")]
    _assert_tiny_only([c.strip() for c in md[0].read_text().replace("\n", "|").split("|")])
    plots.save_sweep_figures(rep, ["AC", "ST"])
    assert sorted(figs) == ["05_ablation_paper_table6_demo", "05_vs_paper_paper_table6_demo"]
    for name, fig in figs.items():
        _assert_tiny_only(_texts(fig))
        plt.close(fig)
    paper_panel = figs["05_ablation_paper_table6_demo"].axes[3].get_title()
    assert paper_panel.startswith(base) and "directions only" in paper_panel


def test_full_sweep_keeps_numbers(tmp_path, monkeypatch):
    figs = {}
    monkeypatch.setattr(plots, "save_figure", lambda fig, name, *a: figs.update({name: fig})
                        or [])
    (rep,) = abl.sweep_reports(_sweep("full"), ["AC", "ST"])
    assert rep.vs_paper.loc[("R1, F=5", "ours"), "Avg"] == 45.0
    md = [p for p in abl.write_sweep_tables(rep, tmp_path) if p.name.endswith("vs_paper.md")]
    assert "beside the paper's" in md[0].read_text() and vs_paper.TINY not in md[0].read_text()
    plots.save_sweep_figures(rep, ["AC", "ST"])
    texts = [t for fig in figs.values() for t in _texts(fig)]
    plt.close("all")
    assert "R1, F=5" in texts and not any(vs_paper.TINY in t for t in texts)
