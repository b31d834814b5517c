"""Metrics as plain functions in registries: classification (scikit-learn underneath), generative.

Three kinds of metric, told apart by name:

- classification (``accuracy``, ``f1``, ``precision``, ``recall``, ``confusion_matrix`` and any added with
  :func:`register_metric`): scored on predicted vs true class ids;
- language model (``loss``, ``perplexity``, ``bits_per_byte``): computed by
  the evaluator's `language_model_scores` from the model itself;
- generative (``exact_match``): scored on generated vs reference strings;
- preference (``preference_accuracy``, ``reward_accuracy``, ``reward_margin``): on preference pairs, from the
  log-probabilities of each side (the evaluator's preference scoring).

A user metric needs no registration: :func:`resolve_metrics` also takes a dotted name (``"mypkg.metrics.mine"``),
a config node ``{_target_: mypkg.metrics.mine, some_option: 1}`` (the other keys are bound as keyword arguments)
or a callable. Such a metric is called on what the evaluation predicts for the data: on classification data
``fn(predictions, references, num_labels, average)`` with class-id arrays, like the registered ones; on
completion/instruction/chat data ``fn(predictions, references)`` with lists of generated and reference strings.
Its result is stored under the function's ``__name__``. Dotted names and nodes are checked like every config
target (`modelops.config.targets`): ``mypkg`` must be in ``allowed_targets``; a callable needs no check.

Every metric function takes ``(predictions, references, num_labels, average)``: two integer arrays of class ids in
``range(num_labels)`` and an averaging mode, and returns a float (``confusion_matrix`` returns a list of lists).

The classification metrics are scikit-learn's (``sklearn.metrics``), called with ``labels=range(num_labels)`` and
``zero_division=0``; ``benchmarks/bench_metrics.py`` times them against a hand-written numpy version (a few
milliseconds per evaluation either way, next to seconds of model inference). Averaging:

- ``"macro"`` (default): unweighted mean over all ``num_labels`` classes, including classes that occur in neither
  ``references`` nor ``predictions``; such a class scores 0 for precision, recall and F1 and still counts in the mean.
- ``"micro"``: from the global true/false positive counts; since every prediction is one of the labels, micro
  precision, recall and F1 all equal accuracy.
- ``"weighted"``: mean over classes weighted by support (count in ``references``), so classes with no support
  weigh nothing.
- ``"binary"``: the score of the positive class 1 only; needs ``num_labels == 2``.

A ratio whose denominator is 0 (precision of a class never predicted, recall of a class never present, F1 of a
class with neither) is 0, as with ``zero_division=0``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelops.data.answers import normalize_text as _normalize_text
from modelops.errors import EvaluationError, did_you_mean

AVERAGES = ("macro", "micro", "weighted", "binary")

LM_METRICS = {"loss", "perplexity", "bits_per_byte"}
PREFERENCE_METRICS = {"preference_accuracy", "reward_accuracy", "reward_margin"}
"""Language-model metric names; computed by the evaluator's `language_model_scores`."""


def _check_average(average: str, num_labels: int) -> None:
    """Raise EvaluationError for an unknown ``average`` or ``"binary"`` with other than two labels."""
    if average not in AVERAGES:
        raise EvaluationError(f"average={average!r} is not one of {list(AVERAGES)}")
    if average == "binary" and num_labels != 2:
        raise EvaluationError(f"average='binary' needs num_labels == 2 (positive label 1), got num_labels={num_labels}")


def _averaged(score, predictions, references, num_labels: int, average: str) -> float:
    """A scikit-learn precision/recall/F1 function over all ``num_labels`` classes, 0 where a ratio is 0/0."""
    _check_average(average, num_labels)
    # `labels` keeps classes absent from both arrays in macro averages; binary scores the positive class 1.
    labels = [1] if average == "binary" else list(range(num_labels))
    mode = "macro" if average == "binary" else average
    return float(score(references, predictions, labels=labels, average=mode, zero_division=0))


def accuracy(predictions, references, num_labels: int, average: str = "macro") -> float:
    """Fraction of predictions equal to the reference label; ``average`` is accepted and ignored."""
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(references, predictions))


def precision(predictions, references, num_labels: int, average: str = "macro") -> float:
    """Precision ``tp / (tp + fp)`` averaged as ``average`` says (see the module docstring)."""
    from sklearn.metrics import precision_score

    return _averaged(precision_score, predictions, references, num_labels, average)


