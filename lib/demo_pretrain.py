"""The demo's "pretrained" start, shipped in ``assets/demo_start/qwen``, which ``make demo`` uses.

The real LongVU starts from pretrained towers and a pretrained LLM and then runs its image stage;
the demo's random towers and decoder could not learn to ground a caption within notebook 00's
budget (docs/demo.md). This module builds, once and offline, the toy counterpart:

1. a vocabulary tokenizer trained on the demo's own text (shapes-COCO captions, the MC prompt
   and question templates), so a 4-option question is ~170 tokens instead of ~800 bytes;
2. a tower stage: SigLIP's sigmoid loss between both towers' pooled features and a small
   caption encoder (thrown away afterwards); the towers are frozen again after it;
3. optionally a language stage (decoder only, text-only multiple choice; off by default, it
   lifted nothing measured);
4. the image stage (decoder + connector): captioning and image multiple choice.

Each stage logs every step's loss and counts steps that never trained (no supervised token, a
non-finite loss). ``python -m lib.demo_pretrain build --out DIR`` writes the checkpoint plus
``manifest.json`` (command, config, data sha256, learning curves, held-out accuracies: caption
-> image retrieval, image MC by letter, option likelihood and caption likelihood, build time);
``make demo-pretrain`` rebuilds the shipped start. ``python -m lib.demo_pretrain evaluate
--checkpoint DIR`` re-measures a checkpoint. ``lib.demo_stages.checkpoint`` hands the shipped
start to notebooks 01, 03 and 04. Tested by ``tests/test_demo_pretrain.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lib import assets, longvu, paths
from lib.coco import CaptionIndex
from lib.demo_stages import CAPTION_PROMPT, MC_QUESTION, SHIPPED, ImageStageDataset
from lib.longvu import prompts
from lib.longvu.tiny import build_tiny, build_vocab_tokenizer
from lib.train import Collator, SampleBuilder, pad_id
from lib.tvbench import LETTERS

DEFAULT_OUT = SHIPPED[("demo", "qwen")]  # where `make demo-pretrain` writes the shipped start
TEXT_QUESTION = "Which caption describes the same scene as the description?"
ORDER_QUESTION = "Which option tells the scenes of the story in the right order?"


@dataclass(frozen=True)
class PretrainConfig:
    seed: int = 0
    width: int = 64
    layers: int = 4  # 2 layers could not order scenes at all (docs/demo.md)
    tower_steps: int = 600
    tower_batch: int = 128
    tower_lr: float = 1e-3
    text_steps: int = 0  # the language stage is kept as an option; it lifted nothing measured
    image_steps: int = 500
    batch: int = 16
    text_lr: float = 2e-3
    image_lr: float = 3e-3
    options: int = 4
    eval_n: int = 100
    order_fraction: float = 0.3
    image_mc_fraction: float = 0.5


def corpus(index: CaptionIndex, extra: tuple[str, ...] = ()) -> list[str]:
    """The tokenizer's training text: every caption and rendered image/text MC prompts and
    targets (+ ``extra``). MiniTVBench and pseudo-video question words outside it are still
    tokenized, as sub-words or bytes."""
    caps = [c for i in index.image_ids for c in index.captions[i]]
    rng = random.Random(0)
    rendered = []
    for q in (MC_QUESTION, TEXT_QUESTION):
        for _ in range(50):
            opts = rng.sample(caps, 4)
            rendered.append(prompts.build_prompt("qwen", prompts.mc_user_text(q, opts)))
            rendered.append(f"({rng.choice(LETTERS[:4])}) {opts[0]}")
    return caps + rendered + list(extra)


def _order_text(caps: list[str], style: int) -> str:
    if style == 0:
        return " ".join(f"Scene {i + 1}: {c.rstrip('.')}." for i, c in enumerate(caps))
    if style == 1:
        return "From " + " to ".join(c.rstrip(".") for c in caps) + "."
    return "First " + ", then ".join(c.rstrip(".") for c in caps) + "."


def text_order_item(index: CaptionIndex, rng: random.Random, options: int = 4) -> dict:
    """Text-only ordering: a story of 2-4 scenes told in one wording, options that list the
    scenes (other captions of the same images) in different orders in another wording."""
    ids = rng.sample(index.image_ids, rng.randint(2, 3))
    told, shown = zip(*(rng.sample(index.captions[i], 2) for i in ids))
    story = ". After that, ".join(c.rstrip(".") for c in told) + "."
    style = rng.randrange(3)
    perms: list[list[int]] = [list(range(len(ids)))]
    for _ in range(200):
        if len(perms) == min(options, math.factorial(len(ids))):
            break
        p = rng.sample(range(len(ids)), len(ids))
        if p not in perms:
            perms.append(p)
    opts = [_order_text([shown[j] for j in p], style) for p in perms]
    right = opts[0]
    rng.shuffle(opts)
    k = opts.index(right)
    user = f"Story: {story}\n" + prompts.mc_user_text(ORDER_QUESTION, opts)
    return {"user": user, "options": opts, "answer": k, "target": f"({LETTERS[k]}) {right}"}


def text_mc_item(index: CaptionIndex, rng: random.Random, options: int = 4) -> dict:
    """Description = one caption of an image; right option = another caption of it; wrong
    options = captions of other images."""
    ids = index.image_ids
    image_id = rng.choice(ids)
    desc, right = rng.sample(index.captions[image_id], 2)
    others = [j for j in rng.sample(ids, options + 1) if j != image_id][:options - 1]
    opts = [rng.choice(index.captions[j]) for j in others]
    k = rng.randrange(options)
    opts.insert(k, right)
    user = f"Description: {desc}\n" + prompts.mc_user_text(TEXT_QUESTION, opts)
    return {"user": user, "options": opts, "answer": k, "target": f"({LETTERS[k]}) {right}"}


def _text_batch(tok, items: list[dict]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rows = [prompts.training_example(tok, "qwen", it["user"], it["target"], with_image=False)
            for it in items]
    n = max(len(i) for i, _ in rows)
    ids = torch.full((len(rows), n), pad_id(tok), dtype=torch.long)
    lab = torch.full((len(rows), n), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.long)
    for r, (i, lb) in enumerate(rows):
        ids[r, :len(i)], lab[r, :len(lb)], mask[r, :len(i)] = torch.tensor(i), torch.tensor(lb), 1
    return ids, lab, mask


def _step(opt, params, loss: torch.Tensor, log: list, lr_at: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr_at
    opt.zero_grad()
    if not torch.isfinite(loss):
        log.append({"loss": float("nan"), "trained": False})
        return
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    log.append({"loss": round(float(loss.detach()), 4), "trained": True})
    if len(log) % 50 == 0:
        print(f"step {len(log)}  loss {log[-1]['loss']}", file=sys.stderr, flush=True)


def _lr(base: float, step: int, steps: int) -> float:
    warm = max(1, steps // 20)
    if step < warm:
        return base * (step + 1) / warm
    return base * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))


class CaptionTower(nn.Module):
    """The text side of the tower stage: a 2-layer encoder over the demo tokenizer's ids, mean
    pooled. It exists only to train the image towers and is not saved."""

    def __init__(self, vocab: int, width: int = 64, max_len: int = 96):
        super().__init__()
        self.embed, self.pos = nn.Embedding(vocab, width), nn.Embedding(max_len, width)
        layer = nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.pos(torch.arange(ids.shape[1]))[None]
        x = self.encoder(x, src_key_padding_mask=mask == 0)
        m = mask[..., None].float()
        return (x * m).sum(1) / m.sum(1)


def _tower_inputs(model, index: CaptionIndex) -> tuple[torch.Tensor, torch.Tensor]:
    vis = [model.preprocess(index.load_image(i)[None], "image") for i in index.image_ids]
    return torch.cat([v["siglip"] for v in vis]), torch.cat([v["dino"] for v in vis])


def _pooled(model, siglip_px: torch.Tensor, dino_px: torch.Tensor) -> list[torch.Tensor]:
    """Mean of each tower's patch features, the layers the connector reads (with gradients,
    unlike ``Towers.encode_*``)."""
    t = model.towers
    s = t.siglip(siglip_px, output_hidden_states=True).hidden_states[-1]
    return [s.mean(1), t.dino(dino_px).last_hidden_state[:, 1:].mean(1)]


def _sigmoid_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor,
                  bias: torch.Tensor) -> torch.Tensor:
    """SigLIP's pairwise sigmoid loss (Zhai et al. 2023): matching pairs +1, all others -1."""
    logits = F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T * scale.exp() + bias
    sign = 2 * torch.eye(len(img)) - 1
    return -F.logsigmoid(sign * logits).sum() / len(img)


