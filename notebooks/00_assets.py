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
# # 00 · Assets: what is here, what is missing, and the embedded default
#
# The full study needs the four official LongVU checkpoints, the SigLIP and DINOv2 towers,
# COCO train2017 and TVBench. This notebook checks each one with the same validators the other
# notebooks use, prints the exact commands that fetch what is missing, and builds the embedded
# default (shapes-COCO and MiniTVBench) that lets every later notebook run with no download.

# %%
import pandas as pd
from IPython.display import display

import lib.assets
import lib.demo_stages
import lib.inventory
import lib.paths
import lib.profiles
import lib.runs

# %% tags=["parameters"]
RUN_NAME = "dev"  # run dir: outputs/00_assets/<RUN_NAME>/
SEED = 0  # seed of the generated assets
PROFILE = "demo"  # demo | smoke: which embedded default to build
BUILD_DEMO = True  # build (or reuse) the embedded default for PROFILE
DEMO_BACKBONES = ["qwen"]  # tiny LongVU backbones to train through the image and video stages
CHECKPOINTS_DIR = None  # None: <data dir>/checkpoints (LongVU checkpoints and towers)
COCO_DIR = None  # None: <data dir>/coco (real COCO 2017)
TVBENCH_DIR = None  # None: <data dir>/tvbench (real TVBench)

# %%
run = lib.runs.start("00_assets", RUN_NAME, lib.runs.notebook_params(globals()))
print("data dir:", lib.paths.data_dir())

# %% [markdown]
# ## 1. The full profile: checkpoints, towers, COCO, TVBench

# %%
items = lib.inventory.full_profile(CHECKPOINTS_DIR, COCO_DIR, TVBENCH_DIR)
inventory = pd.DataFrame([i.row() for i in items])
display(inventory)

# %% [markdown]
# ## 2. How to fetch what is missing
# The model hub and the COCO server are unreachable from the build machines, so nothing is
# downloaded here. Run these where they are reachable (or point the `*_DIR` parameters at copies).

# %%
print(lib.inventory.fetch_script(items))

# %% [markdown]
# ## 3. The embedded default
# shapes-COCO (captioned images in COCO's exact format) and MiniTVBench (temporal
# multiple-choice videos in TVBench's exact layout), generated from `SEED`.

# %%
roots = lib.assets.embedded(PROFILE, SEED) if BUILD_DEMO else {}
checks = lib.assets.check(roots) if BUILD_DEMO else {}
for table in checks.values():
    display(table)

# %% [markdown]
# ## 4. A look at the generated data

# %%
if BUILD_DEMO:
    image, captions, questions = lib.assets.examples(roots)
    display(image, pd.DataFrame({"caption": captions}), questions)

# %% [markdown]
# ## 5. The demo's tiny LongVU checkpoints
# Stand-ins for LongVU's two training stages: a tiny random LongVU trained on single shapes-COCO
# images (captioning + image multiple choice) is the "image-trained" checkpoint; that model
# further trained on MiniTVBench-style videos (other seeds than the benchmark) is the
# "video-trained" one. Notebooks 01, 03 and 04 use them in the demo and smoke profiles.

# %%
demo_ckpts = {f"{b}/{stage}": lib.profiles.start_checkpoint(PROFILE, b, stage, SEED)
              for b in DEMO_BACKBONES for stage in ("image", "video")} if BUILD_DEMO else {}
demo_models = {k: lib.demo_stages.stage_summary(c) for k, c in demo_ckpts.items()}
display(pd.DataFrame(demo_models).T)

# %% [markdown]
# ## Record results

# %%
lib.runs.save_metrics(run, {
    "full_profile_present": {i.name: i.present for i in items},
    "demo_profile": PROFILE if BUILD_DEMO else None,
    "demo_roots": {k: lib.paths.relative(v) for k, v in roots.items()},
    "demo_checks": {k: t.to_dict() for k, t in checks.items()},
    "demo_sha256": lib.assets.build(PROFILE, seed=SEED)["sha256"] if BUILD_DEMO else None,
    "demo_models": demo_models,
})
