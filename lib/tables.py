"""Tables: the paper's layout, per-group text tables, run reports, Markdown and LaTeX writers.

Paper-style tables from ``lib.metrics`` output (``table_row``, ``results_table``: our rows under
the paper's Table 3 rows, with a chance row; ``format_table``: the plain-text per-task table of
the CLI and report.md), the DataFrames notebooks 01 and 04 display (``summary_frame``,
``paired_table``, ...), the result-row shape the per-task figure reads (``metrics_frame``,
``task_columns``, ``chance_row``), the paper's tables as DataFrames (``paper_frame``) and the
Markdown/LaTeX writers of notebook 05 (``write_table``). Used by ``lib.evaluate`` (report.md,
CLI), ``lib.ablations``, ``lib.plots`` and notebooks 01, 04, 05.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lib.paper import COLUMNS, INDEX_NAMES, TABLES, TASKS
from lib.tvbench import Benchmark


# ---------------------------------------------------------------------------------------------
# The paper's numbers and a Table 3 layout


def paper_frame(table: str) -> pd.DataFrame:
    """A lib.paper table as a DataFrame (columns: tasks + Avg; None -> NaN)."""
    data = TABLES[str(table)]
    names = INDEX_NAMES[str(table)]
    idx = (pd.MultiIndex.from_tuples(list(data), names=names) if len(names) > 1
           else pd.Index(list(data), name=names[0]))
    return pd.DataFrame([[np.nan if v is None else v for v in vals] for vals in data.values()],
                        index=idx, columns=COLUMNS, dtype=float)


def table_row(metrics: dict, ci: bool = False) -> dict[str, Any]:
    """One Table-3-style row (task abbreviations + Avg = micro) from ``score_frame`` output;
    with ``ci`` each cell is 'acc [lo, hi]'."""
    row: dict[str, Any] = {}
    for t in metrics["tasks"].values():
        row[t["abbr"]] = (f"{t['acc']:.1f} [{t['ci'][0]:.0f}, {t['ci'][1]:.0f}]"
                          if ci and t["ci"] else round(t["acc"], 1))
    lo_hi = metrics.get("micro_ci")
    row["Avg"] = (f"{metrics['micro']:.1f} [{lo_hi[0]:.1f}, {lo_hi[1]:.1f}]" if ci and lo_hi
                  else round(metrics["micro"], 1))
    row["macro"] = round(metrics["macro"], 1)
    row["n"] = metrics["n"]
    return row


def results_table(rows: dict[str, dict], paper: Sequence[tuple[str, str, str]] = (),
                  ci: bool = False):
    """Our rows (label -> ``score_frame`` metrics) under the paper's chosen Table 3 rows, plus a
    chance row computed from the data of the first of ours."""
    out = []
    t3 = paper_frame("3")
    for key in paper:
        r = t3.loc[key].to_dict()
        r["macro"] = round(float(np.mean([r[c] for c in TASKS])), 1)
        out.append({"row": "paper: " + " / ".join(key), **r})
    for label, m in rows.items():
        out.append({"row": label, **table_row(m, ci)})
    if rows:
        m = next(iter(rows.values()))
        chance = {t["abbr"]: round(t["chance"], 1) for t in m["tasks"].values()}
        out.append({"row": "chance (from data)", **chance, "Avg": round(m["chance_micro"], 1),
                    "macro": round(m["chance_macro"], 1)})
    df = pd.DataFrame(out).set_index("row")
    cols = [c for c in TASKS if c in df.columns]
    cols += [c for c in df.columns if c not in cols and c not in ("Avg", "macro", "n")]
    return df[cols + [c for c in ("Avg", "macro", "n") if c in df.columns]]


def format_table(metrics: dict) -> str:
    """Plain-text per-task table for one group."""
    lines = [f"{'task':<22}{'n':>6}{'acc':>8}{'95% CI':>16}{'chance':>8}"]
    for key, t in metrics["tasks"].items():
        ci = f"[{t['ci'][0]:.1f}, {t['ci'][1]:.1f}]" if t["ci"] else ""
        lines.append(f"{key:<22}{t['n']:>6}{t['acc']:>8.2f}{ci:>16}{t['chance']:>8.1f}")
    ci = metrics.get("micro_ci")
    ci_s = f"[{ci[0]:.1f}, {ci[1]:.1f}]" if ci else ""
    lines.append(f"{'micro (paper Avg.)':<22}{metrics['n']:>6}{metrics['micro']:>8.2f}{ci_s:>16}"
                 f"{metrics['chance_micro']:>8.1f}")
    ci = metrics.get("macro_ci")
    ci_s = f"[{ci[0]:.1f}, {ci[1]:.1f}]" if ci else ""
    lines.append(f"{'macro':<22}{'':>6}{metrics['macro']:>8.2f}{ci_s:>16}"
                 f"{metrics['chance_macro']:>8.1f}")
    b = metrics["baselines"]
    lines.append("baselines: " + ", ".join(f"{k} {v:.1f}" for k, v in b.items()))
    if metrics.get("parse"):
        lines.append("parse: " + ", ".join(f"{k} {v}"
                                           for k, v in sorted(metrics["parse"].items())))
    if metrics.get("skipped_missing_video") or metrics.get("missing_predictions"):
        lines.append(f"skipped (missing video): {metrics.get('skipped_missing_video', 0)}; "
                     f"questions without a prediction: {metrics.get('missing_predictions', 0)}")
    return "\n".join(lines)


def format_groups(res: Mapping[str, dict]) -> str:
    """Every group's ``format_table`` under a ``== <group>`` header, then the CLI's last line:
    ``micro M macro M n N`` of the first group."""
    lines = [f"== {label}\n{format_table(m)}" for label, m in res.items()]
    first = next(iter(res.values()))
    lines.append(f"micro {first['micro']:.2f} macro {first['macro']:.2f} n {first['n']}")
    return "\n".join(lines)


def format_paired(res: dict) -> str:
    """``lib.metrics.paired`` output as text: per task n, A, B, B - A [CI], McNemar p; then
    micro and macro B - A."""
    lines = [f"{t:<22}{v['n']:>6}{v['a']:>8.1f}{v['b']:>8.1f}{v['diff']:>+8.1f} "
             f"[{v['ci'][0]:+.1f}, {v['ci'][1]:+.1f}] p={v['mcnemar_p']:.3g}"
             for t, v in res["tasks"].items()]
    lines.append(f"micro B-A {res['micro_diff']:+.2f} [{res['micro_ci'][0]:+.2f}, "
                 f"{res['micro_ci'][1]:+.2f}] macro B-A {res['macro_diff']:+.2f} McNemar p "
                 f"{res['mcnemar_p']:.3g} n {res['n']}")
    return "\n".join(lines)


def table3_layout(results: Mapping[str, dict[str, dict]], llm: str, scoring: str,
                  shuffle_seed: int, ci: bool = True) -> pd.DataFrame:
    """Notebook 01's Table 3: per training (``results`` keyed by Table 3's own names,
    "image-trained" / "video-trained") the paper's normal and shuffled rows for ``llm``, then
    ours under normal order and one shuffle seed, then the chance row."""
    normal, shuffled = f"normal/{scoring}", f"shuffled@{shuffle_seed}/{scoring}"
    rows: dict[str, dict] = {}
    keys: list[tuple[str, str, str]] = []
    for training, res in results.items():
        rows[f"ours: {training} / {llm}"] = res[normal]
        rows[f"ours: {training} / {llm} / shuffled (seed {shuffle_seed})"] = res[shuffled]
        keys += [(training, llm, "normal"), (training, llm, "shuffled")]
    return results_table(rows, paper=keys, ci=ci)


def run_report(res: Mapping[str, dict], root: Path | str) -> str:
    """report.md of an evaluation run: every group in the Table 3 layout, then each group's
    plain-text table."""
    table = results_table(dict(res), ci=True)
    parts = ["# TVBench run", "", f"data: {root}", "",
             table.to_markdown() if _has_tabulate() else table.to_string(), ""]
    for label, m in res.items():
        parts += [f"## {label}", "", "```", format_table(m), "```", ""]
    return "\n".join(parts)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
        return True
    except ImportError:
        return False


# ---------------------------------------------------------------------------------------------
# Notebook 01/04 displays and the result-row shape the figures read


def metrics_frame(rows: Mapping[str, dict]) -> pd.DataFrame:
    """Groups' metrics (label -> ``lib.metrics.score_frame`` output) in the columns of a
    tvbench.csv row: task abbreviations with ``_lo``/``_hi``/``_chance``, micro, micro_lo,
    micro_hi, chance_micro; indexed by label (``lib.plots.plot_per_task`` reads either)."""
    out = {}
    for label, m in rows.items():
        line: dict[str, Any] = {}
        for t in m["tasks"].values():
            lo, hi = t["ci"] or (np.nan, np.nan)
            line.update({t["abbr"]: t["acc"], f"{t['abbr']}_lo": lo, f"{t['abbr']}_hi": hi,
                         f"{t['abbr']}_chance": t["chance"]})
        lo, hi = m.get("micro_ci") or (np.nan, np.nan)
        out[label] = {**line, "micro": m["micro"], "micro_lo": lo, "micro_hi": hi,
                      "chance_micro": m["chance_micro"]}
    return pd.DataFrame.from_dict(out, orient="index")


def task_columns(df: pd.DataFrame) -> list[str]:
    """Task abbreviations present (a column X with an X_chance twin), in the paper's order."""
    present = [c for c in df.columns if f"{c}_chance" in df.columns]
    order = {t: i for i, t in enumerate(TASKS)}
    return sorted(present, key=lambda t: (order.get(t, 99), t))


