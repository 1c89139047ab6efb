"""Summary and paired statistics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from medseg.compare.stats import curve_area, holm, paired_difference, summarize, t_half_width

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


def test_an_interval_is_clipped_to_the_bounds_and_keeps_its_other_end():
    # mean 0.2, half-width 0.2484 (above): unbounded [-0.0484, 0.4484]
    clipped = summarize([0.1, 0.2, 0.3], bounds=(0.0, 1.0))
    assert clipped.ci_low == 0.0 and clipped.ci_high == pytest.approx(0.4484, abs=1e-4)
    top = summarize([0.8, 0.9, 1.0], bounds=(0.0, 1.0))  # unbounded [0.6516, 1.1484]
    assert top.ci_low == pytest.approx(0.6516, abs=1e-4) and top.ci_high == 1.0
    assert top.mean == pytest.approx(0.9) and top.std == pytest.approx(0.1)
    inside = summarize([0.1, 0.2, 0.3], bounds=(-1.0, 1.0))
    assert inside.ci_low == pytest.approx(-0.0484, abs=1e-4)
    one = summarize([0.7], bounds=(0.0, 1.0))  # no spread: no interval, bounds or not
    assert math.isnan(one.ci_low) and math.isnan(one.ci_high)


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


def test_effect_size_is_the_mean_difference_in_sds_of_the_differences():
    # differences 0.1, 0.2, 0.3: d_z = 0.2 / 0.1
    assert paired_difference([0.9, 0.8, 0.7], [0.8, 0.6, 0.4]).effect_size == pytest.approx(2.0)
    assert paired_difference([0.4, 0.5, 0.6], [0.5, 0.7, 0.9]).effect_size == pytest.approx(-2.0)
    assert math.isnan(paired_difference([0.5, 0.5], [0.5, 0.5]).effect_size)  # sd 0
    assert math.isnan(paired_difference([0.7], [0.5]).effect_size)  # one pair


def test_holm_multiplies_the_kth_smallest_p_by_m_minus_k_plus_1_and_keeps_order():
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, 2 * 0.03, max(0.06, 1 * 0.04) = 0.06
    assert holm([0.04, 0.01, 0.03]) == pytest.approx([0.06, 0.03, 0.06])
    # capped at 1; NaN (a test that could not run) stays NaN and does not count in m
    adjusted = holm([0.6, math.nan, 0.2])
    assert adjusted[0] == pytest.approx(0.6) and adjusted[2] == pytest.approx(0.4)
    assert math.isnan(adjusted[1])
    assert holm([0.9, 0.8]) == [1.0, 1.0]
    assert holm([0.02]) == [0.02]  # one test: no correction
    assert holm([]) == []


def test_curve_area_is_the_curves_average_height():
    # trapezoids (0.2 + 0.6) / 2 + (0.6 + 0.8) / 2 = 1.1 over 2 epochs
    assert curve_area([0.2, 0.6, 0.8]) == pytest.approx(0.55)
    assert curve_area([0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)
    # the same final score reached sooner has the larger area
    assert curve_area([0.8, 0.8, 0.8]) > curve_area([0.0, 0.4, 0.8])
    # a missing epoch is skipped: (0.2 + 0.8) / 2 * 2 epochs / 2 epochs
    assert curve_area([0.2, math.nan, 0.8]) == pytest.approx(0.5)
    assert curve_area([0.7]) == 0.7 and math.isnan(curve_area([]))
