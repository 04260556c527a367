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
# # 03 · QLoRA fine-tuning of LongVU on pseudo-videos (one GPU)
#
# The paper fully fine-tunes LongVU on 32 GPUs. Here the same data and schedule (3 % linear
# warm-up, cosine decay, global batch 64 through gradient accumulation) train LoRA adapters on
# an NF4-quantised decoder plus the full connector, which fits one 24 GB card (`RECIPE =
# "ours"`). `RECIPE = "paper"` is the fork's exact configuration (`lib.recipes`): full
# fine-tuning at lr 5e-6 with fp32 master weights under bf16, no gradient clipping, the `compat`
# questions, per-rank pseudo-video tables, the fork's jitter and labels; a parameter that is not
# None overrides the recipe's value. Training runs in time-boxed chunks: re-run
# with the same `RUN_NAME` and it resumes from the last complete checkpoint. The adapter lands
# in `outputs/03_qlora_finetune/<RUN_NAME>/adapter/` for notebook 04. In the demo and smoke
# profiles a tiny random LongVU trains with real 4-bit on the CPU.

# %%
import pandas as pd
from IPython.display import display

import lib.config
import lib.heldout
import lib.paths
import lib.plots
import lib.profiles
import lib.recipes
import lib.runs
import lib.train
import lib.train_runs

lib.plots.set_style()

# %% tags=["parameters"]
RUN_NAME = "dev"  # run dir: outputs/03_qlora_finetune/<RUN_NAME>/ (a re-run resumes)
SEED = 0  # data table, adapter init, data order
PROFILE = "demo"  # demo | smoke: tiny LongVU on shapes-COCO; full: official checkpoint + COCO
BACKBONE = "qwen"  # qwen (Qwen2-7B) | llama (Llama3.2-3B)
START_CHECKPOINT = None  # None: the START_STAGE checkpoint (official in full, tiny in demo)
START_STAGE = "image"  # image: LongVU_<backbone>_img (the paper); video: the video-trained model
TOKEN_LAYOUT = None  # None: the start's own; "video": an _img start in the paper's layout (full)
COCO_DIR = None  # None: shapes-COCO for demo/smoke, <data dir>/coco for full
SOURCE = "coco"  # coco: scenes show their image | t2vid: a caption rendered as text (lib.t2vid)
QUESTIONS = "R1"  # question mix, see lib.questions.parse_mix (per-type S and F allowed)
S = 4  # max scenes per video
F = 5  # max frames per scene
N = 1000  # pseudo-videos per epoch (the paper: 100,000 drawn per rank, two epochs)
STEPS = 20  # optimizer steps (the paper: 3,125)
RECIPE = "ours"  # ours: one-GPU QLoRA defaults | paper: the fork's settings (lib.recipes)
# None below: the recipe's value
GLOBAL_BATCH = None  # samples per optimizer step (both recipes: 64)
MICRO_BATCH = 1  # samples per forward pass; GLOBAL_BATCH / MICRO_BATCH accumulation steps
LR = None  # ours: 1e-4 for qlora/lora, 5e-6 for full; paper: 5e-6
MODE = None  # qlora | lora | full (ours: qlora; paper: full)
QUESTION_MODE = None  # fixed | compat (the fork's wording and quirks); ours fixed, paper compat
ANSWER_FORMAT = "letter"  # the target: letter "(A) text" (the paper's) | text (the option alone)
PROMPT_FORMAT = "fork"  # the user turn: fork (the paper's) | eval (the prompt notebook 04 asks in)
JITTER = None  # none | mild | strong; paper: none for llama, mild for qwen (the fork's scripts)
SEEDING = None  # global | per-rank (each rank its own table, seed + rank); paper: per-rank
SUPERVISE_PROMPT_TOKENS = None  # the fork's labels (role tokens too); paper: True
LEGACY_PLACEHOLDER_TOKENS = None  # the fork collator's token-id-0 leak; paper: True
LORA_R = 64
LORA_ALPHA = 16
TIME_BUDGET_S = None  # stop (with a checkpoint) after this many seconds; re-run to continue
SAVE_STEPS = 100  # checkpoint interval
EVAL_SAMPLES = 16  # held-out pseudo-videos (val split): answer loss and accuracy, base vs tuned

