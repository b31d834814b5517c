"""modelops.stats against independent references: scipy's binomial test, an enumerated bootstrap distribution."""

import itertools
import math

import numpy as np
import pytest
from scipy.stats import binomtest

from modelops.stats import (
    mcnemar_exact,
    paired_bootstrap,
    paired_delta,
    paired_metrics,
    paired_ratio_bootstrap,
    paired_ratio_delta,
)


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


def _by_hand_ratio_interval(base, tuned, resamples, seed, f=lambda x: x):
    """numpy by hand: one index matrix for all resamples, the ratio of the resampled sums, numpy's quantiles."""
    (bn, bd), (tn, td) = [(np.asarray(n, float), np.asarray(d, float)) for n, d in (base, tuned)]
    idx = np.random.default_rng(seed).integers(0, len(bn), size=(resamples, len(bn)))
    deltas = f(tn[idx].sum(1) / td[idx].sum(1)) - f(bn[idx].sum(1) / bd[idx].sum(1))
    return f(tn.sum() / td.sum()) - f(bn.sum() / bd.sum()), *np.quantile(deltas, [0.025, 0.975])


def test_ratio_bootstrap_equals_numpy_by_hand_across_chunks():
    rng = np.random.default_rng(7)
    n = 1500  # 2_000_000 // 1500 = 1333 resamples per chunk: 3000 resamples take three chunks
    bd = rng.integers(1, 50, size=n).astype(float)
    bn, tn = bd * rng.normal(3, 0.3, size=n), bd * rng.normal(2.9, 0.3, size=n)
    got = paired_ratio_bootstrap((bn, bd), (tn, bd), resamples=3000, seed=11)
    expected = _by_hand_ratio_interval((bn, bd), (tn, bd), 3000, 11)
    assert got == pytest.approx(expected, rel=1e-12)
    got = paired_ratio_bootstrap((bn, bd), (tn, bd), resamples=3000, seed=11, transform=np.exp)
    assert got == pytest.approx(_by_hand_ratio_interval((bn, bd), (tn, bd), 3000, 11, np.exp), rel=1e-12)


def test_ratio_bootstrap_with_unit_denominators_is_the_mean_bootstrap():
    rng = np.random.default_rng(1)
    base, tuned = rng.normal(size=80), rng.normal(0.2, size=80)
    ones = np.ones(80)
    assert paired_ratio_bootstrap((base, ones), (tuned, ones), 700, 5) == pytest.approx(
        paired_bootstrap(base, tuned, 700, 5), rel=1e-12
    )


def test_ratio_of_sums_is_the_statistic_not_a_mean_of_row_ratios():
    # A long row with a low loss and a short row with a high one: token-weighted 1.0 vs 10/3 per row mean.
    base = ([100.0, 20.0], [100, 4])  # per-token 1.0 and 5.0: corpus loss 120 / 104
    tuned = ([50.0, 20.0], [100, 4])  # per-token 0.5 and 5.0: corpus loss 70 / 104
    out = paired_ratio_delta(base, tuned, resamples=200, seed=0)
    assert out["base"] == pytest.approx(120 / 104) and out["tuned"] == pytest.approx(70 / 104)
    assert out["delta"] == pytest.approx(-50 / 104)


def test_paired_metrics_of_lm_rows_exclude_zero_for_a_better_model_and_include_it_for_the_same():
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 60, size=300)
    per_token = rng.normal(3.0, 0.5, size=300).clip(0.5)
    base = [{"row": str(i), "nll": float(p * t), "tokens": int(t), "bytes": int(4 * t)} for i, (p, t) in
            enumerate(zip(per_token, tokens, strict=True))]  # fmt: skip
    tuned = [{**row, "nll": row["nll"] * 0.9 + rng.normal(0, 0.5)} for row in base]  # 10 % less NLL, noisy
    deltas = paired_metrics(base, tuned, resamples=2000, seed=0)
    assert set(deltas) == {"loss", "perplexity", "bits_per_byte"}
    loss, ppl, bpb = deltas["loss"], deltas["perplexity"], deltas["bits_per_byte"]
    total = sum(r["tokens"] for r in base)
    assert loss["base"] == pytest.approx(sum(r["nll"] for r in base) / total)
    assert loss["delta"] == pytest.approx(loss["tuned"] - loss["base"]) and loss["high"] < 0
    assert not loss["includes_zero"] and "mcnemar_p" not in loss
    # Perplexity: exp of each side's loss, its delta's own interval, and the ratio = exp of the loss bounds.
    assert ppl["base"] == pytest.approx(math.exp(loss["base"])) and ppl["high"] < 0 and not ppl["includes_zero"]
    assert (ppl["ratio"], ppl["ratio_low"], ppl["ratio_high"]) == pytest.approx(
        (math.exp(loss["delta"]), math.exp(loss["low"]), math.exp(loss["high"]))
    )
    assert bpb["delta"] == pytest.approx(loss["delta"] / math.log(2) / 4) and bpb["high"] < 0
    same = paired_metrics(base, base, resamples=500, seed=0)
    assert all(d["delta"] == 0 and d["includes_zero"] for d in same.values())
    assert set(paired_metrics(base, tuned, names={"loss"}, resamples=100)) == {"loss"}


def test_paired_metrics_of_preference_rows():
    def rows(prefers):
        return [{"prompt": str(i), "logp_chosen": -1.0, "logp_rejected": -2.0, "chosen_tokens": 2,
                 "rejected_tokens": 2, "prefers_chosen": p} for i, p in enumerate(prefers)]  # fmt: skip

    base, tuned = rows([False] * 30 + [True] * 10), rows([True] * 35 + [False] * 5)
    deltas = paired_metrics(base, tuned, resamples=1000)
    acc = deltas["preference_accuracy"]
    assert acc["delta"] == pytest.approx(35 / 40 - 10 / 40) and not acc["includes_zero"]
    # Discordant pairs by hand: rows 0-29 right only when tuned, rows 35-39 right only for the base.
    b = sum(x and not y for x, y in zip([False] * 30 + [True] * 10, [True] * 35 + [False] * 5, strict=True))
    c = sum(y and not x for x, y in zip([False] * 30 + [True] * 10, [True] * 35 + [False] * 5, strict=True))
    assert acc["mcnemar_p"] == pytest.approx(binomtest(c, b + c, 0.5).pvalue)
    assert paired_metrics(base, base, resamples=100)["preference_accuracy"]["includes_zero"]
    with pytest.raises(ValueError, match="same rows"):
        paired_metrics(base, tuned[:-1])
