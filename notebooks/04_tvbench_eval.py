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
# # 04 · TVBench evaluation of the pseudo-video adapters: every condition, every scorer
#
# The paper's Table 4 question: does fine-tuning on pseudo-videos (notebook 03) make LongVU
# use temporal order? This notebook evaluates the base checkpoint and each adapter under five
# frame conditions (normal, seeded shuffles, reversed, static = first frame repeated, blind =
# one black frame) and four scorers (`paper`: the paper's parser with its option-C fallback;
# `strict`: the same generation, unparsable = wrong; `letter`: next-token probability over the
# valid letters; `option`: option-text log-likelihood). Likelihood scoring is immune to answer
# format drift after fine-tuning; comparing it with `paper` separates "answers in the wrong
# format" from "does not know". All comparisons are paired on the same questions with
# bootstrap CIs clustered by video.
#
# Profiles: `full` evaluates the official image-stage checkpoint and adapters on TVBench;
# `demo`/`smoke` use the tiny image-stage model that notebook 03 starts from, on MiniTVBench.

# %%
import pandas as pd
from IPython.display import display

import lib.config
import lib.evaluate
import lib.metrics
import lib.models
import lib.paths
import lib.plots
import lib.profiles
import lib.recipes
import lib.results
import lib.runs
import lib.tables
import lib.tvbench

lib.plots.set_style()

# %% tags=["parameters"]
RUN_NAME = "dev"  # run dir: outputs/04_tvbench_eval/<RUN_NAME>/ (a re-run resumes)
SEED = 0  # seed of the tiny demo model and of the bootstrap
PROFILE = "demo"  # demo | smoke: tiny LongVU on MiniTVBench; full: official checkpoint, TVBench
BACKBONE = "qwen"  # qwen (Qwen2-7B) | llama (Llama3.2-3B)
BASE_CHECKPOINT = None  # None: the BASE_STAGE checkpoint, what notebook 03 starts from
BASE_STAGE = "image"  # image | video (Table 4's video-trained start)
TOKEN_LAYOUT = None  # None: the base's own; "video": an _img base in the paper's layout (full)
RECIPE = "ours"  # ours: load dtype, config.json's drop_threshold | paper: fp16, 0.8 (lib.recipes)
ADAPTERS = []  # adapter dirs or notebook-03 RUN_NAMEs; [] evaluates the base model only
DATA_DIR = None  # None: MiniTVBench (demo/smoke) or <data dir>/tvbench (full)
LIMIT = None  # first N questions of each task (None: all)
CONDITIONS = ["normal", "shuffled", "reversed", "static", "blind"]
SHUFFLE_SEEDS = [0]  # one shuffled run per seed
SCORINGS = ["paper", "strict", "likelihood"]  # likelihood means letter and option
ON_MISSING = "error"  # error | skip: questions whose video is missing (never a black frame)
ON_SHORT_VIDEO = "fail"  # fail | report: frames short of the window or video (stop | count)
N_BOOT = 2000  # bootstrap resamples for the CIs
WORKERS = None  # DataLoader decode workers (None: cores - 1)
FRAME_CACHE = True  # cache decoded clips in outputs/04_tvbench_eval/_shared/frames (all runs)
TORCH_THREADS = None  # torch CPU threads while scoring (None: torch's default; 1 for tiny models)
SHARE_BASE_EVAL = True  # evaluate the base once for every run on the same start and data (sweeps)
ORDERING_SCORING = None  # scorer of the ordering-task headline (None: letter if run, else paper)

# %%
params = lib.runs.notebook_params(globals())
run = lib.runs.start("04_tvbench_eval", RUN_NAME, params)
data_dir = lib.profiles.benchmark_root(PROFILE, DATA_DIR)

# %% [markdown]
# ## 1. The benchmark

# %%
bench = lib.tvbench.open_benchmark(data_dir, on_missing=ON_MISSING)
bench_name = "TVBench" if PROFILE == "full" else "MiniTVBench"
print(f"{data_dir}: {len(bench.questions)} questions in {len(bench.tasks)} tasks, "
      f"{len(bench.skipped)} skipped for missing videos, release check: {bench.release}")

# %% [markdown]
# ## 2. Models: the base checkpoint and each adapter
# An adapter is evaluated on the base it was trained from, with the same quantization (a
# notebook-03 run records both); the base row uses the first adapter's quantization so that
# base-vs-adapter differences are the adapter's alone. With `SHARE_BASE_EVAL` the base row's
# predictions live in `outputs/04_tvbench_eval/_shared/` and every later run on the same start
# checkpoint, quantization and data resumes them instead of evaluating the base again.

# %%
base_ckpt = BASE_CHECKPOINT or lib.profiles.start_checkpoint(PROFILE, BACKBONE, BASE_STAGE, SEED)
tuned = [lib.profiles.resolve_adapter(a, base_ckpt) for a in ADAPTERS]
base_quant = tuned[0].quantization if tuned else "none"
models = lib.recipes.eval_models([lib.models.ModelSpec(
    "base" + (" (nf4)" if base_quant == "nf4" else ""), base_ckpt, None, base_quant,
    TOKEN_LAYOUT, SEED)] + tuned, RECIPE)