def chance_row(rows: pd.DataFrame, tasks: Sequence[str]) -> dict[str, float]:
    """Chance accuracy per task and micro, from the first row that has it."""
    r = rows.iloc[0]
    return {**{t: float(r[f"{t}_chance"]) for t in tasks},
            "Avg": float(r["chance_micro"]) if "chance_micro" in r else np.nan}


def summary_frame(results: Mapping[str, dict[str, dict]]) -> pd.DataFrame:
    """One row per (model, condition group, scoring): micro with CI, macro, n, parse failures."""
    rows = []
    for model, res in results.items():
        for group, m in res.items():
            cond, _, scoring = group.partition("/")
            p = m.get("parse", {})
            rows.append({"model": model, "condition": cond, "scoring": scoring,
                         "micro": m["micro"], "micro_lo": (m["micro_ci"] or [np.nan])[0],
                         "micro_hi": (m["micro_ci"] or [np.nan, np.nan])[1],
                         "macro": m["macro"], "n": m["n"], "chance_micro": m["chance_micro"],
                         "parse_fail_%": 100 * sum(v for k, v in p.items() if k != "ok")
                         / max(1, m["n"]) if scoring in ("paper", "strict") else np.nan})
    return pd.DataFrame(rows)


def paired_table(diffs: Mapping[str, dict]) -> pd.DataFrame:
    """``lib.metrics.paired`` results, one row each: n, A, B, B - A with its 95% CI, McNemar p
    and the share of questions whose correctness flipped."""
    return pd.DataFrame({k: {"n": v["n"], "A": v["micro_a"], "B": v["micro_b"],
                             "B - A": v["micro_diff"], "ci_lo": v["micro_ci"][0],
                             "ci_hi": v["micro_ci"][1], "McNemar p": v["mcnemar_p"],
                             "flip %": v["flip_rate"]} for k, v in diffs.items()}).T


