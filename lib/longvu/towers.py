"""LongVU's two frozen vision towers and their per-frame preprocessing.

SigLIP-so400m (index 0) and DINOv2-giant (index 1), stock HF `SiglipVisionModel` / `Dinov2Model`,
with LongVU's feature selection (SigLIP: last encoder layer before post_layernorm; DINO: final
LayerNorm, CLS dropped), the 27x27 -> 24x24 bilinear resize, and DINOv2's transformers-4.4x
position-embedding interpolation (5.x samples differently; see `legacy_dino_pos_interpolation`).
Preprocessing is our own PIL+numpy code, bit-exact with the original's processor path. Used by
notebooks 01, 03, 04 via `lib.longvu.model`.
"""

from __future__ import annotations

import json
import math
import re
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn


@dataclass(frozen=True)
class TowerSpec:
    """Input geometry and normalisation of one tower (values of the hub processor configs)."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def fill(self) -> tuple[int, int, int]:
        # expand2square background: processor mean * 255, truncated
        return tuple(int(m * 255) for m in self.mean)


SIGLIP = TowerSpec(384, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
DINO = TowerSpec(378, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
TOKENS_SIDE = 24  # both towers' maps are resized to 24x24 = 576 tokens


def pad_resize(frame: np.ndarray, spec: TowerSpec) -> np.ndarray:
    """Pad an (H, W, 3) uint8 frame to a centred square with the tower's fill, PIL-resize to S."""
    h, w = frame.shape[:2]
    img = Image.fromarray(frame)
    if w != h:
        side = max(w, h)
        canvas = Image.new(img.mode, (side, side), spec.fill)
        canvas.paste(img, ((side - w) // 2, (side - h) // 2))
        img = canvas
    return np.asarray(img.resize((spec.size, spec.size)))  # PIL default filter: bicubic


def normalise(img: np.ndarray, spec: TowerSpec) -> np.ndarray:
    """(S, S, 3) uint8 -> (3, S, S) float32, in the HF processor's arithmetic order."""
    x = (img.astype(np.float64) * (1 / 255)).astype(np.float32)
    x = (x - np.array(spec.mean, dtype=np.float32)) / np.array(spec.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess_frames(frames: np.ndarray, sizes: tuple[int, int] = (384, 378)
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, H, W, 3) uint8 RGB -> (SigLIP pixels (T,3,S0,S0), DINO pixels (T,3,S1,S1)), fp32.

    sizes: tower input sides, (384, 378) for the real towers.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3) RGB, got {frames.dtype} "
                         f"{frames.shape}")
    sig_spec = TowerSpec(sizes[0], SIGLIP.mean, SIGLIP.std)
    dino_spec = TowerSpec(sizes[1], DINO.mean, DINO.std)
    sig = np.stack([normalise(pad_resize(f, sig_spec), sig_spec) for f in frames])
    dino = np.stack([normalise(pad_resize(f, dino_spec), dino_spec) for f in frames])
    return torch.from_numpy(sig), torch.from_numpy(dino)


def tower_resolutions(tower_names: list[str]) -> tuple[int, int]:
    """Input sides from the config's tower strings, e.g. '...-14-384' and '...-res378'.

    The original hard-codes 384 / 378 for these exact strings; tiny 'small' checkpoints write
    their own resolution the same way.
    """
    out = []
    for name, default in zip(tower_names, (SIGLIP.size, DINO.size)):
        m = re.search(r"(?:res)?(\d+)$", name)
        out.append(int(m.group(1)) if m else default)
    return out[0], out[1]


def _legacy_interpolate_pos_encoding(self, embeddings: torch.Tensor, height: int, width: int
                                     ) -> torch.Tensor:
    # transformers 4.42 DINOv2 form: bicubic with scale_factor (n + 0.1) / sqrt(N) (the DINO
    # "+0.1" trick). 5.x passes size=(n, n), which samples at other positions.
    num_patches = embeddings.shape[1] - 1
    num_positions = self.position_embeddings.shape[1] - 1
    if num_patches == num_positions and height == width:
        return self.position_embeddings
    class_pos = self.position_embeddings[:, :1]
    patch_pos = self.position_embeddings[:, 1:]
    dim = embeddings.shape[-1]
    h = height // self.config.patch_size + 0.1
    w = width // self.config.patch_size + 0.1
    side = int(math.sqrt(num_positions))
    patch_pos = patch_pos.reshape(1, side, side, dim).permute(0, 3, 1, 2)
    dtype = patch_pos.dtype
    patch_pos = F.interpolate(patch_pos.float(), scale_factor=(float(h / side), float(w / side)),
                              mode="bicubic", align_corners=False).to(dtype)
    if int(h) != patch_pos.shape[-2] or int(w) != patch_pos.shape[-1]:
        raise ValueError("DINOv2 position-embedding interpolation produced the wrong grid")
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, dim)
    return torch.cat((class_pos, patch_pos), dim=1)


