"""One plotting style and ``save_figure`` (PNG + PDF with deterministic metadata).

Used by notebooks 01-05 for every report figure; figures land in ``figures/`` (tests redirect
them with ``WORKBOOK_FIGURES_DIR``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from lib import paths, tables, vs_paper

if TYPE_CHECKING:  # type hints only
    from lib.ablations import SweepReport

DPI = 150
PALETTE = "colorblind"


def set_style() -> None:
    """The workbook's one seaborn theme; notebooks never call ``sns.set`` themselves."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)
    matplotlib.rcParams.update({"figure.dpi": 100, "savefig.dpi": DPI, "svg.hashsalt": "workbook",
                                "figure.autolayout": False})


def save_figure(fig, name: str, out_dir: Path | str | None = None) -> list[Path]:
    """Write ``<figures>/<name>.png`` and ``.pdf``; the same figure gives the same bytes."""
    out = Path(out_dir) if out_dir is not None else paths.figures_dir()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for ext, meta in (("png", {"Software": None}), ("pdf", {"CreationDate": None,
                                                            "Producer": None})):
        p = out / f"{name}.{ext}"
        fig.savefig(p, format=ext, bbox_inches="tight", metadata=meta)
        written.append(p)
    return written


# ---------------------------------------------------------------------------------------------
# Evaluation figures (notebooks 01, 04, 05): accuracy per task, paired differences, conditions,
# normal vs shuffled, ablation curves, ours vs the paper, the ordering-task effects


def plot_per_task(rows: pd.DataFrame, tasks: Sequence[str] | None = None,
                  names: Sequence[str] | None = None, title: str = "") -> Figure:
    """Grouped bars: per-task and micro accuracy with 95% CIs, one bar per row, chance as black
    ticks. ``rows`` has tvbench.csv's columns (notebook 05's rows, or ``lib.tables.metrics_frame``
    of scored groups in notebooks 01 and 04); ``tasks`` default to the task columns present,
    ``names`` to the index."""
    tasks = list(tasks) if tasks is not None else tables.task_columns(rows)
    names = list(names) if names is not None else [str(i) for i in rows.index]
    cols = list(tasks) + ["micro"]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 * len(cols) + 0.3 * len(rows)), 3.6))
    width = 0.8 / max(1, len(rows))
    x = np.arange(len(cols))
    for i, ((_, r), name) in enumerate(zip(rows.iterrows(), names)):
        acc = np.array([r.get(c, np.nan) for c in cols], dtype=float)
        lo = np.array([r.get(f"{c}_lo", np.nan) for c in cols], dtype=float)
        hi = np.array([r.get(f"{c}_hi", np.nan) for c in cols], dtype=float)
        err = np.vstack([np.clip(acc - lo, 0, None), np.clip(hi - acc, 0, None)])
        err = np.nan_to_num(err)
        ax.bar(x + (i - (len(rows) - 1) / 2) * width, acc, width, yerr=err, capsize=2,
               label=name)
    ch = tables.chance_row(rows, tasks)
    chance = [ch[t] for t in tasks] + [ch["Avg"]]
    ax.scatter(x, chance, marker="_", s=600, color="black", zorder=5, label="chance")
    ax.set_xticks(x, list(tasks) + ["Avg"])
    ax.set(ylabel="accuracy (%)", ylim=(0, 100), title=title)
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    fig.tight_layout()
    return fig


def plot_paired(diffs: dict[str, dict], title: str = "") -> Figure:
    """Horizontal bars: paired micro-accuracy differences (B - A) with bootstrap 95% CIs."""
    labels = list(diffs)
    d = np.array([diffs[k]["micro_diff"] for k in labels])
    lo = np.array([diffs[k]["micro_ci"][0] for k in labels])
    hi = np.array([diffs[k]["micro_ci"][1] for k in labels])
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(labels) + 1.2))
    y = np.arange(len(labels))
    ax.barh(y, d, xerr=np.maximum(0, [d - lo, hi - d]), capsize=3,
            color=["C3" if v < 0 else "C0" for v in d])
    ax.axvline(0, color="black", lw=0.8)
    ax.set(yticks=y, yticklabels=labels, xlabel="paired difference in micro accuracy (points)",
           title=title)
    ax.invert_yaxis()
    fig.tight_layout()
    return fig


def plot_conditions(summary: pd.DataFrame, title: str = "") -> Figure:
    """One panel per model: micro accuracy per condition, one bar per scorer, 95% CIs, and the
    data's micro chance as a dashed line (``summary``: ``lib.tables.summary_frame``)."""
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