def train_towers(model, index: CaptionIndex, cfg: PretrainConfig
                 ) -> tuple[list[dict], Callable[..., dict]]:
    """Tower stage: the toy counterpart of SigLIP/DINOv2 pretraining. Both random towers learn,
    contrastively against a small caption encoder, features that tell shapes-COCO scenes apart;
    afterwards they are frozen again as in LongVU. Returns the log and a retrieval scorer."""
    rng = random.Random(cfg.seed * 1000 + 3)
    siglip_px, dino_px = _tower_inputs(model, index)
    tok, width = model.tokenizer, 64
    text = CaptionTower(len(tok), width)
    heads = nn.ModuleList([nn.Linear(w, width) for w in model.towers.widths])
    scale, bias = nn.Parameter(torch.tensor(math.log(10.0))), nn.Parameter(torch.tensor(-10.0))
    towers = [model.towers.siglip, model.towers.dino]
    for t in towers:
        t.requires_grad_(True)
    params = [p for m in (*towers, text, heads) for p in m.parameters()] + [scale, bias]
    opt = torch.optim.AdamW(params, lr=cfg.tower_lr, weight_decay=0.01)
    log: list[dict] = []

    def embed_text(caps: list[str]) -> torch.Tensor:
        enc = tok(caps, add_special_tokens=False, padding=True, return_tensors="pt")
        return text(enc["input_ids"], enc["attention_mask"])

    # Contrastive pairs need captions that name their image alone: one that several images
    # share (shapes-COCO's position-free wordings) would make its other images false negatives.
    owners = Counter(c for i in index.image_ids for c in set(index.captions[i]))
    own = [[c for c in index.captions[i] if owners[c] == 1] or index.captions[i]
           for i in index.image_ids]
    for s in range(cfg.tower_steps):
        idx = rng.sample(range(len(index.image_ids)), min(cfg.tower_batch, len(index.image_ids)))
        caps = embed_text([rng.choice(own[i]) for i in idx])
        feats = _pooled(model, siglip_px[idx], dino_px[idx])
        loss = sum(_sigmoid_loss(h(f), caps, scale, bias) for h, f in zip(heads, feats))
        _step(opt, params, loss, log, _lr(cfg.tower_lr, s, cfg.tower_steps))
    for t in towers:
        t.requires_grad_(False)

    @torch.no_grad()
    def retrieval(val: CaptionIndex, n: int, options: int = 4, seed: int = 7) -> dict:
        """Held-out caption -> image choice among ``options`` images, in percent."""
        sp, dp = _tower_inputs(model, val)
        img = sum(F.normalize(h(f), dim=-1) for h, f in zip(heads, _pooled(model, sp, dp)))
        txt = F.normalize(embed_text([val.captions[i][0] for i in val.image_ids]), dim=-1)
        r, hits = random.Random(seed), 0
        n = min(n, len(val.image_ids))
        for i in range(n):
            cands = [i] + r.sample([j for j in range(len(val.image_ids)) if j != i], options - 1)
            hits += int(torch.argmax(txt[i] @ img[cands].T) == 0)
        return {"n": n, "options": options, "caption_to_image": 100 * hits / n,
                "chance": 100 / options}

    return log, retrieval


