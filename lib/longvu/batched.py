"""LongVU inference for several questions per decoder forward (the evaluator's fast path).

`generate_batch`: greedy generation for many (visual, prompt) rows in one left-padded
`generate` call, each row cut where batch size 1 stops. `likelihood_batch`: the letter and option
scores of `LongVU.letter_logprobs` / `LongVU.sequence_logprob` with every prompt prefilled once
(rows batched, right-padded) and each option scored as a continuation over the prompt's
key/value cache. The generation helpers `SuppressIds` / `StopStrings` live here too. Reached
through `LongVU.generate_batch` / `LongVU.likelihood_batch`; used by `lib.models` (notebooks 01
and 04, `python -m lib.tvbench eval`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache, LogitsProcessor, StoppingCriteria

from . import prompts

LongVU = nn.Module  # the `lib.longvu.model.LongVU` these take (model.py imports this module)


class SuppressIds(LogitsProcessor):
    """Ids from ``start`` on cannot be generated (rows the tokenizer does not have)."""

    def __init__(self, start: int):
        self.start = start

    def __call__(self, input_ids, scores):
        scores[:, self.start:] = -float("inf")
        return scores


class StopStrings(StoppingCriteria):
    """Stop a row when its decoded continuation ends with (or holds) one of the stop strings."""

    def __init__(self, tokenizer, stops: list[str]):
        self.tokenizer, self.stops = tokenizer, stops

    def hit(self, ids: Sequence[int]) -> bool:
        text = self.tokenizer.decode(list(ids)[-8:])
        return any(text.endswith(s) or s in text for s in self.stops)

    def __call__(self, input_ids, scores, **kwargs):
        return torch.tensor([self.hit(row) for row in input_ids.tolist()], dtype=torch.bool,
                            device=input_ids.device)


def pad_rows(rows: Sequence[torch.Tensor], left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_i, H) rows -> zero-padded (B, L, H) and its (B, L) long attention mask."""
    n = max(len(r) for r in rows)
    out = rows[0].new_zeros(len(rows), n, rows[0].shape[-1])
    mask = torch.zeros(len(rows), n, dtype=torch.long, device=out.device)
    for i, r in enumerate(rows):
        sl = slice(n - len(r), n) if left else slice(0, len(r))
        out[i, sl], mask[i, sl] = r, 1
    return out, mask


def cut_at_stop(ids: list[int], eos: Sequence[int], stop: StopStrings | None) -> list[int]:
    """A row of a batched generation cut where batch size 1 stops: at EOS or a stop string
    (the criterion sees the row's own last 8 new tokens, as in `LongVU.generate_ids`)."""
    for t in range(len(ids)):
        if ids[t] in eos or (stop is not None and stop.hit(ids[:t + 1])):
            return ids[:t + 1]
    return ids


def clean_text(tokenizer, ids: list[int], stop: Sequence[str]) -> str:
    """The answer text as `LongVU.generate` returns it (special tokens skipped, stripped, a
    trailing stop string dropped)."""
    text = tokenizer.decode(ids, skip_special_tokens=True).strip()
    for s in stop:
        if text.endswith(s):
            text = text[: -len(s)].strip()
    return text


def _embed_rows(model: LongVU, visuals: Sequence, id_rows: Sequence[list[int]]
                ) -> list[torch.Tensor]:
    return [model.embed_one(ids, model._visual(v))[0] for ids, v in zip(id_rows, visuals)]


def padded_prefill(model: LongVU) -> bool:
    """Whether prompts of different lengths go through the decoder as one padded batch. Not on
    the CPU: there the padded attention mask costs more than the rows do one by one (8 rows of
    ~1,000 tokens, tiny decoder, one thread: 0.35 s padded, 0.19 s one by one, 0.16 s for an
    unpadded batch of equal lengths; docs/benchmarks.md)."""
    return model.device.type != "cpu"


