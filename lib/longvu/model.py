"""The LongVU model object: stock decoder + frozen towers + connector + token pipeline.

The decoder is an unmodified `Qwen2ForCausalLM` / `LlamaForCausalLM` (optionally NF4, optionally
wrapped by peft) driven through `inputs_embeds`; nothing LongVU-specific lives inside it.
Public methods: `preprocess`, `prompt`, `prepare_inputs_embeds`, `forward` (label-only loss),
`generate`, `next_token_logits`, `sequence_logprob`, and the evaluator's batched forms
`generate_batch` and `likelihood_batch` (several questions per decoder forward; option and letter
continuations scored from one key/value cache of the prompt). Inside `visual_cache()` the towers
and connector run once per visual input for every prompt on it, and once per frame for every
input that shows it again (``frame_keys``). Used by notebooks 01 (evaluation), 03 and 04
(training and analysis).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import LogitsProcessorList

from . import batched, pipeline, prompts
from .batched import StopStrings, SuppressIds
from .config import LongVUConfig
from .connector import Connector
from .towers import Towers, preprocess_frames


@dataclass
class Flags:
    """Fidelity switches (see the package docstring). Defaults reproduce the released eval."""

    legacy_video_size_swap: bool = True  # videos pass (H, W) where (W, H) is read, as released
    legacy_dino_interp: bool = True  # transformers-4.4x DINOv2 position interpolation
    legacy_placeholder_tokens: bool = False  # training collator's token-id-0 leak after the image
    suppress_extra_vocab: bool = True  # ids >= len(tokenizer) ungeneratable (original resizes)


@dataclass
class LossOutput:
    """The mean CE over a batch's label tokens, their count, and per row (detached): the label
    tokens left after the token budget and their mean CE (nan for a row with none)."""

    loss: torch.Tensor
    num_tokens: int
    row_tokens: tuple[int, ...]
    row_loss: tuple[float, ...]


def preprocess_visual(frames: np.ndarray, kind: str = "video", sizes: tuple[int, int] = (384, 378),
                      legacy_video_size_swap: bool = True) -> dict:
    """Tower inputs for one video/image without a model object (picklable, for DataLoader
    workers); `LongVU.preprocess` is this with the model's tower sizes and flags."""
    if kind not in ("video", "image"):
        raise ValueError(f"kind must be 'video' or 'image', got {kind!r}")
    frames = np.asarray(frames)
    if kind == "image" and len(frames) != 1:
        raise ValueError(f"kind='image' takes one frame, got {len(frames)}")
    sig, dino = preprocess_frames(frames, sizes)
    h, w = frames.shape[1:3]
    size = (h, w) if kind == "video" and legacy_video_size_swap else (w, h)
    return {"siglip": sig, "dino": dino, "image_sizes": [size], "kind": kind}


@dataclass(frozen=True)
class VideoPreprocessor:
    """``preprocess_visual`` for videos at fixed tower sizes, picklable for DataLoader workers;
    ``reorder`` gives the tower inputs of already preprocessed frames in another order."""

    sizes: tuple[int, int] = (384, 378)
    legacy_video_size_swap: bool = True

    def __call__(self, frames: np.ndarray) -> dict:
        return preprocess_visual(frames, "video", self.sizes, self.legacy_video_size_swap)

    @staticmethod
    def reorder(prepared: dict, order: Sequence[int]) -> dict:
        """What ``__call__`` returns for ``frames[order]`` (repeats allowed), from the output
        for ``frames``: each frame is preprocessed on its own, and the size is the clip's."""
        idx = torch.as_tensor(list(order), dtype=torch.long)
        return {**prepared, "siglip": prepared["siglip"][idx], "dino": prepared["dino"][idx]}


def placeholder_count(size: tuple[float, float], image_token_len: int) -> int:
    """How many token-id-0 placeholders the original training collator leaks for one image."""
    s = int(image_token_len ** 0.5)
    w, h = size
    mask = torch.ones(s, s + 1, dtype=torch.bool)
    if w / h > 1:
        p = (s - int(h * (s / w))) // 2
        if p > 0:
            mask[:p, :] = 0
            mask[-p:, :] = 0
    else:
        p = (s - int(w * (s / h))) // 2
        if p > 0:
            mask[:, :p] = 0
            mask[:, -p - 1:-1] = 0
    return int(mask.flatten()[1:].sum())


