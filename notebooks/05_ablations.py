# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Ablations and paper tables: every result so far, beside the paper's
#
# Reads only the cross-run result tables in `outputs/results/` (`tvbench.csv` from notebooks
# 01 and 04, `finetune.csv` from 03, `sweeps.csv` from the sweep presets
# `python -m lib.pipeline --preset paper-table6 --profile demo` and friends) and turns them into
# the paper's tables and figures: per-task accuracy against chance with 95% CIs, normal order
# against shuffled frames (the temporal-sensitivity control), ablation curves over F, S and N,
# and our numbers beside the paper's reported ones (lib/paper.py). Nothing is recomputed:
# re-run any time more rows land. Tables are written as markdown and LaTeX into this run's
# `tables/` folder.

# %%
from IPython.display import Markdown, display

import lib.ablations as abl
import lib.paths
import lib.plots
import lib.runs
import lib.tables
import lib.vs_paper

lib.plots.set_style()

# %% tags=["parameters"]
RUN_NAME = "dev"  # run dir: outputs/05_ablations/<RUN_NAME>/ (tables/ inside)
SEED = 0  # unused (nothing is sampled); kept for the workbook's standard parameters
PROFILE = "demo"  # Table 3's rows (section 3); sweeps report every profile, labelled by it
SCORING = None  # scorer to report per run if it was run; else paper > strict > letter > option
MAX_MODELS = 6  # per-task figure: the latest (run, model) pairs under normal order

# %%
run = lib.runs.start("05_ablations", RUN_NAME, lib.runs.notebook_params(globals()))
tables_dir = run.path("tables")
csvs, notes = abl.load_tables(lib.runs.read_results)
for note in notes:
    print("note:", note)
ev = abl.evaluations(csvs["tvbench"])
tasks = lib.tables.task_columns(ev)
written = []  # every table file this run writes
print(f"{len(ev)} evaluation rows, tasks {tasks}; "
      f"{len(csvs['sweeps'])} sweep rows, {len(csvs['finetune'])} fine-tuning runs")

# %% [markdown]
# ## 0. The headline: pseudo-video training on the ordering tasks
# For every fine-tuned model notebook 04 evaluated: the paired gain over its start checkpoint on
# the ordering tasks under normal order, the same under shuffled frames, and how much the
# fine-tuned model loses when its frames are shuffled. Also written to `summary.md`.

# %%
effects = abl.effects_table(csvs["tvbench_effects"])
summary_md = abl.summary_markdown(effects)
run.path("summary.md").write_text(summary_md)
display(Markdown(summary_md))
if not effects.empty:
    written += lib.tables.write_table(effects, tables_dir, "ordering_effects",
                                      "Ordering tasks: paired differences (points, 95% CI)")
    fig = lib.plots.plot_effects(effects, "Ordering tasks: pseudo-video gain and the shuffled "
                                 "control")
    lib.plots.save_figure(fig, "05_ordering_effects")

# %% [markdown]
# ## 1. Per-task accuracy against chance
# The latest `MAX_MODELS` evaluated (run, model) pairs under normal frame order, each under its
# best scorer (`SCORING` if it was run, else paper > strict > letter > option; the `scoring`
# column says which); error bars are 95% bootstrap CIs clustered by video, black ticks are
# chance (options per question).

# %%
latest = abl.normal_rows(ev, SCORING).tail(MAX_MODELS)
if latest.empty:
    print("No evaluations yet: run notebook 01 or 04 first.")
else:
    fig = lib.plots.plot_per_task(latest, tasks, abl.display_names(latest),
                                  "TVBench per task, normal order")
    lib.plots.save_figure(fig, "05_per_task")
    per_task = abl.accuracy_table(latest, tasks, ["run_name", "model_label", "scoring"], ci=True)
    written += lib.tables.write_table(per_task, tables_dir, "per_task",
                                      "Accuracy (%) per task, 95% CI, normal order")
    display(per_task)

# %% [markdown]
# ## 2. Normal order against shuffled frames
# A model that uses temporal order loses accuracy when frames are shuffled; one that does not
# stays put. Shuffled = mean over the shuffle seeds evaluated.

