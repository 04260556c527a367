"""LongVU's visual token pipeline: frames -> visual tokens -> `inputs_embeds` for the LLM.

Steps, as in the original (`cambrian_arch.py` select_frame / prepare_inputs_labels_for_multimodal):
DINO frame dropping against the frame budget; SigLIP on kept frames; aux MLPs + SVA sampler;
the resolution regime (all high-res, or 8x8 low-res + question-guided upgrades); projector; grid
unpadding (with the original's float arithmetic and (w, h) size convention) and `image_newline`
after every row; splicing at the `<image>` sentinel; spatial token compression (STC) and hard
truncation when the block overflows the budget. Batch size 1 per call, as the original assumes.
`trace` (a dict) collects every intermediate for parity checks. Used by `lib.longvu.model`
(notebooks 01, 03, 04).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .config import LongVUConfig
from .connector import Connector
from .towers import TOKENS_SIDE, Towers

IMAGE_TOKEN_INDEX = -200
DINO_WINDOW = 16
STC_CHUNK = 8
MAX_KEPT_FRAMES = 400  # the original's OOM guard after DINO dropping
# visual token map kinds
LOW, HIGH, NEWLINE = 0, 1, 2


def unpad_range(grid_h: int, grid_w: int, size: tuple[float, float]
                ) -> tuple[slice, slice]:
    """Rows/cols of a padded-square grid that hold the image; size is read as (w, h).

    Same float arithmetic as the original (scale = grid/orig; kept = int(other * scale)), so
    e.g. 55x88 at grid 24 keeps 14 columns, not 15.
    """
    w, h = size
    if w / h > grid_w / grid_h:
        scale = grid_w / w
        pad = (grid_h - int(h * scale)) // 2
        return slice(pad, grid_h - pad), slice(0, grid_w)
    scale = grid_h / h
    pad = (grid_w - int(w * scale)) // 2
    return slice(0, grid_h), slice(pad, grid_w - pad)


def sampler_masks(size: tuple[float, float], q_side: int, side: int = TOKENS_SIDE) -> torch.Tensor:
    """(q*q, r*r) bool attention mask of the SVA windows: False on pad-to-square padding.

    Windows that are entirely padding are reset to all-True (avoids NaN attention rows).
    """
    rows, cols = unpad_range(side, side, size)
    mask = torch.zeros(side, side, dtype=torch.bool)
    mask[rows, cols] = True
    r = side // q_side
    mask = mask.view(q_side, r, q_side, r).permute(0, 2, 1, 3).reshape(q_side * q_side, r * r)
    mask[mask.sum(-1) == 0] = True
    return mask


def grid_tokens(proj: torch.Tensor, side: int, size: tuple[float, float], newline: torch.Tensor,
                frame: int, kind: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One frame's projected (side*side, H) grid -> unpadded rows + newline, and its token map.

    The map rows are (frame position, kind, cell index r*side+c or -1 for newline).
    """
    hdim = proj.shape[-1]
    grid = proj.view(side, side, hdim)
    cell = torch.arange(side * side).view(side, side)
    rows, cols = unpad_range(side, side, size)
    sub, sub_cell = grid[rows, cols], cell[rows, cols]
    if sub.numel() == 0:  # the original falls back to the full grid when unpadding empties it
        sub, sub_cell = grid, cell
    nr = sub.shape[0]
    tokens = torch.cat([sub, newline.view(1, 1, -1).expand(nr, 1, hdim).to(sub.dtype)], 1)
    cells = torch.cat([sub_cell, torch.full((nr, 1), -1)], 1).flatten()
    kinds = torch.where(cells < 0, NEWLINE, kind)
    meta = torch.stack([torch.full_like(cells, frame), kinds, cells], 1)
    return tokens.flatten(0, 1), meta


def text_len_for_budget(input_ids: list[int], cfg: LongVUConfig) -> int:
    """Text length the original uses for frame budgets: index of the first pad id, else len(ids)
    (sentinel included)."""
    try:
        return input_ids.index(cfg.pad_id)
    except ValueError:
        return len(input_ids)


