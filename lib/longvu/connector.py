"""LongVU's trainable connector: per-tower MLPs, the SVA cross-attention sampler, the projector
and `image_newline`, with parameter names equal to the original state-dict keys minus `model.`.

Sampler ("SVA"): one learned query vector per output cell cross-attends to that cell's r x r
window in both towers (r = 1 for image-stage checkpoints, 2 for video-stage ones, which also have
learned `pos_embed_*` per window slot). Used by notebooks 01, 03, 04 via `lib.longvu.model`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

SAMPLER_HEADS = 16  # hard-coded in the original sampler


class MLP(nn.Module):
    def __init__(self, d_in: int, d_hidden: int, d_out: int):
        super().__init__()
        self.linear_1 = nn.Linear(d_in, d_hidden, bias=False)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(d_hidden, d_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


def _ln_linear(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(d_in), nn.Linear(d_in, d_out, bias=False))


class MultiKVCrossAttention(nn.Module):
    """Queries attend to the concatenated keys of several towers (separate LN+proj per tower)."""

    def __init__(self, dim: int, num_kv: int, num_heads: int = SAMPLER_HEADS):
        super().__init__()
        self.num_heads, self.num_kv = num_heads, num_kv
        self.q_proj = _ln_linear(dim, dim)
        for i in range(num_kv):
            setattr(self, f"k_proj_{i}", _ln_linear(dim, dim))
            setattr(self, f"v_proj_{i}", _ln_linear(dim, dim))
        self.o_proj = nn.Linear(dim, dim, bias=False)

    def forward(self, q: torch.Tensor, kvs: list[torch.Tensor], masks: list[torch.Tensor]
                ) -> torch.Tensor:
        b, lq, d = q.shape
        hd = d // self.num_heads
        k = torch.cat([getattr(self, f"k_proj_{i}")(x) for i, x in enumerate(kvs)], 1)
        v = torch.cat([getattr(self, f"v_proj_{i}")(x) for i, x in enumerate(kvs)], 1)
        q = self.q_proj(q).view(b, lq, self.num_heads, hd).transpose(1, 2)
        k = k.view(b, -1, self.num_heads, hd).transpose(1, 2)
        v = v.view(b, -1, self.num_heads, hd).transpose(1, 2)
        mask = torch.cat([m.view(b, 1, 1, -1).expand(-1, -1, lq, -1) for m in masks], -1)
        if q.device.type == "cuda":  # SDPA with a custom mask wants contiguous inputs on CUDA
            q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(out.transpose(1, 2).reshape(b, lq, d))


class SamplerLayer(nn.Module):
    """One SVA layer. Note the residual is the layer input, not the normed attention output."""

    def __init__(self, dim: int, window_sizes: list[int]):
        super().__init__()
        self.proj_context = nn.Linear(dim, dim, bias=False)
        self.proj_in = nn.Linear(2 * dim, dim, bias=False)
        self.proj_out = MLP(dim, dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.cross_attn = MultiKVCrossAttention(dim, len(window_sizes))
        for i, r in enumerate(window_sizes):
            if r > 1:
                setattr(self, f"pos_embed_{i}", nn.Parameter(torch.randn(r * r, dim)))

    def forward(self, x: torch.Tensor, context: torch.Tensor, kvs: list[torch.Tensor],
                masks: list[torch.Tensor]) -> torch.Tensor:
        h = self.proj_in(torch.cat([x, self.proj_context(context)], -1))
        kvs = [kv + getattr(self, f"pos_embed_{i}")[None].to(kv.dtype) if kv.shape[1] > 1 else kv
               for i, kv in enumerate(kvs)]
        h = self.norm(h + self.cross_attn(h, kvs, masks))
        return self.proj_out(h) + x


class Sampler(nn.Module):
    def __init__(self, dim: int, window_sizes: list[int], depth: int):
        super().__init__()
        self.layers = nn.ModuleList([SamplerLayer(dim, window_sizes) for _ in range(depth)])

    def forward(self, x, context, kvs, masks):
        for layer in self.layers:
            x = layer(x, context, kvs, masks)
        return x


def _aux_mlp(d_in: int, d: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d), nn.GELU(), nn.Linear(d, d), nn.LayerNorm(d))


class Connector(nn.Module):
    """Towers -> LLM glue; state-dict keys = original keys minus `model.`."""

    def __init__(self, tower_widths: tuple[int, int], vision_hidden_size: int, llm_hidden: int,
                 window_sizes: list[int], depth: int):
        super().__init__()
        d = vision_hidden_size
        self.mm_projector = nn.Sequential(nn.Linear(d, llm_hidden), nn.GELU(),
                                          nn.Linear(llm_hidden, llm_hidden))
        self.mm_projector_aux_0 = _aux_mlp(tower_widths[0], d)
        self.mm_projector_aux_1 = _aux_mlp(tower_widths[1], d)
        self.vision_sampler_0 = Sampler(d, window_sizes, depth)
        self.vision_query = nn.Parameter(torch.randn(1, d))
        self.image_newline = nn.Parameter(torch.randn(llm_hidden) / llm_hidden ** 0.5)

    @property
    def dtype(self) -> torch.dtype:
        return self.vision_query.dtype

    def sample(self, aux0: torch.Tensor, aux1: torch.Tensor, masks: list[torch.Tensor],
               q_side: int) -> torch.Tensor:
        """SVA on per-frame aux features (N,576,D) x2 -> (N, q*q, D).

        masks: per tower (q*q, r*r) bool (True = attend), shared by all N frames.
        """
        n, t, d = aux0.shape
        ctx = aux0.mean(1)  # global context = mean of the SigLIP aux tokens (padding included)
        kvs = [_windows(aux0, q_side), _windows(aux1, q_side)]
        masks = [m.to(aux0.device).repeat(n, 1) for m in masks]
        queries = self.vision_query[0].view(1, 1, d).expand(n * q_side * q_side, 1, d)
        context = ctx[:, None, None, :].expand(n, q_side * q_side, 1, d).flatten(0, 1)
        out = self.vision_sampler_0(queries, context, kvs, masks)
        return out.view(n, q_side * q_side, d)


def _windows(x: torch.Tensor, q_side: int) -> torch.Tensor:
    """(N, s*s, D) -> (N*q*q, r*r, D): cut the s x s map into q x q windows of r x r, row-major."""
    n, t, d = x.shape
    s = int(t ** 0.5)
    r = s // q_side
    x = x.view(n, q_side, r, q_side, r, d).permute(0, 1, 3, 2, 4, 5).contiguous()
    return x.flatten(0, 2).flatten(1, 2)
