"""After a fine-tune: held-out answer loss and multiple-choice accuracy, and the results row.

Notebook 03 calls ``heldout_eval`` on pseudo-videos of the val split (seed + 1) for the start
model and the trained one, and ``result_row`` for its line of ``outputs/results/finetune.csv``.
Accuracy is measured twice: with the user turn the run trained on (``TrainConfig.prompt_format``)
and with the evaluator's TVBench prompt, the one notebook 04 asks in; a model that learned its
task only in the fork's prompt shows it there (docs/demo.md section 8).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.utils.data as tud

from lib import longvu, paths
from lib.config import TrainConfig
from lib.questions import LETTERS, user_turn
from lib.train import RECIPE_COLUMNS, SampleBuilder, pseudo_video_dataset
from lib.trainer import TrainError


@torch.no_grad()
def answer_loss(model, dataset: tud.Dataset, indices: Iterable[int],
                supervise_prompt_tokens: bool = False) -> float:
    """Mean answer-token loss of `model` (adapter attached) on dataset items (eval mode), over
    the items whose answer survives the token budget; the others are left out and counted in a
    printed warning (``TrainError`` when none survives)."""
    builder = SampleBuilder(model, supervise_prompt_tokens)
    model.eval()
    losses, dropped = [], []
    for i in indices:
        s = builder(dataset[i])
        out = model.forward(s["visual"], [s["input_ids"]], [s["labels"]])
        if out.num_tokens:
            losses.append(float(out.loss))
        else:
            dropped.append(i)
    if dropped:
        print(f"warning: answer loss over {len(losses)} of {len(losses) + len(dropped)} items: "
              f"items {dropped[:10]} have no answer token left within the token budget",
              file=sys.stderr)
    if not losses:
        raise TrainError(f"answer loss: every item's answer is cut by the token budget "
                         f"(tokenizer_model_max_length {model.config.tokenizer_model_max_length});"
                         " fix: fewer scenes or options, or a checkpoint with a larger budget")
    return float(np.mean(losses))


@torch.no_grad()
def answer_accuracy(model, items: Sequence[dict], batch: int = 8) -> dict[str, float]:
    """Multiple-choice accuracy in percent of `model` on pseudo-video items, each asked with the
    prompt it is trained on (the training sample's tokens before the answer): by ``letter``
    (argmax of `letter_logprobs` over the item's letters is the answer's) and by ``option``
    likelihood (argmax of each option text's summed log-prob after that prompt), as
    `lib.demo_pretrain.image_accuracy` scores images; ``batch`` items per `likelihood_batch`."""
    builder, hits = SampleBuilder(model), []
    model.eval()
    for lo in range(0, len(items), batch):
        part = items[lo:lo + batch]
        texts = [builder.text(it["prompt"], it["target"]) for it in part]
        asks = [ids[:next(j for j, t in enumerate(lab) if t != -100)] for ids, lab in texts]
        lets, opts = model.likelihood_batch(
            [builder.visual(it["frames"]) for it in part], asks,
            [list(LETTERS[:len(it["options"])]) for it in part], [it["options"] for it in part])
        hits += [(np.argmax(a) == it["answer_index"], np.argmax(b) == it["answer_index"])
                 for a, b, it in zip(lets, opts, part)]
    letter, option = 100 * np.mean(hits, axis=0)
    return {"letter": float(letter), "option": float(option)}


def heldout_eval(cfg: TrainConfig, metrics: Mapping[str, Any], n: int) -> dict[str, Any]:
    """Answer loss (`answer_loss`) and accuracy (`answer_accuracy`) of the start model and of
    the trained one on the same ``n`` held-out pseudo-videos (val split, seed + 1), with
    their ``n`` and ``chance`` (mean 1/options, percent). ``letter``/``option`` ask in the
    training prompt, ``letter_eval_prompt``/``option_eval_prompt`` in the evaluator's. The
    trained model is reloaded as notebook 04 does; the adapter is not merged (merging into a
    4-bit base re-quantises and changes the logits). The models load one after the other, so
    only one is in memory."""
    held = pseudo_video_dataset(dataclasses.replace(cfg, split="val", n=n, seed=cfg.seed + 1))
    items = [held[i] for i in range(min(n, len(held)))]
    if not items:
        raise TrainError(f"held-out evaluation over {n} pseudo-videos; fix: EVAL_SAMPLES >= 1")
    quant = "nf4" if metrics["quantization"] == "nf4" else "none"
    layout = {"token_layout": cfg.token_layout, "layout_seed": cfg.seed}
    asked = [dict(it, prompt=user_turn(it["question"], it["options"], "eval")) for it in items]
    chance = 100 * float(np.mean([1 / len(it["options"]) for it in items]))
    out: dict[str, Any] = {"n": len(items), "chance": chance}
    for name in ("base", "tuned"):
        if name == "base":
            model = longvu.load(cfg.model, quantization=quant, **layout)
        elif cfg.mode == "full":  # a complete checkpoint, towers included (already in its layout)
            model = longvu.load(paths.absolute(metrics["model_dir"]))
        else:
            model = longvu.load(cfg.model, quantization=quant,
                                adapter=paths.absolute(metrics["adapter_dir"]), **layout)
        acc = answer_accuracy(model, items)
        again = acc if cfg.prompt_format == "eval" else answer_accuracy(model, asked)
        out[name] = {"loss": answer_loss(model, items, range(len(items))), **acc,
                     **{f"{k}_eval_prompt": v for k, v in again.items()}}
        del model
    return out


def result_row(params: Mapping[str, Any], metrics: Mapping[str, Any],
               heldout: Mapping[str, Any]) -> dict[str, Any]:
    """Notebook 03's row of ``outputs/results/finetune.csv`` (key: run, profile) from its
    parameters, the training metrics and ``heldout_eval``. Time and memory stay in the run's
    metrics.json: the tracked table holds only what the same seed reproduces byte for byte."""
    p, m = params, metrics
    return {"run": p["RUN_NAME"], "profile": p["PROFILE"], "backbone": p["BACKBONE"],
            "mode": m.get("mode") or p.get("MODE"), "quantization": m["quantization"],
            "source": p.get("SOURCE", "coco"), "questions": p["QUESTIONS"],
            "answer_format": p.get("ANSWER_FORMAT", "letter"),
            "prompt_format": p.get("PROMPT_FORMAT", "fork"),
            "S": p["S"], "F": p["F"], "N": p["N"], "steps": m["steps"],
            "first_loss": m["first_loss"], "last_loss": m["last_loss"],
            "heldout_base": heldout["base"]["loss"], "heldout_tuned": heldout["tuned"]["loss"],
            **{f"heldout_{k}_{w}": heldout[w][k] for k in ("letter", "option",
                                                           "letter_eval_prompt",
                                                           "option_eval_prompt")
               for w in ("base", "tuned")},
            "adapter": paths.relative(paths.absolute(m.get("adapter_dir", m.get("model_dir")))
                                      .resolve()),
            **{k: m.get(k) for k in RECIPE_COLUMNS}}
