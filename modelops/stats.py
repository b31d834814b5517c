"""Is a base -> fine-tuned difference real? Paired bootstrap intervals and McNemar's exact test (numpy only).

Both models are scored on the same rows, so the differences are paired: the bootstrap resamples rows (the
same row indices for both models) and takes the percentile interval of the mean difference; McNemar's exact
test looks only at the rows where exactly one of the two models is right. `paired_delta` gives both, in the
form `eval.json` stores and the run summary prints.

A corpus loss is not a mean of per-row values but a ratio of sums (summed NLL over summed tokens), so its
interval comes from `paired_ratio_delta`: the same resampled rows, the ratio of the resampled sums.

`paired_metrics` reads the per-example values out of two lists of prediction rows (``predictions.jsonl``) and
compares every metric they carry; the evaluator and ``modelops-registry compare`` both call it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

import numpy as np

DEFAULT_RESAMPLES = 10_000
DEFAULT_CONFIDENCE = 0.95


def paired_bootstrap(
    base: Sequence[float], tuned: Sequence[float], resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
) -> tuple[float, float, float]:  # fmt: skip
    """``(delta, low, high)``: mean(tuned - base) and its paired percentile bootstrap interval.

    Each resample draws ``len(base)`` row indices with replacement (numpy ``default_rng(seed)``), the same for
    both models, and takes the mean difference over them; the interval is the ``(1 - confidence) / 2`` and
    ``(1 + confidence) / 2`` quantiles of those means (numpy's default linear interpolation).

    Raises:
        ValueError: different lengths, no rows, ``resamples < 1`` or ``confidence`` outside (0, 1).
    """
    diff = _differences(base, tuned)
    _check_bootstrap(resamples, confidence)
    means = np.empty(resamples, dtype=np.float64)
    for start, index in _resampled_rows(len(diff), resamples, seed):
        means[start : start + len(index)] = diff[index].mean(axis=1)
    low, high = _percentiles(means, confidence)
    return float(diff.mean()), low, high


def paired_ratio_bootstrap(
    base: tuple[Sequence[float], Sequence[float]], tuned: tuple[Sequence[float], Sequence[float]],
    resamples: int = DEFAULT_RESAMPLES, seed: int = 0, confidence: float = DEFAULT_CONFIDENCE,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[float, float, float]:  # fmt: skip
    """``(delta, low, high)`` of ``f(sum(tuned_num) / sum(tuned_den)) - f(sum(base_num) / sum(base_den))``.

    ``base`` and ``tuned`` are ``(numerator, denominator)`` per row (summed NLL and token count, say), paired by
    row. Each resample draws the same row indices as `paired_bootstrap` with the same ``seed`` and takes the
    ratio of the resampled sums for each model (not a mean of per-row ratios), so the interval is about the
    statistic reported. ``transform`` (``f``, default identity) maps each model's ratio before the difference:
    ``np.exp`` turns a loss into a perplexity.

    Raises:
        ValueError: different lengths, no rows, a denominator that sums to 0, or bad ``resamples``/``confidence``.
    """
    columns = [np.asarray(c, dtype=np.float64) for c in (*base, *tuned)]
    n = columns[0].shape
    if any(c.shape != n or c.ndim != 1 for c in columns) or n[0] == 0:
        raise ValueError(f"paired ratios need four 1-D arrays of one non-zero length, got {[c.shape for c in columns]}")
    if columns[1].sum() == 0 or columns[3].sum() == 0:
        raise ValueError("paired ratios: a denominator sums to 0")
    _check_bootstrap(resamples, confidence)
    f = transform or (lambda x: x)
    bn, bd, tn, td = columns
    deltas = np.empty(resamples, dtype=np.float64)
    for start, index in _resampled_rows(n[0], resamples, seed):
        with np.errstate(divide="ignore", invalid="ignore"):  # a resample of rows with no token: nan, dropped below
            change = f(tn[index].sum(axis=1) / td[index].sum(axis=1)) - f(bn[index].sum(axis=1) / bd[index].sum(axis=1))
        deltas[start : start + len(index)] = change
    low, high = _percentiles(deltas[np.isfinite(deltas)], confidence)
    return float(f(tn.sum() / td.sum()) - f(bn.sum() / bd.sum())), low, high


def mcnemar_exact(base: Sequence[bool], tuned: Sequence[bool]) -> float:
    """Two-sided exact McNemar p-value of paired right/wrong outcomes.

    With ``b`` rows right only for the base and ``c`` right only for the tuned model, under the null each of
    the ``n = b + c`` discordant rows goes either way with probability 1/2: ``p = min(1, 2 * P(X <= min(b, c)))``
    for ``X ~ Binomial(n, 1/2)``, computed exactly with integers. No discordant row gives ``p = 1``.
    """
    a = np.asarray(base, dtype=bool)
    t = np.asarray(tuned, dtype=bool)
    if a.shape != t.shape or a.ndim != 1:
        raise ValueError(f"paired outcomes need two 1-D arrays of one length, got {a.shape} and {t.shape}")
    b, c = int(np.sum(a & ~t)), int(np.sum(~a & t))
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


def paired_delta(
    base: Sequence[float], tuned: Sequence[float], binary: bool = False, resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0, confidence: float = DEFAULT_CONFIDENCE,
) -> dict[str, Any]:  # fmt: skip
    """The comparison of one per-example metric: means, delta, its bootstrap interval, McNemar for 0/1 values.

    Returns:
        ``{"base", "tuned", "delta", "low", "high", "confidence", "resamples", "seed", "n", "includes_zero"}``
        plus ``"mcnemar_p"`` when ``binary``.
    """
    delta, low, high = paired_bootstrap(base, tuned, resamples, seed, confidence)
    out: dict[str, Any] = {
        "base": float(np.mean(base)), "tuned": float(np.mean(tuned)), "delta": delta, "low": low, "high": high,
        "confidence": confidence, "resamples": resamples, "seed": seed, "n": len(base),
        "includes_zero": bool(low <= 0 <= high),
    }  # fmt: skip
    if binary:
        out["mcnemar_p"] = mcnemar_exact(np.asarray(base, dtype=bool), np.asarray(tuned, dtype=bool))
    return out


def paired_ratio_delta(
    base: tuple[Sequence[float], Sequence[float]], tuned: tuple[Sequence[float], Sequence[float]],
    resamples: int = DEFAULT_RESAMPLES, seed: int = 0, confidence: float = DEFAULT_CONFIDENCE,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """`paired_ratio_bootstrap` in the form of `paired_delta`: ``base`` and ``tuned`` are each model's ratio of sums."""
    f = transform or (lambda x: x)
    delta, low, high = paired_ratio_bootstrap(base, tuned, resamples, seed, confidence, transform)
    ratio = [float(f(np.sum(num, dtype=np.float64) / np.sum(den, dtype=np.float64))) for num, den in (base, tuned)]
    return {
        "base": ratio[0], "tuned": ratio[1], "delta": delta, "low": low, "high": high, "confidence": confidence,
        "resamples": resamples, "seed": seed, "n": len(base[0]), "includes_zero": bool(low <= 0 <= high),
    }  # fmt: skip


#: Per-example metrics that are right/wrong per row: their deltas also get McNemar's exact p-value.
BINARY = ("accuracy", "exact_match", "preference_accuracy", "reward_accuracy")


def per_example(rows: Sequence[dict[str, Any]]) -> dict[str, list[float | None]]:
    """``{metric: one value per row (None: not scored)}`` for the mean-type metrics prediction rows carry.

    ``accuracy`` (rows with ``label`` and ``prediction``), ``exact_match`` (None where the reference gave no
    answer), ``preference_accuracy`` (``prefers_chosen``), ``reward_accuracy`` and ``reward_margin`` (from the
    summed log-probabilities of each side and of the reference: r = log pi - log pi_ref, ties count as wrong).
    """
    first = rows[0] if rows else {}
    out: dict[str, list[float | None]] = {}
    if "label" in first and "prediction" in first:
        out["accuracy"] = [float(row["prediction"] == row["label"]) for row in rows]
    if "exact_match" in first:
        out["exact_match"] = [None if row["exact_match"] is None else float(row["exact_match"]) for row in rows]
    if "prefers_chosen" in first:
        out["preference_accuracy"] = [float(row["prefers_chosen"]) for row in rows]
    if "ref_logp_chosen" in first:
        margins = [
            (r["logp_chosen"] - r["ref_logp_chosen"]) - (r["logp_rejected"] - r["ref_logp_rejected"]) for r in rows
        ]
        out["reward_accuracy"] = [float(m > 0) for m in margins]
        out["reward_margin"] = margins
    return out


def paired_metrics(
    base: Sequence[dict[str, Any]], tuned: Sequence[dict[str, Any]], names: Collection[str] | None = None,
    resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """The paired delta of every per-example metric both lists of prediction rows carry, by metric name.

    Mean-type metrics (`per_example`) get `paired_delta` over the rows both score (McNemar's p for `BINARY`).
    Rows with a summed ``nll`` and its ``tokens`` (and ``bytes``) give the corpus ``loss`` (summed NLL / tokens),
    ``perplexity`` (exp of the loss) and ``bits_per_byte`` (summed NLL in bits / bytes), each with
    `paired_ratio_delta`: resampled rows, ratio of the resampled sums. ``perplexity`` also carries ``ratio``
    (tuned / base perplexity) with ``ratio_low``/``ratio_high`` = exp of the loss interval's bounds.

    Args:
        base, tuned: prediction rows of the same evaluation rows, in the same order.
        names: the metrics to compare (None: all the rows carry).

    Raises:
        ValueError: when the two lists do not have the same number of rows.
    """
    if len(base) != len(tuned):
        raise ValueError(f"paired deltas need the same rows: base has {len(base)}, fine-tuned {len(tuned)}")
    wanted = (lambda name: True) if names is None else (lambda name: name in names)
    before, after = per_example(base), per_example(tuned)
    deltas: dict[str, dict[str, Any]] = {}
    for name in [name for name in before.keys() & after.keys() if wanted(name)]:
        pairs = [(a, b) for a, b in zip(before[name], after[name], strict=True) if a is not None and b is not None]
        if pairs:
            a, b = zip(*pairs, strict=True)
            deltas[name] = paired_delta(a, b, binary=name in BINARY, resamples=resamples, seed=seed)
    if base and all("nll" in rows[0] for rows in (base, tuned)):
        deltas |= _loss_deltas(base, tuned, wanted, resamples, seed)
    return dict(sorted(deltas.items()))


RATIO_KEYS = (("", "delta"), ("_low", "low"), ("_high", "high"))


def _loss_deltas(base, tuned, wanted, resamples: int, seed: int) -> dict[str, dict[str, Any]]:
    """loss, perplexity and bits per byte of rows with ``nll``, ``tokens`` (and ``bytes``): ratios of sums."""

    def columns(rows, num: str, den: str, scale: float = 1.0):
        return [row[num] * scale for row in rows], [row[den] for row in rows]

    out = {}
    loss = paired_ratio_delta(columns(base, "nll", "tokens"), columns(tuned, "nll", "tokens"), resamples, seed)
    if wanted("loss"):
        out["loss"] = loss
    if wanted("perplexity"):
        ppl = paired_ratio_delta(
            columns(base, "nll", "tokens"), columns(tuned, "nll", "tokens"), resamples, seed, transform=np.exp
        )  # fmt: skip
        # exp is monotone: the interval of tuned / base perplexity is exp of the loss delta's bounds.
        out["perplexity"] = ppl | {f"ratio{end}": math.exp(loss[key]) for end, key in RATIO_KEYS}
    if wanted("bits_per_byte") and all(row.get("bytes") is not None for row in (*base, *tuned)):
        bits = 1 / math.log(2)
        out["bits_per_byte"] = paired_ratio_delta(
            columns(base, "nll", "bytes", bits), columns(tuned, "nll", "bytes", bits), resamples, seed
        )  # fmt: skip
    return out


def _check_bootstrap(resamples: int, confidence: float) -> None:
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _resampled_rows(n: int, resamples: int, seed: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(first resample, [k, n] row indices)`` chunks of the resamples: ``default_rng(seed).integers(0, n)``.

    In chunks, so 10 000 resamples of 100 000 rows never hold a 10^9 index matrix; the chunks draw the same
    indices as one ``integers(0, n, size=(resamples, n))`` call.
    """
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, resamples, chunk):
        yield start, rng.integers(0, n, size=(min(chunk, resamples - start), n))


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high)


def _differences(base: Sequence[float], tuned: Sequence[float]) -> np.ndarray:
    a = np.asarray(base, dtype=np.float64)
    t = np.asarray(tuned, dtype=np.float64)
    if a.shape != t.shape or a.ndim != 1:
        raise ValueError(f"paired values need two 1-D arrays of one length, got {a.shape} and {t.shape}")
    if a.size == 0:
        raise ValueError("paired values: no rows")
    return t - a