# %%
both = abl.normal_rows(ev, SCORING)
both = both.dropna(subset=["shuffled_micro"]) if not both.empty else both
if both.empty:
    print("No run was evaluated under both normal and shuffled frames.")
else:
    fig = lib.plots.plot_normal_vs_shuffled(both, abl.display_names(both),
                                            "Normal vs shuffled frames")
    lib.plots.save_figure(fig, "05_normal_vs_shuffled")
    shuffle_table = abl.shuffle_table(both)
    written += lib.tables.write_table(shuffle_table, tables_dir, "normal_vs_shuffled",
                                      "Micro accuracy (%), normal vs shuffled")
    display(shuffle_table)

# %% [markdown]
# ## 3. Table 3: image-trained vs video-trained, ours beside the paper's
# Notebook 01's rows of `PROFILE` (and the `paper-table3` sweep's, section 4). The full profile
# evaluates the released checkpoints on TVBench: its numbers sit beside the paper's per task.
# The demo and smoke profiles evaluate a tiny demo model on MiniTVBench (six synthetic tasks),
# whose accuracies say nothing about the paper's: only the directions of the effects compare
# (video-trained minus image-trained, normal minus shuffled frames; `lib.vs_paper`).

# %%
t3 = abl.table3_ours(ev, SCORING, PROFILE)
if t3.empty:
    print(f"No notebook-01 evaluations of profile {PROFILE} yet: run notebook 01 (or the "
          "paper-table3 preset).")
else:
    t3_vs_paper = lib.vs_paper.compare(t3, "3", PROFILE)
    written += lib.tables.write_table(t3_vs_paper, tables_dir, "table3_vs_paper",
                                      lib.vs_paper.caption("3", PROFILE))
    display(t3_vs_paper)
    fig = lib.plots.plot_comparison(t3_vs_paper, PROFILE, f"Table 3 ({PROFILE}): " + (
        "directions of effects" if lib.vs_paper.is_tiny(PROFILE) else "ours vs paper"))
    lib.plots.save_figure(fig, "05_table3_vs_paper")

# %% [markdown]
# ## 4. Sweeps: the paper's Tables 4-8, the seed study and image vs text pseudo-videos
# One table per sweep and profile (the adapters; notebook 04's base rows are the start
# checkpoint), ablation curves over the swept parameter per task and on average, and each row
# beside the paper row it reproduces or scales (`paper_row` in the preset; demo and smoke
# sweeps as directions of effects against the first row, as in section 3). The
# `source-compare` sweep lays R1 training on image pseudo-videos (coco) and on T2Vid-style text
# pseudo-videos (t2vid) side by side along `SOURCE`.

# %%
res = abl.sweep_results(csvs["sweeps"], ev, SCORING, csvs["finetune"])
reports = abl.sweep_reports(res, tasks)
if not reports:
    print("No sweep rows with evaluations yet: run e.g. "
          "`python -m lib.pipeline --preset paper-table6 --profile demo`.")
for rep in reports:
    display(Markdown(f"### {rep.title}"), rep.table, *([] if rep.beside.empty else [rep.vs_paper]))
    written += abl.write_sweep_tables(rep, tables_dir)
    lib.plots.save_sweep_figures(rep, tasks)

# %% [markdown]
# ## 5. Seeds
# The `demo-seeds` preset repeats the embedded study for five seeds; the spread is the noise
# floor any ablation difference above must clear.

# %%
seeds = abl.seed_summary(res)
if seeds.empty:
    print("No demo-seeds rows yet: python -m lib.pipeline --preset demo-seeds --profile demo")
else:
    written += lib.tables.write_table(seeds, tables_dir, "seeds", "Micro accuracy (%) per seed")
    display(seeds)

# %% [markdown]
# ## Record results

# %%
lib.runs.save_metrics(run, {
    "scoring": SCORING, "evaluation_rows": len(ev), "sweep_rows": len(csvs["sweeps"]),
    "missing_tables": notes, "tables": sorted(lib.paths.relative(p) for p in written),
    "sweeps": [f"{rep.sweep}/{rep.profile}" for rep in reports],
    "ordering_effects": effects.to_dict(orient="records"),
    "summary": lib.paths.relative(run.path("summary.md")),
})
