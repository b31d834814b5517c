"""modelops.stats against independent references: scipy's binomial test, an enumerated bootstrap distribution."""

import itertools

import numpy as np
import pytest
from scipy.stats import binomtest

from modelops.stats import mcnemar_exact, paired_bootstrap, paired_delta


@pytest.mark.parametrize(("b", "c", "same"), [(0, 0, 5), (3, 9, 20), (12, 2, 0), (40, 61, 100), (1, 0, 3)])
def test_mcnemar_equals_scipy_binomtest_on_discordant_pairs(b, c, same):
    base = [True] * b + [False] * c + [True] * same
    tuned = [False] * b + [True] * c + [True] * same
    expected = 1.0 if b + c == 0 else binomtest(c, b + c, 0.5, alternative="two-sided").pvalue
    assert mcnemar_exact(base, tuned) == pytest.approx(expected, rel=1e-12)


def test_bootstrap_interval_matches_the_enumerated_resampling_distribution():
    # Differences [0, 0, 1]: all 27 equally likely resamples give the exact law of the resampled mean.
    base, tuned = [1.0, 0.0, 0.0], [1.0, 0.0, 1.0]
    diff = np.array(tuned) - np.array(base)
    means = sorted(diff[list(idx)].mean() for idx in itertools.product(range(3), repeat=3))
    # P(mean = 0) = 8/27 > 2.5 %, P(mean = 1) = 1/27 > 2.5 %: the 95 % interval is [0, 1] exactly.
    assert means.count(0.0) == 8 and means.count(1.0) == 1
    delta, low, high = paired_bootstrap(base, tuned, resamples=20_000, seed=1)
    assert delta == pytest.approx(1 / 3)
    assert (low, high) == (0.0, 1.0)
    # An 80 % interval: P(mean <= 0) = 8/27 = 0.30 > 0.10, P(mean >= 2/3) = 7/27 = 0.26 > 0.10: [0, 2/3].
    _, low, high = paired_bootstrap(base, tuned, resamples=20_000, seed=1, confidence=0.8)
    assert (low, high) == (0.0, pytest.approx(2 / 3))


def test_bootstrap_is_seeded_and_paired():
    rng = np.random.default_rng(0)
    base = rng.normal(size=200)
    tuned = base + 0.1 + rng.normal(scale=0.01, size=200)  # a small shift with almost no noise
    first = paired_bootstrap(base, tuned, resamples=500, seed=3)
    assert first == paired_bootstrap(base, tuned, resamples=500, seed=3)
    assert first != paired_bootstrap(base, tuned, resamples=500, seed=4)
    # Paired: the per-row noise of `base` cancels, so the interval is tight around 0.1 and excludes 0.
    delta, low, high = first
    assert 0.09 < low < delta < high < 0.11


def test_paired_delta_marks_intervals_that_include_zero():
    same = paired_delta([1, 0, 1, 0], [0, 1, 1, 0], binary=True, resamples=200)
    assert same["includes_zero"] and same["delta"] == 0.0 and same["mcnemar_p"] == 1.0
    better = paired_delta([0] * 30, [1] * 30, binary=True, resamples=200)
    assert not better["includes_zero"] and better["low"] == 1.0
    assert better["mcnemar_p"] == pytest.approx(binomtest(30, 30, 0.5).pvalue)


def test_bad_inputs():
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap([1, 2], [1])
    with pytest.raises(ValueError, match="no rows"):
        paired_bootstrap([], [])
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap([1], [2], resamples=0)
