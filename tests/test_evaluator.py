"""The Evaluator on classification data: scores equal scikit-learn's on its own predictions, stable under batch
size and row order; results saving; custom metrics; bad input gets a clear EvaluationError."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from modelops.config.targets import trusting
from modelops.data.dataset import Dataset
from modelops.errors import ConfigError, EvaluationError, ModelError
from modelops.evaluate import Evaluator
from modelops.evaluate.results import comparison_table

ALL = ["accuracy", "f1", "precision", "recall", "confusion_matrix"]


def error_rate(predictions, references, num_labels, average):
    """A user metric, found by its dotted name."""
    return float(np.mean(predictions != references))


def _reviews(n: int, seed: int, labels=("negative", "neutral", "positive")) -> list[dict]:
    rng = random.Random(seed)
    words = ["good", "bad", "fine", "great", "awful", "okay", "the", "phone", "is", "was", "very", "not"]
    return [
        {"text": " ".join(rng.choice(words) for _ in range(rng.randint(2, 30))), "label": rng.choice(labels)}
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def data() -> Dataset:
    return Dataset.from_records(_reviews(60, 0), split="test")


@pytest.fixture(scope="module")
def minilm(data):
    """MiniLM with a fresh seeded head for the data's labels, loaded once: a `(model, tokenizer)` pair."""
    from modelops.models.loading import load_model, load_tokenizer
    from modelops.models.spec import ModelSpec

    return load_model(ModelSpec("minilm"), labels=data.labels, seed=0).eval(), load_tokenizer("minilm")


def _sklearn(name: str, y_true, y_pred, labels, average: str):
    fn = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}[name]
    return fn(y_true, y_pred, labels=labels, average=average, zero_division=0)


def test_minilm_scores_equal_sklearn_on_its_own_predictions(data, tmp_path):
    results = Evaluator(metrics=ALL).evaluate("minilm", data)
    results.save(tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == list(data["test"]["text"])
    y_true, y_pred = [r["label"] for r in rows], [r["prediction"] for r in rows]
    assert len(set(y_pred)) > 1, "a degenerate head would make the comparison weak"
    assert results.accuracy == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=1e-12)
    for name in ("f1", "precision", "recall"):
        assert results.metrics[name] == pytest.approx(_sklearn(name, y_true, y_pred, data.labels, "macro"), abs=1e-12)
    assert results.confusion_matrix == skm.confusion_matrix(y_true, y_pred, labels=data.labels).tolist()
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["metrics"] == results.metrics and saved["num_examples"] == len(rows)
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predictions_are_the_models_own(data, minilm):
    model, tokenizer = minilm
    results = Evaluator(metrics=["accuracy"]).evaluate((model, tokenizer), data)
    texts = list(data["test"]["text"])
    with torch.inference_mode():
        logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    assert [r["prediction"] for r in results.predictions] == [data.labels[i] for i in logits.argmax(-1).tolist()]


@pytest.mark.parametrize("average", ["micro", "weighted"])
def test_other_averages_equal_sklearn(data, minilm, average):
    results = Evaluator(metrics=ALL, average=average).evaluate(minilm, data)
    y_true = [r["label"] for r in results.predictions]
    y_pred = [r["prediction"] for r in results.predictions]
    for name in ("f1", "precision", "recall"):
        assert results.metrics[name] == pytest.approx(_sklearn(name, y_true, y_pred, data.labels, average), abs=1e-12)


def test_binary_average_equals_sklearn():
    data = Dataset.from_records(_reviews(40, 1, labels=("neg", "pos")), split="test")
    results = Evaluator(metrics=["f1", "precision", "recall"], average="binary", seed=1).evaluate("minilm", data)
    y_true = [int(r["label"] == "pos") for r in results.predictions]
    y_pred = [int(r["prediction"] == "pos") for r in results.predictions]
    assert results.f1 == pytest.approx(skm.f1_score(y_true, y_pred, zero_division=0), abs=1e-12)
    assert results.recall == pytest.approx(skm.recall_score(y_true, y_pred, zero_division=0), abs=1e-12)


def test_scores_do_not_depend_on_batch_size_or_row_order(data, minilm):
    subset = data.replace(test=data["test"].select(range(24)))  # batch size 1 is slow on a shared CPU
    one = Evaluator(metrics=ALL, batch_size=1).evaluate(minilm, subset)
    many = Evaluator(metrics=ALL, batch_size=32).evaluate(minilm, subset)
    assert [r["prediction"] for r in one.predictions] == [r["prediction"] for r in many.predictions]
    shuffled = subset.replace(test=subset["test"].shuffle(seed=3))
    again = Evaluator(metrics=ALL, batch_size=32).evaluate(minilm, shuffled)
    for name in ("accuracy", "f1", "precision", "recall"):
        assert one.metrics[name] == pytest.approx(many.metrics[name], abs=1e-5)
        assert again.metrics[name] == pytest.approx(many.metrics[name], abs=1e-5)
    assert again.confusion_matrix == many.confusion_matrix