@torch.no_grad()
def generate_batch(model: LongVU, visuals: Sequence, prompt_texts: Sequence,
                   max_new_tokens: int = 5, stop: list[str] | None = None) -> list[str]:
    """`LongVU.generate` for several (visual, prompt) rows in one left-padded `generate` call
    (position ids from the attention mask); a row's text equals its batch-1 text up to float
    rounding in the padded attention."""
    stop = stop if stop is not None else [prompts.STOP[model.template]]
    rows = _embed_rows(model, visuals, [model._prompt_ids(p) for p in prompt_texts])
    if not padded_prefill(model):  # batch size 1 per row: the same call as `generate`
        with model._timed("decoder"):
            return [clean_text(model.tokenizer, model.generate_ids(e, max_new_tokens, stop), stop)
                    for e in rows]
    crit = StopStrings(model.tokenizer, stop) if stop and model.tokenizer is not None else None
    with model._timed("decoder"):
        e, mask = pad_rows(rows, left=True)
        out = model.generate_ids(e, max_new_tokens, stop, attention_mask=mask)
    return [clean_text(model.tokenizer, cut_at_stop(row, model._eos_ids(), crit), stop)
            for row in out.tolist()]


def _prefill(model: LongVU, rows: Sequence[torch.Tensor]):
    """Prompt rows -> (per-layer (keys, values) right-padded to the longest row, its mask,
    lengths, log-probs of the token after each prompt). One padded forward, or one forward per
    row where that is faster (`padded_prefill`); the cache is the same."""
    e, mask = pad_rows(rows, left=False)
    lengths = mask.sum(1)
    if padded_prefill(model):
        cache = DynamicCache()
        hidden = model.base_decoder.model(inputs_embeds=e, attention_mask=mask,
                                          past_key_values=cache, use_cache=True
                                          ).last_hidden_state
        last = hidden[torch.arange(len(rows), device=e.device), lengths - 1]
        return [(k, v) for k, v, *_ in cache], mask, lengths, model._logits(last).log_softmax(-1)
    per_row, last = [], []
    for r in rows:
        cache = DynamicCache()
        hidden = model.base_decoder.model(inputs_embeds=r[None], past_key_values=cache,
                                          use_cache=True).last_hidden_state
        per_row.append([(k, v) for k, v, *_ in cache])
        last.append(hidden[0, -1])
    n = e.shape[1]

    def pad(t: torch.Tensor) -> torch.Tensor:  # (1, heads, L_i, d) -> (1, heads, n, d)
        return F.pad(t, (0, 0, 0, n - t.shape[2]))

    kv = [(torch.cat([pad(row[i][0]) for row in per_row]),
           torch.cat([pad(row[i][1]) for row in per_row])) for i in range(len(per_row[0]))]
    return kv, mask, lengths, model._logits(torch.stack(last)).log_softmax(-1)


