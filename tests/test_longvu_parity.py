"""Parity with the original LongVU: every shared fixture case, the CLI contract, preprocessing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from longvu_helpers import REPO, parity_dir


def test_all_shared_cases_pass_through_cli():
    root = parity_dir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "lib.longvu", "parity", str(root)], cwd=REPO,
                         capture_output=True, text=True, env=env, timeout=600)
    n = len(list(root.glob("cases/*/inputs.json")))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith(f"parity: {n}/{n} cases passed, max abs diff ")
    assert "inputs_embeds" in out.stdout and "logits_last8" in out.stdout


def test_preprocessing_is_bit_exact():
    from lib.longvu.towers import DINO, SIGLIP, normalise, pad_resize
    root = parity_dir()
    exp = load_file(str(root / "preprocess" / "expected.safetensors"))
    for media in ("video_landscape_4", "image_portrait_55x88"):
        frame = np.load(root / "media" / f"{media}.npy")[0]
        for name, spec in (("siglip", SIGLIP), ("dino", DINO)):
            img = pad_resize(frame, spec)
            want = exp[f"{media}__frame0__{name}_padded_resized_uint8"].numpy()
            np.testing.assert_array_equal(img, want)
            key = f"{media}__frame0__{name}_pixels"
            if key in exp:
                assert torch.equal(torch.from_numpy(normalise(img, spec)), exp[key])


def _one_case_dir(tmp_path, case: str):
    """A fixture set with one case (links to the shared checkpoints, towers, media)."""
    root = parity_dir()
    for sub in ("checkpoints", "towers", "media"):
        (tmp_path / sub).symlink_to(root / sub)
    shutil.copytree(root / "cases" / case, tmp_path / "cases" / case)
    return tmp_path / "cases" / case


def test_cli_fails_on_a_tampered_case(tmp_path, capsys):
    from lib.longvu.__main__ import main
    case = _one_case_dir(tmp_path, "qwen_video__few_frames")
    exp = load_file(str(case / "expected.safetensors"))
    exp["inputs_embeds"][20, 3] += 1e-3  # above the 2e-5 tolerance
    save_file(exp, str(case / "expected.safetensors"))
    assert main(["parity", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "parity: 0/1 cases passed" in out and "inputs_embeds" in out and "FAIL" in out


def test_tf5_dino_interpolation_is_caught(tmp_path):
    """Without the 4.4x DINOv2 position interpolation the DINO features leave tolerance."""
    from lib.longvu import load
    from lib.longvu.model import Flags
    from lib.longvu.parity import run_case
    root = parity_dir()
    case = root / "cases" / "qwen_video__few_frames"
    inp = json.loads((case / "inputs.json").read_text())
    ckpt = str(root / inp["checkpoint"])
    towers = {k: str(root / v) for k, v in inp["towers"].items()}
    model = load(ckpt, towers=towers, flags=Flags(legacy_dino_interp=False))
    res = run_case(case, root, {ckpt + json.dumps(towers, sort_keys=True): model})
    assert not res.ok
    assert any(f.startswith("dino_features") for f in res.failures)