def test_live_model_keeps_its_training_mode(data, minilm):
    model, tokenizer = minilm
    model.train()
    try:
        Evaluator(metrics=["accuracy"]).evaluate((model, tokenizer), data)
        assert model.training
    finally:
        model.eval()


def test_custom_metrics_by_dotted_name_and_target(data, minilm):
    metrics = [
        "accuracy",
        "tests.test_evaluator.error_rate",
        {"_target_": "tests.test_evaluator.kappa", "weights": None},
    ]
    with pytest.raises(ConfigError, match=r"metrics\.1\._target_: 'tests\.test_evaluator\.error_rate' is outside"):
        Evaluator(metrics=metrics)  # a dotted name is checked like any config target
    with trusting(["tests."]):
        evaluator = Evaluator(metrics=metrics)
    results = evaluator.evaluate(minilm, data)
    assert results.error_rate == pytest.approx(1 - results.accuracy, abs=1e-12)
    y_true = [r["label"] for r in results.predictions]
    y_pred = [r["prediction"] for r in results.predictions]
    assert results.kappa == pytest.approx(skm.cohen_kappa_score(y_true, y_pred), abs=1e-12)


def kappa(predictions, references, num_labels, average, weights=None):
    """A user metric with an option bound from config."""
    return float(skm.cohen_kappa_score(references, predictions, labels=list(range(num_labels)), weights=weights))


def test_custom_metric_from_the_config_group(data, minilm):
    from modelops.config.build import compose, instantiate
    from modelops.config.validate import validate

    overrides = ["evaluator.metrics=[accuracy,{_target_:tests.test_evaluator.error_rate}]"]
    with pytest.raises(Exception, match="allowed_targets"):
        validate(compose(overrides))
    cfg = compose([*overrides, "allowed_targets=[tests.]"])
    validate(cfg)
    evaluator = instantiate(cfg.evaluator, "evaluator", cfg.allowed_targets)
    results = evaluator.evaluate(minilm, data)
    assert results.error_rate == pytest.approx(1 - results.accuracy, abs=1e-12)


def test_comparison_table_and_attributes(data, minilm):
    base = Evaluator(metrics=ALL).evaluate(minilm, data)
    tuned = Evaluator(metrics=["accuracy", "f1"]).evaluate(minilm, data)
    table = comparison_table({"base": base, "fine_tuned": tuned})
    header, *lines = table.splitlines()
    assert header.split() == ["metric", "base", "fine_tuned", "delta"]
    by_metric = {line.split()[0]: line.split()[1:] for line in lines}
    assert by_metric["accuracy"] == [f"{base.accuracy:.4f}", f"{tuned.accuracy:.4f}", "+0.0000"]
    assert by_metric["precision"][1:] == ["-", "-"] and "confusion_matrix" not in by_metric
    with pytest.raises(AttributeError, match="computed"):
        _ = tuned.precision


# -- bad input ------------------------------------------------------------------------------------


def test_unknown_metric_lists_the_known_ones(data):
    with pytest.raises(EvaluationError) as info:
        Evaluator(metrics=["acuracy"]).evaluate("minilm", data)
    for name in ("acuracy", "accuracy", "f1", "perplexity", "bits_per_byte", "exact_match"):
        assert name in str(info.value)
    with pytest.raises(ConfigError, match=r"metrics\.0\._target_: 'modelops\.tasks\.metrics\.nope' does not exist"):
        Evaluator(metrics=[{"_target_": "modelops.tasks.metrics.nope"}]).evaluate("minilm", data)


def test_perplexity_of_a_classifier_is_refused(data, minilm):
    with pytest.raises(EvaluationError, match=r"need a causal language model.*BertForSequenceClassification"):
        Evaluator(metrics=["accuracy", "perplexity"]).evaluate(minilm, data)


def test_label_the_model_does_not_know(minilm):
    model, tokenizer = minilm
    rows = [{"text": "fine", "label": "negative"}, {"text": "so so", "label": "mixed"}]
    data = Dataset.from_records(rows, split="test")
    with pytest.raises(EvaluationError, match=r"row 2, field 'label': 'mixed' is not a label"):
        Evaluator().evaluate((model, tokenizer), data)


def test_empty_split(data, minilm):
    empty = data.replace(test=data["test"].select([]))
    with pytest.raises(EvaluationError, match="'test' is empty"):
        Evaluator().evaluate(minilm, empty)


def test_classification_metric_on_text_data():
    texts = Dataset.from_records([{"text": "one two"}], split="test", format="text")
    with pytest.raises(EvaluationError, match="'accuracy' needs classification data"):
        Evaluator(metrics=["accuracy"]).evaluate("tiny-llama", texts)


def test_unresolvable_model_says_what_was_tried(data, tmp_path):
    with pytest.raises(ModelError, match=r"conf/model option.*built-in alias"):
        Evaluator().evaluate(str(tmp_path / "nowhere"), data)
    with pytest.raises(ModelError, match=r"no modelops\.json, model/modelops\.json, adapter_config\.json"):
        Evaluator().evaluate(tmp_path, data)