def _last_two(model: LongVU, rows: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Next-token log-probs (2, V) at each row's last two positions (full forwards)."""
    if not rows:
        return []
    if not padded_prefill(model):
        hidden = [model.base_decoder.model(inputs_embeds=r[None]).last_hidden_state[0, -2:]
                  for r in rows]
    else:
        e, mask = pad_rows(rows, left=False)
        h = model.base_decoder.model(inputs_embeds=e, attention_mask=mask).last_hidden_state
        hidden = [h[j, n - 2:n] for j, n in enumerate(mask.sum(1).tolist())]
    return [model._logits(x).log_softmax(-1) for x in hidden]


def _continue(model: LongVU, kv, mask: torch.Tensor, lengths: torch.Tensor,
              conts: Sequence[list[int]]) -> torch.Tensor:
    """Log-probs (B, C, V) after each token of each row's continuation (right-padded to C), fed
    after that row's prompt from the prefill's key/value tensors (a fresh cache over them, so
    every call reuses the same prefix): position ids go on from each row's own length and the
    prefix's padding stays masked."""
    dev = mask.device
    c = max(len(x) for x in conts)
    ids = torch.zeros(len(conts), c, dtype=torch.long, device=dev)
    cmask = torch.zeros(len(conts), c, dtype=torch.long, device=dev)
    for i, x in enumerate(conts):
        ids[i, :len(x)] = torch.tensor(x, device=dev)
        cmask[i, :len(x)] = 1
    pos = lengths[:, None] + torch.arange(c, device=dev)[None]
    hidden = model.base_decoder.model(
        inputs_embeds=model.embed_tokens(ids), attention_mask=torch.cat([mask, cmask], 1),
        position_ids=pos, past_key_values=DynamicCache(ddp_cache_data=kv), use_cache=True
    ).last_hidden_state
    return model._logits(hidden).log_softmax(-1)


def letter_token_ids(tokenizer, letters: Sequence[str]) -> tuple[int, list[int]]:
    """("(" id, one id per letter); letter scoring needs each to be a single token."""
    open_ids = tokenizer("(", add_special_tokens=False)["input_ids"]
    letter_ids = [tokenizer(x, add_special_tokens=False)["input_ids"] for x in letters]
    if len(open_ids) != 1 or any(len(i) != 1 for i in letter_ids):
        raise ValueError("'(' and each option letter must be single tokens for letter scoring")
    return open_ids[0], [i[0] for i in letter_ids]


def letter_scores(first: torch.Tensor, after_open: torch.Tensor, open_id: int,
                  ids: Sequence[int]) -> list[float]:
    """log p("X...") + p("(X...") per letter from the next-token log-probs after the prompt
    (``first``) and after the prompt and "(" (``after_open``): `LongVU.letter_logprobs`."""
    return [float(torch.logsumexp(torch.stack([first[i], first[open_id] + after_open[i]]), 0))
            for i in ids]


@torch.no_grad()
def likelihood_batch(model: LongVU, visuals: Sequence, prompt_texts: Sequence,
                     letters: Sequence[Sequence[str] | None],
                     options: Sequence[Sequence[str] | None]
                     ) -> tuple[list[list[float] | None], list[list[float] | None]]:
    """Letter and option scores for several rows, row i scoring ``letters[i]`` and/or
    ``options[i]`` (None: not asked).

    Every prompt is prefilled once (rows batched, right-padded); option index k of every row is
    one forward over the prompts' key/value cache, not a re-run of the prompt. The letter score
    keeps `LongVU.letter_logprobs`' definition, whose text is the prompt followed by "(" (the
    visual-token budget sees that text too): where its embeddings are the prompt's plus "(",
    it is one more continuation on the same cache; where the extra token changed the visual
    tokens (budget, frame selection, question-guided upgrades) the row runs its own forward,
    batched with the others that do."""
    n = len(prompt_texts)
    ids = [model._prompt_ids(p) for p in prompt_texts]
    rows = _embed_rows(model, visuals, ids)
    letter_out: list[list[float] | None] = [None] * n
    option_out: list[list[float] | None] = [None] * n
    lid = {i: letter_token_ids(model.tokenizer, letters[i]) for i in range(n)
           if letters[i] is not None}
    shared, own, own_rows = set(), [], []
    for i, (open_id, _) in lid.items():
        e = model.embed_one(ids[i] + [open_id], model._visual(visuals[i]))[0]
        if len(e) == len(rows[i]) + 1 and torch.equal(e[:-1], rows[i]):
            shared.add(i)
        else:
            own.append(i), own_rows.append(e)
    need = [i for i in range(n) if options[i] is not None or i in shared]
    with model._timed("decoder"):
        for i, lp in zip(own, _last_two(model, own_rows)):
            letter_out[i] = letter_scores(lp[0], lp[1], *lid[i])
        if not need:
            return letter_out, option_out
        kv, mask, lengths, first = _prefill(model, [rows[i] for i in need])
        if shared:
            after = _continue(model, kv, mask, lengths,
                              [[lid[i][0] if i in shared else 0] for i in need])[:, 0]
            for j, i in enumerate(need):
                if i in shared:
                    letter_out[i] = letter_scores(first[j], after[j], *lid[i])
        toks = {i: [model.tokenizer(o, add_special_tokens=False)["input_ids"] for o in options[i]]
                for i in need if options[i] is not None}
        if any(len(t) == 0 for ts in toks.values() for t in ts):
            raise ValueError("empty continuation after tokenisation")
        for i in toks:
            option_out[i] = []
        for k in range(max((len(ts) for ts in toks.values()), default=0)):
            conts = [toks[i][k] if i in toks and k < len(toks[i]) else [0] for i in need]
            logp = _continue(model, kv, mask, lengths, conts)
            for j, i in enumerate(need):
                if i in toks and k < len(toks[i]):
                    c = torch.tensor(toks[i][k], device=logp.device)
                    # token 0 is scored at the prompt's last position, token t after token t-1
                    steps = torch.cat([first[j][None], logp[j, :len(c) - 1]])
                    option_out[i].append(float(steps[torch.arange(len(c)), c].sum()))
    return letter_out, option_out
