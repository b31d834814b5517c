"""Is a base -> fine-tuned difference real? Paired bootstrap intervals and McNemar's exact test (numpy only).

Both models are scored on the same rows, so the differences are paired: the bootstrap resamples rows (the
same row indices for both models) and takes the percentile interval of the mean difference; McNemar's exact
test looks only at the rows where exactly one of the two models is right. `paired_delta` gives both, in the
form `eval.json` stores and the run summary prints; ``modelops-registry compare`` can call it on the
per-example values of two registered versions evaluated on the same data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples, dtype=np.float64)
    # In chunks, so 10 000 resamples of 100 000 rows never hold a 10^9 index matrix.
    chunk = max(1, 2_000_000 // len(diff))
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        means[start:stop] = diff[rng.integers(0, len(diff), size=(stop - start, len(diff)))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(diff.mean()), float(low), float(high)


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


def _differences(base: Sequence[float], tuned: Sequence[float]) -> np.ndarray:
    a = np.asarray(base, dtype=np.float64)
    t = np.asarray(tuned, dtype=np.float64)
    if a.shape != t.shape or a.ndim != 1:
        raise ValueError(f"paired values need two 1-D arrays of one length, got {a.shape} and {t.shape}")
    if a.size == 0:
        raise ValueError("paired values: no rows")
    return t - a
