"""Classification metrics against scikit-learn (labels=range(k), zero_division=0) on random predictions."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.metrics as skm

from modelops.errors import EvaluationError
from modelops.tasks.metrics import CLASSIFICATION_METRICS, compute_classification, known_metrics, register_metric

SEEDS = [0, 1, 2, 3]
SKLEARN_SCORES = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}


def _random_labels(seed: int, num_labels: int, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """References over all classes; predictions that never use the last class, so one class is never predicted."""
    rng = np.random.default_rng(seed)
    references = rng.integers(0, num_labels, size=n)
    predictions = np.where(rng.random(n) < 0.6, references, rng.integers(0, num_labels, size=n))
    predictions[predictions == num_labels - 1] = 0
    return predictions, references


def _sklearn(name: str, predictions, references, num_labels: int, average: str) -> float:
    labels = list(range(num_labels))
    if average == "binary":  # sklearn's binary mode scores pos_label=1 and ignores labels
        return SKLEARN_SCORES[name](references, predictions, average="binary", pos_label=1, zero_division=0)
    return SKLEARN_SCORES[name](references, predictions, labels=labels, average=average, zero_division=0)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    ("num_labels", "average"), [(k, a) for k in (2, 5) for a in ("macro", "micro", "weighted")] + [(2, "binary")]
)
def test_scores_match_sklearn(seed, num_labels, average):
    predictions, references = _random_labels(seed, num_labels)
    got = compute_classification(list(SKLEARN_SCORES), predictions, references, num_labels, average)
    for name in SKLEARN_SCORES:
        assert got[name] == pytest.approx(_sklearn(name, predictions, references, num_labels, average), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("num_labels", [2, 5])
def test_accuracy_and_confusion_matrix_match_sklearn(seed, num_labels):
    predictions, references = _random_labels(seed, num_labels)
    got = compute_classification(["accuracy", "confusion_matrix"], predictions, references, num_labels)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(references, predictions), abs=1e-12)
    expected = skm.confusion_matrix(references, predictions, labels=list(range(num_labels))).tolist()
    assert got["confusion_matrix"] == expected


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
def test_class_absent_everywhere_matches_sklearn_labels(average):
    """A class with no support and no predictions counts as 0 in the macro mean, like labels=range(k)."""
    rng = np.random.default_rng(7)
    references = rng.integers(0, 3, size=100)  # classes 3 and 4 never occur
    predictions = rng.integers(0, 4, size=100)  # class 3 predicted but absent; class 4 nowhere
    got = compute_classification(list(SKLEARN_SCORES), predictions, references, 5, average)
    for name in SKLEARN_SCORES:
        assert got[name] == pytest.approx(_sklearn(name, predictions, references, 5, average), abs=1e-12)


def test_each_registered_function_matches_compute():
    predictions, references = _random_labels(0, 5)
    for name, fn in CLASSIFICATION_METRICS.items():
        assert (
            fn(predictions, references, 5, "macro") == compute_classification([name], predictions, references, 5)[name]
        )


def test_unknown_metric_lists_known_names():
    with pytest.raises(EvaluationError) as info:
        compute_classification(["acuracy"], np.array([0]), np.array([0]), 2)
    message = str(info.value)
    assert "acuracy" in message
    for name in ["accuracy", "f1", "precision", "recall", "confusion_matrix", "loss", "perplexity", "bits_per_byte"]:
        assert name in message


def test_lm_names_are_known_and_skipped():
    assert {"loss", "perplexity", "bits_per_byte"} <= set(known_metrics())
    got = compute_classification(["accuracy", "perplexity"], np.array([0, 1]), np.array([0, 0]), 2)
    assert got == {"accuracy": 0.5}


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"average": "samples"}, "average"),
        ({"average": "binary", "num_labels": 3}, "num_labels"),
        ({"predictions": np.array([0, 3])}, "predictions[1]"),
        ({"predictions": np.array([0])}, "1 predictions for 2 references"),
        ({"predictions": np.array([], dtype=int), "references": np.array([], dtype=int)}, "empty"),
    ],
)
def test_bad_input_raises(kwargs, fragment):
    args = {"predictions": np.array([0, 1]), "references": np.array([1, 1]), "num_labels": 2, "average": "macro"}
    args.update(kwargs)
    with pytest.raises(EvaluationError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        compute_classification(["f1"], **args)


def test_register_metric():
    def error_rate(predictions, references, num_labels, average):
        return float(np.mean(predictions != references))

    register_metric("error_rate", error_rate)
    try:
        assert "error_rate" in known_metrics()
        got = compute_classification(["error_rate", "accuracy"], np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), 2)
        assert got == {"error_rate": 0.25, "accuracy": 0.75}
    finally:  # the registry is module state shared by every test
        CLASSIFICATION_METRICS.pop("error_rate", None)
    with pytest.raises(EvaluationError, match="not callable"):
        register_metric("bad", 3)
    with pytest.raises(EvaluationError, match="reserved"):
        register_metric("perplexity", error_rate)


# Worked by hand. References 0 0 1 1 2 2, predictions 0 1 1 1 0 2, four classes (class 3 appears nowhere):
# confusion rows (true) [1 1 0 0] [0 2 0 0] [1 0 1 0] [0 0 0 0]; tp 1 2 1 0, predicted 2 3 1 0, support 2 2 2 0.
HAND = {
    "macro": {"precision": (1 / 2 + 2 / 3 + 1 + 0) / 4, "recall": (1 / 2 + 1 + 1 / 2 + 0) / 4,
              "f1": (2 / 4 + 4 / 5 + 2 / 3 + 0) / 4},
    "weighted": {"precision": (1 / 2 + 2 / 3 + 1) / 3, "recall": (1 / 2 + 1 + 1 / 2) / 3,
                 "f1": (2 / 4 + 4 / 5 + 2 / 3) / 3},
    "micro": {"precision": 4 / 6, "recall": 4 / 6, "f1": 4 / 6},
}  # fmt: skip


@pytest.mark.parametrize("average", sorted(HAND))
def test_scores_equal_a_hand_computation(average):
    predictions, references = np.array([0, 1, 1, 1, 0, 2]), np.array([0, 0, 1, 1, 2, 2])
    got = compute_classification(["accuracy", "f1", "precision", "recall", "confusion_matrix"], predictions,
                                 references, num_labels=4, average=average)  # fmt: skip
    assert got["accuracy"] == pytest.approx(4 / 6)
    assert got["confusion_matrix"] == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    for name, value in HAND[average].items():
        assert got[name] == pytest.approx(value, abs=1e-12), name


def test_binary_scores_the_positive_class_by_hand():
    # Positive class 1: tp 1 (row 1), predicted 2 (rows 0, 1), present 2 (rows 1, 2).
    got = compute_classification(["f1", "precision", "recall"], [1, 1, 0, 0], [0, 1, 1, 0], num_labels=2,
                                 average="binary")  # fmt: skip
    assert got == pytest.approx({"f1": 0.5, "precision": 0.5, "recall": 0.5})
