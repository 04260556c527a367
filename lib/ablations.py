"""Notebook 05's logic: join the result tables and pivot them into paper-style tables.

Inputs are only the CSVs under ``outputs/results/``: ``tvbench.csv`` (one row per evaluated
model x condition x scorer, written by lib.results.record from notebooks 01 and 04),
``finetune.csv`` (notebook 03), ``sweeps.csv`` (lib.pipeline.run_sweep: sweep, profile, row,
run_name, params JSON) and ``tvbench_effects.csv`` (notebook 04's ordering-task comparisons).
Evaluation rows are tied to sweep rows by the run name inside their ``run_dir``
(``outputs/<notebook>/<RUN_NAME>/eval/...``). Figures of these tables are ``lib.plots``'s, the
Markdown/LaTeX writers ``lib.tables``'s, the comparisons with the paper ``lib.vs_paper``'s.

Sweep rows may carry two metadata keys that no notebook declares: ``paper_row`` (the paper's
row this one reproduces or scales, a key of lib.paper; Table 3/4 keys joined by " | ") and
``series`` (the curve a row belongs to in an ablation plot).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lib import paper
from lib.metrics import SCORINGS
from lib.tables import paper_frame, task_columns, write_table
from lib.vs_paper import beside_paper, caption, compare, paper_key, profile_of

TABLES = ("tvbench", "finetune", "sweeps", "tvbench_effects")
AXES = {"paper-table6": "F", "paper-table7": "S", "paper-table8": "N", "demo-seeds": "SEED",
        "source-compare": "SOURCE"}
META_KEYS = ("paper_row", "series")


# ---------------------------------------------------------------------------------------------
# Loading and joining


def load_tables(read: Callable[[str], pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Each result table (empty when missing) and a note per missing one.

    ``read`` is lib.runs.read_results (tests pass a fake)."""
    tables, notes = {}, []
    for t in TABLES:
        df = read(t)
        tables[t] = df
        if df.empty:
            notes.append(f"outputs/results/{t}.csv is missing or empty: " + {
                "tvbench": "run notebook 01 or 04 (or a sweep preset) first",
                "finetune": "run notebook 03 first",
                "sweeps": "run a sweep, e.g. python -m lib.pipeline --preset paper-table6 "
                          "--profile demo",
                "tvbench_effects": "run notebook 04 with an adapter and the shuffled "
                                   "condition"}[t])
    return tables, notes


def run_name_of(run_dir: str, label: str = "") -> str:
    """The RUN_NAME of a notebook label ``NN/<RUN>/model``, else of a run dir
    ``.../<NN_notebook>/<RUN_NAME>/eval/...``. The label wins: notebook 04 keeps the base
    model's predictions in a folder shared by several runs."""
    bits = str(label).split("/", 2)
    if len(bits) == 3 and re.fullmatch(r"\d\d", bits[0]):
        return bits[1]
    parts = Path(str(run_dir)).parts
    for i, p in enumerate(parts[:-1]):
        if re.fullmatch(r"\d\d_[A-Za-z0-9_]+", p):
            return parts[i + 1]
    # A `python -m lib.tvbench eval --out DIR` run outside the notebooks: its folder names it.
    name = Path(str(run_dir)).name or str(label)
    if not name:
        raise ValueError(f"tvbench.csv row: neither run_dir {run_dir!r} nor label {label!r} "
                         "names the run")
    return name


