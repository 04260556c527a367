"""Run configurations: one frozen dataclass per kind of run, built from a notebook's parameters
or a CLI's flags.

``EvalSpec`` says what an evaluation run computes (conditions, seeds, scorers, sampler, limits)
and what it does with short video frames; ``lib.evaluate`` runs it. Used by notebooks 01 and
04 and the ``lib.tvbench eval`` CLI.

``TrainConfig`` is every knob of a fine-tuning run; ``lib.train`` runs it. Used by notebook 03
(``TrainConfig.from_params``), the ``python -m lib.train`` CLI (``add_train_arguments`` and
``TrainConfig.from_args``, both derived from the fields) and ``lib.demo_stages``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from lib import conditions, questions, recipes
from lib.t2vid import SOURCES
from lib.video import Sampler


# What an evaluation does with questions whose frames fall short of their window or header
# (lib.video.SHORT_NOTES): stop before writing results, or count them in every result.
ON_SHORT_VIDEO = ("fail", "report")


@dataclass
class EvalSpec:
    conditions: tuple[str, ...] = ("normal",)
    seeds: tuple[int, ...] = (0,)
    scorings: tuple[str, ...] = ("paper",)
    sampler: Sampler = field(default_factory=Sampler)
    max_new_tokens: int = 5
    limit: int | None = None  # first N questions of each task
    num_workers: int = field(default_factory=lambda: default_workers())
    frame_cache: str | None = None
    backend: str = "pyav"
    threads: int | None = None  # torch intra-op threads while running (1 suits tiny CPU models)
    on_short_video: str = "fail"  # ON_SHORT_VIDEO; not in a run's fingerprint (a rerun resumes)
    perm_k: int = 0  # lib.diagnostics: move each answer k options later (0: off; checklist 29)
    batch_size: int | None = None  # (question, condition) rows per decoder forward; None: the
    # model's default for its device (lib.models); not in the fingerprint (same predictions)

    def __post_init__(self):
        if self.on_short_video not in ON_SHORT_VIDEO:
            raise ValueError(f"on_short_video must be one of {ON_SHORT_VIDEO}, got "
                             f"{self.on_short_video!r}")
        if self.batch_size is not None and (not isinstance(self.batch_size, int)
                                            or self.batch_size < 1):
            raise ValueError("batch_size (--batch-size, BATCH_SIZE) must be a positive integer "
                             f"or None for the device's default, got {self.batch_size!r}")

    def units(self) -> list[tuple[str, int | None]]:
        return conditions.condition_units(self.conditions, self.seeds)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EvalSpec:
        """From ``python -m lib.tvbench eval`` flags (``lib.eval_cli.add_eval_args``)."""
        return cls(tuple(args.conditions), tuple(args.seeds), tuple(args.scorings),
                   Sampler(args.sampler, args.num_frames), args.max_new_tokens, args.limit,
                   args.workers, args.frame_cache, args.backend, args.threads,
                   getattr(args, "on_short_video", "fail"), getattr(args, "perm_k", 0),
                   batch_size=getattr(args, "batch_size", None))

    @classmethod
    def from_params(cls, params: Mapping[str, Any], frame_cache_dir: Path | str | None = None,
                    conditions: Sequence[str] | None = None) -> EvalSpec:
        """From notebook 01/04 parameters: CONDITIONS (or ``conditions``), SHUFFLE_SEEDS,
        SCORINGS (or one SCORING), LIMIT, WORKERS (None: ``default_workers``), TORCH_THREADS,
        FRAME_CACHE (True: cache decoded clips in ``frame_cache_dir``) and ON_SHORT_VIDEO
        (default "fail")."""
        p = params
        workers = {} if p["WORKERS"] is None else {"num_workers": p["WORKERS"]}
        return cls(conditions=tuple(conditions or p["CONDITIONS"]),
                   seeds=tuple(p["SHUFFLE_SEEDS"]),
                   scorings=tuple(p["SCORINGS"]) if "SCORINGS" in p else (p["SCORING"],),
                   limit=p["LIMIT"], threads=p["TORCH_THREADS"],
                   frame_cache=str(frame_cache_dir) if p["FRAME_CACHE"] and frame_cache_dir
                   else None, on_short_video=p.get("ON_SHORT_VIDEO", "fail"), **workers)


def default_workers() -> int:
    """Decode workers: leave one core to the model (0 = decode in the main process)."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


# ---------------------------------------------------------------------------------------------
# Fine-tuning

