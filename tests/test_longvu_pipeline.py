"""Unit checks of the visual token pipeline arithmetic (sizes, masks, budgets, dropping)."""

from __future__ import annotations

import torch

from lib.longvu import pipeline
from lib.longvu.model import placeholder_count
from lib.longvu.tiny import tiny_config


def _count(side, size):
    t, m = pipeline.grid_tokens(torch.zeros(side * side, 4), side, size, torch.ones(4), 0, 1)
    assert len(t) == len(m)
    return len(t)


def test_unpad_float_arithmetic():
    # 55x88 image at grid 24: int(55 * (24/88)) = 14 columns (integer math would give 15)
    rows, cols = pipeline.unpad_range(24, 24, (55, 88))
    assert (rows, cols) == (slice(0, 24), slice(5, 19))
    # a 72x96 (H, W) video passed as (72, 96) is read as 72 wide, 96 tall: columns cropped
    assert pipeline.unpad_range(12, 12, (72, 96)) == (slice(0, 12), slice(1, 11))


def test_tokens_per_frame():
    assert _count(12, (64, 64)) == 156 and _count(8, (64, 64)) == 72 and _count(24, (9, 9)) == 600
    # 480x854 video with the released (H, W) quirk: 12 rows x 6 columns + 12 newlines
    assert _count(12, (480, 854)) == 84
    assert _count(8, (int(480 / 1.5), int(854 / 1.5))) == 40
    # the same video with the size fixed (W, H): padded rows dropped instead
    assert _count(12, (854, 480)) == 6 * 13


def test_sampler_masks_reset_fully_padded_windows():
    # 1000x100 at 24 rows: int(100 * 0.024) = 2 image rows (11, 12); windows are 2x2
    m = pipeline.sampler_masks((1000, 100), q_side=12)
    assert m.shape == (144, 4)
    assert m[:12].all()  # window row 0 is all padding -> reset to attend everywhere
    assert m[5 * 12].tolist() == [False, False, True, True]  # grid rows 10 (pad) and 11 (image)
    assert m[6 * 12].tolist() == [True, True, False, False]
    square = pipeline.sampler_masks((50, 50), q_side=24)
    assert square.shape == (576, 1) and square.all()


def test_placeholder_leak_counts():
    assert placeholder_count((64, 64), 576) == 599
    assert placeholder_count((64, 64), 144) == 155
    assert placeholder_count((480, 854), 144) == 84


def test_dino_selection_keeps_changes_and_middle():
    cfg = tiny_config("qwen", "video")
    cfg.tokenizer_model_max_length = 64 + 16 + 10  # budget for 1 frame -> selection applies
    torch.manual_seed(0)
    base = torch.randn(576, 8)
    feats = torch.stack([base + 0.01 * torch.randn(576, 8) for _ in range(20)])
    feats[5] = torch.randn(576, 8)  # a scene change in window 0
    trace = {}
    kept = pipeline.select_frames(feats, 10, cfg, trace)
    # window 0 (frames 0-15): frame 5 differs, frame 8 is its middle; window 1 (16-19): middle 18
    assert kept == [5, 8, 18]
    assert trace["dino_selection"]["max_num_frames"] == 1
    few = pipeline.select_frames(feats[:1], 10, cfg)
    assert few == [0]