class LongVU(nn.Module):
    """LongVU on transformers 5.x. Build it with `lib.longvu.load`."""

    def __init__(self, decoder: nn.Module, connector: Connector, towers: Towers,
                 config: LongVUConfig, tokenizer=None, template: str | None = None,
                 flags: Flags | None = None):
        super().__init__()
        self.decoder, self.connector, self.towers = decoder, connector, towers
        self.config, self.tokenizer = config, tokenizer
        self.template = template or prompts.template_for(config.backbone)
        self.flags = flags or Flags()
        self._vcache: OrderedDict | None = None  # see visual_cache()
        self._frames: pipeline.FrameStore | None = None  # per-frame outputs, the same scope
        # inference seconds by part, and visual blocks computed (passes) and served per user
        # (uses: a block counts once per `visual_user`, the model variant asking; lib.variants)
        self.timing = {"visual_s": 0.0, "decoder_s": 0.0, "visual_passes": 0, "visual_uses": 0}
        self.visual_user: str | None = None

    # -- evaluator helpers ----------------------------------------------------------------
    @contextlib.contextmanager
    def visual_cache(self, max_entries: int = 256) -> Iterator[None]:
        """Inside: the tower + connector output of a visual input (the preprocess dict, by
        identity; the entry holds it so the identity cannot be reused) is kept for every
        prompt on it, inference only; so are each frame's DINO features and sampler output for
        every input whose ``frame_keys`` name that frame again (`pipeline.FrameStore`: the
        evaluator's frame-order conditions of one clip). Nested calls share the outer cache;
        leaving the outermost frees it. Training (`forward`) must not run inside: the cached
        tokens carry no graph."""
        if self._vcache is not None:
            yield
            return
        self._vcache = OrderedDict()
        self._vcache_max = max_entries
        self._frames = pipeline.FrameStore(self.timing)
        try:
            yield
        finally:
            self._vcache = self._frames = None

    def clear_visual_cache(self) -> None:
        """Drop the cached visual tokens (the evaluator calls it after each batch)."""
        if self._vcache is not None:
            self._vcache.clear()
            self._frames.clear()

    def _sync(self) -> None:
        if self.device.type == "cuda":  # timings must not stop at an asynchronous launch
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def _timed(self, part: str) -> Iterator[None]:
        if self._vcache is None:  # timed in evaluation only: no syncs in training steps
            yield
            return
        self._sync()
        t = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.timing[part + "_s"] += time.perf_counter() - t

    def _visual_entry(self, visual: dict) -> dict | None:
        if self._vcache is None:
            return None
        key = id(visual)
        hit = self._vcache.get(key)
        if hit is not None and hit[0] is visual:
            self._vcache.move_to_end(key)
            return hit[1]
        entry: dict = {}
        self._vcache[key] = (visual, entry)
        while len(self._vcache) > self._vcache_max:
            self._vcache.popitem(last=False)
        return entry

    def _count_use(self, cache: dict, block) -> None:
        users = cache.setdefault("users", {})  # id(block) -> the visual_users it served
        if id(block) not in users:  # first sight: encode_visual has just computed it
            users[id(block)] = set()
            self.timing["visual_passes"] += 1
        if self.visual_user not in users[id(block)]:
            users[id(block)].add(self.visual_user)
            self.timing["visual_uses"] += 1

    # -- plumbing -------------------------------------------------------------------------
    @property
    def base_decoder(self) -> nn.Module:
        """The stock causal LM (under a peft wrapper if one is attached)."""
        d = self.decoder
        return d.get_base_model() if hasattr(d, "get_base_model") else d

    @property
    def device(self) -> torch.device:
        return self.connector.vision_query.device

    @property
    def dtype(self) -> torch.dtype:
        return self.connector.dtype

    @property
    def embed_tokens(self) -> nn.Embedding:
        return self.base_decoder.get_input_embeddings()

    def _vocab_limit(self) -> int | None:
        if not (self.flags.suppress_extra_vocab and self.tokenizer is not None):
            return None
        n = len(self.tokenizer)
        return n if n < self.base_decoder.config.vocab_size else None

    def _eos_ids(self) -> list[int]:
        eos = self.base_decoder.generation_config.eos_token_id
        if eos is None:
            eos = self.base_decoder.config.eos_token_id
        return [eos] if isinstance(eos, int) else list(eos or [])

    # -- inputs ---------------------------------------------------------------------------
    def preprocess(self, frames: np.ndarray, kind: str = "video") -> dict:
        """uint8 (T,H,W,3) RGB -> tower inputs (CPU tensors; safe in DataLoader workers).

        kind="video": the video path (DINO dropping, regimes); with `legacy_video_size_swap`
        the size tuple is (H, W) as in the released eval/training. kind="image": one frame
        through the image path with size (W, H).
        """
        return preprocess_visual(frames, kind, self.towers.sizes,
                                 self.flags.legacy_video_size_swap)

    def prompt(self, user_text: str, with_image: bool = True) -> str:
        """The eval prompt for this checkpoint (Llama: the tokenizer's own template if present)."""
        if self.template == "llama3" and self.tokenizer is not None:
            text = prompts.render_tokenizer_template(self.tokenizer, user_text, with_image)
            if text is not None:
                return text
        return prompts.build_prompt(self.template, user_text, with_image)

    def tokenize(self, prompt_text: str) -> list[int]:
        if self.tokenizer is None:
            raise RuntimeError("this checkpoint has no tokenizer; pass input_ids directly")
        return prompts.tokenize_with_image(self.tokenizer, prompt_text)

    def _visual(self, frames) -> dict:
        return frames if isinstance(frames, dict) else self.preprocess(frames)

    def embed_one(self, input_ids: list[int], visual: dict, trace: dict | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """One sample -> (inputs_embeds (L,H), position map (L,) into input_ids, -1 = visual)."""
        ids = list(input_ids)
        size = tuple(visual["image_sizes"][0])
        back = list(range(len(ids)))
        if self.flags.legacy_placeholder_tokens:
            pos = ids.index(prompts.IMAGE_TOKEN_INDEX)
            k = placeholder_count(size, self.config.image_token_len)
            ids = ids[:pos + 1] + [0] * k + ids[pos + 1:]
            back = back[:pos + 1] + [-1] * k + back[pos + 1:]
        is_video = visual.get("kind", "video") == "video"
        text_len = pipeline.text_len_for_budget(ids, self.config)
        tdev = next(self.towers.parameters()).device
        cache = None if trace is not None else self._visual_entry(visual)
        with self._timed("visual"), (torch.no_grad() if cache is not None
                                      else contextlib.nullcontext()):
            pixels = cache.get("pixels") if cache is not None else None
            if pixels is None:
                pixels = (visual["siglip"].to(tdev, self.dtype),
                          visual["dino"].to(tdev, self.dtype))
                if cache is not None:
                    cache["pixels"] = pixels
            block = pipeline.encode_visual(self.towers, self.connector, self.config, *pixels,
                                           size, is_video, text_len, trace, cache,
                                           self._frames if cache is not None else None,
                                           visual.get("frame_keys"))
        if cache is not None:
            self._count_use(cache, block)
        embeds, pmap = pipeline.splice(block, ids, self.embed_tokens, self.config, trace)
        if self.flags.legacy_placeholder_tokens:
            backmap = torch.tensor(back + [-1], device=pmap.device)
            pmap = backmap[pmap]  # -1 indexes the appended -1
        return embeds, pmap

    def prepare_inputs_embeds(self, input_ids, visual, attention_mask: torch.Tensor | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token pipeline + splice at `<image>` for a batch (each sample processed on its own).

        input_ids: list of id lists, or a (B, L) tensor (with `attention_mask` to drop padding);
        visual: a `preprocess` dict or a list of them. Returns right-padded
        (inputs_embeds (B,L,H), attention_mask (B,L) long, position_map (B,L)): position_map
        holds the index into that sample's input_ids, -1 for visual and padding rows.
        """
        if torch.is_tensor(input_ids):
            if input_ids.dim() == 1:
                input_ids = input_ids[None]
            rows = []
            for i, row in enumerate(input_ids.tolist()):
                if attention_mask is not None:
                    row = [t for t, m in zip(row, attention_mask[i].tolist()) if m]
                rows.append(row)
            input_ids = rows
        elif input_ids and isinstance(input_ids[0], int):
            input_ids = [input_ids]
        visuals = visual if isinstance(visual, (list, tuple)) else [visual]
        if len(visuals) != len(input_ids):
            raise ValueError(f"{len(input_ids)} id sequences but {len(visuals)} visual inputs")
        outs = [self.embed_one(ids, self._visual(v)) for ids, v in zip(input_ids, visuals)]
        n = max(len(e) for e, _ in outs)
        hdim = outs[0][0].shape[-1]
        embeds = outs[0][0].new_zeros(len(outs), n, hdim)
        mask = torch.zeros(len(outs), n, dtype=torch.long, device=embeds.device)
        pmap = torch.full((len(outs), n), -1, dtype=torch.long, device=embeds.device)
        for i, (e, p) in enumerate(outs):
            embeds[i, :len(e)], mask[i, :len(e)], pmap[i, :len(e)] = e, 1, p
        return embeds, mask, pmap

    @staticmethod
    def align_labels(labels, position_map: torch.Tensor) -> torch.Tensor:
        """Per-id labels (list of lists or (B, L_ids) tensor) -> labels on the embedding rows."""
        out = torch.full_like(position_map, -100)
        for i in range(len(position_map)):
            lab = torch.as_tensor(labels[i], device=position_map.device)
            ok = position_map[i] >= 0
            out[i, ok] = lab[position_map[i, ok]]
        return out

    # -- training forward -----------------------------------------------------------------
    def forward(self, visual, input_ids, labels, attention_mask: torch.Tensor | None = None
                ) -> LossOutput:
        """Mean next-token CE over label positions != -100, without full-sequence logits.

        Hidden states are gathered at the positions that predict a label, then lm_head runs on
        those rows only. Gradients reach the connector and the decoder; towers stay frozen.
        """
        embeds, mask, pmap = self.prepare_inputs_embeds(input_ids, visual, attention_mask)
        if torch.is_tensor(labels) and attention_mask is not None:
            labels = [row[m.bool()].tolist() for row, m in zip(labels, attention_mask)]
        elif torch.is_tensor(labels) and labels.dim() == 1:
            labels = labels[None]
        elif not torch.is_tensor(labels) and labels and isinstance(labels[0], int):
            labels = [labels]
        lab = self.align_labels(labels, pmap)
        base = self.base_decoder
        hidden = base.model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        target = lab[:, 1:]
        sel = target != -100
        h = hidden[:, :-1][sel]
        logits = base.lm_head(h).float()
        counts = sel.sum(1)
        n = int(counts.sum())
        if n == 0:
            return LossOutput(logits.sum() * 0.0, 0, (0,) * len(sel), (math.nan,) * len(sel))
        with torch.no_grad():  # per-row figures for the trainer's accounting; no graph
            ce = F.cross_entropy(logits.detach(), target[sel], reduction="none")
            sums = ce.new_zeros(len(sel)).index_add_(0, sel.nonzero()[:, 0], ce)
            rows = (sums / counts).tolist()
        return LossOutput(F.cross_entropy(logits, target[sel]), n, tuple(counts.tolist()),
                          tuple(rows))

    # -- inference ------------------------------------------------------------------------
    def _prompt_ids(self, prompt_text) -> list[int]:
        if isinstance(prompt_text, str):
            return self.tokenize(prompt_text)
        return list(prompt_text)

    @torch.no_grad()
    def generate_ids(self, inputs_embeds: torch.Tensor, max_new_tokens: int = 5,
                     stop: list[str] | None = None, attention_mask: torch.Tensor | None = None
                     ) -> list[int] | torch.Tensor:
        """Greedy decoding from (L, H) embeddings: the new ids (EOS included if hit). Given a
        left-padded (B, L, H) batch and its attention mask: the (B, new) ids tensor."""
        eos = self._eos_ids()
        kwargs = {}
        limit = self._vocab_limit()
        if limit is not None:
            kwargs["logits_processor"] = LogitsProcessorList([SuppressIds(limit)])
        if stop and self.tokenizer is not None:
            kwargs["stopping_criteria"] = [StopStrings(self.tokenizer, stop)]
        e = inputs_embeds if attention_mask is not None else inputs_embeds[None]
        mask = attention_mask if attention_mask is not None else torch.ones(
            e.shape[:2], dtype=torch.long, device=e.device)
        out = self.decoder.generate(
            inputs_embeds=e, attention_mask=mask,
            max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None,
            top_k=None, use_cache=True, eos_token_id=eos or None,
            pad_token_id=eos[0] if eos else 0, **kwargs)
        return out if attention_mask is not None else out[0].tolist()

    @torch.no_grad()
    def generate(self, frames, prompt_text, max_new_tokens: int = 5, stop: list[str] | None = None
                 ) -> str:
        """Greedy answer text for a video/image and a full prompt (see `prompt`), like the
        original eval: skip special tokens, strip, drop a trailing stop string."""
        stop = stop if stop is not None else [prompts.STOP[self.template]]
        embeds, _ = self.embed_one(self._prompt_ids(prompt_text), self._visual(frames))
        return batched.clean_text(self.tokenizer, self.generate_ids(embeds, max_new_tokens, stop),
                                  stop)

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.base_decoder.lm_head(hidden).float()
        limit = self._vocab_limit()
        if limit is not None:
            logits[..., limit:] = -float("inf")
        return logits

    @torch.no_grad()
    def next_token_logits(self, frames, prompt_text) -> torch.Tensor:
        """(vocab,) fp32 logits at the first answer position."""
        embeds, _ = self.embed_one(self._prompt_ids(prompt_text), self._visual(frames))
        hidden = self.base_decoder.model(inputs_embeds=embeds[None]).last_hidden_state
        return self._logits(hidden[0, -1])

    @torch.no_grad()
    def letter_logprobs(self, frames, prompt_text, letters: list[str]) -> list[float]:
        """log p(answer starts with letter X), summed over the two ways answers start: "X..."
        (LongVU's MVBench style) and "(X) ..." (the paper's training targets). One forward of
        the prompt followed by "(" gives both next-token distributions."""
        open_ids = self.tokenizer("(", add_special_tokens=False)["input_ids"]
        letter_ids = [self.tokenizer(x, add_special_tokens=False)["input_ids"] for x in letters]
        if len(open_ids) != 1 or any(len(i) != 1 for i in letter_ids):
            raise ValueError("'(' and each option letter must be single tokens for letter scoring")
        ids = self._prompt_ids(prompt_text) + open_ids
        embeds, _ = self.embed_one(ids, self._visual(frames))
        hidden = self.base_decoder.model(inputs_embeds=embeds[None]).last_hidden_state
        logp = self._logits(hidden[0, -2:]).log_softmax(-1)  # [before "(", after "("]
        out = []
        for (i,) in letter_ids:
            both = torch.stack([logp[0, i], logp[0, open_ids[0]] + logp[1, i]])
            out.append(float(torch.logsumexp(both, 0)))
        return out

    @torch.no_grad()
    def sequence_logprob(self, frames, prompt_text, continuations: list[str]) -> list[float]:
        """Summed log-prob of each continuation after the prompt (visual tokens computed once)."""
        embeds, _ = self.embed_one(self._prompt_ids(prompt_text), self._visual(frames))
        conts = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
        if any(len(c) == 0 for c in conts):
            raise ValueError("empty continuation after tokenisation")
        n = max(len(c) for c in conts)
        L = len(embeds)
        batch = embeds.new_zeros(len(conts), L + n, embeds.shape[-1])
        mask = torch.zeros(len(conts), L + n, dtype=torch.long, device=embeds.device)
        for i, c in enumerate(conts):
            ids = torch.tensor(c, device=embeds.device)
            batch[i, :L] = embeds
            batch[i, L:L + len(c)] = self.embed_tokens(ids)
            mask[i, :L + len(c)] = 1
        base = self.base_decoder
        hidden = base.model(inputs_embeds=batch, attention_mask=mask).last_hidden_state
        out = []
        for i, c in enumerate(conts):
            logp = self._logits(hidden[i, L - 1:L - 1 + len(c)]).log_softmax(-1)
            tgt = torch.tensor(c, device=logp.device)
            out.append(float(logp[torch.arange(len(c)), tgt].sum()))
        return out

    # -- batched inference (the evaluator; lib.longvu.batched) ----------------------------
    def generate_batch(self, visuals: Sequence, prompt_texts: Sequence, max_new_tokens: int = 5,
                       stop: list[str] | None = None) -> list[str]:
        """`generate` for several rows in one decoder call (see `batched.generate_batch`)."""
        return batched.generate_batch(self, visuals, prompt_texts, max_new_tokens, stop)

    def likelihood_batch(self, visuals: Sequence, prompt_texts: Sequence,
                         letters: Sequence[Sequence[str] | None],
                         options: Sequence[Sequence[str] | None]
                         ) -> tuple[list[list[float] | None], list[list[float] | None]]:
        """`letter_logprobs` and `sequence_logprob` for several rows from one prefill of each
        prompt (see `batched.likelihood_batch`)."""
        return batched.likelihood_batch(self, visuals, prompt_texts, letters, options)

