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
# # 02 · Pseudo-videos: building them, looking at them, counting their options
#
# The paper's training data are pseudo-videos: captioned images shown one after another, each
# repeated F_j times with a mild per-frame affine jitter, with questions whose answers follow from
# the known scene order (R1-R4, A1, A2; Table 1). This notebook builds them with
# `lib.pseudo_video` (questions from `lib.questions`, frames from `lib.jitter`), previews a few
# (static figures, and an interactive player when run live), compares the paper code's question
# defects (`compat`) with our repaired `fixed` mode, and exports a held-out set in TVBench layout
# for the evaluator. `SOURCE = "t2vid"` swaps the images for T2Vid-style text frames (one caption
# of each scene's image rendered as text, `lib.t2vid`); section 3b shows both side by side.

# %%
import pandas as pd
from IPython.display import display

import lib.coco
import lib.paths
import lib.profiles
import lib.plots
import lib.preview
import lib.pseudo_video as pv
import lib.questions
import lib.runs
import lib.tvbench

lib.plots.set_style()

# %% tags=["parameters"]
RUN_NAME = "dev"  # run dir: outputs/02_pseudo_videos/<RUN_NAME>/
SEED = 0  # formation table and per-read seeds
PROFILE = "demo"  # demo | smoke | full: selects the COCO source unless COCO_DIR is given
COCO_DIR = None  # None: shapes-COCO for demo/smoke, <data dir>/coco for full
QUESTIONS = "R1,R2,R3,R4,A1,A2"  # question mix, see lib.questions.parse_mix
S = 4  # max scenes per video (a per-generator S in QUESTIONS overrides it)
F = 5  # max frames per scene
N = 1200  # formations in the table (shared by the generators by weight)
MODE = "fixed"  # fixed | compat: question defects repaired or reproduced
SOURCE = "coco"  # coco: scenes show their image | t2vid: one of its captions rendered as text
JITTER = "mild"  # mild | strong | none
SIZE = None  # None: the video's max H, W (the paper); or [H, W]
SEEDING = "global"  # global | per-rank (the paper's seed + rank)
N_PREVIEWS = 6  # static preview figures (one per question type, in QUESTIONS order)
EXPORT_N = 60  # held-out (val split) pseudo-videos exported in TVBench layout; 0: skip
INTERACTIVE = True  # build the ipywidgets player (papermill presets set False)

# %%
run = lib.runs.start("02_pseudo_videos", RUN_NAME, lib.runs.notebook_params(globals()))
root = lib.profiles.coco_root(PROFILE, COCO_DIR)
size = tuple(SIZE) if SIZE else None

# %% [markdown]
# ## 1. The caption index
# Images in order of first appearance in the captions file, every caption cleaned as the paper's
# code does ("The cat." -> "the cat", "A man" unchanged) and every one a candidate.

# %%
index = lib.coco.CaptionIndex.from_root(root, "train")
print(f"{root}: {len(index)} captioned train images, "
      f"{sum(len(c) for c in index.captions.values())} captions")
display(pd.DataFrame({"caption": index.captions[index.image_ids[0]]}))

# %% [markdown]
# ## 2. Formations and questions
# The formation table (scenes, frames per scene, images) is drawn once from `SEED`; captions,
# distractors and option order are re-drawn on every read from a per-read seed.

# %%
specs = lib.questions.parse_mix(QUESTIONS, N, S, F)
source = pv.PseudoVideoSource(index, specs, SEED, MODE, SEEDING, source=SOURCE)
display(pd.DataFrame([vars(x) | {"scene_range": x.scene_range} for x in specs]))
firsts = source.first_per_type()
display(pd.DataFrame([source.sample(i).record() for i in firsts])[
    ["question_type", "frame_counts", "question", "options", "target"]])

# %% [markdown]
# ## 3. Static previews
# Frame strip (evenly spaced frames, border = scene colour), the timeline of all frames coloured
# by scene, and the question with the right option highlighted.