# %%
params = lib.runs.notebook_params(globals())
run = lib.runs.start("03_qlora_finetune", RUN_NAME, params)

# %% [markdown]
# ## 1. Start checkpoint
# The paper starts both backbones from their image-stage checkpoints (Table 4 also from the
# video-trained ones). In demo and smoke the tiny image-/video-stage-trained LongVU of notebook 00
# stands in (`lib.demo_stages`).

# %%
start = START_CHECKPOINT or lib.profiles.start_checkpoint(PROFILE, BACKBONE, START_STAGE, SEED)
coco = lib.profiles.coco_root(PROFILE, COCO_DIR)
print("start checkpoint:", start, "\nCOCO:", coco)

# %% [markdown]
# ## 2. Training data
# Pseudo-videos are drawn on the fly (DataLoader workers on a GPU machine); the loss is computed
# on the answer tokens only. The run's `TrainConfig` comes from the parameters above. With
# `SOURCE = "t2vid"` every scene shows one caption of its image rendered as text instead of the
# image (T2Vid, arXiv 2411.19951): the same questions, frame counts and jitter, other pixels.

# %%
cfg = lib.config.TrainConfig.from_params(params, model=start, out=str(run.dir), coco=str(coco))
display(pd.Series({k: getattr(cfg, k) for k in lib.recipes.TRAIN_FIELDS}, name=RECIPE))
example = lib.train.pseudo_video_dataset(cfg)[0]
print(example["prompt"], "\n->", example["target"], f"\n({example['num_frames']} frames)")

# %% [markdown]
# ## 3. Train (or resume)

# %%
metrics = lib.train.train(cfg, resume=True)
display(pd.Series({k: metrics[k] for k in ("recipe", "mode", "quantization", "steps",
                                           "first_loss", "last_loss",
                                           "step_time_s", "data_wait_fraction", "tokens_per_s",
                                           "peak_memory_bytes", "implied_paper_run_h")}))

# %% [markdown]
# ## 4. Loss and learning rate

# %%
steps = pd.DataFrame(lib.train_runs.read_log(run.dir))
fig = lib.plots.plot_loss_lr(steps, f"{cfg.mode} ({metrics['quantization']}), {RECIPE}")
lib.plots.save_figure(fig, "03_loss_lr")
display(steps[["step", "loss", "lr", "step_time_s", "data_wait_s", "tokens_per_s"]].tail())

# %% [markdown]
# ## 5. Held-out answer loss and accuracy, with the adapter attached
# `EVAL_SAMPLES` pseudo-videos from the val split (seed `SEED + 1`), the same ones for the start
# model (`base`) and the trained one (`tuned`). `loss` is the mean answer-token loss; `letter`
# and `option` are multiple-choice accuracies in percent, each question asked with the prompt
# it is trained on: the answer's letter scores highest (`letter_logprobs`, "X" or "(X"), or the
# answer's text has the highest summed log-probability after the prompt (option likelihood).
# The `*_eval_prompt` columns ask the same questions in the evaluator's TVBench prompt, the one
# notebook 04 uses: the fork trains without it (`PROMPT_FORMAT`, docs/demo.md section 8).
# `chance` is the mean of 1 / options. The trained model is reloaded exactly as notebook 04
# does (`lib.longvu.load(..., adapter=...)`). The adapter is not merged: merging into a 4-bit
# base re-quantises and changes the logits.

# %%
heldout = lib.heldout.heldout_eval(cfg, metrics, EVAL_SAMPLES)
print(f"{heldout['n']} held-out pseudo-videos; chance {heldout['chance']:.1f} %")
display(pd.DataFrame({k: heldout[k] for k in ("base", "tuned")}).T)

# %% [markdown]
# ## Record results

# %%
lib.runs.save_metrics(run, {"heldout": heldout, "start_checkpoint": lib.paths.relative(start)})
lib.runs.append_result("finetune", lib.heldout.result_row(params, metrics, heldout),
                       key=["run", "profile"])
