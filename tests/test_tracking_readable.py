"""What a person reads: run params, names, the comparison table, and the registry CLI's rendering (no store)."""

from __future__ import annotations

import pytest

from modelops.registry.params import run_name, run_params
from modelops.registry.tracker import comparison_rows
from modelops.registry.views import metric_rows, render
from modelops.tables import render as table


def test_params_are_resolved_values_without_hydra_internals_or_unused_objective_keys():
    config = {
        "trainer": {"_target_": "modelops.train.config.TrainConfig", "learning_rate": 1e-3, "max_steps": None,
                    "objective": "sft", "beta": 0.1, "simpo_gamma": 0.5, "label_smoothing": 0.0,
                    "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True, "betas": [0.9, 0.999]}},
        "sanitizer": {"_target_": "modelops.sanitize.DatasetSanitizer", "_recursive_": False,
                      "steps": [{"name": "normalize", "strip": True}, {"name": "drop_empty"},
                                {"name": "near_dedup", "threshold": 0.8}]},
        "tracking": {"enabled": True, "uri": None}, "registry": {"name": None}, "allowed_targets": [],
    }  # fmt: skip
    params = run_params(config, {"tracking.uri": "sqlite:///x.db", "registry.name": "lora_small"})
    assert params == {
        "registry.name": "lora_small", "tracking.uri": "sqlite:///x.db", "tracking.enabled": "True",
        "sanitizer.steps": "normalize, drop_empty, near_dedup", "sanitizer.normalize.strip": "True",
        "sanitizer.near_dedup.threshold": "0.8", "trainer.learning_rate": "0.001", "trainer.objective": "sft",
        "trainer.optimizer": "torch.optim.AdamW", "trainer.optimizer.betas": "[0.9, 0.999]",
    }  # fmt: skip
    dpo = run_params({"trainer": {"objective": "dpo", "beta": 0.1, "simpo_gamma": 0.5, "label_smoothing": 0.0}})
    assert dpo == {"trainer.objective": "dpo", "trainer.beta": "0.1", "trainer.label_smoothing": "0.0"}


@pytest.mark.parametrize(
    ("recipe", "overrides", "expected"),
    [
        ("lora_small", ["trainer.learning_rate=3e-4"], "lora_small learning_rate=3e-4"),
        ("lora_small", ["hydra.run.dir=outputs/x", "+recipe=lora_small", "model.peft.r=16"], "lora_small r=16"),
        (None, [], "12-00-00-ab12"),  # nothing to name it after: the run directory's name
    ],
)
def test_run_names_say_the_recipe_and_what_changed(recipe, overrides, expected):
    assert run_name(recipe, overrides, "12-00-00-ab12") == expected


def test_the_comparison_table_has_deltas_and_their_intervals():
    results = {"base": {"metrics": {"accuracy": 0.5, "f1": 0.4, "confusion_matrix": [[1]]}},
               "fine_tuned": {"metrics": {"accuracy": 0.75, "perplexity": 3.0}},
               "deltas": {"accuracy": {"delta": 0.25, "low": 0.1, "high": 0.4, "includes_zero": False}}}  # fmt: skip
    assert comparison_rows(results) == {
        "metric": ["accuracy", "f1", "perplexity"], "base": [0.5, 0.4, None], "fine_tuned": [0.75, None, 3.0],
        "delta": [0.25, None, None], "delta_low": [0.1, None, None], "delta_high": [0.4, None, None],
    }  # fmt: skip


def test_compare_rounds_pairs_alike_and_prints_absent_as_absent():
    data = {"a": {"ref": "m/1", "run_id": "a" * 32}, "b": {"ref": "m/2", "run_id": "b" * 32},
            "params": [["trainer.learning_rate", "0.001", "0.0003"], ["model.peft.use_dora", None, "True"]],
            "metrics": [["fine_tuned.accuracy", 0.6323529411764706, 0.7058823529411765, 0.07352941176470584],
                        ["loss", 123.456789, 98.7654321, -24.6913569], ["eval_f1", 0.5, 0.5, 0.0],
                        ["base.perplexity", None, 12.0, None]]}  # fmt: skip
    lines = render("compare", data).splitlines()
    assert lines[0] == "config differences"
    assert lines[4].split() == ["model.peft.use_dora", "(absent)", "True"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[lines.index("metrics") + 3 :]}
    assert rows["fine_tuned.accuracy"] == ["0.6324", "0.7059", "+0.0735"]  # the delta to the values' decimals
    assert rows["loss"] == ["123.5", "98.8", "-24.7"]
    assert rows["base.perplexity"] == ["12.00"]  # one value: the other and the delta are absent, not "None"


def test_compare_lists_what_changed_first_and_leaves_out_schedule_ends():
    a = {"loss": 0.9, "fine_tuned.accuracy": 0.6, "eval_f1": 0.5, "lr": 0.0, "epoch": 0.0, "base.f1": 0.4,
         "tokens_per_s": 100.0}  # fmt: skip
    b = {"loss": 0.7, "fine_tuned.accuracy": 0.7, "eval_f1": 0.5, "lr": 0.0, "epoch": 0.0, "tokens_per_s": 110.0}
    # Relative changes: loss 22 %, accuracy 14 %, tokens/s 9 % (the largest absolute change, +10, comes last).
    names = [row[0] for row in metric_rows(a, b)]
    assert names == ["loss", "fine_tuned.accuracy", "tokens_per_s", "base.f1", "eval_f1"]
    assert metric_rows(a, b)[0][1:] == pytest.approx([0.9, 0.7, -0.2])


def test_show_and_lineage_print_short_fingerprints_rounded_metrics_and_no_none():
    fingerprint = "346bc957b482df0fad3c31e3b6851047b57511d3378dab1f5dbc4c3a90e58f30"
    show = render("show", {"name": "m", "version": 1, "aliases": [], "run_id": "r", "status": "succeeded",
                           "source": "s", "description": None,
                           "tags": {"data.train.fingerprint": fingerprint, "metric.fine_tuned.accuracy": "0.632353"},
                           "metrics": {"fine_tuned.accuracy": 0.6323529411764706, "lr": 0.0}})  # fmt: skip
    assert "fine_tuned.accuracy: 0.6324" in show and "0.6323529" not in show and "0.632353" not in show
    assert f"data.train.fingerprint: {fingerprint[:12]}\n" in show + "\n" and "None" not in show
    assert "lr:" not in show and "aliases" not in show and "description" not in show
    lineage = render("lineage", {"model": "m/1", "run_id": "r", "run_dir": "/x", "sweep_run_id": None,
                                 "base_model": "minilm", "continued_from": None,
                                 "data": [{"name": "sanitized.train", "fingerprint": fingerprint, "rows": 96,
                                           "context": "train"}]})  # fmt: skip
    assert "None" not in lineage and "continued_from" not in lineage and "{" not in lineage
    assert f"name=sanitized.train, fingerprint={fingerprint[:12]}, rows=96, context=train" in lineage


def test_tables_align_numbers_right_and_write_markdown():
    text = table(["metric", "value"], [["accuracy", 0.123456], ["f1", None]], right=[1])
    assert text.splitlines() == ["metric      value", "-----------------", "accuracy   0.1235", "f1"]
    markdown = table(["trial", "lr"], [["0", "1e-3"]], markdown=True)
    assert markdown.splitlines()[0].replace(" ", "") == "|trial|lr|" and markdown.splitlines()[1].startswith("|--")


# -- the tracker as a component: a live curve, a resume that logs no step twice ------------------


def test_the_sink_logs_each_row_at_its_step_at_once_and_a_resumed_run_logs_no_step_twice(tmp_path):
    from modelops.registry.settings import TrackingConfig
    from modelops.registry.store import client
    from modelops.registry.tracker import start_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_dir = tmp_path / "run"
    config = {"trainer": {"learning_rate": 1e-3, "objective": "sft"}}
    changed = ["trainer.learning_rate=1e-3"]
    tracker = start_run(TrackingConfig(uri=uri), run_dir, config, "lora_small", overrides=changed)
    store = client(uri)
    seen = []
    for step in (2, 4, 6):
        tracker.sink({"step": step, "epoch": 0, "loss": 1.0 / step, "lr": 1e-3})
        seen.append([m.step for m in store.get_metric_history(tracker.run_id, "loss")])  # before the run ends
    assert seen == [[2], [2, 4], [2, 4, 6]]
    assert store.get_metric_history(tracker.run_id, "epoch") == []  # not a curve
    tracker.finish("cancelled")

    resumed = start_run(TrackingConfig(uri=uri), run_dir, config, "lora_small")  # the same run directory again
    assert resumed.run_id == tracker.run_id
    for step in (4, 6, 8):  # a checkpoint at step 4: steps 5-6 are trained (and logged by the loop) again
        resumed.sink({"step": step, "loss": 0.5 / step})
    history = {m.step: m.value for m in store.get_metric_history(tracker.run_id, "loss")}
    assert history == pytest.approx({2: 0.5, 4: 0.25, 6: 1 / 6, 8: 0.5 / 8})
    experiment = store.get_experiment(store.get_run(tracker.run_id).info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "finetuning"
    assert store.get_run(tracker.run_id).info.run_name == "lora_small learning_rate=1e-3"


@pytest.mark.parametrize(
    ("model", "title"),
    [("/tmp/x/outputs/2026-12-04/10-00-00-ab12/model", "10-00-00-ab12/model"), ("minilm", "minilm"),
     ("lora_small@champion", "lora_small@champion")],
)  # fmt: skip
def test_a_confusion_matrix_is_titled_with_a_name_that_fits(model, title):
    from modelops.evaluate.results import _short_model

    assert _short_model(model) == title