def plot_normal_vs_shuffled(rows: pd.DataFrame, names: Sequence[str], title: str = "") -> Figure:
    """Micro accuracy under normal order (with CI) and shuffled frames (mean over seeds)."""
    height = 0.45 * len(rows) + 1.6
    fig, ax = plt.subplots(figsize=(6.5, height))
    y = np.arange(len(rows))
    normal = rows["micro"].to_numpy(dtype=float)
    err = np.nan_to_num(np.vstack([normal - rows["micro_lo"].astype(float),
                                   rows["micro_hi"].astype(float) - normal]))
    shuf = rows["shuffled_micro"].to_numpy(dtype=float)
    ax.hlines(y, np.fmin(normal, shuf), np.fmax(normal, shuf), color="0.7", zorder=1)
    ax.errorbar(normal, y, xerr=np.clip(err, 0, None), fmt="o", capsize=3, color="C0",
                label="normal order")
    ax.scatter(shuf, y, marker="s", color="C3", label="shuffled frames (mean over seeds)",
               zorder=3)
    ax.axvline(float(rows["chance_micro"].iloc[0]), color="black", ls=":", label="chance")
    ax.set_yticks(y, list(names))
    ax.invert_yaxis()
    ax.set(xlabel="micro accuracy (%)", title=title, xlim=(0, 100))
    # below the axes in figure inches, so it clears the x label whatever the row count
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="lower center", ncol=3)
    fig.tight_layout(rect=(0, 0.3 / height, 1, 1))
    return fig


def plot_ablation(abl: pd.DataFrame, axis: str, tasks: Sequence[str], title: str = "",
                  paper_curve: pd.DataFrame | None = None,
                  paper_title: str = "paper (Llama3.2-3B, TVBench)") -> Figure:
    """Accuracy against the swept parameter: one panel per task plus the average (with CI
    band), one line per series; the paper's average beside it when given (x, series, Avg),
    titled ``paper_title``."""
    panels = ["Avg"] + list(tasks) + (["paper Avg"] if paper_curve is not None else [])
    ncol = min(4, len(panels))
    nrow = int(np.ceil(len(panels) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.0 * ncol, 2.5 * nrow), squeeze=False)
    log = axis == "N" and abl["x"].max() / max(abl["x"].min(), 1) >= 20
    for ax, panel in zip(axes.flat, panels):
        if panel == "paper Avg":
            for s, g in paper_curve.groupby("series", sort=False):
                ax.plot(g["x"], g["Avg"], marker="o", label=s)
            ax.set(title=paper_title, xlabel=axis, ylabel="Avg (%)")
            ax.set_xscale("log" if axis == "N" else "linear")
            ax.legend(fontsize=6)
            continue
        col = "micro" if panel == "Avg" else panel
        for s, g in abl.groupby("series", sort=False):
            ax.plot(g["x"], g[col], marker="o", label=s)
            if panel == "Avg" and g["micro_lo"].notna().any():
                ax.fill_between(g["x"], g["micro_lo"].astype(float), g["micro_hi"].astype(float),
                                alpha=0.15)
        ch = abl["chance_micro" if panel == "Avg" else f"{panel}_chance"].iloc[0]
        ax.axhline(float(ch), color="black", ls=":", lw=1)
        ax.set(title=panel, xlabel=axis, ylabel="accuracy (%)")
        if log:
            ax.set_xscale("log")
        if "x_label" in abl.columns:  # a categorical axis (SOURCE)
            ticks = abl.drop_duplicates("x").sort_values("x")
            ax.set_xticks(ticks["x"].tolist(), ticks["x_label"].tolist())
        if panel == "Avg":
            ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_vs_paper(beside: pd.DataFrame, title: str = "") -> Figure:
    """Ours against the paper, one point per (row, task) that both have; y = x dashed."""
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    rows = beside.index.get_level_values(0).unique()
    for name in rows:
        p, o = beside.loc[(name, "paper")], beside.loc[(name, "ours")]
        both = p.notna() & o.notna()
        ax.scatter(p[both].astype(float), o[both].astype(float), label=name, s=18)
    ax.plot([0, 100], [0, 100], ls="--", color="0.5", lw=1)
    ax.set(xlim=(0, 100), ylim=(0, 100), xlabel="paper (%)", ylabel="ours (%)", title=title)
    ax.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    return fig