def train_text(model, index: CaptionIndex, cfg: PretrainConfig) -> list[dict]:
    """Language stage: decoder only, text-only multiple choice."""
    rng = random.Random(cfg.seed * 1000 + 1)
    dec = model.base_decoder
    params = [p for p in dec.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.text_lr, weight_decay=0.01)
    log: list[dict] = []
    dec.train()
    for s in range(cfg.text_steps):
        items = [(text_order_item if rng.random() < cfg.order_fraction else text_mc_item)(
            index, rng, cfg.options) for _ in range(cfg.batch)]
        ids, lab, mask = _text_batch(model.tokenizer, items)
        loss = dec(input_ids=ids, attention_mask=mask, labels=lab).loss
        _step(opt, params, loss, log, _lr(cfg.text_lr, s, cfg.text_steps))
    dec.eval()
    return log


def train_image(model, index: CaptionIndex, cfg: PretrainConfig) -> list[dict]:
    """Image stage: decoder + connector, image multiple choice (towers stay frozen)."""
    data = ImageStageDataset(index, cfg.image_steps * cfg.batch, seed=cfg.seed,
                             num_options=cfg.options, mc_fraction=cfg.image_mc_fraction)
    builder, collate = SampleBuilder(model), Collator(pad_id(model.tokenizer))
    params = [p for n, p in model.named_parameters() if not n.startswith("towers.")]
    opt = torch.optim.AdamW(params, lr=cfg.image_lr, weight_decay=0.01)
    log: list[dict] = []
    model.train()
    for s in range(cfg.image_steps):
        b = collate([builder(data[s * cfg.batch + j]) for j in range(cfg.batch)])
        if b["stats"]["answer_tokens"] == 0:
            log.append({"loss": None, "trained": False})
            continue
        out = model(b["visual"], b["input_ids"], b["labels"], b["attention_mask"])
        _step(opt, params, out.loss, log, _lr(cfg.image_lr, s, cfg.image_steps))
    model.eval()
    return log


