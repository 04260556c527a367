"""Model variants sharing one visual path (issue 14): a start checkpoint and two real LoRA
adapters (made by lib.adapters, random LoRA weights) evaluated in one pass give the predictions
of evaluating them one at a time, with the towers and connector run once per (clip, condition)
for all of them (once per frame for both conditions); an adapter with another connector or
modules_to_save is evaluated alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file

from lib import adapters, config, evaluate, longvu, minitvbench, tvbench, variants
from lib.longvu.tiny import write_tiny
from lib.models import ModelSpec

SCORINGS = ("paper", "strict", "letter", "option")
FIELDS = ("sample_id", "condition", "seed", "scoring", "pred_index", "raw", "letter_logprobs",
          "option_logprobs")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("variants")
    ckpt = write_tiny(tmp / "start", "qwen", "video", "real", 0)
    a1, a2 = (adapters.write_random_lora(ckpt, tmp / f"a{k}", k, r=4, alpha=8, std=0.5)
              for k in (1, 2))
    data = tmp / "bench"
    minitvbench.build_minitvbench(data, 1, 64, 8, seed=0)
    bench = tvbench.open_benchmark(data, ["scene_transition", "object_count", "action_count"])
    specs = [ModelSpec("start", str(ckpt)), ModelSpec("a1", str(ckpt), str(a1)),
             ModelSpec("a2", str(ckpt), str(a2))]
    spec = config.EvalSpec(conditions=("normal", "reversed"), scorings=SCORINGS,
                           num_workers=0, batch_size=2)
    return tmp, ckpt, bench, specs, spec


def _lines(d: Path) -> list[tuple]:
    recs = [json.loads(x) for x in (d / "predictions.jsonl").read_text().splitlines()]
    return [tuple(json.dumps(r.get(k)) for k in FIELDS) for r in recs]


def test_one_pass_equals_one_at_a_time_and_resumes(setup):
    tmp, _, bench, specs, spec = setup
    alone = {ms.label: tmp / "alone" / ms.label for ms in specs}
    for ms in specs:
        evaluate.evaluate(ms.load("cpu"), bench, alone[ms.label], spec, n_boot=20,
                          progress=False)
    shared = {ms.label: tmp / "shared" / ms.label for ms in specs}
    res = evaluate.evaluate_models(specs, shared, bench, spec, n_boot=20, progress=False)
    assert set(res) == {"start", "a1", "a2"}
    for ms in specs:
        assert _lines(shared[ms.label]) == _lines(alone[ms.label]), ms.label
        split = json.loads((shared[ms.label] / "metrics.json").read_text())["time_split"]
        assert split["rank0"]["shared_visual"]["variants"] == ["start", "a1", "a2"]
    # the adapters really change the decoder: three different sets of scores
    assert len({tuple(x[-1] for x in _lines(d)) for d in shared.values()}) == 3
    # per-folder resume: a1 lost its last half, start is complete, a2 is gone
    lines = (shared["a1"] / "predictions.jsonl").read_text().splitlines(keepends=True)
    (shared["a1"] / "predictions.jsonl").write_text("".join(lines[:len(lines) // 2]))
    shutil.rmtree(shared["a2"])
    before = (shared["start"] / "predictions.jsonl").read_text()
    evaluate.evaluate_models(specs, shared, bench, spec, n_boot=20, progress=False)
    assert (shared["start"] / "predictions.jsonl").read_text() == before
    for label in ("a1", "a2"):  # other batches than before: scores equal up to rounding
        got, want = sorted(_lines(shared[label])), sorted(_lines(alone[label]))
        assert [x[:6] for x in got] == [x[:6] for x in want], label
        for g, w in zip(got, want):
            for a, b in zip(g[6:], w[6:]):
                np.testing.assert_allclose(json.loads(a) or [], json.loads(b) or [], atol=2e-4)


def test_one_connector_pass_per_clip_and_condition_for_all_variants(setup, monkeypatch):
    tmp, _, bench, specs, spec = setup
    (group, loaded), = list(variants.groups(specs, "cpu"))
    assert [v.name for v in loaded] == ["start", "a1", "a2"]
    assert len({v.fingerprint for v in loaded}) == 1
    runs = []
    sample = loaded[0].model.connector.sample
    monkeypatch.setattr(loaded[0].model.connector, "sample",
                        lambda *a, **k: runs.append(len(a[0])) or sample(*a, **k))
    stats = evaluate.run_many(loaded, bench, [tmp / "count" / v.name for v in loaded], spec,
                              progress=False)
    units = len(bench.questions) * 2  # (clip, condition) pairs
    # the sampler ran for the start alone, each frame once for both conditions
    assert sum(runs) == stats[0]["sva_frames"] and stats[0]["sva_frames_reused"] > 0
    assert [st.get("sva_frames", 0) + st.get("dino_frames", 0) for st in stats[1:]] == [0, 0]
    assert [st["visual_passes"] for st in stats] == [units, 0, 0]
    assert [st["visual_uses"] for st in stats] == [units] * 3
    assert stats[0]["shared_visual"] == {"variants": ["start", "a1", "a2"],
                                         "visual_passes": units, "visual_uses": 3 * units,
                                         "passes_saved": 2 * units,
                                         "fingerprint": loaded[0].fingerprint}


def test_other_connector_or_modules_to_save_is_evaluated_alone(setup):
    tmp, ckpt, _, specs, _ = setup
    moved = tmp / "moved_connector"
    shutil.copytree(specs[1].adapter, moved)
    state = load_file(str(moved / "connector.safetensors"))
    key = sorted(state)[0]
    state[key] = state[key] + 1e-3
    save_file(state, str(moved / "connector.safetensors"))
    saves = tmp / "modules_to_save"  # LoRA plus the final norm saved whole
    model = longvu.load(ckpt)
    model.decoder = get_peft_model(model.decoder, LoraConfig(
        r=4, target_modules=adapters.LORA_TARGET, modules_to_save=["norm"]))
    adapters.save_adapter(model, saves, "lora")
    assert variants.lora_only(saves) is not None and variants.lora_only(moved) is None
    mixed = specs + [ModelSpec("moved", str(ckpt), str(moved)),
                     ModelSpec("saves", str(ckpt), str(saves))]
    plan = [[ms.label for ms in g] for g, _ in variants.groups(mixed, "cpu")]
    assert plan == [["start", "a1", "a2"], ["saves"], ["moved"]]
