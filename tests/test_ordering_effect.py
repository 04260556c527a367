"""The paper's effect summarised on the ordering tasks (notebook 04, tvbench_effects.csv)."""

import json

import pandas as pd
import pytest

from lib import ablations, config, evaluate, metrics, models, predictions, results, runs, tvbench


def test_ordering_effect_sees_a_gain_that_shuffling_removes(smoke_assets, tmp_path):
    bench = tvbench.open_benchmark(smoke_assets / "minitvbench")
    spec = config.EvalSpec(conditions=("normal", "shuffled"), seeds=(0,), scorings=("letter",),
                             num_workers=0)
    evaluate.run(models.FakeModel(), bench, tmp_path / "base", spec, progress=False)
    base = predictions.read_predictions(tmp_path / "base" / "predictions.jsonl")
    # A "tuned" model: right on every normal-order ordering question, otherwise the base.
    tuned = []
    for r in base:
        r = dict(r)
        if r["condition"] == "normal" and r["task"] in tvbench.ORDERING_TASKS:
            r["pred_index"] = r["answer_index"]
        tuned.append(r)
    (tmp_path / "tuned").mkdir()
    (tmp_path / "tuned" / "predictions.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in tuned))
    eff = metrics.ordering_effect(tmp_path / "base" / "predictions.jsonl",
                                  tmp_path / "tuned" / "predictions.jsonl", bench, "letter",
                                  n_boot=200)
    g, s, d = eff["gain_normal"], eff["gain_shuffled"], eff["tuned_shuffled_minus_normal"]
    assert g["tasks"] == "scene_transition+action_sequence" and g["n"] == 16
    assert g["b"] == 100 and g["diff"] > 0 and g["ci_lo"] > 0
    assert s["diff"] == 0 and d["diff"] < 0
    assert g["gain_kept_when_shuffled"] == 0
    f = results.record_effect(eff, "t", tmp_path)
    df = runs.read_results("tvbench_effects")
    assert f.name == "tvbench_effects.csv" and len(df[df["run_dir"] == str(tmp_path)]) == 3


def test_ordering_effect_needs_the_shuffled_condition(smoke_assets, tmp_path):
    bench = tvbench.open_benchmark(smoke_assets / "minitvbench")
    spec = config.EvalSpec(conditions=("normal",), scorings=("letter",), num_workers=0)
    evaluate.run(models.FakeModel(), bench, tmp_path / "a", spec, progress=False)
    src = tmp_path / "a" / "predictions.jsonl"
    with pytest.raises(ValueError, match="no shuffled@0/letter predictions"):
        metrics.ordering_effect(src, src, bench, "letter", n_boot=50)


def test_headline_table_and_summary():
    rows = [{"label": "04/demo/tuned", "run_dir": "/o/04_tvbench_eval/demo", "comparison": c,
             "tasks": "scene_transition+action_sequence", "scoring": "letter", "n": 256, "a": a,
             "b": b, "diff": b - a, "ci_lo": lo, "ci_hi": hi, "mcnemar_p": 0.01}
            for c, a, b, lo, hi in (("gain_normal", 50, 62, 4.0, 20.0),
                                    ("gain_shuffled", 50, 51, -5.0, 7.0),
                                    ("tuned_shuffled_minus_normal", 62, 51, -18.0, -4.0))]
    table = ablations.effects_table(pd.DataFrame(rows))
    assert list(table["excludes_zero"]) == [True, False, True]
    assert set(table["run"]) == {"demo"}
    text = ablations.summary_markdown(table)
    assert "+12.0 points [+4.0, +20.0]: a gain whose 95% CI excludes zero" in text
    assert "With shuffled frames the difference is +1.0 [-5.0, +7.0]" in text
    assert "No ordering-task effect" in ablations.summary_markdown(ablations.effects_table(
        pd.DataFrame()))