if not tuned:
    print("No adapters were given (ADAPTERS = []): evaluating the base model only, under every "
          "condition and scorer. Pass adapter dirs or notebook-03 run names to compare.")
display(pd.DataFrame([vars(m) for m in models]))

# %% [markdown]
# ## 3. Evaluate every model under every condition and scorer (resumable)

# %%
spec = lib.config.EvalSpec.from_params(params, lib.profiles.shared_frame_cache())
run_dirs = {ms.label: lib.profiles.shared_eval_dir(ms, data_dir) if i == 0 and SHARE_BASE_EVAL
            else run.path("eval", f"m{i}") for i, ms in enumerate(models)}
results = lib.evaluate.evaluate_models(models, run_dirs, bench, spec, n_boot=N_BOOT)
sources = {label: d / "predictions.jsonl" for label, d in run_dirs.items()}
summary = lib.tables.summary_frame(results)
scorings = list(dict.fromkeys(summary["scoring"]))
grid = summary.pivot_table(index=["model", "condition"], columns="scoring", values="micro",
                           sort=False)
display(grid.round(1))

# %% [markdown]
# ## 4. Micro accuracy by condition and scorer, with 95% CIs

# %%
fig = lib.plots.plot_conditions(summary, f"micro accuracy by condition and scorer ({PROFILE})")
lib.plots.save_figure(fig, "04_conditions_scorers")

# %% [markdown]
# ## 5. Paired differences
# Each condition minus normal order for every model (the temporal-sensitivity measure: a model
# that uses order loses accuracy when it is destroyed), and each adapter minus the base under
# normal order. Paired on identical questions, bootstrap CI clustered by video, exact McNemar p.

# %%
asked = lib.tvbench.select(bench.questions, LIMIT)  # the shared base folder may hold more
diffs = lib.metrics.paired_differences(
    sources, bench, [s for s in ("paper", "letter") if s in scorings],
    list(dict.fromkeys(summary["condition"])), asked, base=models[0].label, n_boot=N_BOOT,
    seed=SEED)
display(lib.tables.paired_table(diffs).round(3))
fig = lib.plots.plot_paired(diffs, f"Paired differences ({PROFILE})")
lib.plots.save_figure(fig, "04_paired_differences")

# %% [markdown]
# ## 6. The paper's effect on the ordering tasks
# Does pseudo-video training help where the order of events decides the answer (Scene
# Transition, Action Sequence, Egocentric Sequence when present), and does the help vanish when
# the frames are shuffled? Gain = adapter - base (paired, 95% CI clustered by video).

# %%
ordering_scoring = ORDERING_SCORING or next((s for s in ("letter", "paper") if s in scorings),
                                            scorings[0])
compare = "shuffled" in CONDITIONS and len(models) > 1  # needs an adapter and shuffled frames
effects = (lib.metrics.ordering_effects(sources, bench, ordering_scoring, SHUFFLE_SEEDS[0],
                                        N_BOOT, SEED) if compare else {})
for label, eff in effects.items():
    display(pd.DataFrame(eff).T.round(3))
if not effects:
    print("needs an adapter and the shuffled condition; skipped")

# %% [markdown]
# ## 7. Do the scorers agree? Parse failures
# Pairwise agreement (% of questions with the same chosen option) under normal order, and the
# share of generations the paper parser could not read cleanly.

# %%
for ms in models:
    print(ms.label)
    display(lib.metrics.scorer_agreement(sources[ms.label]).round(1))
display(summary[summary["scoring"].isin(["paper", "strict"])]
        .pivot_table(index="model", columns="condition", values="parse_fail_%", sort=False)
        .round(1))

# %% [markdown]
# ## 8. Per task, normal order, first scorer, against chance

# %%
first = scorings[0]  # paper when it was run
normal_first = {ms.label: results[ms.label][f"normal/{first}"] for ms in models}
fig = lib.plots.plot_per_task(lib.tables.metrics_frame(normal_first),
                              title=f"{bench_name} per task [{first}] ({PROFILE})")
lib.plots.save_figure(fig, "04_per_task")
display(lib.tables.results_table(normal_first, ci=True))

# %% [markdown]
# ## Record results
# One row per model and condition group in `outputs/results/tvbench.csv` and one per ordering
# comparison in `tvbench_effects.csv` (paths relative to the repository), read by notebook 05.

# %%
lib.results.record_models(results, models, run_dirs, f"04/{RUN_NAME}", data_dir, RECIPE,
                          PROFILE)
for label, eff in effects.items():
    lib.results.record_effect(eff, f"04/{RUN_NAME}/{label}", run.dir)
lib.runs.save_metrics(run, {
    "ordering_effects": effects,
    "data_dir": lib.paths.relative(data_dir), "models": [vars(m) for m in models],
    "adapters_given": len(tuned), "skipped_missing_video": len(bench.skipped),
    "short_video": {label: max(m["short_video"] for m in res.values())
                    for label, res in results.items()},
    "micro": {f"{r.model} | {r.condition}/{r.scoring}": r.micro for r in summary.itertuples()},
    "paired": {k: {"diff": v["micro_diff"], "ci": v["micro_ci"], "p": v["mcnemar_p"]}
               for k, v in diffs.items()},
})