def evaluations(tv: pd.DataFrame) -> pd.DataFrame:
    """tvbench.csv with parsed columns: notebook, run_name, model_label, llm, cond, seed and
    profile (the recorded column; ``lib.vs_paper.profile_of`` for rows without one, e.g. the
    eval CLI's: demo/smoke rows are tiny models on MiniTVBench)."""
    if tv.empty:
        return tv
    need = {"label", "group", "run_dir", "micro"} - set(tv.columns)
    if need:
        raise KeyError(f"outputs/results/tvbench.csv lacks column(s) {sorted(need)}; rerun "
                       "notebooks 01/04 so lib.results.result_row writes them")
    df = tv.copy()
    df["run_name"] = [run_name_of(d, lab) for d, lab in zip(df["run_dir"], df["label"])]
    df["notebook"] = df["label"].astype(str).str.split("/").str[0]
    df["model_label"] = df["label"].astype(str).str.split("/", n=2).str[2].fillna(df["label"])
    cond_part, _, _ = zip(*(str(g).partition("/") for g in df["group"]))
    df["cond"] = [c.split("@")[0] for c in cond_part]
    df["seed"] = [int(c.split("@")[1]) if "@" in c else np.nan for c in cond_part]
    df["scoring"] = [str(g).partition("/")[2] for g in df["group"]]
    df["llm"] = [infer_llm(m) for m in df.get("model", df["label"]).astype(str)]
    recorded = df.get("profile", pd.Series("", df.index)).fillna("").astype(str)
    df["profile"] = [p or profile_of(m, d) for p, m, d in zip(  # inferred for CLI rows only
        recorded, df.get("model", df["label"]).astype(str),
        df.get("data", pd.Series("", df.index)))]
    for c in ["micro", "micro_lo", "micro_hi", "macro", "chance_micro"] + task_columns(df):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def infer_llm(model: str) -> str:
    m = model.lower()
    return next((name for key, name in paper.LLM_NAMES.items() if key in m), "?")


def best_scoring(ev: pd.DataFrame, preferred: str | None = None) -> pd.DataFrame:
    """Per (run, model), only the rows of its best scorer: ``preferred`` when it was run, else
    the first of paper, strict, letter, option (sweeps may run fewer scorers than notebook 04)."""
    if ev.empty:
        return ev
    order = ([preferred] if preferred else []) + [s for s in SCORINGS if s != preferred]
    rank = ev["scoring"].map({s: i for i, s in enumerate(order)}).fillna(len(order))
    best = rank.groupby([ev["run_name"], ev["model_label"]]).transform("min")
    return ev[rank == best]


def normal_rows(ev: pd.DataFrame, preferred: str | None = None) -> pd.DataFrame:
    """The latest normal-order row per (run, model) under its best scorer (``best_scoring``),
    plus the mean micro accuracy over its shuffled-frame seeds."""
    if ev.empty:
        return pd.DataFrame()
    sel = best_scoring(ev, preferred)
    normal = sel[sel["cond"] == "normal"].drop_duplicates(["run_name", "model_label"], keep="last")
    shuf = (sel[sel["cond"] == "shuffled"].groupby(["run_name", "model_label"])["micro"]
            .agg(shuffled_micro="mean", shuffled_seeds="count").reset_index())
    return normal.merge(shuf, on=["run_name", "model_label"], how="left").reset_index(drop=True)


