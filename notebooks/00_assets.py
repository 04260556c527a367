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
from PIL import Image

import lib.assets
import lib.coco
import lib.demo_stages
import lib.inventory
import lib.paths
import lib.runs
import lib.tvbench

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
assets_dir = lib.paths.demo_assets_dir(PROFILE)
manifest = lib.assets.build(PROFILE, assets_dir, seed=SEED) if BUILD_DEMO else None
coco_reports = {
    split: lib.coco.validate_captions(lib.coco.captions_path(assets_dir / "coco", split),
                                      lib.coco.images_dir(assets_dir / "coco", split),
                                      check_images="decode")
    for split in ("train", "val")
} if BUILD_DEMO else {}
bench_report = lib.tvbench.validate(assets_dir / "minitvbench") if BUILD_DEMO else None
if BUILD_DEMO:
    display(pd.DataFrame({s: {"images": r.num_images, "captions": r.num_captions, "valid": r.ok}
                          for s, r in coco_reports.items()}).T)
    display(pd.DataFrame({"questions": bench_report.tasks, "videos": bench_report.videos}))

# %% [markdown]
# ## 4. A look at the generated data

# %%
if BUILD_DEMO:
    index = lib.coco.CaptionIndex.from_root(assets_dir / "coco", "train")
    first = index.image_ids[0]
    display(Image.open(index.image_path(first)).resize((192, 192)))
    print("\n".join(index.captions[first]))
    questions = lib.tvbench.load(assets_dir / "minitvbench")
    display(pd.DataFrame([{"task": q.task, "question": q.question, "candidates": q.candidates,
                           "answer": q.candidates[q.answer_index], "start": q.start, "end": q.end}
                          for q in questions[::max(1, len(questions) // 8)]]))

# %% [markdown]
# ## 5. The demo's tiny LongVU checkpoints
# Stand-ins for LongVU's two training stages: a tiny random LongVU trained on single shapes-COCO
# images (captioning + image multiple choice) is the "image-trained" checkpoint; that model
# further trained on MiniTVBench-style videos (other seeds than the benchmark) is the
# "video-trained" one. Notebooks 01, 03 and 04 use them in the demo and smoke profiles.

# %%
demo_models = {}
if BUILD_DEMO:
    for backbone in DEMO_BACKBONES:
        for stage in ("image", "video"):
            ckpt = lib.demo_stages.checkpoint(PROFILE, backbone, stage, SEED)
            demo_models[f"{backbone}/{stage}"] = lib.demo_stages.stage_summary(ckpt)
    display(pd.DataFrame(demo_models).T)

# %% [markdown]
# ## Record results

# %%
lib.runs.save_metrics(run, {
    "full_profile_present": {i.name: i.present for i in items},
    "demo_profile": PROFILE if BUILD_DEMO else None,
    "demo_assets_dir": str(assets_dir) if BUILD_DEMO else None,
    "demo_coco_images": {s: r.num_images for s, r in coco_reports.items()},
    "demo_benchmark_questions": bench_report.num_questions if bench_report else None,
    "demo_sha256": manifest["sha256"] if manifest else None,
    "demo_models": demo_models,
})