@torch.no_grad()
def _text_scores(model, user: str, options: list[str]) -> tuple[int, int]:
    """(letter pick, option-likelihood pick) for a text-only question."""
    tok, dec = model.tokenizer, model.base_decoder
    ids = tok(prompts.build_prompt("qwen", user, with_image=False) + "(",
              add_special_tokens=False)["input_ids"]
    logits = dec(input_ids=torch.tensor([ids])).logits[0, -1]
    letter_ids = [tok(x, add_special_tokens=False)["input_ids"][0] for x in LETTERS[:len(options)]]
    letter = int(torch.argmax(logits[letter_ids]))
    base = ids[:-1]
    lps = []
    for o in options:
        c = tok(o, add_special_tokens=False)["input_ids"]
        lp = dec(input_ids=torch.tensor([base + c])).logits[0].log_softmax(-1)
        lps.append(float(lp[len(base) - 1:len(base) - 1 + len(c)].gather(
            1, torch.tensor(c)[:, None]).sum()))
    return letter, int(np.argmax(lps))


def text_accuracy(model, index: CaptionIndex, n: int, options: int = 4, seed: int = 7,
                  task: str = "match") -> dict:
    """Held-out text-only MC accuracy (by letter and by option likelihood), in percent;
    ``task`` "match" (caption matching) or "order" (scene order)."""
    rng = random.Random(seed)
    make = text_mc_item if task == "match" else text_order_item
    hits, chance = np.zeros(2), 0.0
    for _ in range(n):
        it = make(index, rng, options)
        hits += np.array(_text_scores(model, it["user"], it["options"])) == it["answer"]
        chance += 1 / len(it["options"])  # 2-scene stories have only 2 orders
    return {"n": n, "options": options, "letter": 100 * hits[0] / n,
            "option_likelihood": 100 * hits[1] / n, "chance": round(100 * chance / n, 1)}


@torch.no_grad()
def image_accuracy(model, index: CaptionIndex, n: int, options: int = 4, seed: int = 7) -> dict:
    """Held-out image MC accuracy in percent: by letter, by option likelihood after the MC
    prompt, and by caption likelihood (each option scored as the answer to the captioning
    prompt, the image stage's other task)."""
    data = ImageStageDataset(index, n, seed=seed, num_options=options, mc_fraction=1.0)
    letters = list(LETTERS[:options])
    hits = np.zeros(3)
    cap_prompt = model.prompt(CAPTION_PROMPT)
    for i in range(n):
        it = data[i]
        user = it["prompt"].removeprefix("<image>\n")
        opts = [line[4:] for line in user.split("\n") if line[:1] == "(" and line[2:4] == ") "]
        vis = model.preprocess(it["frames"])
        lp = model.letter_logprobs(vis, model.prompt(user), letters)
        ol = model.sequence_logprob(vis, model.prompt(user), opts)
        cl = model.sequence_logprob(vis, cap_prompt, opts)
        k = letters.index(it["target"][1])
        hits += np.array([int(np.argmax(lp)) == k, int(np.argmax(ol)) == k,
                          int(np.argmax(cl)) == k])
    return {"n": n, "options": options, "letter": 100 * hits[0] / n,
            "option_likelihood": 100 * hits[1] / n, "caption_likelihood": 100 * hits[2] / n,
            "chance": 100 / options}


