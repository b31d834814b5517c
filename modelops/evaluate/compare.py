"""Base -> fine-tuned deltas of per-example metrics, each with a paired bootstrap interval (`modelops.stats`).

Per-example values come from the prediction rows of both results, which score the same rows in the same order:
``accuracy`` (classification: prediction == label), ``exact_match`` (generation; rows whose reference gave no
answer are left out of both), ``reward_accuracy`` and ``reward_margin`` (preference pairs, from the summed
log-probabilities of each side and of the reference). The right/wrong ones also get McNemar's exact p-value.
"""

from __future__ import annotations

from typing import Any

from modelops.errors import EvaluationError
from modelops.evaluate.results import EvalResults
from modelops.stats import paired_delta


def per_example(result: EvalResults) -> dict[str, list[float | None]]:
    """``{metric: one value per row (None: not scored)}`` for the per-example metrics the results carry."""
    rows = result.predictions
    out: dict[str, list[float | None]] = {}
    if "accuracy" in result.metrics and rows and "label" in rows[0]:
        out["accuracy"] = [float(row["prediction"] == row["label"]) for row in rows]
    if "exact_match" in result.metrics and rows and "exact_match" in rows[0]:
        out["exact_match"] = [None if row["exact_match"] is None else float(row["exact_match"]) for row in rows]
    if rows and "ref_logp_chosen" in rows[0]:
        margins = [
            (r["logp_chosen"] - r["ref_logp_chosen"]) - (r["logp_rejected"] - r["ref_logp_rejected"]) for r in rows
        ]
        if "reward_accuracy" in result.metrics:
            out["reward_accuracy"] = [float(m > 0) for m in margins]
        if "reward_margin" in result.metrics:
            out["reward_margin"] = margins
    return out


BINARY = ("accuracy", "exact_match", "reward_accuracy")


def paired_deltas(base: EvalResults, tuned: EvalResults, resamples: int, seed: int) -> dict[str, dict[str, Any]]:
    """`modelops.stats.paired_delta` of every per-example metric both results carry, by metric name.

    Raises:
        EvaluationError: when the two results did not score the same number of rows.
    """
    if len(base.predictions) != len(tuned.predictions):
        raise EvaluationError(
            f"paired deltas need the same rows: base has {len(base.predictions)}, fine-tuned {len(tuned.predictions)}"
        )
    before, after = per_example(base), per_example(tuned)
    deltas = {}
    for name in before.keys() & after.keys():
        pairs = [(a, b) for a, b in zip(before[name], after[name], strict=True) if a is not None and b is not None]
        if pairs:
            a, b = zip(*pairs, strict=True)
            deltas[name] = paired_delta(a, b, binary=name in BINARY, resamples=resamples, seed=seed)
    return dict(sorted(deltas.items()))