# %%
for i in firsts[:N_PREVIEWS]:
    s = source.sample(i)
    fig = lib.preview.static_preview(s, source.frames(s, JITTER, size))
    lib.plots.save_figure(fig, f"02_preview_{s.question_type}")
display(fig)

# %% [markdown]
# ## 3b. Image frames against text frames (T2Vid)
# The same read from both sources: formation, question, options and jitter are identical, only
# the pixels differ. A t2vid scene shows one caption of its image as text, on a seeded colour
# pair, font size and layout; it is a caption the question and its options do not quote (when
# the image has one), so the text in the frame never matches an option word for word.

# %%
sources = {name: pv.PseudoVideoSource(index, specs, SEED, MODE, SEEDING, source=name)
           for name in pv.SOURCES}
fig = lib.preview.source_preview(sources, firsts[0], JITTER, size)
lib.plots.save_figure(fig, "02_sources")
display(fig)
read = sources["t2vid"].sample(firsts[0])
display(pd.DataFrame({"quoted by the question": read.captions,
                      "rendered (t2vid)": read.rendered_captions,
                      "caption index": read.rendered_caption_index}))

# %% [markdown]
# ## 4. Interactive preview (live kernels only)

# %%
if INTERACTIVE:
    lib.preview.interactive_preview(source, JITTER, size)

# %% [markdown]
# ## 5. Scenes, frames, options and answer letters: fixed vs compat
# The same formation table read in both modes. Compat reproduces the paper's skew (fewer options
# for R1 with S=2 and R3, so the gt sits at A/B more often) and R4's special option that appears
# only when it is right; fixed tops options up to four and lists both special options always.

# %%
tables = {m: lib.preview.sample_table(pv.PseudoVideoSource(index, specs, SEED, m, SEEDING))
          for m in lib.questions.MODES}
stats = pd.concat(tables.values(), ignore_index=True)
figs = {"02_scenes_frames": lib.plots.plot_scenes_frames(stats),
        "02_answer_letters": lib.plots.plot_letters(stats),
        "02_option_counts": lib.plots.plot_option_counts(stats)}
for name, fig in figs.items():
    lib.plots.save_figure(fig, name)
    display(fig)
letter_share = (stats.groupby(["mode", "question_type"])["letter"].value_counts(normalize=True)
                .unstack(fill_value=0).round(3))
display(letter_share)

# %% [markdown]
# ## 6. Held-out pseudo-videos in TVBench layout
# From the **val** split, so no image is shared with training; scored by the benchmark evaluator
# like any TVBench task (`json/pseudo_<type>.json`, `video/pseudo_<type>/*.mp4` at 2 fps).

# %%
export_counts = {}
if EXPORT_N:
    val = lib.coco.CaptionIndex.from_root(root, "val")
    held_out = pv.PseudoVideoSource(val, lib.questions.parse_mix(QUESTIONS, EXPORT_N, S, F),
                                    SEED, MODE, source=SOURCE)
    export_dir = run.path("pseudo_tvbench")
    export_counts = pv.export_tvbench(held_out, export_dir, jitter=JITTER, size=size)
    report = lib.tvbench.validate(export_dir)
    print(f"{export_dir}: {report.num_questions} questions, valid={report.ok}")

# %% [markdown]
# ## Record results

# %%
lib.runs.save_metrics(run, {
    "coco_root": lib.paths.relative(root),
    "source": SOURCE,
    "num_images": len(index),
    "num_samples": len(source),
    "mean_frames": float(stats["frames"].mean()),
    "mean_scenes": float(stats["scenes"].mean()),
    "letter_share": {f"{m}/{q}": row.to_dict() for (m, q), row in letter_share.iterrows()},
    "mean_options": stats.groupby(["mode"])["options"].mean().to_dict(),
    "export_counts": export_counts,
})