def sweep_results(sweeps: pd.DataFrame, ev: pd.DataFrame, preferred: str | None = None,
                  finetune: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (sweep row, evaluated model): the row's params as columns, accuracies, CIs,
    the shuffled mean and, for trained rows, notebook 03's losses. ``is_base`` marks notebook
    04's base-model rows (the start checkpoint, not the row's adapter)."""
    if sweeps.empty or ev.empty:
        return pd.DataFrame()
    need = {"sweep", "profile", "row", "run_name", "params"} - set(sweeps.columns)
    if need:
        raise KeyError(f"outputs/results/sweeps.csv lacks column(s) {sorted(need)}; it is "
                       "written by lib.pipeline.run_sweep")
    params = pd.DataFrame([json.loads(p) if isinstance(p, str) and p else {}
                           for p in sweeps["params"]], index=sweeps.index)
    sw = pd.concat([sweeps[["sweep", "profile", "row", "run_name"]], params], axis=1)
    evals = normal_rows(ev, preferred).drop(columns="profile", errors="ignore")  # sweeps.csv's
    out = sw.merge(evals, on="run_name", how="inner")
    out["is_base"] = out["model_label"].astype(str).str.startswith("base")
    if finetune is not None and not finetune.empty and "run" in finetune.columns:
        keep = [c for c in ("run", "last_loss", "heldout_base", "heldout_tuned", "steps")
                if c in finetune.columns]
        ft = finetune[keep].drop_duplicates("run", keep="last").rename(
            columns={"run": "run_name", "steps": "trained_steps"})
        out = out.merge(ft, on="run_name", how="left")
    return out


# ---------------------------------------------------------------------------------------------
# Tables


def accuracy_table(rows: pd.DataFrame, tasks: Sequence[str], index: str | list[str],
                   ci: bool = False) -> pd.DataFrame:
    """Paper layout: the tasks then Avg (micro), one line per row; ``ci`` adds '[lo, hi]'."""
    out = {}
    for _, r in rows.iterrows():
        key = tuple(r[i] for i in index) if isinstance(index, list) else r[index]
        line = {}
        for t in list(tasks) + ["Avg"]:
            c = "micro" if t == "Avg" else t
            v = r.get(c)
            if ci and pd.notna(r.get(f"{c}_lo")) and pd.notna(v):
                line[t] = f"{v:.1f} [{r[f'{c}_lo']:.0f}, {r[f'{c}_hi']:.0f}]"
            else:
                line[t] = v
        out[key] = line
    df = pd.DataFrame.from_dict(out, orient="index")
    if isinstance(index, list) and len(df):
        df.index = pd.MultiIndex.from_tuples(df.index, names=index)
    else:
        df.index.name = index if isinstance(index, str) else None
    return df


def table_number(sweep: str) -> str | None:
    m = re.fullmatch(r"paper-table(\d)", str(sweep))
    return m.group(1) if m else None


def ours_for_paper(res: pd.DataFrame, table: str) -> pd.DataFrame:
    """Sweep results (tuned models) of one of Tables 4-8, indexed by their ``paper_row``; for
    Table 4 the base of a "videos + pseudo-videos" row also fills the "videos" row; for Table
    3 (the paper-table3 sweep) the 1-step run gives the image-trained lines and its base the
    video-trained ones, normal and shuffled (notebook 01's rows: ``table3_ours``)."""
    if res.empty or "paper_row" not in res.columns:
        return pd.DataFrame()
    out = {}
    for _, r in res[res["paper_row"].notna()].iterrows():
        pr = str(r["paper_row"])
        if table == "3":  # paper-table3: the 1-step run and its video-trained base (BASE_STAGE)
            out.update(_table3_lines(r, pr))
            continue
        if r["is_base"]:
            if table == "4" and pr.startswith("videos + pseudo-videos"):
                pr = pr.replace("videos + pseudo-videos", "videos", 1)
            else:
                continue
        out[pr] = {**{c: r.get(c) for c in paper.TASKS}, "Avg": r["micro"]}
    valid = {k: v for k, v in out.items() if _is_key(table, k)}
    return pd.DataFrame.from_dict(valid, orient="index")


def _table3_lines(r: pd.Series, paper_row: str) -> dict[str, dict]:
    """A paper-table3 sweep row as Table 3 lines: normal (per task) and shuffled (Avg)."""
    llm = paper_row.split(" | ")[1]
    name = "video-trained" if r["is_base"] else "image-trained"
    lines = {f"{name} | {llm} | normal": {**{c: r.get(c) for c in paper.TASKS},
                                          "Avg": r["micro"]}}
    if pd.notna(r.get("shuffled_micro")):
        lines[f"{name} | {llm} | shuffled"] = {"Avg": r["shuffled_micro"]}
    return lines


def _is_key(table: str, pr: str) -> bool:
    try:
        paper_key(table, pr)
        return True
    except KeyError:
        return False


def table3_ours(ev: pd.DataFrame, preferred: str | None = None,
                profile: str | None = None) -> pd.DataFrame:
    """Notebook 01's rows (image-/video-trained) shaped like the paper's Table 3 rows, indexed
    by the paper's key "training | LLM | condition" (the latest run per key); ``profile``
    keeps that profile's rows only (``lib.vs_paper.compare`` then labels them)."""
    if not ev.empty and profile is not None:
        ev = ev[ev["profile"] == profile]
    rows = normal_rows(ev[ev["notebook"] == "01"], preferred) if not ev.empty else ev
    out = {}
    for _, r in rows.iterrows():
        if r["model_label"] not in ("image-trained", "video-trained") or r["llm"] == "?":
            continue
        out[f"{r['model_label']} | {r['llm']} | normal"] = {
            **{c: r.get(c) for c in paper.TASKS}, "Avg": r["micro"]}
        if pd.notna(r.get("shuffled_micro")):
            out[f"{r['model_label']} | {r['llm']} | shuffled"] = {"Avg": r["shuffled_micro"]}
    return pd.DataFrame.from_dict(out, orient="index")


# ---------------------------------------------------------------------------------------------
# Ablation axes


def param_columns(res: pd.DataFrame) -> list[str]:
    """The notebook parameters among ``sweep_results`` columns (UPPER_CASE, not a task
    accuracy or its _lo/_hi/_chance/_n)."""
    tasks = set(task_columns(res))
    return [c for c in res.columns if c.isupper() and c not in tasks
            and not re.search(r"_(lo|hi|chance|n)$", c)]


def ablation_axis(sweep: str, rows: pd.DataFrame) -> str | None:
    """The swept parameter: AXES for the paper's tables, else the first of F, S, N, SEED that
    takes more than one value."""
    if sweep in AXES and AXES[sweep] in rows.columns:
        return AXES[sweep]
    for p in ("F", "S", "N", "SEED"):
        if p in rows.columns and rows[p].nunique(dropna=True) > 1:
            return p
    return None


def series_label(r: pd.Series, axis: str, columns: Sequence[str]) -> str:
    """A row's curve: its ``series`` key, else its other parameters (not the axis or STEPS)."""
    if "series" in r and pd.notna(r["series"]):
        return str(r["series"])
    parts = [f"{c}={r[c]}" for c in columns
             if c not in (axis, "STEPS", *META_KEYS) and pd.notna(r.get(c))]
    return ", ".join(parts) or "all"


def ablation_frame(res: pd.DataFrame, sweep: str, profile: str) -> tuple[pd.DataFrame, str | None]:
    """The tuned-model rows of one sweep/profile with ``x`` (axis value) and ``series``; a
    categorical axis (SOURCE: coco | t2vid) gets positions in sorted order as ``x`` and its
    values as ``x_label``."""
    sel = res[(res["sweep"] == sweep) & (res["profile"] == profile) & ~res["is_base"]].copy()
    param_cols = [c for c in param_columns(sel) if sel[c].notna().any()]
    axis = ablation_axis(sweep, sel[param_cols]) if len(sel) else None
    if axis is None:
        return sel.iloc[0:0], None
    sel = sel[sel[axis].notna()]
    sel["x"] = pd.to_numeric(sel[axis], errors="coerce")
    if sel["x"].isna().any():
        levels = sorted(sel[axis].astype(str).unique())
        sel["x_label"] = sel[axis].astype(str)
        sel["x"] = sel["x_label"].map({v: float(i) for i, v in enumerate(levels)})
    sel["series"] = [series_label(r, axis, param_cols) for _, r in sel.iterrows()]
    return sel.sort_values(["series", "x"]).reset_index(drop=True), axis


def seed_summary(res: pd.DataFrame, sweep: str = "demo-seeds") -> pd.DataFrame:
    """Per profile and model: the seeds' micro accuracies, their mean and sd."""
    sel = res[res["sweep"] == sweep] if not res.empty else res
    if sel.empty or "SEED" not in sel.columns:
        return pd.DataFrame()
    rows = []
    for (prof, model), g in sel.assign(model=np.where(sel["is_base"], "base", "adapter")).groupby(
            ["profile", "model"], sort=True):
        line = {"profile": prof, "model": model}
        line.update({f"seed {int(s)}": v for s, v in zip(g["SEED"], g["micro"])})
        line["mean"] = g["micro"].mean()
        line["sd"] = g["micro"].std(ddof=1) if len(g) > 1 else 0.0
        rows.append(line)
    return pd.DataFrame(rows).set_index(["profile", "model"])


def paper_curve(table: str, axis: str) -> pd.DataFrame:
    """The paper's rows of an ablation table as (x, series, Avg), parsed from row names such as
    "R1, F=10", "S=2, F=5" or "N=10,000; 312 steps"; mixes ("... + ...") are left out."""
    ref = paper_frame(table)
    rows = []
    for name, r in ref.iterrows():
        parts = re.split(r",\s+|;\s*", str(name))
        hit = [p for p in parts if p.startswith(f"{axis}=")]
        if "+" in str(name) or not hit or np.isnan(r["Avg"]):
            continue
        rest = [p for p in parts if p not in hit and not p.endswith("steps")]
        rows.append({"x": float(hit[0].split("=")[1].replace(",", "")),
                     "series": ", ".join(rest) or "R1", "Avg": r["Avg"]})
    return pd.DataFrame(rows).sort_values(["series", "x"]) if rows else pd.DataFrame()


# ---------------------------------------------------------------------------------------------
# Sweeps: one report per sweep and profile


@dataclass
class SweepReport:
    """One sweep and profile: its accuracy table, its ablation curve and, for the paper's
    tables, its rows beside the paper's (``lib.plots.save_sweep_figures`` draws it)."""

    sweep: str
    profile: str
    table: pd.DataFrame  # accuracy per row, model and scorer, 95% CIs
    curve: pd.DataFrame  # tuned rows along the swept parameter (``ablation_frame``)
    axis: str | None  # the swept parameter, None when there is none
    paper_curve: pd.DataFrame | None  # the paper's curve along the same axis (Tables 6-8)
    beside: pd.DataFrame  # ours beside the paper's rows (empty when none map to the paper)
    number: str | None  # the paper's table number, None for other sweeps

    @property
    def name(self) -> str:
        return slug(self.sweep, self.profile)

    @property
    def title(self) -> str:
        return f"{self.sweep} ({self.profile})"

    @property
    def vs_paper(self) -> pd.DataFrame:
        """``beside`` for full; for demo/smoke its directions of effects (``lib.vs_paper``)."""
        if self.beside.empty:
            return self.beside
        return compare(self.beside.xs("ours", level="source"), str(self.number), self.profile)


def sweep_reports(res: pd.DataFrame, tasks: Sequence[str]) -> list[SweepReport]:
    """A ``SweepReport`` per (sweep, profile) of ``sweep_results``, in sorted order."""
    if res.empty:
        return []
    out = []
    for sweep, profile in res.groupby(["sweep", "profile"], sort=True).groups:
        sel = res[(res["sweep"] == sweep) & (res["profile"] == profile)]
        curve, axis = ablation_frame(res, sweep, profile)
        number = table_number(sweep)
        ref = paper_curve(number, axis) if number in ("6", "7", "8") and axis else None
        ours = ours_for_paper(sel, number) if number else pd.DataFrame()
        out.append(SweepReport(
            sweep, profile, accuracy_table(sel, tasks, ["row", "model_label", "scoring"], ci=True),
            curve, axis, ref if ref is not None and len(ref) else None,
            beside_paper(ours, number) if not ours.empty else pd.DataFrame(), number))
    return out


def write_sweep_tables(rep: SweepReport, out_dir: Path | str) -> list[Path]:
    """The sweep's table and, when it has one, its beside-the-paper table (.md and .tex)."""
    written = write_table(rep.table, out_dir, rep.name, rep.title)
    if not rep.beside.empty:
        written += write_table(rep.vs_paper, out_dir, f"{rep.name}_vs_paper",
                               caption(str(rep.number), rep.profile, rep.title))
    return written


def shuffle_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Normal-order micro accuracy with its CI beside the shuffled-frames mean, and the drop."""
    return rows.set_index(["run_name", "model_label", "scoring"])[
        ["micro", "micro_lo", "micro_hi", "shuffled_micro", "shuffled_seeds"]].assign(
        drop=lambda d: d["micro"] - d["shuffled_micro"])


def slug(*parts: str) -> str:
    """A file-name-safe slug of the parts, e.g. ('paper-table6', 'demo') -> paper_table6_demo."""
    return re.sub(r"[^A-Za-z0-9]+", "_", "_".join(map(str, parts))).strip("_")


def display_names(rows: pd.DataFrame) -> list[str]:
    """'<run> / <model>' labels for figure legends; a run's own adapter is 'adapter'."""
    return [f"{r['run_name']} / "
            f"{'adapter' if r['model_label'] == '03:' + r['run_name'] else r['model_label']}"
            for _, r in rows.iterrows()]


# ---------------------------------------------------------------------------------------------
# The headline: pseudo-video gain on the ordering tasks and what shuffling leaves of it

EFFECT_NAMES = {
    "gain_normal": "fine-tuned - start, normal order",
    "gain_shuffled": "fine-tuned - start, shuffled frames",
    "tuned_shuffled_minus_normal": "fine-tuned: shuffled - normal",
}


def effects_table(effects: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, comparison) of tvbench_effects.csv: difference in points with its
    95% CI."""
    if effects.empty:
        return pd.DataFrame()
    df = effects.copy()
    df["run"] = [run_name_of(r, lab) for r, lab in zip(df["run_dir"], df["label"])]
    df["comparison"] = df["comparison"].map(EFFECT_NAMES).fillna(df["comparison"])
    out = df[["run", "label", "comparison", "tasks", "scoring", "n", "a", "b", "diff", "ci_lo",
              "ci_hi", "mcnemar_p"]].copy()
    out["excludes_zero"] = (out["ci_lo"] > 0) | (out["ci_hi"] < 0)
    for c in ("a", "b", "diff", "ci_lo", "ci_hi"):
        out[c] = out[c].astype(float).round(1)
    out["mcnemar_p"] = out["mcnemar_p"].astype(float).round(4)
    return out.reset_index(drop=True)


def summary_markdown(table: pd.DataFrame) -> str:
    """A plain-language summary of the headline table, one paragraph per run."""
    if table.empty:
        return ("No ordering-task effect was recorded yet (notebook 04 with an adapter and the "
                "shuffled condition writes it).\n")
    lines = ["# Summary: pseudo-video training on the ordering tasks", ""]
    for run, g in table.groupby("run", sort=False):
        rows = {r.comparison: r for r in g.itertuples()}
        gain = rows.get(EFFECT_NAMES["gain_normal"])
        shuf = rows.get(EFFECT_NAMES["gain_shuffled"])
        if gain is None:
            continue
        verdict = ("a gain whose 95% CI excludes zero" if gain.ci_lo > 0 else
                   "no gain distinguishable from zero" if gain.ci_hi >= 0 else
                   "a loss whose 95% CI excludes zero")
        lines.append(f"- **{run}** ({gain.tasks}, {gain.scoring} scorer, n={gain.n}): start "
                     f"{gain.a:.1f}% -> fine-tuned {gain.b:.1f}%, {gain.diff:+.1f} points "
                     f"[{gain.ci_lo:+.1f}, {gain.ci_hi:+.1f}]: {verdict}."
                     + (f" With shuffled frames the difference is {shuf.diff:+.1f} "
                        f"[{shuf.ci_lo:+.1f}, {shuf.ci_hi:+.1f}]." if shuf is not None else ""))
    return "\n".join(lines) + "\n"