TRAIN_MODES = ("qlora", "lora", "full")
DEFAULT_LR = {"qlora": 1e-4, "lora": 1e-4, "full": 5e-6}
# Notebook parameters whose name is not a field's name upper-cased.
PARAM_ALIASES = {"STEPS": "max_steps"}


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a fine-tuning run (serialised to RUN_DIR/config.json)."""

    model: str  # LongVU checkpoint dir or cached hub id (the start checkpoint)
    out: str  # run dir
    coco: str | None = None  # COCO-layout root for lib.pseudo_video
    split: str = "train"
    source: str = "coco"  # scenes show their image (coco) or a caption as text (t2vid)
    questions: str = "R1"  # lib.questions mix string, e.g. "R1:S=4:F=20,R3:S=6:F=5"
    S: int = 4
    F: int = 5
    n: int = 1000  # formations (samples per epoch)
    question_mode: str = "fixed"  # lib.questions mode: fixed | compat
    answer_format: str = "letter"  # the target: letter ("(A) text", the paper's) | text
    prompt_format: str = "fork"  # the user turn: fork (the paper's) | eval (the evaluator's)
    jitter: str = "mild"
    frame_size: int | None = None  # resize frames (None: keep the images' size)
    mode: str = "qlora"
    max_steps: int | None = None  # optimizer steps; None: `epochs` over n samples
    epochs: float = 1.0
    lr: float | None = None  # None: 1e-4 for (q)lora, 5e-6 (the paper's) for full
    lora_r: int = 64
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    global_batch: int = 64
    micro_batch: int = 1
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # 0: no clipping (the paper's DeepSpeed config)
    recipe: str = "ours"  # lib.recipes: the recipe the unset fields came from
    seeding: str = "global"  # pseudo-video tables: one for all ranks | per-rank (seed + rank)
    master_weights: str = "load"  # "fp32": trainable tensors fp32 under bf16 autocast
    optim: str = "auto"  # auto: 8-bit paged AdamW on CUDA, AdamW on CPU | adamw (fp32 states)
    group_by_length: bool = False  # micro-batches of similar length (fewer pad tokens)
    deepspeed: str | None = None  # a DeepSpeed JSON (configs/deepspeed/zero2.json), CUDA only
    attn_implementation: str = "sdpa"  # the decoder's attention: sdpa (PyTorch SDPA) | eager
    train_connector: bool = True
    init_adapter: str | None = None  # start from a saved adapter dir (e.g. a previous run)
    token_layout: str | None = None  # "video": an _img start in the paper's video layout
    supervise_prompt_tokens: bool = False  # the paper code's labels (prompt role tokens too)
    legacy_placeholder_tokens: bool = False  # the paper collator's token-id-0 leak
    on_bad_sample: str = "raise"  # raise | substitute (serve the next sample, counted and logged)
    seed: int = 0
    save_steps: int = 100
    save_total_limit: int = 2
    time_budget_s: float | None = None  # save and stop after this much training wall time
    num_workers: int | None = None  # None: 0 on CPU, min(6, cores - 1) on CUDA
    log_every: int = 10  # print a line every N steps (every step goes to log.jsonl)
    require_4bit: bool | None = None  # None: True on CUDA; False allows a loud LoRA fallback
    activation_checkpointing: bool = True
    device: str | None = None  # None: cuda (local rank) if available else cpu

    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.mode]

    @classmethod
    def from_params(cls, params: Mapping[str, Any], **overrides: Any) -> TrainConfig:
        """From notebook 03's parameters: every UPPER_CASE name that is a field's name
        upper-cased (SEED, QUESTIONS, S, F, N, MODE, LR, LORA_R, LORA_ALPHA, GLOBAL_BATCH,
        SAVE_STEPS, TIME_BUDGET_S, ...) and STEPS for ``max_steps``; others are ignored. A line
        is printed every tenth of the steps. ``overrides`` (the resolved ``model``, ``out``,
        ``coco``) win. RECIPE (``lib.recipes``, default "ours") fills every recipe field whose
        parameter is absent or None."""
        names = {f.name.upper(): f.name for f in fields(cls)} | PARAM_ALIASES
        kw = {names[k]: v for k, v in params.items() if k in names}
        if kw.get("max_steps") is not None:
            kw.setdefault("log_every", max(1, kw["max_steps"] // 10))
        kw = kw | overrides
        return cls(**recipes.resolve_train(kw.pop("recipe", None) or "ours", kw, kw.get("model")))

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainConfig:
        """From the flags ``add_train_arguments`` declares; the recipe (``--recipe``) fills
        every recipe field whose flag was not given."""
        given = {name: getattr(args, name) for name in TRAIN_FLAGS if name != "recipe"}
        return cls(**recipes.resolve_train(args.recipe, given, args.model),
                   require_4bit=False if args.allow_fallback else None)


# The `python -m lib.train` flags in --help order: field -> (flag, extra add_argument keywords).
# Type and default come from the field; a bool field is a switch.
TRAIN_FLAGS: dict[str, tuple[str | tuple[str, ...], dict[str, Any]]] = {
    "model": ("--model", {"required": True, "help": "LongVU checkpoint dir or cached hub id"}),
    "coco": ("--coco", {"required": True, "help": "COCO-layout dir (images + captions)"}),
    "source": ("--source", {"choices": SOURCES,
                            "help": "scenes show their image (coco) or one of its captions "
                                    "rendered as text (t2vid, lib.t2vid)"}),
    "questions": ("--questions", {"help": "question mix, e.g. R1 or R1:S=4:F=20"}),
    "S": ("--S", {}),
    "F": ("--F", {}),
    # --N too: torchrun's own parser reads "--n" as an ambiguous abbreviation of its --nnodes
    "n": (("--n", "--N"), {"help": "pseudo-videos per epoch (per rank with --seeding per-rank)"}),
    "out": ("--out", {"required": True, "help": "run dir"}),
    "mode": ("--mode", {"choices": TRAIN_MODES}),
    "max_steps": ("--max-steps", {}),
    "epochs": ("--epochs", {}),
    "lr": ("--lr", {}),
    "recipe": ("--recipe", {"choices": recipes.RECIPE_NAMES,
                            "help": "paper: the fork's exact settings; ours: the one-GPU "
                                    "defaults (lib.recipes); explicit flags override it"}),
    "lora_r": ("--r", {}),
    "lora_alpha": ("--alpha", {}),
    "global_batch": ("--global-batch", {}),
    "micro_batch": ("--micro-batch", {"help": "samples per forward (one right-padded "
                                              "forward; see --group-by-length)"}),
    "warmup_ratio": ("--warmup-ratio", {}),
    "weight_decay": ("--weight-decay", {}),
    "max_grad_norm": ("--max-grad-norm", {"help": "0: no clipping"}),
    "seeding": ("--seeding", {"choices": ("global", "per-rank"),
                              "help": "pseudo-video tables: one for all ranks, or seed + rank"}),
    "master_weights": ("--master-weights", {"choices": ("fp32", "load")}),
    "optim": ("--optim", {"choices": ("auto", "adamw")}),
    "group_by_length": ("--group-by-length", {"help": "micro-batches of similar length"}),
    "deepspeed": ("--deepspeed", {"help": "DeepSpeed JSON for full fine-tuning on several GPUs, "
                                          "e.g. configs/deepspeed/zero2.json (README)"}),
    "attn_implementation": ("--attn-implementation", {"choices": ("sdpa", "eager")}),
    "activation_checkpointing": ("--activation-checkpointing", {
        "help": "recompute decoder activations in backward (less memory, slower)"}),
    "save_steps": ("--save-steps", {}),
    "time_budget_s": ("--time-budget", {
        "help": "seconds of training before saving and stopping (resume later)"}),
    "num_workers": ("--workers", {}),
    "frame_size": ("--frame-size", {}),
    "jitter": ("--jitter", {}),
    "question_mode": ("--question-mode", {"choices": questions.MODES}),
    "answer_format": ("--answer-format", {
        "choices": questions.ANSWER_FORMATS,
        "help": "the training target: letter = '(A) text' (the paper's); text = the right "
                "option's text only (what option likelihood scores; the demo's)"}),
    "prompt_format": ("--prompt-format", {
        "choices": questions.PROMPT_FORMATS,
        "help": "the training user turn: fork = question + option lines (the paper's); eval = "
                "the evaluator's TVBench prompt (Question:/Options:/instruction; the demo's)"}),
    "seed": ("--seed", {}),
    "log_every": ("--log-every", {}),
    "init_adapter": ("--init-adapter", {}),
    "token_layout": ("--token-layout", {
        "choices": ("image", "video"),
        "help": "load --model in this token layout; video = the paper's start from an _img "
                "checkpoint (new pos_embed_* drawn from --seed)"}),
    "supervise_prompt_tokens": ("--supervise-prompt-tokens", {
        "help": "the paper code's labels (prompt role tokens supervised too)"}),
    "legacy_placeholder_tokens": ("--legacy-placeholder-tokens", {
        "help": "the paper collator's token-id-0 leak after the visual block"}),
    "on_bad_sample": ("--on-bad-sample", {
        "choices": ("raise", "substitute"),
        "help": "a missing/corrupt image mid-run: stop (default) or serve the next sample, "
                "counted in metrics.json bad_samples"}),
}


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Declare ``TRAIN_FLAGS`` (typed and defaulted from ``TrainConfig``; a recipe field
    defaults to None, filled by ``--recipe``; a bool is ``--x`` / ``--no-x``) and
    ``--allow-fallback`` (``require_4bit=False``) on ``parser``."""
    hints = get_type_hints(TrainConfig)
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    for name, (flag, extra) in TRAIN_FLAGS.items():
        kind = next(t for t in getattr(hints[name], "__args__", (hints[name],))
                    if t is not type(None))
        kw: dict[str, Any] = {"dest": name, **extra}
        if not extra.get("required"):
            kw["default"] = None if name in recipes.TRAIN_FIELDS else defaults[name]
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = kind
        parser.add_argument(*((flag,) if isinstance(flag, str) else flag), **kw)
    parser.add_argument("--allow-fallback", action="store_true",
                        help="qlora: train 16-bit LoRA (loudly) if 4-bit is unusable")
    return parser
