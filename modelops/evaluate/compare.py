"""Base -> fine-tuned deltas of per-example metrics, each with a paired bootstrap interval (`modelops.stats`).

Per-example values come from the prediction rows of both results, which score the same rows in the same order
(`modelops.stats.paired_metrics` reads them): ``accuracy`` (classification: prediction == label),
``exact_match`` (generation; rows whose reference gave no answer are left out of both), ``preference_accuracy``,
``reward_accuracy`` and ``reward_margin`` (preference pairs), and ``loss``, ``perplexity`` and ``bits_per_byte``
(from each row's summed NLL, token count and bytes: ratios of sums, resampled by row). The right/wrong ones also
get McNemar's exact p-value.
"""

from __future__ import annotations

from typing import Any

from modelops.errors import EvaluationError
from modelops.evaluate.results import EvalResults
from modelops.stats import paired_metrics


def paired_deltas(base: EvalResults, tuned: EvalResults, resamples: int, seed: int) -> dict[str, dict[str, Any]]:
    """`modelops.stats.paired_metrics` of every per-example metric both results computed, by metric name.

    Raises:
        EvaluationError: when the two results did not score the same number of rows.
    """
    if len(base.predictions) != len(tuned.predictions):
        raise EvaluationError(
            f"paired deltas need the same rows: base has {len(base.predictions)}, fine-tuned {len(tuned.predictions)}"
        )
    names = base.metrics.keys() & tuned.metrics.keys()
    return paired_metrics(base.predictions, tuned.predictions, names, resamples, seed)