def legacy_dino_pos_interpolation(dino: nn.Module) -> None:
    """Make a 5.x `Dinov2Model` interpolate its position table like transformers 4.42 did."""
    emb = dino.embeddings
    emb.interpolate_pos_encoding = types.MethodType(_legacy_interpolate_pos_encoding, emb)


def resize_tokens(x: torch.Tensor, side: int = TOKENS_SIDE) -> torch.Tensor:
    """(B, n*n, C) token map -> (B, side*side, C), bilinear in fp32 (align_corners=False)."""
    b, n, c = x.shape
    if n == side * side:
        return x
    s = int(n ** 0.5)
    y = x.view(b, s, s, c).permute(0, 3, 1, 2).float()
    y = F.interpolate(y, size=(side, side), mode="bilinear", align_corners=False).to(x.dtype)
    return y.permute(0, 2, 3, 1).reshape(b, side * side, c)


class Towers(nn.Module):
    """Frozen SigLIP + DINOv2 with LongVU's feature extraction; never trained, never quantised."""

    def __init__(self, siglip: nn.Module, dino: nn.Module, legacy_dino_interp: bool = True,
                 chunk_size: int = 64, sizes: tuple[int, int] = (384, 378),
                 token_side: int = TOKENS_SIDE):
        super().__init__()
        self.siglip, self.dino = siglip, dino
        self.sizes = sizes  # input sides (SigLIP, DINO)
        # Side of the token maps the towers are resized to: 24 (576 tokens, every released
        # config); config field mm_vision_tower_aux_token_len_list = [side**2, side**2].
        self.token_side = token_side
        self.chunk_size = chunk_size
        if legacy_dino_interp:
            legacy_dino_pos_interpolation(dino)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "Towers":
        return super().train(False)  # frozen towers stay in eval mode

    @property
    def widths(self) -> tuple[int, int]:
        return self.siglip.config.hidden_size, self.dino.config.hidden_size

    def _chunked(self, fn, pixels: torch.Tensor) -> torch.Tensor:
        return torch.cat([fn(pixels[i:i + self.chunk_size])
                          for i in range(0, len(pixels), self.chunk_size)], 0)

    @torch.no_grad()
    def encode_siglip(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N,3,384,384) -> (N,576,C_siglip)."""
        p = next(self.siglip.parameters())

        def run(x):
            out = self.siglip(x.to(p.device, p.dtype), output_hidden_states=True)
            return resize_tokens(out.hidden_states[-1], self.token_side)
        return self._chunked(run, pixels)

    @torch.no_grad()
    def encode_dino(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N,3,378,378) -> (N,576,C_dino)."""
        p = next(self.dino.parameters())

        def run(x):
            out = self.dino(x.to(p.device, p.dtype))
            return resize_tokens(out.last_hidden_state[:, 1:].to(pixels.dtype), self.token_side)
        return self._chunked(run, pixels)


def tower_width(tower_dir: str | Path) -> int:
    """hidden_size from a tower dir's config.json, without loading weights."""
    cfg = json.loads((Path(tower_dir) / "config.json").read_text())
    return int(cfg.get("vision_config", cfg).get("hidden_size"))
