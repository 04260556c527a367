"""Model variants that share one visual path, evaluated in one pass over the clips.

A start checkpoint and its LoRA adapters run the same towers and connector when the adapters
change the decoder only; then the base is loaded once with every adapter attached (peft
multi-adapter: ``load_adapter(..., adapter_name=)``, ``set_adapter``, ``disable_adapter()`` for
the start) and each batch's visual tokens serve every variant (``lib.evaluate.run_many``).
"Shares the visual path" is decided by the share key (same checkpoint, so the same towers,
which adapters never change) and a fingerprint of the connector weights as loaded for each
variant; an adapter that saves decoder modules whole (``modules_to_save``),
is not LoRA, or brings another connector, and a full fine-tune (another checkpoint), is
evaluated on its own. Used by ``lib.evaluate.evaluate_models`` (notebooks 01 and 04) and
benchmarks/tvbench_throughput.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch
from peft.utils import get_peft_model_state_dict
from safetensors import safe_open
from safetensors.torch import load_file

from lib.longvu import LongVULoadError
from lib.longvu.loading import attach_adapter
from lib.models import LongVUModel, ModelSpec, load_model

# what must be equal for two specs to run on one loaded base (the adapter may differ)
SHARE_FIELDS = ("checkpoint", "quantization", "token_layout", "layout_seed", "dtype",
                "drop_threshold")


def lora_only(adapter_dir: str | Path) -> str | None:
    """None when the adapter dir holds a decoder-only LoRA (peft_type LORA, nothing saved
    whole through ``modules_to_save``); otherwise why it cannot share a loaded base."""
    path = Path(adapter_dir) / "adapter_config.json"
    if not path.is_file():
        return f"{path} not found"
    cfg = json.loads(path.read_text())
    if cfg.get("peft_type") != "LORA":
        return f"{path}: peft_type {cfg.get('peft_type')!r}, not LORA"
    if cfg.get("modules_to_save"):
        return f"{path}: modules_to_save {cfg['modules_to_save']}"
    return None


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of a state dict (sorted by name)."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().to("cpu").contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def connector_as_loaded(model, adapter_dir: str | Path) -> dict[str, torch.Tensor]:
    """The adapter's ``connector.safetensors`` as ``attach_adapter`` would leave the model's
    connector: each tensor in the dtype of the parameter it is copied into."""
    own = model.connector.state_dict()
    path = Path(adapter_dir) / "connector.safetensors"
    state = load_file(str(path))
    if set(state) != set(own):
        raise LongVULoadError(f"{path}: does not hold this model's connector (keys differ: "
                              f"{sorted(set(state) ^ set(own))[:10]}). Fix: use the "
                              "connector.safetensors saved with this adapter.")
    return {k: v.to(own[k].dtype) for k, v in state.items()}


def visual_fingerprint(model, connector_state: Mapping[str, torch.Tensor] | None = None) -> str:
    """Digest of the connector weights (``connector_state``: the connector as an adapter would
    load it; None: the model's own). The towers are not hashed: variants of one share key load
    them from the same checkpoint and adapters never change them (hashing ~1.5 B tower weights
    at full size would cost seconds for nothing)."""
    return state_digest(connector_state if connector_state is not None
                        else model.connector.state_dict())


class Variant:
    """One model variant on a shared loaded LongVU: its own name, its adapter active (None:
    every adapter disabled, the start checkpoint) in every decoder call; towers, connector and
    the visual cache are the shared model's. Implements ``lib.models.VideoQAModel``."""

    def __init__(self, shared: LongVUModel, name: str, adapter: str | None,
                 fingerprint: str = ""):
        self.shared, self.name, self.adapter = shared, name, adapter
        self.model = shared.model  # what lib.evaluate's run fingerprint reads (dtype, ...)
        self.fingerprint = fingerprint

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """This variant's decoder; visual blocks are counted as served to this variant."""
        dec = self.model.decoder
        self.model.visual_user = self.name
        try:
            if self.adapter is None and hasattr(dec, "disable_adapter"):
                with dec.disable_adapter():
                    yield
            elif self.adapter is None:  # no adapter attached at all
                yield
            else:
                dec.set_adapter(self.adapter, inference_mode=True)
                yield
        finally:
            self.model.visual_user = None

    def prompt(self, question: str, candidates: Sequence[str]) -> str:
        return self.shared.prompt(question, candidates)

    def preprocessor(self):
        return self.shared.preprocessor()

    def generate(self, prepared, prompt: str, max_new_tokens: int = 5) -> str:
        with self.active():
            return self.shared.generate(prepared, prompt, max_new_tokens)

    def letter_logprobs(self, prepared, prompt: str, letters: Sequence[str]) -> list[float]:
        with self.active():
            return self.shared.letter_logprobs(prepared, prompt, letters)

    def option_logprobs(self, prepared, prompt: str, options: Sequence[str]
                        ) -> tuple[list[float], list[int]]:
        with self.active():
            return self.shared.option_logprobs(prepared, prompt, options)

    def generate_batch(self, prepared: Sequence, prompts: Sequence[str],
                       max_new_tokens: int = 5) -> list[str]:
        with self.active():
            return self.shared.generate_batch(prepared, prompts, max_new_tokens)

    def likelihood_batch(self, prepared: Sequence, prompts: Sequence[str],
                         letters: Sequence[Sequence[str] | None],
                         options: Sequence[Sequence[str] | None]):
        with self.active():
            return self.shared.likelihood_batch(prepared, prompts, letters, options)

    def session(self) -> contextlib.AbstractContextManager:
        return self.shared.session()

    def end_batch(self) -> None:
        self.shared.end_batch()

    def timing(self) -> dict[str, float]:
        return self.shared.timing()

    def default_batch_size(self) -> int:
        return self.shared.default_batch_size()


def add_adapter(model, adapter_dir: str | Path, name: str) -> None:
    """A further LoRA adapter on an already wrapped decoder, every tensor placed (the check
    ``attach_adapter`` makes for the first one)."""
    dec = model.decoder
    dec.load_adapter(str(adapter_dir), adapter_name=name, is_trainable=False)
    with safe_open(str(Path(adapter_dir) / "adapter_model.safetensors"), "pt") as sf:
        saved = set(sf.keys())
    placed = set(get_peft_model_state_dict(dec, adapter_name=name))
    if saved != placed:
        raise LongVULoadError(f"{adapter_dir}: adapter does not match this decoder: "
                              f"{sorted(saved ^ placed)[:10]}. Fix: use the adapter trained "
                              "for this checkpoint.")
    dec.eval()


def share_key(ms: ModelSpec) -> tuple:
    """The ``SHARE_FIELDS`` of a spec: specs with equal keys may run on one loaded base."""
    return tuple(getattr(ms, f) for f in SHARE_FIELDS)


def load_shared(specs: Sequence[ModelSpec], device: str = "auto", base=None) -> list[Variant]:
    """Load ``specs`` (one share key; adapters decoder-only LoRA with the same connector) as
    one model with every adapter attached; one ``Variant`` per spec, in order. ``base``: the
    checkpoint already loaded without an adapter (reused)."""
    first = specs[0]
    m = base or load_model(first.checkpoint, None, device, first.quantization, first.dtype,
                           token_layout=first.token_layout, layout_seed=first.layout_seed,
                           drop_threshold=first.drop_threshold)
    names: dict[str, str | None] = {}
    for ms in specs:
        if ms.adapter is None:
            names[ms.label] = None
        elif not any(v is not None for v in names.values()):
            attach_adapter(m.model, ms.adapter)  # peft's "default"; its connector too
            names[ms.label] = "default"
        else:
            names[ms.label] = f"variant{len(names)}"
            add_adapter(m.model, ms.adapter, names[ms.label])
    fp = visual_fingerprint(m.model)
    return [Variant(m, ms.label, names[ms.label], fp) for ms in specs]


def groups(specs: Sequence[ModelSpec], device: str = "auto"
           ) -> Iterator[tuple[list[ModelSpec], list]]:
    """(specs, loaded models) one group at a time, in the order of first appearance: a group
    of variants sharing the visual path (``Variant`` each) or one spec loaded on its own.
    Loads lazily, so one group is in memory at a time."""
    buckets: dict[tuple, list[ModelSpec]] = {}
    for ms in specs:
        buckets.setdefault(share_key(ms), []).append(ms)
    for bucket in buckets.values():
        can = [ms for ms in bucket if not ms.checkpoint.startswith("fake:")
               and (ms.adapter is None or lora_only(ms.adapter) is None)]
        if len(can) < 2:
            for ms in bucket:
                yield [ms], [ms.load(device)]
            continue
        first = can[0]
        base = load_model(first.checkpoint, None, device, first.quantization, first.dtype,
                          token_layout=first.token_layout, layout_seed=first.layout_seed,
                          drop_threshold=first.drop_threshold)
        start = visual_fingerprint(base.model)
        by_fp: dict[str, list[ModelSpec]] = {}
        for ms in can:
            fp = start if ms.adapter is None else visual_fingerprint(
                base.model, connector_as_loaded(base.model, ms.adapter))
            by_fp.setdefault(fp, []).append(ms)
        alone = [ms for ms in bucket if ms not in can]
        for fp, members in by_fp.items():
            if len(members) < 2:
                alone += members
                continue
            reuse, base = base, None
            yield members, load_shared(members, device, reuse)
        del base
        for ms in alone:
            yield [ms], [ms.load(device)]
