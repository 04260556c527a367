"""lib.recipes: the paper and ours recipes, explicit settings over a recipe, fp32 master weights
under bf16 (every trainable tensor moves at lr 5e-6), checklist item 32 (one step = lr 0)."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest
import torch

from lib import recipes, train, train_runs
from lib.config import TrainConfig, add_train_arguments
from lib.longvu import load
from tests.longvu_helpers import tiny_ckpt
from tests.test_train import ToyVideos


@pytest.fixture(scope="module")
def ckpt():
    return tiny_ckpt("qwen", "image", "small")


def _args(*argv: str) -> TrainConfig:
    ap = add_train_arguments(argparse.ArgumentParser())
    return TrainConfig.from_args(ap.parse_args(["--model", "m", "--coco", "c", "--out", "o",
                                                *argv]))


def test_recipes_fill_unset_fields_and_explicit_flags_win():
    paper = _args("--recipe", "paper")
    # the fork's settings (coco_splicing_llama.sh:28-52, zero2.json, train_modified.py:964)
    assert (paper.mode, paper.lr, paper.question_mode, paper.global_batch, paper.micro_batch,
            paper.warmup_ratio, paper.weight_decay, paper.max_grad_norm, paper.seeding,
            paper.master_weights, paper.supervise_prompt_tokens,
            paper.legacy_placeholder_tokens) == ("full", 5e-6, "compat", 64, 1, 0.03, 0.0, 0.0,
                                                 "per-rank", "fp32", True, True)
    over = _args("--recipe", "paper", "--global-batch", "2", "--no-supervise-prompt-tokens",
                 "--question-mode", "fixed")
    assert (over.global_batch, over.supervise_prompt_tokens, over.question_mode, over.mode) == (
        2, False, "fixed", "full")
    assert _args() == TrainConfig(model="m", out="o", coco="c")  # ours = the dataclass defaults
    ours = _args("--recipe", "ours", "--seeding", "per-rank")
    assert (ours.recipe, ours.mode, ours.seeding, ours.question_mode) == (
        "ours", "qlora", "per-rank", "fixed")
    # notebook parameters: None means "the recipe's"
    nb = TrainConfig.from_params({"RECIPE": "paper", "MODE": None, "GLOBAL_BATCH": 8, "N": 16},
                                 model="m", out="o", coco="c")
    assert (nb.mode, nb.global_batch, nb.n, nb.recipe) == ("full", 8, 16, "paper")
    with pytest.raises(ValueError, match="recipe 'fork'"):
        TrainConfig.from_params({"RECIPE": "fork"}, model="m", out="o")


def test_paper_jitter_follows_the_backbone_scripts(tmp_path):
    for backbone, jitter in (("llama", "none"), ("qwen", "mild")):
        d = tmp_path / backbone
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"model_type": f"cambrian_{backbone}"}))
        assert recipes.resolve_train("paper", {}, str(d))["jitter"] == jitter
        assert recipes.resolve_train("paper", {"jitter": "strong"}, str(d))["jitter"] == "strong"
        assert recipes.resolve_train("ours", {}, str(d))["jitter"] == "mild"


def _trainable_moved(ckpt, model) -> dict[str, bool]:
    start = dict(load(ckpt, dtype=torch.float32).named_parameters())
    return {n: not torch.equal(p.detach().float().cpu(), start[n].detach().float())
            for n, p in model.named_parameters() if p.requires_grad}


def test_paper_full_bf16_updates_every_trainable_tensor(ckpt, tmp_path):
    cfg = TrainConfig(**recipes.resolve_train("paper", dict(
        model=str(ckpt), out=str(tmp_path / "run"), max_steps=5, global_batch=2, seed=0,
        save_steps=100, log_every=100), str(ckpt)))
    assert (cfg.lr, cfg.master_weights, cfg.max_grad_norm) == (5e-6, "fp32", 0.0)
    metrics, model = train.run_training(cfg, dataset=ToyVideos(n=16))
    # bf16 autocast ran (the step's matmuls in bf16) while the trained tensors stayed fp32
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    assert {p.dtype for p in model.towers.parameters()} == {torch.bfloat16}
    moved = _trainable_moved(ckpt, model)
    assert len(moved) > 10 and all(moved.values()), [n for n, m in moved.items() if not m]
    assert metrics["recipe"] == "paper" and metrics["recipe_overrides"] == ["global_batch"]
    # checklist 23: LLM + connector trained, towers frozen, no LoRA parameter exists
    counts = metrics["trainable_params"]
    assert counts["lora"] == 0 and counts["decoder"] > 0 and counts["connector"] > 0
    assert not any(p.requires_grad for p in model.towers.parameters())
    assert not any("lora_" in n for n, _ in model.named_parameters())
    # the same 5e-6 update rounded into bf16 weights is lost on most entries: what fp32 master
    # weights prevent (issue 11: 8% of the entries moved in 10 steps)
    w = dict(model.named_parameters())["decoder.model.layers.0.mlp.up_proj.weight"].detach()
    start = dict(load(ckpt).named_parameters())["decoder.model.layers.0.mlp.up_proj.weight"]
    frac_bf16 = (w.bfloat16() != start.detach().bfloat16()).float().mean().item()
    frac_fp32 = (w != start.detach()).float().mean().item()
    assert frac_fp32 > 0.9 and frac_bf16 < 0.5 * frac_fp32


@pytest.mark.parametrize("recipe,mode", [("paper", "full"), ("ours", "lora")])
def test_one_step_with_warmup_is_lr_zero(ckpt, tmp_path, recipe, mode):
    """Checklist 32: warm-up 3% of max_steps 1 is ceil(0.03) = 1 step, so the only update runs
    at lr 0 and the weights stay as loaded (the fork's "image-trained (1 step)" rows equal the
    _img checkpoint). Ours uses the same schedule and is pinned to the same outcome."""
    cfg = TrainConfig(**recipes.resolve_train(recipe, dict(
        model=str(ckpt), out=str(tmp_path / "run"), max_steps=1, global_batch=2, mode=mode,
        lora_r=4, seed=0, save_steps=100), str(ckpt)))
    metrics, model = train.run_training(cfg, dataset=ToyVideos(n=4))
    assert train_runs.read_log(cfg.out)[0]["lr"] == 0.0
    moved = _trainable_moved(ckpt, model) if mode == "full" else {
        n: not torch.equal(p, start) for (n, p), start in zip(
            ((n, p.detach()) for n, p in model.connector.named_parameters()),
            load(ckpt).connector.parameters())}
    assert moved and not any(moved.values())
    assert metrics["steps"] == 1 and metrics["recipe"] == recipe


def test_paper_table3_sweep_rows_beside_the_paper():
    """paper-table3: the 1-step run is the image-trained line, its base (BASE_STAGE video) the
    video-trained one, each normal (per task) and shuffled (Avg)."""
    import pandas as pd

    from lib import ablations
    rows = pd.DataFrame([
        {"paper_row": "image-trained | Llama3.2-3B | normal", "is_base": False, "micro": 40.0,
         "shuffled_micro": 35.0, "ST": 50.0},
        {"paper_row": "image-trained | Llama3.2-3B | normal", "is_base": True, "micro": 45.0,
         "shuffled_micro": float("nan"), "ST": 60.0}])
    ours = ablations.ours_for_paper(rows, "3")
    assert ours.loc["image-trained | Llama3.2-3B | normal", "Avg"] == 40.0
    assert ours.loc["image-trained | Llama3.2-3B | shuffled", "Avg"] == 35.0
    assert ours.loc["video-trained | Llama3.2-3B | normal", "ST"] == 60.0
    assert "video-trained | Llama3.2-3B | shuffled" not in ours.index
    beside = ablations.beside_paper(ours, "3")
    assert beside.loc[("image-trained | Llama3.2-3B | normal", "paper"), "Avg"] == 45.6


def test_length_grouping_needs_per_item_lengths(ckpt, smoke_assets, tmp_path):
    cfg = TrainConfig(model=str(ckpt), out=str(tmp_path / "run"), coco=str(smoke_assets / "coco"),
                      questions="R1", S=4, F=3, n=12, mode="lora", lora_r=4, global_batch=2,
                      max_steps=1, group_by_length=True)
    data = train.TrainSamples(train.pseudo_video_dataset(cfg), builder=None)
    assert data.lengths() == [f.num_frames for f in train.formations(data.source)]
    assert len(set(data.lengths())) > 1  # S 2-4, F 1-3: lengths differ
    m = train.train(cfg)
    assert m["group_by_length"] is True and m["steps"] == 1
    with pytest.raises(train.TrainError, match="no per-item lengths"):
        train.train(dataclasses.replace(cfg, out=str(tmp_path / "toy")), dataset=ToyVideos(n=4))


def test_eval_recipe_sets_dtype_and_drop_threshold_and_rows(smoke_assets, tmp_path):
    from lib import eval_cli, paths
    from lib.models import ModelSpec
    [ms] = recipes.eval_models([ModelSpec("base", "ckpt")], "paper")
    assert (ms.dtype, ms.drop_threshold) == ("float16", 0.8)  # the fork's builder.py:68, :177
    [own] = recipes.eval_models([ModelSpec("b", "c", dtype="float32", drop_threshold=0.7)],
                                "paper")
    assert (own.dtype, own.drop_threshold) == ("float32", 0.7)  # a set value wins
    [ours] = recipes.eval_models([ModelSpec("b", "c")], "ours")
    assert (ours.dtype, ours.drop_threshold) == (None, None)
    rc = eval_cli.main(["eval", "--model", "fake:hash", "--data",
                        str(smoke_assets / "minitvbench"), "--out", str(tmp_path / "ev"),
                        "--recipe", "paper", "--limit", "1", "--workers", "0", "--quiet",
                        "--label", "recipe-test"])
    assert rc == 0
    import pandas as pd
    rows = pd.read_csv(paths.outputs_dir() / "results" / "tvbench.csv")
    row = rows[rows["label"] == "recipe-test"].iloc[0]
    assert (row["recipe"], row["eval_dtype"], float(row["drop_threshold"])) == (
        "paper", "float16", 0.8)


def test_eval_folder_refuses_another_dtype_or_drop_threshold(ckpt, smoke_assets, tmp_path,
                                                             capsys):
    from lib import eval_cli
    base = ["eval", "--model", str(ckpt), "--data", str(smoke_assets / "minitvbench"),
            "--out", str(tmp_path / "ev"), "--limit", "1", "--tasks", "scene_transition",
            "--workers", "0", "--quiet", "--scoring", "letter", "--no-record"]
    assert eval_cli.main(base) == 0
    capsys.readouterr()
    assert eval_cli.main([*base, "--recipe", "paper"]) != 0  # the fork's fp16
    assert "dtype: 'torch.float32' in the folder" in capsys.readouterr().err
    assert eval_cli.main([*base, "--drop-threshold", "0.5"]) != 0
    assert "drop_threshold: 0.8 in the folder, 0.5 in this run" in capsys.readouterr().err


def test_train_config_defaults_are_the_ours_recipe():
    # a TrainConfig built in code (lib.demo_stages) trains as `--recipe ours` does
    default = TrainConfig(model="m", out="o")
    assert {k: getattr(default, k) for k in recipes.TRAIN_FIELDS} == \
        recipes.get("ours").train_fields(None)