def _curve(log: list[dict], points: int = 20) -> list[float | None]:
    k = max(1, len(log) // points)
    out = []
    for i in range(0, len(log), k):
        xs = [r["loss"] for r in log[i:i + k] if r["trained"]]
        out.append(round(float(np.mean(xs)), 4) if xs else None)
    return out


def data_sha256(coco_root: Path) -> str:
    h = hashlib.sha256()
    for split in ("train", "val"):
        h.update((Path(coco_root) / "annotations" / f"captions_{split}2017.json").read_bytes())
    return h.hexdigest()


def build(coco_root: Path | str, out: Path | str, cfg: PretrainConfig,
          command: str = "") -> dict:
    """Tokenizer -> language stage -> image stage -> checkpoint + manifest.json in ``out``."""
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    train_idx = CaptionIndex.from_root(coco_root, "train")
    val_idx = CaptionIndex.from_root(coco_root, "val")
    tok = build_vocab_tokenizer("qwen", corpus(train_idx))
    model = build_tiny("qwen", "image", "demo", cfg.seed, tokenizer=tok, width=cfg.width,
                       layers=cfg.layers)
    tower_log, retrieval = train_towers(model, train_idx, cfg)
    tower_acc = retrieval(val_idx, cfg.eval_n)
    print(f"tower stage: {json.dumps(tower_acc)}", file=sys.stderr, flush=True)
    text_log = train_text(model, train_idx, cfg)
    text_acc = {t: text_accuracy(model, val_idx, cfg.eval_n, cfg.options, task=t)
                for t in ("match", "order")}
    print(f"text stage: {json.dumps(text_acc)}", file=sys.stderr, flush=True)
    image_log = train_image(model, train_idx, cfg)
    image_acc = image_accuracy(model, val_idx, cfg.eval_n, cfg.options)
    out = Path(out)
    longvu.save(model, out)
    manifest = {
        "command": command, "config": asdict(cfg), "tokenizer_size": len(tok),
        "data": {"coco": paths.relative(Path(coco_root)),
                 "captions_sha256": data_sha256(Path(coco_root))},
        "tower_stage": {"steps": len(tower_log),
                        "untrained_steps": sum(not r["trained"] for r in tower_log),
                        "loss_curve": _curve(tower_log), "heldout_retrieval": tower_acc},
        "text_stage": {"steps": len(text_log),
                       "untrained_steps": sum(not r["trained"] for r in text_log),
                       "loss_curve": _curve(text_log), "heldout_text_mc": text_acc},
        "image_stage": {"steps": len(image_log),
                        "untrained_steps": sum(not r["trained"] for r in image_log),
                        "loss_curve": _curve(image_log), "heldout_image_mc": image_acc},
        "build_seconds": round(time.time() - t0, 1),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lib.demo_pretrain",
                                description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the pretrained demo start")
    b.add_argument("--coco", default=None,
                   help="shapes-COCO root (default: the demo profile's, built on first use)")
    b.add_argument("--out", default=str(DEFAULT_OUT),
                   help="checkpoint folder (default: assets/demo_start/qwen)")
    for f in PretrainConfig.__dataclass_fields__.values():
        b.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    e = sub.add_parser("evaluate", help="held-out accuracies of a checkpoint")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--coco", default=None)
    e.add_argument("--n", type=int, default=100)
    a = vars(p.parse_args(argv))
    if a["cmd"] == "evaluate":
        model = longvu.load(a["checkpoint"]).eval()
        val = CaptionIndex.from_root(a["coco"] or assets.embedded("demo")["coco"], "val")
        res = {t: text_accuracy(model, val, a["n"], task=t) for t in ("match", "order")}
        res["image"] = image_accuracy(model, val, a["n"])
        print(json.dumps(res))
        return 0
    cfg = PretrainConfig(**{k: a[k] for k in PretrainConfig.__dataclass_fields__})
    coco = a["coco"] or assets.embedded("demo")["coco"]
    m = build(coco, a["out"], cfg, "python -m lib.demo_pretrain " + " ".join(
        sys.argv[1:] if argv is None else argv))
    print(json.dumps({k: m[k] for k in ("text_stage", "image_stage", "build_seconds")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