def select_frames(dino: torch.Tensor, text_len: int, cfg: LongVUConfig,
                  trace: dict | None = None) -> list[int]:
    """DINO-based temporal reduction: indices of the frames kept (in order)."""
    n = len(dino)
    per_frame = cfg.lowres_token ** 2 if cfg.highres else cfg.image_token_len
    max_frames = max(1, (cfg.tokenizer_model_max_length - text_len - cfg.inference_max_length)
                     // per_frame)
    info = {"applied": n >= max_frames, "max_num_frames": max_frames,
            "tokens_per_frame_for_budget": per_frame, "text_len_used": text_len,
            "window_mean_similarity": None}
    if n < max_frames:
        kept = list(range(n))
    else:
        kept, scores = [], []
        for start in range(0, n, DINO_WINDOW):
            seg = dino[start:start + DINO_WINDOW].flatten(1, 2)
            seg = seg / torch.norm(seg, dim=1, keepdim=True)
            sim = torch.mean(seg @ seg.T, dim=1)
            sim[len(seg) // 2] = 0
            scores.extend(sim.tolist())
            kept.extend((torch.where(sim < cfg.dino_threshold)[0] + start).tolist())
        if len(kept) > MAX_KEPT_FRAMES:
            step = len(kept) / float(MAX_KEPT_FRAMES)
            kept = [kept[int(step * i)] for i in range(MAX_KEPT_FRAMES)]
        info["window_mean_similarity"] = scores
    info["kept_frame_indices"] = kept
    if trace is not None:
        trace["dino_selection"] = info
    return kept


class FrameStore:
    """Per-frame tower and connector outputs, keyed by what a frame shows (the evaluator's
    ``frame_keys``: video and frame index), so that every visual input showing a frame again
    (another frame-order condition of the same clip, another question on the same video) reuses
    them: both towers and the SVA sampler work frame by frame. ``counts`` (a dict to add to)
    gets ``dino_frames`` / ``sva_frames`` computed and ``*_frames_reused`` served again."""

    def __init__(self, counts: dict | None = None):
        self.rows: dict = {}
        self.counts = counts if counts is not None else {}

    def count(self, kind: str, computed: int, reused: int = 0) -> None:
        for k, v in ((f"{kind}_frames", computed), (f"{kind}_frames_reused", reused)):
            self.counts[k] = self.counts.get(k, 0) + v

    def get(self, name: str | tuple, keys: Sequence[Hashable],
            compute: Callable[[list[int]], torch.Tensor], count: bool = True) -> torch.Tensor:
        """Rows for ``keys`` in order; ``compute(positions)`` runs once, on the first position
        of every key not stored yet (``count``: add to the counts)."""
        first: dict = {}
        for i, k in enumerate(keys):
            if (name, k) not in self.rows:
                first.setdefault(k, i)
        if first:
            for k, row in zip(first, compute(list(first.values()))):
                self.rows[(name, k)] = row
        if count:
            self.count(name if isinstance(name, str) else name[0], len(first),
                       len(keys) - len(first))
        return torch.stack([self.rows[(name, k)] for k in keys])

    def clear(self) -> None:
        self.rows.clear()


@dataclass
class VisualBlock:
    """Per-frame visual tokens before splicing (batch size 1)."""

    is_video: bool
    mix: bool  # low-res grids are the default representation (video mix regime / image in highres)
    high: list[torch.Tensor]
    high_meta: list[torch.Tensor]
    low: list[torch.Tensor] | None = None
    low_meta: list[torch.Tensor] | None = None
    kept: list[int] = field(default_factory=list)


def encode_visual(towers: Towers, connector: Connector, cfg: LongVUConfig,
                  siglip_pixels: torch.Tensor, dino_pixels: torch.Tensor,
                  size: tuple[float, float], is_video: bool, text_len: int,
                  trace: dict | None = None, cache: dict | None = None,
                  store: FrameStore | None = None,
                  frame_keys: Sequence[Hashable] | None = None) -> VisualBlock:
    """Towers -> frame selection -> connector -> projected, unpadded per-frame token blocks.

    ``cache`` (one dict per visual input, never with ``trace``): the DINO features are kept,
    and the block under the text-length-dependent plan (kept frames, regime), so another
    prompt on the same clip runs neither tower nor the connector again unless its length
    changes the plan. ``store`` with ``frame_keys`` (one per frame; inference only): the DINO
    features and the sampler output of a frame are computed once for every input showing it."""
    dtype = siglip_pixels.dtype
    keys = frame_keys if store is not None else None
    if cache is not None and "dino" in cache:
        dino = cache["dino"]
    elif keys is not None:  # the store holds the rows; the cache only remembers they counted
        dino = store.get("dino", keys, lambda i: towers.encode_dino(dino_pixels[i]),
                         count=cache is None or not cache.get("dino_counted"))
        if cache is not None:
            cache["dino_counted"] = True
    else:
        dino = towers.encode_dino(dino_pixels)
        if store is not None:
            store.count("dino", len(dino))
        if cache is not None:
            cache["dino"] = dino
    if trace is not None:
        trace["dino_features"] = dino
    if is_video:
        kept = select_frames(dino, text_len, cfg, trace)
    else:
        kept = list(range(len(dino)))
    q_num = cfg.query_num_list[0]
    q_side = int(q_num ** 0.5)
    final_side = int(cfg.image_token_len ** 0.5)
    n = len(kept)
    mix, high_grid = True, True
    if is_video:
        budget = cfg.tokenizer_model_max_length - text_len - cfg.inference_max_length
        max_high = max(1, math.floor(budget // (final_side * final_side)))
        max_low = max(1, math.floor(budget // cfg.lowres_token ** 2))
        if n < max_high:
            mix = False
        elif n > max_low:
            mix, high_grid = False, False
        if trace is not None:
            trace["regime_budget"] = {"text_len_used": text_len, "budget": budget,
                                      "max_num_frames_high": max_high,
                                      "max_num_frames_low": max_low}
    mix = mix and cfg.highres
    plan = (tuple(kept), mix, high_grid, tuple(size))
    if cache is not None and plan in cache:
        return cache[plan]
    if is_video:
        dino = dino[kept]
        siglip_pixels = siglip_pixels[kept]
    cdev, cdt = connector.vision_query.device, connector.dtype
    masks = [sampler_masks(size, q_side, towers.token_side)] * 2
    found: dict = {}

    def sample(i: list[int] | None) -> torch.Tensor:  # SigLIP + aux MLPs + SVA, frame by frame
        pix, dn = (siglip_pixels, dino) if i is None else (siglip_pixels[i], dino[i])
        siglip = towers.encode_siglip(pix)
        aux0 = connector.mm_projector_aux_0(siglip.to(cdev, cdt)).to(dtype)
        aux1 = connector.mm_projector_aux_1(dn.to(cdev, cdt)).to(dtype)
        found.update(siglip=siglip, aux0=aux0, aux1=aux1)
        return connector.sample(aux0.to(cdt), aux1.to(cdt), masks, q_side).to(dtype)

    if keys is None:
        sva = sample(None)
        if store is not None:
            store.count("sva", len(sva))
    else:  # the masks follow the size, so the size is part of the key
        sva = store.get(("sva", tuple(size)), [keys[k] for k in kept] if is_video else keys,
                        sample)

    def resize(x: torch.Tensor, side: int) -> torch.Tensor:
        s = int(x.shape[1] ** 0.5)
        y = x.permute(0, 2, 1).reshape(len(x), -1, s, s).float()
        y = F.interpolate(y, size=(side, side), mode="bilinear", align_corners=False)
        return y.to(x.dtype).permute(0, 2, 3, 1).flatten(1, 2)

    low = resize(sva, cfg.lowres_token) if mix else None
    high = sva
    if q_side != final_side:  # dead for released configs (queries == image_token_len)
        high = resize(sva, final_side if high_grid else 8)
    side = int(high.shape[1] ** 0.5)
    proj_high = connector.mm_projector(high.to(cdt)).to(dtype)
    proj_low = connector.mm_projector(low.to(cdt)).to(dtype) if mix else None

    if trace is not None:
        trace.update(kept_frame_indices=kept, siglip_features=found["siglip"],
                     aux0=found["aux0"], aux1=found["aux1"], sva_output=sva,
                     proj_highres=proj_high, proj_lowres=proj_low)

    block = VisualBlock(is_video=is_video, mix=mix, high=[], high_meta=[], kept=kept)
    newline = connector.image_newline
    for i in range(n):
        t, m = grid_tokens(proj_high[i], side, size, newline, i, HIGH)
        block.high.append(t), block.high_meta.append(m)
    if mix:
        scale = cfg.image_token_len ** 0.5 / cfg.lowres_token
        low_size = (int(size[0] / scale), int(size[1] / scale))
        block.low, block.low_meta = [], []
        for i in range(n):
            t, m = grid_tokens(proj_low[i], cfg.lowres_token, low_size, newline, i, LOW)
            block.low.append(t), block.low_meta.append(m)
    if cache is not None:
        cache[plan] = block
    return block


def compress(block: VisualBlock, suffix_emb: torch.Tensor, max_visual_len: int,
             cfg: LongVUConfig, trace: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Budget step: question-guided high-res upgrades (mix) or STC + trim. -> (tokens, map)."""
    frames = block.low if block.mix else block.high
    metas = block.low_meta if block.mix else block.high_meta
    n = len(frames)
    visual = torch.cat(frames).to(suffix_emb.dtype)
    meta = torch.cat(metas)
    visual_len = len(visual)
    upgraded = False
    info: dict = {}
    if (block.is_video and block.mix and cfg.image_token_len > cfg.lowres_token ** 2
            and max_visual_len > visual_len):
        high_per = sum(len(t) for t in block.high) // n
        low_per = visual_len // n
        n_up = math.floor((max_visual_len - visual_len) / (high_per - low_per))
        if n_up >= 1:
            upgraded = True
            sim = torch.matmul(visual, suffix_emb.transpose(0, 1)).mean(dim=-1)
            frame_scores = sim.reshape(n, -1).mean(dim=-1)
            n_up = min(n_up, n)
            top = torch.topk(frame_scores, n_up).indices
            top = sorted(top.tolist())
            pick = [block.high[i] if i in top else block.low[i] for i in range(n)]
            pick_meta = [block.high_meta[i] if i in top else block.low_meta[i] for i in range(n)]
            visual = torch.cat(pick).to(suffix_emb.dtype)
            meta = torch.cat(pick_meta)
            info["mix_selection"] = {"frame_scores": frame_scores.tolist(), "n_upgrade": n_up,
                                     "upgraded_frames": top}
    if block.is_video and max_visual_len < visual_len and not upgraded:
        per = visual.reshape(n, -1, visual.shape[-1])
        per_meta = meta.reshape(n, -1, 3)
        chunks, chunk_meta, stats = [], [], []
        for start in range(0, n, STC_CHUNK):
            c, cm = per[start:start + STC_CHUNK], per_meta[start:start + STC_CHUNK]
            if len(c) == 1:
                chunks.append(c[0]), chunk_meta.append(cm[0])
                continue
            sim = F.cosine_similarity(c[0].unsqueeze(0).repeat_interleave(len(c) - 1, dim=0),
                                      c[1:], dim=-1)
            keep = sim.flatten(0, 1) < cfg.drop_threshold
            chunks.append(torch.cat([c[0], c[1:].flatten(0, 1)[keep]]))
            chunk_meta.append(torch.cat([cm[0], cm[1:].flatten(0, 1)[keep]]))
            stats.append({"frames_in_chunk": len(c), "tokens_per_frame": c.shape[1],
                          "kept_tokens_non_first": int(keep.sum())})
        reduced = sum(len(c) for c in chunks)
        force_remove = 0
        if reduced > max_visual_len:
            force_remove = math.ceil((reduced - max_visual_len) / len(chunks))
            chunks = [c[:-force_remove] for c in chunks]
            chunk_meta = [c[:-force_remove] for c in chunk_meta]
        visual = torch.cat(chunks)[:max_visual_len]
        meta = torch.cat(chunk_meta)[:max_visual_len]
        info["stc"] = {"drop_threshold": cfg.drop_threshold, "chunk_size": STC_CHUNK,
                       "chunks": stats, "force_remove_per_chunk": force_remove}
    if trace is not None:
        trace.update(mix_selection=info.get("mix_selection"), stc=info.get("stc"))
        if not block.is_video:
            regime = "image_lowres_grid" if block.mix else "image_highres_grid"
        elif "stc" in info:
            regime = "stc_drop"
        elif upgraded:
            regime = "mix_lowres_with_upgrades"
        else:
            regime = "mix_lowres" if block.mix else "all_highres"
        trace["regime"] = regime
    return visual, meta


def splice(block: VisualBlock, input_ids: list[int], embed: torch.nn.Module, cfg: LongVUConfig,
           trace: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (inputs_embeds (L, H), position map (L,): index into input_ids, -1 for visual rows)."""
    if input_ids.count(IMAGE_TOKEN_INDEX) != 1:
        raise ValueError(f"input_ids must hold exactly one <image> sentinel "
                         f"({IMAGE_TOKEN_INDEX}), "
                         f"found {input_ids.count(IMAGE_TOKEN_INDEX)}")
    pos = input_ids.index(IMAGE_TOKEN_INDEX)
    dev = embed.weight.device
    ids = torch.tensor(input_ids[:pos] + input_ids[pos + 1:], dtype=torch.long, device=dev)
    text = embed(ids)
    prefix, suffix = text[:pos], text[pos:]
    max_visual_len = cfg.tokenizer_model_max_length - cfg.inference_max_length - len(ids)
    visual, meta = compress(block, suffix, max_visual_len, cfg, trace)
    visual = visual.to(text.device, text.dtype)
    embeds = torch.cat([prefix, visual, suffix])[:cfg.tokenizer_model_max_length]
    text_pos = torch.arange(len(input_ids), device=dev)
    pmap = torch.cat([text_pos[:pos], torch.full((len(visual),), -1, device=dev),
                      text_pos[pos + 1:]])[:cfg.tokenizer_model_max_length]
    if trace is not None:
        trace.update(visual_token_map=meta, max_visual_len=max_visual_len,
                     text_len_prefix=pos, text_len_suffix=len(suffix),
                     visual_span=[pos, pos + len(visual)])
    return embeds, pmap
