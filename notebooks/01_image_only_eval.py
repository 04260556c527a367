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
# # 01 · Image-trained vs video-trained LongVU on TVBench (the paper's Table 3)
#
# The paper's first finding: LongVU trained on images only is already well above chance on
# TVBench, and shuffling the frames costs the video-trained model most of its lead. This
# notebook measures both checkpoints of one backbone with the paper's protocol (2 fps with the
# Action Sequence / Action Localization windows, LongVU's MVBench prompt, greedy 5 tokens, the
# regex parser with its option-C fallback, micro average) under normal and shuffled frame order,
# and prints our rows beside the paper's with 95% confidence intervals clustered by video.
# Shuffles are seeded (the paper's were not), so several seeds give a spread.
#
# Profiles: `full` evaluates the official checkpoints on TVBench (2,525 questions; one GPU);
# `demo`/`smoke` evaluate tiny LongVU models on MiniTVBench, which checks the machinery, not
# the paper's numbers.

# %%
import pandas as pd
from IPython.display import display

import lib.config
import lib.evaluate
import lib.metrics
import lib.models
import lib.paper
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
RUN_NAME = "dev"  # run dir: outputs/01_image_only_eval/<RUN_NAME>/ (a re-run resumes)
SEED = 0  # seed of the tiny demo models and of the bootstrap
PROFILE = "demo"  # demo | smoke: tiny LongVU on MiniTVBench; full: official checkpoints, TVBench
BACKBONE = "qwen"  # qwen (Qwen2-7B) | llama (Llama3.2-3B)
IMAGE_CHECKPOINT = None  # None: LongVU_<backbone>_img (full) or a tiny image-stage model
VIDEO_CHECKPOINT = None  # None: LongVU_<backbone> (full) or a tiny video-stage model
IMAGE_TOKEN_LAYOUT = None  # None: its own; "video": the paper's layout for the _img model (full)
RECIPE = "ours"  # ours: load dtype, config.json's drop_threshold | paper: fp16, 0.8 (lib.recipes)
DATA_DIR = None  # None: MiniTVBench (demo/smoke) or <data dir>/tvbench (full)
LIMIT = None  # first N questions of each task (None: all)
SHUFFLE_SEEDS = [0, 1, 2]  # one shuffled run per seed
SCORING = "paper"  # paper | strict | letter | option
ON_MISSING = "error"  # error | skip: questions whose video is missing (never a black frame)
ON_SHORT_VIDEO = "fail"  # fail | report: frames short of the window or video (stop | count)
N_BOOT = 2000  # bootstrap resamples for the CIs
WORKERS = None  # DataLoader decode workers (None: cores - 1)
FRAME_CACHE = True  # cache decoded clips in outputs/04_tvbench_eval/_shared/frames (all runs)
TORCH_THREADS = None  # torch CPU threads while scoring (None: torch's default; 1 for tiny models)

# %%
params = lib.runs.notebook_params(globals())
run = lib.runs.start("01_image_only_eval", RUN_NAME, params)
data_dir = lib.profiles.benchmark_root(PROFILE, DATA_DIR)
llm = lib.paper.LLM_NAMES[BACKBONE]

# %% [markdown]
# ## 1. The benchmark
# Validated before any model loads: every answer must equal exactly one candidate, every video
# must exist (or be skipped and counted with `ON_MISSING = "skip"`), and a folder that looks
# like TVBench must have the revised release's counts.

# %%
bench = lib.tvbench.open_benchmark(data_dir, on_missing=ON_MISSING)
display(lib.tables.benchmark_overview(bench))
print(f"{data_dir}: {len(bench.questions)} questions, release check: {bench.release}")

# %% [markdown]
# ## 2. The two checkpoints
# Labelled with Table 3's own names (image-trained, video-trained); each is evaluated into its
# own folder of this run.

# %%
checkpoints = {"image": IMAGE_CHECKPOINT, "video": VIDEO_CHECKPOINT}
layouts = {"image": IMAGE_TOKEN_LAYOUT, "video": None}
models = lib.recipes.eval_models([lib.models.ModelSpec(
    f"{stage}-trained", ckpt or lib.profiles.start_checkpoint(PROFILE, BACKBONE, stage, SEED),
    token_layout=layouts[stage], layout_seed=SEED) for stage, ckpt in checkpoints.items()], RECIPE)
