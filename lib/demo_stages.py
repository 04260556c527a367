"""The demo's stand-ins for LongVU's image and video training stages, on generated data.

The paper compares checkpoints that saw only images with ones that also saw videos. The demo
profile's image-trained Qwen-shaped model is shipped (``SHIPPED``, built by ``lib.demo_pretrain``);
smoke and the Llama-shaped demo make theirs here from a tiny random LongVU (notebook 00 builds
them; 01, 03 and 04 use them):

* image stage: single shapes-COCO images, half captioning ("Describe the image briefly.") and
  half image multiple-choice ("Which caption describes the image?" with the same wording of
  other images' captions as distractors), so the model ties caption words to pixels and learns
  the multiple-choice answer format;
* video stage (the "video-trained" control): the image-trained model further trained on
  MiniTVBench-style videos drawn with other seeds than the benchmark's, sampled at 2 fps like
  the evaluator does.

Both train all decoder and connector weights (``lib.train`` mode ``full``) and are saved as
complete checkpoints in LongVU's layout, so they load wherever an official checkpoint does.

Diagnostics (docs/demo.md): ``python -m lib.demo_stages mc-accuracy --checkpoint DIR`` measures
whether a stage checkpoint picks the right caption by letter on held-out shapes-COCO images (the
skill every multiple-choice benchmark presupposes); ``frame-similarity`` whether the frames of
two scenes reach the decoder distinguishably; ``prompt-lengths`` how many tokens the stages'
prompts take under the checkpoint's tokenizer.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch
import torch.utils.data as tud
from PIL import Image

from lib import assets, longvu, minitvbench, paths
from lib.coco import CaptionIndex, CocoError
from lib.config import TrainConfig
from lib.longvu.tiny import write_tiny
from lib.questions import user_turn
from lib.tvbench import LETTERS

CAPTION_PROMPT = "Describe the image briefly."
MC_QUESTION = "Which caption describes the image?"
VIDEO_SEED_OFFSET = 10_000  # benchmark videos use seeds 0..999 per task


class ImageStageDataset(tud.Dataset):
    """Single-image captioning and multiple-choice samples over a COCO-layout caption index.

    Items carry ``frames`` (1, H, W, 3) uint8, ``prompt`` (user turn), ``target``,
    ``question_type`` ("caption" | "image_mc"), ``sample_id``, ``errors`` (always empty: a
    missing or unreadable image raises ``CocoError`` naming it, never a substitute).
    """

    def __init__(self, index: CaptionIndex, n: int, seed: int = 0, num_options: int = 4,
                 mc_fraction: float = 0.5):
        if len(index) < num_options:
            raise ValueError(f"{index.captions_file}: {len(index)} images, need at least "
                             f"{num_options} for {num_options}-option questions")
        self.index, self.n, self.seed = index, n, seed
        self.num_options, self.mc_fraction = num_options, mc_fraction
        self.epoch = 0

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _image(self, image_id: int) -> np.ndarray:
        path = self.index.image_path(image_id)
        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))[None]
        except FileNotFoundError as e:
            raise CocoError(f"{path}: image {image_id} is missing; re-download or rebuild "
                            "the image folder") from e
        except OSError as e:
            raise CocoError(f"{path}: image {image_id} cannot be decoded ({e})") from e

    def __getitem__(self, i: int) -> dict:
        rng = random.Random(hash((self.seed, self.epoch, i)) & 0xFFFFFFFF)
        ids = self.index.image_ids
        image_id = ids[i % len(ids)] if self.n <= len(ids) else rng.choice(ids)
        caption = rng.choice(self.index.captions[image_id])
        item = {"frames": self._image(image_id), "sample_id": i, "image_ids": [image_id],
                "errors": []}
        if rng.random() >= self.mc_fraction:
            return {**item, "question_type": "caption",
                    "prompt": "<image>\n" + CAPTION_PROMPT, "target": caption}
        # Distractors in the same wording (shapes-COCO's k-th caption of every image uses its
        # k-th template): the options differ in what they say, not in how they say it.
        w = self.index.captions[image_id].index(caption)
        others = [j for j in rng.sample(ids, self.num_options + 1) if j != image_id]
        options = [self.index.captions[j][w % len(self.index.captions[j])]
                   for j in others[:self.num_options - 1]]
        k = rng.randrange(self.num_options)
        options.insert(k, caption)
        return {**item, "question_type": "image_mc",
                "prompt": user_turn(MC_QUESTION, options, "eval"),
                "target": f"({LETTERS[k]}) {caption}"}


class VideoStageDataset(tud.Dataset):
    """MiniTVBench-style video questions generated in memory (other seeds than the benchmark's),
    with frames sampled at 2 fps as the evaluator's paper protocol does."""

    def __init__(self, n: int, seed: int = 0, tasks: tuple[str, ...] | None = None,
                 size: int = 96, fps: int = 8):
        self.tasks = tasks or tuple(t[0] for t in minitvbench.MINI_TASKS)
        unknown = [t for t in self.tasks if t not in minitvbench.GENERATORS]
        if unknown:
            raise ValueError(f"unknown MiniTVBench task(s) {unknown}; known: "
                             f"{sorted(minitvbench.GENERATORS)}")
        self.n, self.seed, self.size, self.fps = n, seed, size, fps
        self.epoch = 0

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int) -> dict:
        task = self.tasks[i % len(self.tasks)]
        rng = random.Random(VIDEO_SEED_OFFSET + hash((self.seed, self.epoch, i)) % 10**9)
        slot = rng.randrange(16)
        frames, question, right, wrong, extra = minitvbench.GENERATORS[task](rng, self.size,
                                                                            self.fps, slot)
        step = max(1, round(self.fps / 2))
        lo, hi = 0, len(frames)
        if "start" in extra:  # the evaluator shows only the [start, end] window
            lo, hi = round(extra["start"] * self.fps), min(round(extra["end"] * self.fps), hi)
        frames = frames[lo:hi:step]
        options = list(wrong)
        rng.shuffle(options)
        k = rng.randrange(len(options) + 1)
        options.insert(k, right)
        return {"frames": np.ascontiguousarray(frames),
                "prompt": user_turn(question, options, "eval"),
                "target": f"({LETTERS[k]}) {right}", "question_type": task, "sample_id": i,
                "errors": []}