def letter_bias_table(results: Mapping[str, dict[str, dict]], group: str) -> pd.DataFrame:
    """Per model, one group: the letter baselines, the model's micro accuracy, parse statuses
    and the distribution of predicted letters."""
    picked = {label: res[group] for label, res in results.items()}
    return pd.DataFrame({label: {**m["baselines"], "model micro": m["micro"],
                                 **{f"parse {k}": v for k, v in m.get("parse", {}).items()},
                                 "predicted letters": m["pred_letters"]}
                         for label, m in picked.items()}).T


def benchmark_overview(bench: Benchmark) -> pd.DataFrame:
    """Per task: abbreviation, bounded or not, questions to evaluate and questions skipped."""
    return pd.DataFrame([{"task": t.key, "abbr": t.abbr, "bounded": t.bound,
                          "questions": sum(q.task == t.key for q in bench.questions),
                          "skipped (missing video)": sum(q.task == t.key for q in bench.skipped)}
                         for t in bench.tasks]).set_index("task")


# ---------------------------------------------------------------------------------------------
# Markdown and LaTeX (notebook 05)


def _fmt(v: Any, floatfmt: str) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    return format(v, floatfmt) if isinstance(v, (float, np.floating)) else str(v)


def to_markdown(df: pd.DataFrame, floatfmt: str = ".1f") -> str:
    """A GitHub markdown table (index as the first columns); empty cells for NaN."""
    idx_names = [n or "" for n in df.index.names]
    head = idx_names + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for key, r in df.iterrows():
        keys = list(key) if isinstance(key, tuple) else [key]
        lines.append("| " + " | ".join([str(k) for k in keys] +
                                        [_fmt(v, floatfmt) for v in r]) + " |")
    return "\n".join(lines) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#",
        "$": r"\$", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}"}


def _tex(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s)


def to_latex(df: pd.DataFrame, caption: str = "", floatfmt: str = ".1f") -> str:
    """A booktabs table (no pandas/jinja styling), NaN as '--'."""
    n_idx = df.index.nlevels
    cols = "l" * n_idx + "r" * len(df.columns)
    head = [_tex(str(n or "")) for n in df.index.names] + [_tex(str(c)) for c in df.columns]
    out = [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{cols}}}",
           r"\toprule", " & ".join(head) + r" \\", r"\midrule"]
    for key, r in df.iterrows():
        keys = list(key) if isinstance(key, tuple) else [key]
        cells = [_tex(str(k)) for k in keys] + [_tex(_fmt(v, floatfmt)) or "--" for v in r]
        out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        out.append(rf"\caption{{{_tex(caption)}}}")
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def write_table(df: pd.DataFrame, out_dir: Path | str, slug: str, caption: str = "") -> list[Path]:
    """``<out_dir>/<slug>.md`` and ``.tex``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, tex = out / f"{slug}.md", out / f"{slug}.tex"
    md.write_text((f"{caption}\n\n" if caption else "") + to_markdown(df))
    tex.write_text(to_latex(df, caption))
    return [md, tex]

