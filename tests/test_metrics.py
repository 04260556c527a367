"""lib.metrics beyond one group (see test_tvbench.py for accuracy, CIs and paired tests):
the paired comparisons of notebooks 01 and 04, the seeds' spread, and the CLI's text tables."""

from __future__ import annotations

import pytest

from lib import config, evaluate, metrics, models, predictions, tables, tvbench


@pytest.fixture(scope="module")
def two_runs(smoke_assets, tmp_path_factory):
    """The fake model under normal order and two shuffles, two scorers; and a "tuned" copy of
    its predictions that is right on every normal-order question."""
    bench = tvbench.open_benchmark(smoke_assets / "minitvbench")
    spec = config.EvalSpec(conditions=("normal", "shuffled"), seeds=(0, 1),
                           scorings=("paper", "letter"), num_workers=0)
    out = tmp_path_factory.mktemp("runs")
    res = evaluate.evaluate(models.FakeModel(), bench, out / "base", spec, n_boot=50,
                            progress=False)
    tuned = [dict(r, pred_index=r["answer_index"]) if r["condition"] == "normal" else r
             for r in predictions.read_predictions(out / "base")]
    return bench, res, {"base": out / "base" / "predictions.jsonl", "tuned": tuned}


def test_paired_differences_labels_and_values(two_runs):
    bench, _, sources = two_runs
    asked = tvbench.select(bench.questions, 2)
    diffs = metrics.paired_differences(sources, bench, ["paper", "letter"],
                                       ["normal", "shuffled@0", "shuffled@1"], asked,
                                       base="base", n_boot=50)
    assert list(diffs)[:4] == ["base [paper]: shuffled@0 - normal",
                               "base [paper]: shuffled@1 - normal",
                               "base [letter]: shuffled@0 - normal",
                               "base [letter]: shuffled@1 - normal"]
    assert list(diffs)[-2:] == ["tuned - base [paper], normal", "tuned - base [letter], normal"]
    assert len(diffs) == 10 and all(d["n"] == len(asked) for d in diffs.values())
    assert diffs["tuned - base [letter], normal"]["micro_b"] == 100
    one = metrics.paired(metrics.group_records(sources["base"], "normal/paper", asked),
                         metrics.group_records(sources["base"], "shuffled@1/paper", asked),
                         bench, n_boot=50)
    assert diffs["base [paper]: shuffled@1 - normal"] == one
    named = metrics.paired_differences({"m": sources["base"]}, bench, ["paper"], ["shuffled@0"],
                                       n_boot=20, name="{label}: shuffled - normal")
    assert list(named) == ["m: shuffled - normal"]
    table = tables.paired_table(diffs)
    assert list(table.columns) == ["n", "A", "B", "B - A", "ci_lo", "ci_hi", "McNemar p",
                                   "flip %"]


def test_ordering_effects_against_the_first_model(two_runs):
    bench, _, sources = two_runs
    eff = metrics.ordering_effects(sources, bench, "letter", shuffle_seed=1, n_boot=50)
    assert list(eff) == ["tuned"]
    assert eff["tuned"]["gain_normal"]["b"] == 100
    assert eff["tuned"] == metrics.ordering_effect(sources["base"], sources["tuned"], bench,
                                                   "letter", shuffle_seed=1, n_boot=50)


def test_seed_spread_and_cli_text(two_runs):
    _, res, sources = two_runs
    s = metrics.seed_spread(res, "shuffled", "paper")
    vals = [res["shuffled@0/paper"]["micro"], res["shuffled@1/paper"]["micro"]]
    assert s["seeds"] == 2 and s["mean"] == pytest.approx(sum(vals) / 2)
    assert metrics.seed_spread(res, "reversed") is None
    text = tables.format_groups(res)
    assert text.count("== ") == len(res) and text.startswith("== normal/paper")
    m = res["normal/paper"]
    assert text.splitlines()[-1] == f"micro {m['micro']:.2f} macro {m['macro']:.2f} n {m['n']}"
    p = metrics.paired(metrics.group_records(sources["base"], "normal/letter"),
                       metrics.group_records(sources["tuned"], "normal/letter"), n_boot=20)
    lines = tables.format_paired(p).splitlines()
    assert len(lines) == len(p["tasks"]) + 1 and lines[-1].startswith("micro B-A +")