run_dirs = {f"{stage}-trained": run.path("eval", stage) for stage in checkpoints}
display(pd.DataFrame([{"model": s.label, "checkpoint": s.checkpoint} for s in models]))

# %% [markdown]
# ## 3. Evaluate (normal and shuffled; resumable)
# Each question's frames are decoded once per checkpoint (and cached across both), every
# condition is built from the same sampled frames, and predictions are appended per question,
# so re-running this cell after an interruption continues where it stopped.

# %%
spec = lib.config.EvalSpec.from_params(params, lib.profiles.shared_frame_cache(),
                                       conditions=("normal", "shuffled"))
results = lib.evaluate.evaluate_models(models, run_dirs, bench, spec, n_boot=N_BOOT)
normal = f"normal/{SCORING}"

# %% [markdown]
# ## 4. Table 3 layout: our rows beside the paper's
# Cells are accuracy % with the 95% bootstrap CI (videos resampled within each task); "Avg" is
# the micro average the paper reports and "macro" the mean over tasks (the TVBench leaderboard's
# average). The chance row is computed from the option counts of the evaluated questions.

# %%
display(lib.tables.table3_layout(results, llm, SCORING, SHUFFLE_SEEDS[0]))
seeds = pd.DataFrame({label: lib.metrics.seed_spread(res, "shuffled", SCORING)
                      for label, res in results.items()}).T
display(seeds.rename(columns={"mean": "shuffled micro mean", "sd": "sd over seeds"}))

# %% [markdown]
# ## 5. What shuffling costs, paired on the same questions
# Shuffled minus normal for each checkpoint, with a paired bootstrap CI (clustered by video)
# and an exact McNemar test on the questions whose correctness changed.

# %%
sources = {label: d / "predictions.jsonl" for label, d in run_dirs.items()}
diffs = lib.metrics.paired_differences(
    sources, bench, [SCORING], [f"shuffled@{SHUFFLE_SEEDS[0]}"], n_boot=N_BOOT, seed=SEED,
    name="{label}: shuffled - normal")
display(lib.tables.paired_table(diffs))
fig = lib.plots.plot_paired(diffs, f"Frame shuffling, {llm} ({PROFILE})")
lib.plots.save_figure(fig, "01_paired_shuffle")

# %% [markdown]
# ## 6. Per task against chance

# %%
per_task = lib.tables.metrics_frame({label: res[normal] for label, res in results.items()})
fig = lib.plots.plot_per_task(per_task, title=f"TVBench per task, {llm}, normal order ({PROFILE})")
lib.plots.save_figure(fig, "01_per_task")

# %% [markdown]
# ## 7. Letter bias and parse failures
# "always X" and the per-task majority letter score what a model gets without watching; parse
# statuses count the generations the paper's parser could not read cleanly (those silently
# became option C in the paper).

# %%
display(lib.tables.letter_bias_table(results, normal))

# %% [markdown]
# ## Record results
# One row per model and condition group in `outputs/results/tvbench.csv` (paths relative to
# the repository), read by notebook 05.

# %%
lib.results.record_models(results, models, run_dirs, f"01/{RUN_NAME}", data_dir, RECIPE,
                          PROFILE)
lib.runs.save_metrics(run, {
    "backbone": BACKBONE, "data_dir": lib.paths.relative(data_dir),
    "n": results["image-trained"][normal]["n"], "skipped_missing_video": len(bench.skipped),
    "short_video": {label: res[normal]["short_video"] for label, res in results.items()},
    "micro": {label: res[normal]["micro"] for label, res in results.items()},
    "micro_ci": {label: res[normal]["micro_ci"] for label, res in results.items()},
    "macro": {label: res[normal]["macro"] for label, res in results.items()},
    "shuffled_micro": {label: lib.metrics.seed_spread(res, "shuffled", SCORING)
                       for label, res in results.items()},
    "shuffle_diff": {k: {"diff": v["micro_diff"], "ci": v["micro_ci"], "p": v["mcnemar_p"]}
                     for k, v in diffs.items()},
    "chance_micro": results["image-trained"][normal]["chance_micro"],
})
