"""Summary and paired statistics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from medseg.compare.stats import paired_difference, summarize, t_half_width

T_975_DF2 = 4.302653  # t quantile 0.975, 2 degrees of freedom (tables)


def test_summary_of_three_values_matches_hand_computation():
    summary = summarize([0.1, 0.2, 0.3])
    assert summary.n == 3
    assert summary.mean == pytest.approx(0.2)
    assert summary.std == pytest.approx(0.1)  # sqrt(((-.1)^2 + 0 + .1^2) / 2)
    half = T_975_DF2 * 0.1 / math.sqrt(3)  # 0.2484
    assert summary.half_width == pytest.approx(half, rel=1e-5)
    assert (summary.ci_low, summary.ci_high) == pytest.approx((0.2 - half, 0.2 + half), rel=1e-5)
    assert half == pytest.approx(0.2484, abs=1e-4)


def test_paired_difference_matches_hand_computation():
    # differences 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t = 0.2 / (0.1 / sqrt(3)) = 3.4641
    paired = paired_difference([0.9, 0.8, 0.7], [0.8, 0.6, 0.4])
    assert paired.n == 3
    assert paired.mean == pytest.approx(0.2)
    assert paired.sd == pytest.approx(0.1)
    assert paired.t == pytest.approx(3.4641, abs=1e-4)
    assert paired.half_width == pytest.approx(0.2484, abs=1e-4)
    assert paired.ci_low == pytest.approx(0.2 - 0.24841, abs=1e-4)
    # two-sided p for df = 2 in closed form: CDF(t) = 1/2 + t / (2 sqrt(2 + t^2))
    t = 0.2 / (0.1 / math.sqrt(3))
    p = 2 * (0.5 - t / (2 * math.sqrt(2 + t * t)))
    assert paired.p == pytest.approx(p, rel=1e-6)
    assert paired.p == pytest.approx(0.0742, abs=1e-4)


def test_paired_difference_sign_follows_method_minus_baseline():
    assert paired_difference([0.8, 0.6, 0.4], [0.9, 0.8, 0.7]).mean == pytest.approx(-0.2)
    assert paired_difference([0.8, 0.6, 0.4], [0.9, 0.8, 0.7]).t == pytest.approx(-3.4641, abs=1e-4)


def test_one_seed_has_a_mean_but_no_spread_or_test():
    summary = summarize([0.7])
    assert summary.mean == 0.7 and math.isnan(summary.std) and math.isnan(summary.half_width)
    paired = paired_difference([0.7], [0.5])
    assert paired.n == 1 and paired.mean == pytest.approx(0.2)
    assert all(math.isnan(v) for v in (paired.sd, paired.ci_low, paired.t, paired.p))
    assert math.isnan(t_half_width(0.1, 1))


def test_constant_differences_give_no_t_statistic():
    paired = paired_difference([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    assert paired.mean == 0.0 and paired.sd == 0.0
    assert math.isnan(paired.t) and math.isnan(paired.p)
    assert paired.ci_low == paired.ci_high == 0.0


def test_missing_values_are_dropped_pairwise():
    paired = paired_difference([0.9, math.nan, 0.8, 0.7], [0.8, 0.5, 0.6, 0.4])
    assert paired.n == 3 and paired.t == pytest.approx(3.4641, abs=1e-4)
    assert summarize([math.nan, 1.0, 3.0]).mean == 2.0
    assert summarize([]).n == 0 and math.isnan(summarize([]).mean)


def test_unequal_lengths_are_rejected():
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference([1.0, 2.0], [1.0])