def plot_directions(dirs: pd.DataFrame, title: str = "") -> Figure:
    """Directions of effects (``lib.vs_paper.directions``): one panel per paper model, per
    comparison the paper's signed change in the average beside ours. Only the signs compare:
    ours are a tiny demo model's on MiniTVBench, so each tick names both directions."""
    models = list(dict.fromkeys(dirs.index.get_level_values(0)))
    heights = [dirs.xs(m, level=0).shape[0] for m in models]
    fig, axes = plt.subplots(len(models), 1, squeeze=False, gridspec_kw={"height_ratios": heights},
                             figsize=(7.5, 0.75 * sum(heights) + 1.5 * len(models)))
    for ax, model in zip(axes[:, 0], models):
        d = dirs.xs(model, level=0)
        y = np.arange(len(d))
        ax.barh(y - 0.2, d["paper diff"], 0.4, color="C0", label=model)
        ax.barh(y + 0.2, d["ours diff"], 0.4, color="C3", label=d["ours model"].iloc[0])
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(y, [f"{c}\n(paper {p}, ours {o})" for c, p, o in
                          zip(d.index, d["paper direction"], d["ours direction"])], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("change in the average (points); compare signs, not sizes", fontsize=8)
        ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_comparison(frame: pd.DataFrame, profile: str, title: str = "") -> Figure:
    """A ``lib.vs_paper.compare`` frame: per-task points (full), directions (demo, smoke)."""
    return (plot_directions(frame, title) if vs_paper.is_tiny(profile)
            else plot_vs_paper(frame, title))


def plot_effects(table: pd.DataFrame, title: str) -> Figure:
    """Differences with 95% CIs, one panel row per run; zero marked."""
    labels = [f"{r} | {c}" for r, c in zip(table["run"], table["comparison"])]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(table) + 1.2))
    y = range(len(table))
    ax.errorbar(table["diff"], y, xerr=[table["diff"] - table["ci_lo"],
                                        table["ci_hi"] - table["diff"]], fmt="o", capsize=3)
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(list(y), labels)
    ax.invert_yaxis()
    ax.set_xlabel("difference in accuracy (points), 95% CI clustered by video")
    ax.set_title(title)
    return fig


def save_sweep_figures(rep: SweepReport, tasks: Sequence[str]) -> list[Path]:
    """Notebook 05's figures of one ``lib.ablations.SweepReport``: accuracy against the swept
    parameter (when it takes two values or more) and ours against the paper's rows."""
    written = []
    tiny = vs_paper.is_tiny(rep.profile)  # a tiny model on MiniTVBench: no real model's name
    if rep.axis is not None and rep.curve["x"].nunique() > 1:
        fig = plot_ablation(rep.curve, rep.axis, tasks, f"{rep.title}: "
                            f"{vs_paper.TINY + ', ' if tiny else ''}accuracy vs {rep.axis}",
                            rep.paper_curve, vs_paper.paper_label(vs_paper.ABLATION_LLM)
                            + ("\n(compare directions only)" if tiny else ""))
        written += save_figure(fig, f"05_ablation_{rep.name}")
    if not rep.beside.empty:
        fig = plot_comparison(rep.vs_paper, rep.profile, f"Table {rep.number} ({rep.profile}): "
                              + ("directions of effects" if tiny else "ours vs paper"))
        written += save_figure(fig, f"05_vs_paper_{rep.name}")
    return written


# ---------------------------------------------------------------------------------------------
# Training-side figures (notebooks 02, 03): pseudo-video statistics (``lib.preview.sample_table``
# rows, fixed vs compat) and the fine-tuning curves


def plot_letters(df: pd.DataFrame) -> Figure:
    """Answer-letter shares per question type, fixed vs compat."""
    share = (df.groupby(["question_type", "mode"])["letter"].value_counts(normalize=True)
             .rename("share").reset_index())
    g = sns.catplot(share, x="letter", y="share", hue="mode", col="question_type", kind="bar",
                    col_wrap=4, height=2.4, order=sorted(df["letter"].unique()))
    for ax in g.axes.flat:
        ax.axhline(0.25, color="grey", ls=":", lw=1)
    g.figure.suptitle("Answer letter per question type (dotted: uniform over 4)", y=1.03)
    plt.close(g.figure)
    return g.figure


def plot_option_counts(df: pd.DataFrame) -> Figure:
    """Shares of the number of options per question type, fixed vs compat."""
    share = (df.groupby(["question_type", "mode"])["options"].value_counts(normalize=True)
             .rename("share").reset_index())
    g = sns.catplot(share, x="options", y="share", hue="mode", col="question_type", kind="bar",
                    col_wrap=4, height=2.4)
    g.figure.suptitle("Number of options per question type", y=1.03)
    plt.close(g.figure)
    return g.figure


def plot_scenes_frames(df: pd.DataFrame) -> Figure:
    """Scenes per video and frames per video, per question type (one mode: the formation table
    is shared by both)."""
    d = df[df["mode"] == df["mode"].iloc[0]]  # the formation table is shared by both modes
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    sns.histplot(d, x="scenes", hue="question_type", multiple="dodge", discrete=True, ax=axes[0],
                 shrink=0.8)
    sns.histplot(d, x="frames", hue="question_type", multiple="stack", discrete=True, ax=axes[1])
    axes[0].get_legend().remove()
    sns.move_legend(axes[1], "upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    axes[0].set_title("Scenes per video")
    axes[1].set_title("Frames per video (T = sum of F_j)")
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_loss_lr(steps: pd.DataFrame, title: str = "") -> Figure:
    """Answer-token loss and learning rate per optimizer step (``lib.train_runs.read_log`` rows)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax1.plot(steps["step"], steps["loss"], marker=".")
    ax1.set(xlabel="optimizer step", ylabel="answer-token loss", title=title)
    ax2.plot(steps["step"], steps["lr"], marker=".")
    ax2.set(xlabel="optimizer step", ylabel="learning rate", title="3 % warm-up, cosine")
    fig.tight_layout()
    return fig
