"""Parity runner: replay reference cases of the original LongVU and compare, tensor by tensor.

A fixture dir holds `checkpoints/`, `towers/`, `media/` and `cases/<name>/{inputs.json,
expected.json, expected.safetensors}` (layout of ../shared/fixtures/longvu_parity, see its
README). Each case is run through our `load` + pipeline + stock decoder; every stored tensor and
discrete result is compared with the README's tolerances. Used by `python -m lib.longvu parity`
and tests/test_longvu_parity.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from .loading import load
from .model import LongVU

# README section 6: pixels 1e-6; features..inputs_embeds 2e-5; logits 1e-4; checksums rtol 1e-5
ATOL = {"pixels": 1e-6, "features": 2e-5, "logits": 1e-4}
CHECKSUM_RTOL = 1e-5


@dataclass
class CaseResult:
    name: str
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    max_abs: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures


def _checksum(x: torch.Tensor) -> torch.Tensor:
    x = x.detach().to(torch.float64).flatten(1)
    return torch.stack([x.sum(1), (x * x).sum(1)], 1)


class _Comparer:
    def __init__(self, res: CaseResult, expected: dict[str, torch.Tensor]):
        self.res, self.exp = res, expected

    def tensor(self, key: str, got: torch.Tensor | None, atol: float) -> None:
        if key not in self.exp:
            return
        if got is None:
            self.res.failures.append(f"{key}: not produced")
            self.res.lines.append(f"  {key:34s} MISSING")
            return
        want = self.exp[key]
        got = got.detach().cpu().to(want.dtype) if want.is_floating_point() else got.cpu()
        if tuple(got.shape) != tuple(want.shape):
            self.res.failures.append(f"{key}: shape {tuple(got.shape)} vs {tuple(want.shape)}")
            self.res.lines.append(f"  {key:34s} SHAPE {tuple(got.shape)} != {tuple(want.shape)}")
            return
        if not want.is_floating_point():
            diff = float((got.long() - want.long()).abs().max()) if want.numel() else 0.0
            ok = diff == 0
        else:
            diff = float((got - want).abs().max()) if want.numel() else 0.0
            ok = diff <= atol
            self.res.max_abs = max(self.res.max_abs, diff)
        self.res.lines.append(f"  {key:34s} max abs diff {diff:.3e}  {'ok' if ok else 'FAIL'}")
        if not ok:
            self.res.failures.append(f"{key}: max abs diff {diff:.3e} > {atol:g}")

    def checksum(self, key: str, got: torch.Tensor | None) -> None:
        if key not in self.exp:
            return
        if got is None:
            self.res.failures.append(f"{key}: not produced")
            return
        want = self.exp[key].to(torch.float64)
        got = _checksum(got)
        if got.shape != want.shape:
            self.res.failures.append(f"{key}: shape {tuple(got.shape)} vs {tuple(want.shape)}")
            self.res.lines.append(f"  {key:34s} SHAPE {tuple(got.shape)} != {tuple(want.shape)}")
            return
        diff = (got - want).abs()
        # sums can be near 0: scale the relative tolerance by the frame's L2 mass (col 1)
        scale = torch.maximum(want.abs(), want[:, 1:2].abs().sqrt())
        rel = float((diff / scale.clamp_min(1e-12)).max())
        ok = rel <= CHECKSUM_RTOL
        self.res.lines.append(f"  {key:34s} max abs diff {float(diff.max()):.3e} "
                              f"(rel {rel:.1e})  {'ok' if ok else 'FAIL'}")
        if not ok:
            self.res.failures.append(f"{key}: relative diff {rel:.2e} > {CHECKSUM_RTOL:g}")

    def equal(self, key: str, got, want) -> None:
        ok = got == want
        self.res.lines.append(f"  {key:34s} {'equal' if ok else f'{got} != {want}'}")
        if not ok:
            self.res.failures.append(f"{key}: got {got}, expected {want}")


def _per_kept_frame(tmap: torch.Tensor, n_kept: int) -> list[tuple[int, int, str]]:
    out = []
    for f in range(n_kept):
        rows = tmap[tmap[:, 0] == f]
        kinds = set(rows[:, 1].tolist()) - {2}
        res = "dropped" if len(rows) == 0 else ("low" if kinds == {0} else "high")
        if not kinds and len(rows):
            res = "high"
        out.append((len(rows), int((rows[:, 1] == 2).sum()), res))
    return out


def run_case(case_dir: Path, root: Path, models: dict[str, LongVU]) -> CaseResult:
    inp = json.loads((case_dir / "inputs.json").read_text())
    exp_json = json.loads((case_dir / "expected.json").read_text())
    exp = load_file(str(case_dir / "expected.safetensors"))
    res = CaseResult(case_dir.name)
    ckpt = str(root / inp["checkpoint"])
    towers = {k: str(root / v) for k, v in inp["towers"].items()}
    key = ckpt + json.dumps(towers, sort_keys=True)
    if key not in models:
        models[key] = load(ckpt, towers=towers, dtype=torch.float32, device="cpu")
    model = models[key]
    for k, v in inp.get("eval_time_overrides", {}).items():
        if hasattr(model.config, k):
            setattr(model.config, k, v)
    cmp = _Comparer(res, exp)

    frames = np.load(root / inp["media"])
    visual = model.preprocess(frames, kind=inp["input_kind"])
    ours, theirs = [list(x) for x in visual["image_sizes"]], [list(x) for x in inp["image_sizes"]]
    conv = inp.get("image_sizes_convention", "")
    if not conv or "shape[:2]" in conv or "PIL" in conv:  # the released convention: check ours
        cmp.equal("image_sizes", ours, theirs)
    elif ours != theirs:
        res.lines.append(f"  image_sizes: case uses {theirs} ({conv}); ours would be {ours}")
    visual["image_sizes"] = [tuple(s) for s in inp["image_sizes"]]
    trace: dict = {}
    with torch.no_grad():
        embeds, _ = model.embed_one(inp["input_ids"], visual, trace)
    kept = trace["kept_frame_indices"]
    src = exp_json.get("probe_source_frames") or []
    kpos = exp_json.get("probe_kept_positions") or []

    cmp.checksum("pixels_siglip_checksum", visual["siglip"])
    cmp.checksum("pixels_dino_checksum", visual["dino"])
    cmp.tensor("pixels_siglip_stride16_probe", visual["siglip"][src][:, :, ::16, ::16],
               ATOL["pixels"])
    cmp.tensor("pixels_dino_stride14_probe", visual["dino"][src][:, :, ::14, ::14],
               ATOL["pixels"])
    cmp.checksum("dino_features_checksum", trace["dino_features"])
    cmp.tensor("dino_features_probe", trace["dino_features"][src], ATOL["features"])
    cmp.checksum("siglip_features_checksum", trace["siglip_features"])
    cmp.tensor("siglip_features_probe", trace["siglip_features"][kpos], ATOL["features"])
    for name in ("aux0", "aux1"):
        cmp.checksum(f"{name}_checksum", trace[name])
        cmp.tensor(f"{name}_first_kept_tokens0_15", trace[name][0, :16], ATOL["features"])
    cmp.checksum("sva_output_checksum", trace["sva_output"])
    cmp.tensor("sva_output_probe", trace["sva_output"][kpos], ATOL["features"])
    cmp.checksum("proj_highres_checksum", trace["proj_highres"])
    cmp.tensor("proj_highres_probe", trace["proj_highres"][kpos], ATOL["features"])
    low = trace["proj_lowres"]
    cmp.checksum("proj_lowres_checksum", low)
    cmp.tensor("proj_lowres_probe", None if low is None else low[kpos], ATOL["features"])
    cmp.tensor("inputs_embeds", embeds, ATOL["features"])
    cmp.tensor("visual_token_map", trace["visual_token_map"].to(torch.int32), 0)

    base = model.base_decoder
    with torch.no_grad():
        logits = base(inputs_embeds=embeds[None]).logits[0, -8:]
    cmp.tensor("logits_last8", logits, ATOL["logits"])
    gen = model.generate_ids(embeds, inp.get("generation", {}).get("max_new_tokens", 5))
    cmp.tensor("generated_ids", torch.tensor(gen), 0)

    # discrete results (each only if the case records it)
    got = {"kept_frame_indices": kept, "regime": trace["regime"],
           "visual_token_count": int(embeds.shape[0] - trace["text_len_prefix"]
                                     - trace["text_len_suffix"]),
           "inputs_embeds_shape": [1, *embeds.shape], "max_visual_len": trace["max_visual_len"],
           "text_len_prefix": trace["text_len_prefix"],
           "text_len_suffix": trace["text_len_suffix"]}
    for k, v in got.items():
        if k in exp_json:
            cmp.equal(k, v, exp_json[k])
    if "per_kept_frame" in exp_json:
        pkf = _per_kept_frame(trace["visual_token_map"], len(kept))
        want_pkf = [(f["tokens"], f["newlines"], f["resolution"])
                    for f in exp_json["per_kept_frame"]]
        cmp.equal("per_kept_frame", pkf, want_pkf)
    if exp_json.get("mix_selection"):
        ms = trace.get("mix_selection") or {}
        cmp.equal("mix_upgraded_frames", ms.get("upgraded_frames"),
                  exp_json["mix_selection"]["upgraded_frames"])
        cmp.equal("mix_n_upgrade", ms.get("n_upgrade"), exp_json["mix_selection"]["n_upgrade"])
    if exp_json.get("stc"):
        st = trace.get("stc") or {"chunks": []}
        cmp.equal("stc_kept_tokens_non_first",
                  [c["kept_tokens_non_first"] for c in st["chunks"]],
                  [c["kept_tokens_non_first"] for c in exp_json["stc"]["chunks"]])
    if exp_json.get("dino_selection") and trace.get("dino_selection"):
        cmp.equal("dino_max_num_frames", trace["dino_selection"]["max_num_frames"],
                  exp_json["dino_selection"]["max_num_frames"])
    return res


def find_cases(root: Path) -> list[Path]:
    return sorted(p.parent for p in Path(root).glob("cases/*/inputs.json"))


def run_all(root: str | Path, verbose: bool = True) -> list[CaseResult]:
    """Run every case under `root`; print per-tensor lines and the summary line."""
    root = Path(root)
    cases = find_cases(root)
    if not cases:
        raise FileNotFoundError(f"no cases found under {root}/cases/*/inputs.json")
    models: dict[str, LongVU] = {}
    results = []
    for case in cases:
        try:
            r = run_case(case, root, models)
        except Exception as e:  # a crashing case is a failed case, the others still run
            r = CaseResult(case.name, failures=[f"error: {type(e).__name__}: {e}"])
        results.append(r)
        if verbose:
            print(f"{r.name}: {'PASS' if r.ok else 'FAIL'}")
            for line in r.lines:
                print(line)
            for f in r.failures:
                print(f"  !! {f}")
    n_ok = sum(r.ok for r in results)
    worst = max((r.max_abs for r in results), default=0.0)
    print(f"parity: {n_ok}/{len(results)} cases passed, max abs diff {worst:.3e}")
    return results