def recall(predictions, references, num_labels: int, average: str = "macro") -> float:
    """Recall ``tp / (tp + fn)`` averaged as ``average`` says (see the module docstring)."""
    from sklearn.metrics import recall_score

    return _averaged(recall_score, predictions, references, num_labels, average)


def f1(predictions, references, num_labels: int, average: str = "macro") -> float:
    """F1, the harmonic mean of precision and recall, averaged as ``average`` says (see the module docstring)."""
    from sklearn.metrics import f1_score

    return _averaged(f1_score, predictions, references, num_labels, average)


def confusion_matrix(predictions, references, num_labels: int, average: str = "macro") -> list[list[int]]:
    """Counts as ``num_labels`` rows (true label) of ``num_labels`` columns (predicted label); ``average`` ignored."""
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    return sk_confusion_matrix(references, predictions, labels=list(range(num_labels))).tolist()


CLASSIFICATION_METRICS: dict[str, Callable[..., Any]] = {
    "accuracy": accuracy,
    "f1": f1,
    "precision": precision,
    "recall": recall,
    "confusion_matrix": confusion_matrix,
}


NORMALIZATIONS = ("case", "punctuation", "whitespace")


def normalize_text(text: str, normalize: Sequence[str] = ("whitespace",)) -> str:
    """Normalise ``text`` for exact match; the options apply in this order, each only when named.

    - ``"case"``: case-folded (``str.casefold``, so "Straße" matches "STRASSE").
    - ``"punctuation"``: every Unicode punctuation character (category P*) and ASCII symbol removed.
    - ``"whitespace"``: leading/trailing whitespace stripped and inner runs made one space.
    """
    bad = [option for option in normalize if option not in NORMALIZATIONS]
    if bad:
        raise EvaluationError(f"normalize: unknown option(s) {bad}; options are {list(NORMALIZATIONS)}")
    return _normalize_text(text, normalize)


def exact_match(predictions: Sequence[str], references: Sequence[str], normalize=("whitespace",)) -> float:
    """Fraction of predictions equal to their reference after :func:`normalize_text` with ``normalize``."""
    if len(predictions) != len(references):
        raise EvaluationError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        raise EvaluationError("no predictions to score (empty evaluation set)")
    hits = [
        normalize_text(p, normalize) == normalize_text(r, normalize)
        for p, r in zip(predictions, references, strict=True)
    ]
    return float(np.mean(hits))


GENERATIVE_METRICS: dict[str, Callable[..., Any]] = {"exact_match": exact_match}
"""Generative metrics: ``fn(predictions, references, normalize)`` on strings."""


def register_metric(name: str, fn: Callable[..., Any]) -> None:
    """Add (or replace) a classification metric.

    Args:
        name: The name metric lists and results use.
        fn: A callable ``fn(predictions, references, num_labels, average)`` returning a JSON-serialisable value.

    Raises:
        EvaluationError: If ``fn`` is not callable or ``name`` is an LM metric name.
    """
    if not callable(fn):
        raise EvaluationError(f"register_metric({name!r}, ...): {fn!r} is not callable")
    if name in LM_METRICS or name in GENERATIVE_METRICS or name in PREFERENCE_METRICS:
        raise EvaluationError(f"register_metric({name!r}, ...): {name!r} is a built-in metric name and is reserved")
    CLASSIFICATION_METRICS[name] = fn


def known_metrics() -> list[str]:
    """Every metric name an evaluation accepts: classification, LM and generative metrics, sorted."""
    return sorted(set(CLASSIFICATION_METRICS) | LM_METRICS | set(GENERATIVE_METRICS) | PREFERENCE_METRICS)


@dataclass(frozen=True)
class Metric:
    """A metric an evaluation computes.

    Attributes:
        name: The key in the results.
        kind: ``classification``, ``language_model``, ``generative``, ``preference`` or ``custom``.
        fn: The function (None for LM metrics, which come from one pass over the model).
    """

    name: str
    kind: str
    fn: Callable[..., Any] | None = None


def resolve_metrics(entries: Sequence[Any], allowed: Sequence[str] = ()) -> list[Metric]:
    """Turn metric names, dotted names, ``{_target_: ...}`` nodes and callables into :class:`Metric` objects.

    Dotted names and ``_target_`` nodes are checked and built the way every config target is
    (`modelops.config.build`); `allowed` adds import prefixes or exact names to trust (``allowed_targets``).

    Raises:
        EvaluationError: For an entry that is none of these; the message lists the known names.
        ConfigError: For a dotted name or target that is refused or cannot be imported, naming ``metrics.<i>``.
    """
    if isinstance(entries, str | Mapping) or callable(entries):
        entries = [entries]
    metrics = [_resolve_one(entry, f"metrics.{i}", allowed) for i, entry in enumerate(entries)]
    names = [metric.name for metric in metrics]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise EvaluationError(f"metrics: {twice} named more than once")
    return metrics


