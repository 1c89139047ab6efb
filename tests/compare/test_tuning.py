"""The tuning's rules without training: the tune section, the shared trial points, the best
trial and its tie rule, the range near the best, the budget curve."""

from __future__ import annotations

import math

import pytest

from medseg.compare.tuning import (
    Dimension,
    TrialResult,
    best_so_far,
    best_trial,
    check_disjoint_seeds,
    check_space,
    near_best,
    setting_items,
    trial_points,
    tune_settings,
)
from medseg.compare.tuning_report import budget_points
from medseg.config import Config, apply_overrides, config_from_dict
from medseg.errors import ConfigError


def trial(number: int, lr: float, value: float, epochs: float = math.nan) -> TrialResult:
    return TrialResult(number, {"optim.lr": lr}, value, epochs)


def test_default_section_tunes_the_learning_rate_log_uniformly():
    settings = tune_settings(None)
    assert settings.space == {"optim.lr": Dimension(1e-5, 1e-1, log=True)}
    assert (settings.trials, settings.seeds) == (8, (1000,))


def test_points_are_quasirandom_in_the_space_and_a_longer_budget_keeps_the_first_ones():
    settings = tune_settings({"trials": 8, "space": {
        "optim.lr": {"low": 1e-5, "high": 1e-1, "log": True},
        "optim.weight_decay": {"low": 0.0, "high": 0.1}}})
    points = trial_points(settings)
    assert len(points) == 8 and len({p["optim.lr"] for p in points}) == 8
    assert all(1e-5 <= p["optim.lr"] <= 1e-1 and 0 <= p["optim.weight_decay"] <= 0.1 for p in points)
    # a (scrambled) Sobol net: each eighth of each axis (log10 lr in [-5, -1]) holds one point,
    # which 8 independent random draws do with probability 8!/8**8 (0.24%)
    eighths = sorted(int((math.log10(p["optim.lr"]) + 5) / 4 * 8) for p in points)
    assert eighths == list(range(8))
    assert sorted(int(p["optim.weight_decay"] / 0.1 * 8) for p in points) == list(range(8))
    assert trial_points(tune_settings({**{"trials": 4}, "space": {
        "optim.lr": {"low": 1e-5, "high": 1e-1, "log": True},
        "optim.weight_decay": {"low": 0.0, "high": 0.1}}})) == points[:4]
    assert trial_points(tune_settings({"trials": 8, "sampler_seed": 1, "space": {
        "optim.lr": {"low": 1e-5, "high": 1e-1, "log": True},
        "optim.weight_decay": {"low": 0.0, "high": 0.1}}})) != points


def test_setting_items_read_back_as_the_same_floats():
    for value in (1e-05, 0.000123456789, 0.1, 3.0):
        item = setting_items({"optim.lr": value})[0]
        assert apply_overrides({}, [item])["optim"]["lr"] == value


@pytest.mark.parametrize(("raw", "words"), [
    ({"trials": 0}, "tune.trials: 0 is not from 1"),
    ({"seeds": [5, 5]}, "seed 5 is listed twice"),
    ({"space": {"optim.lr": {"low": 0.0, "high": 0.1, "log": True}}}, "needs low > 0"),
    ({"space": {"optim.lr": {"low": 0.1, "high": 0.01}}}, "must be below high"),
    ({"budget": 3}, "unknown key budget"),
])
def test_bad_sections_are_refused_in_one_line(raw, words):
    with pytest.raises(ConfigError, match=words):
        tune_settings(raw)


def test_tuning_seeds_must_not_be_evaluation_seeds():
    check_disjoint_seeds(tune_settings({"seeds": [1000, 1001]}), [0, 1, 2])
    with pytest.raises(ConfigError, match=r"tune.seeds: 1 also is an evaluation seed") as err:
        check_disjoint_seeds(tune_settings({"seeds": [1, 1000]}), [0, 1, 2])
    assert "\n" not in str(err.value)


def test_a_tuned_key_must_be_a_setting_that_takes_its_range():
    cfg = config_from_dict(Config().to_dict())
    check_space(cfg, tune_settings({"space": {"optim.eps": {"low": 1e-8, "high": 1e-3, "log": True}}}))
    with pytest.raises(ConfigError, match=r"tune\.space\.optim\.nope"):
        check_space(cfg, tune_settings({"space": {"optim.nope": {"low": 1, "high": 2}}}))
    with pytest.raises(ConfigError, match=r"tune\.space\.optim\.momentum"):
        check_space(cfg, tune_settings({"space": {"optim.momentum": {"low": 0.5, "high": 1.5}}}))


def test_the_best_trial_has_the_highest_score():
    trials = [trial(0, 1e-4, 0.70), trial(1, 1e-3, 0.82), trial(2, 1e-2, math.nan), trial(3, 1e-1, 0.40)]
    assert best_trial(trials).number == 1
    assert best_trial([trial(0, 1e-4, math.nan)]) is None


def test_a_tie_goes_to_fewer_epochs_to_target_then_to_the_earlier_trial():
    tied = [trial(0, 1e-4, 0.8, epochs=5.0), trial(1, 1e-3, 0.8, epochs=3.0),
            trial(2, 1e-2, 0.8, epochs=3.0), trial(3, 1e-1, 0.8)]
    assert best_trial(tied).number == 1
    assert best_trial([tied[3], tied[0]]).number == 0  # unknown epochs rank behind known ones
    assert best_trial([trial(4, 1e-4, 0.8, 4.0), trial(2, 1e-3, 0.8, 4.0)]).number == 2


def test_the_range_near_the_best_spans_the_trials_within_0_02():
    trials = [trial(0, 1e-5, 0.50), trial(1, 1e-4, 0.80), trial(2, 1e-3, 0.81),
              trial(3, 1e-2, 0.79), trial(4, 1e-1, 0.789), trial(5, 3e-2, math.nan)]
    found = near_best(trials, "optim.lr")
    assert (found.low, found.high, found.count) == (1e-4, 1e-2, 3)
    assert found.decades == pytest.approx(2.0)
    assert near_best([trial(0, 1e-3, 0.5)], "optim.lr").decades == 0.0


def test_the_budget_curve_is_the_best_score_so_far_in_trial_order():
    trials = [trial(2, 1e-2, 0.6), trial(0, 1e-4, math.nan), trial(1, 1e-3, 0.5), trial(3, 1e-1, 0.55)]
    running = best_so_far(trials)
    assert math.isnan(running[0]) and running[1:] == [0.5, 0.6, 0.6]
    assert budget_points(8) == [1, 2, 4, 8] and budget_points(6) == [1, 2, 4, 6]