def train_stage(start: Path | str, out: Path | str, dataset: tud.Dataset, steps: int,
                run_dir: Path | str, lr: float = 1e-3, global_batch: int = 8,
                seed: int = 0) -> Path:
    """Train all decoder + connector weights of ``start`` on ``dataset`` and save a complete
    checkpoint (towers and tokenizer included) to ``out``; a finished ``out`` is reused."""
    # lib.train pulls in transformers' Trainer stack (accelerate, peft: ~3 s to import), and
    # lib.profiles imports this module for every notebook, most of which never train.
    from lib import train

    out = Path(out)
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    cfg = TrainConfig(model=str(start), out=str(run_dir), mode="full", max_steps=steps, lr=lr,
                      global_batch=global_batch, micro_batch=1, seed=seed, require_4bit=False,
                      activation_checkpointing=False, save_steps=max(steps, 1),
                      log_every=max(1, steps // 10), n=len(dataset))
    _, model = train.run_training(cfg, dataset=dataset)
    if model is None:
        raise RuntimeError(f"{run_dir}: training is marked complete but {out} is missing; "
                           f"delete {run_dir} to retrain")
    longvu.save(model, out)
    return out


# Steps x batch of each stage per profile; the demo numbers are tuned so that `make demo` fits
# its 10-minute budget on 2 CPU cores (docs/benchmarks.md).
STAGE_STEPS = {
    "smoke": {"image": (2, 2), "video": (2, 2)},
    "demo": {"image": (60, 8), "video": (24, 8)},
}
STAGE_LR = {"image": 2e-3, "video": 1e-3}


# The demo's Qwen-shaped image-stage start is built once, offline, by `make demo-pretrain`
# (lib.demo_pretrain: tower, language and image stages) and shipped in the repository, the toy
# counterpart of downloading LongVU_Qwen2_7B_img; every seed starts from it, as every paper run
# starts from the one released checkpoint. Smoke and the Llama-shaped demo train their short
# image stage here from a random model.
SHIPPED = {("demo", "qwen"): paths.ROOT / "assets" / "demo_start" / "qwen"}


def checkpoint(profile: str, backbone: str = "qwen", stage: str = "image", seed: int = 0,
               coco_root: Path | str | None = None) -> Path:
    """The demo's tiny ``stage``-trained checkpoint for a profile: the shipped start for the
    demo's Qwen-shaped image stage (``SHIPPED``), else trained on first use.

    image: a tiny random LongVU (demo geometry) after the image stage on shapes-COCO;
    video: that model after the video stage on MiniTVBench-style videos.
    """
    if profile not in STAGE_STEPS:
        raise ValueError(f"no demo checkpoints for profile {profile!r}; the full profile uses "
                         "the official LongVU checkpoints")
    if stage not in ("image", "video"):
        raise ValueError(f"stage must be 'image' or 'video', got {stage!r}")
    shipped = SHIPPED.get((profile, backbone))
    if stage == "image" and shipped is not None:
        if not (shipped / "config.json").is_file():
            raise FileNotFoundError(f"{shipped}: the demo's pretrained start is missing; rebuild "
                                    "it with `make demo-pretrain` (docs/demo.md)")
        return shipped
    root = paths.data_dir() / "models" / profile
    out = root / f"{backbone}_{stage}_trained_s{seed}"
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    steps, batch = STAGE_STEPS[profile][stage]
    if stage == "image":
        start = root / f"{backbone}_random_s{seed}"
        if not (start / "config.json").exists():
            write_tiny(start, backbone, "image", "demo", seed)
        index = CaptionIndex.from_root(coco_root or assets.embedded(profile)["coco"], "train")
        data: tud.Dataset = ImageStageDataset(index, steps * batch, seed=seed)
    else:
        start = checkpoint(profile, backbone, "image", seed)
        data = VideoStageDataset(steps * batch, seed=seed)
    return train_stage(start, out, data, steps, root / f"{out.name}_run", lr=STAGE_LR[stage],
                       global_batch=batch, seed=seed)


def stage_summary(ckpt: Path | str) -> dict:
    """Where a stage checkpoint is and how its training went (from its run's metrics.json)."""
    ckpt = Path(ckpt)
    f = ckpt.parent / f"{ckpt.name}_run" / "metrics.json"
    m = json.loads(f.read_text()) if f.exists() else {}
    return {"checkpoint": paths.relative(ckpt), "steps": m.get("steps"),
            "first_loss": m.get("first_loss"), "last_loss": m.get("last_loss"),
            "train_seconds": m.get("train_wall_s_this_session")}


def image_mc_accuracy(ckpt: Path | str, coco_root: Path | str, n: int = 200,
                      num_options: int = 4, seed: int = 7, split: str = "val") -> dict:
    """Letter-likelihood accuracy of ``ckpt`` on ``n`` held-out image multiple-choice questions
    (the image stage's own format: distractors are captions of other images)."""
    model = longvu.load(ckpt).eval()
    index = CaptionIndex.from_root(coco_root, split)
    data = ImageStageDataset(index, n, seed=seed, num_options=num_options, mc_fraction=1.0)
    letters = list(LETTERS[:num_options])
    hits, picked = 0, dict.fromkeys(letters, 0)
    with torch.no_grad():
        for i in range(len(data)):
            item = data[i]
            user = item["prompt"].removeprefix("<image>\n")
            lp = model.letter_logprobs(model.preprocess(item["frames"]), model.prompt(user),
                                       letters)
            pred = letters[int(np.argmax(lp))]
            picked[pred] += 1
            hits += pred == item["target"][1]
    return {"checkpoint": str(ckpt), "n": len(data), "options": num_options,
            "accuracy": 100.0 * hits / len(data), "chance": 100.0 / num_options,
            "picked": picked}


def frame_similarity(ckpt: Path | str, n: int = 20, seed: int = 7) -> dict:
    """Do the frames of a two-scene MiniTVBench Scene Transition video reach the decoder
    distinguishably? Mean cosine similarity of the per-frame visual tokens (the projected
    connector output, flattened) within a scene and across the two scenes, plus the frames the
    DINO dropping kept and the token regime."""
    model = longvu.load(ckpt).eval()
    data = VideoStageDataset(n, seed=seed, tasks=("scene_transition",))
    within, across, kept, regimes = [], [], [], set()
    ids = model.tokenize(model.prompt("x"))
    with torch.no_grad():
        for i in range(n):
            frames = data[i]["frames"]
            change = next(t for t in range(1, len(frames))
                          if not np.array_equal(frames[t], frames[t - 1]))
            trace: dict = {}
            model.embed_one(ids, model.preprocess(frames), trace)
            f = torch.nn.functional.normalize(trace["proj_highres"].flatten(1), dim=-1)
            sim = f @ f.T
            scene = torch.tensor([t >= change for t in trace["kept_frame_indices"]])
            same = scene[:, None] == scene[None, :]
            off = ~torch.eye(len(f), dtype=torch.bool)
            within.append(float(sim[same & off].mean()))
            across.append(float(sim[~same].mean()))
            kept.append(len(trace["kept_frame_indices"]) / len(frames))
            regimes.add(trace["regime"])
    return {"checkpoint": paths.relative(Path(ckpt)), "videos": n,
            "cos_within_scene": round(float(np.mean(within)), 4),
            "cos_across_scenes": round(float(np.mean(across)), 4),
            "frames_kept_fraction": round(float(np.mean(kept)), 3), "regimes": sorted(regimes)}


def prompt_lengths(ckpt: Path | str, coco_root: Path | str, n: int = 50) -> dict:
    """Token counts (text ids, visual rows) of the stages' prompts under a checkpoint's
    tokenizer: 4-option image MC and the 2-option Scene Transition question."""
    # lib.train imports transformers' Trainer stack (see train_stage)
    from lib.train import SampleBuilder

    model = longvu.load(ckpt).eval()
    builder = SampleBuilder(model)
    img = ImageStageDataset(CaptionIndex.from_root(coco_root, "val"), n, seed=7, mc_fraction=1.0)
    vid = VideoStageDataset(n, seed=7, tasks=("scene_transition",))
    out = {}
    for name, data in (("image_mc_4", img), ("scene_transition_2", vid)):
        lens = [len(builder(data[i])["input_ids"]) for i in range(n)]
        out[name] = {"text_ids_mean": round(float(np.mean(lens)), 1), "max": max(lens)}
    ids = model.tokenize(model.prompt("x"))
    with torch.no_grad():
        _, pmap = model.embed_one(ids, model.preprocess(img[0]["frames"]))
    out["visual_rows_per_frame"] = int((pmap == -1).sum())
    out["tokenizer_size"] = len(model.tokenizer)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lib.demo_stages",
                                description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("mc-accuracy",
                       help="held-out image multiple-choice accuracy of a checkpoint")
    q.add_argument("--checkpoint", required=True)
    q.add_argument("--coco", default=None,
                   help="COCO-layout dir (default: the demo's shapes-COCO)")
    q.add_argument("--profile", default="demo", choices=["demo", "smoke"])
    q.add_argument("--n", type=int, default=200)
    q.add_argument("--options", type=int, default=4)
    q.add_argument("--seed", type=int, default=7)
    f = sub.add_parser("frame-similarity",
                       help="are frames of different scenes distinguishable at the decoder?")
    f.add_argument("--checkpoint", required=True)
    f.add_argument("--n", type=int, default=20)
    t = sub.add_parser("prompt-lengths", help="token counts of the stages' prompts")
    t.add_argument("--checkpoint", required=True)
    t.add_argument("--coco", default=None)
    t.add_argument("--profile", default="demo", choices=["demo", "smoke"])
    a = p.parse_args(argv)
    if a.cmd == "frame-similarity":
        res = frame_similarity(a.checkpoint, a.n)
    else:
        coco_root = a.coco or assets.embedded(a.profile)["coco"]
        res = (image_mc_accuracy(a.checkpoint, coco_root, a.n, a.options, a.seed)
               if a.cmd == "mc-accuracy" else prompt_lengths(a.checkpoint, coco_root))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