def _resolve_one(entry: Any, key: str, allowed: Sequence[str]) -> Metric:
    if isinstance(entry, Metric):
        return entry
    if isinstance(entry, str):
        if entry in CLASSIFICATION_METRICS:
            return Metric(entry, "classification", CLASSIFICATION_METRICS[entry])
        if entry in LM_METRICS:
            return Metric(entry, "language_model")
        if entry in GENERATIVE_METRICS:
            return Metric(entry, "generative", GENERATIVE_METRICS[entry])
        if entry in PREFERENCE_METRICS:
            return Metric(entry, "preference")
        if "." in entry:
            return _custom(_import({"_target_": entry, "_partial_": True}, key, allowed))
    elif isinstance(entry, Mapping) and "_target_" in entry:
        return _custom(_import({**entry, "_partial_": True}, key, allowed))
    elif callable(entry):
        return _custom(entry)
    raise EvaluationError(
        f"unknown metric {entry!r}{did_you_mean(entry, known_metrics())}; known metrics: {', '.join(known_metrics())} "
        "(or a dotted name / {_target_: module.function} of your own)"
    )


def _custom(fn: Callable[..., Any]) -> Metric:
    name = getattr(getattr(fn, "func", fn), "__name__", None) or type(fn).__name__
    if name in CLASSIFICATION_METRICS or name in GENERATIVE_METRICS:
        return Metric(name, "generative" if name in GENERATIVE_METRICS else "classification", fn)
    return Metric(name, "custom", fn)


def _import(node: dict[str, Any], key: str, allowed: Sequence[str]) -> Callable[..., Any]:
    """The metric function of a ``_target_`` node, its other keys bound (a partial), checked like any target."""
    from modelops.config.build import instantiate

    return instantiate(node, key, allowed)


def _as_labels(values, name: str, num_labels: int) -> np.ndarray:
    """``values`` as a 1-D int64 array of ids in ``range(num_labels)``, or an EvaluationError naming ``name``."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise EvaluationError(f"{name} must be 1-D, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise EvaluationError(f"{name} must be integer class ids, got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    bad = np.flatnonzero((array < 0) | (array >= num_labels))
    if bad.size:
        raise EvaluationError(
            f"{name}[{bad[0]}] = {array[bad[0]]} is outside range(num_labels={num_labels}) ({bad.size} such rows)"
        )
    return array


def compute_classification(
    names: list[str], predictions, references, num_labels: int, average: str = "macro"
) -> dict[str, Any]:
    """Compute the named classification metrics.

    Args:
        names: Metric names; LM and generative metric names are skipped (they are not computed from labels).
        predictions: Predicted class ids, shape ``(n,)``.
        references: True class ids, shape ``(n,)``.
        num_labels: Number of classes; ids must lie in ``range(num_labels)``.
        average: ``"macro"``, ``"micro"``, ``"weighted"`` or ``"binary"`` (see the module docstring).

    Returns:
        ``{name: value}`` for every classification name in ``names``, in order.

    Raises:
        EvaluationError: For an unknown name (the message lists the known ones), a bad ``average``, empty or
            mismatched inputs, or ids outside ``range(num_labels)``.
    """
    unknown = [name for name in names if name not in known_metrics()]
    if unknown:
        raise EvaluationError(f"unknown metric(s) {unknown}; known metrics: {', '.join(known_metrics())}")
    if num_labels < 1:
        raise EvaluationError(f"num_labels must be >= 1, got {num_labels}")
    _check_average(average, num_labels)
    predictions = _as_labels(predictions, "predictions", num_labels)
    references = _as_labels(references, "references", num_labels)
    if predictions.shape != references.shape:
        raise EvaluationError(f"{predictions.size} predictions for {references.size} references")
    if predictions.size == 0:
        raise EvaluationError("no predictions to score (empty evaluation set)")
    return {
        name: CLASSIFICATION_METRICS[name](predictions, references, num_labels, average)
        for name in names
        if name in CLASSIFICATION_METRICS
    }
