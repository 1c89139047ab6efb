"""Tune a comparison's methods under one budget: the search space, the trial points every
method shares, and each method's best trial.

A comparison config may hold a ``tune:`` section (read by ``medseg compare --tune``; training
leaves it out, :data:`medseg.config.COMMAND_SECTIONS`)::

    tune:
      trials: 8                 # per method
      seeds: [1000]             # tuning seeds: never evaluation seeds
      sampler_seed: 0           # the quasirandom sequence's scrambling
      space:                    # any numeric config key; default: the learning rate alone
        optim.lr: {low: 1.0e-5, high: 1.0e-1, log: true}
        optim.weight_decay: {low: 0.0, high: 0.1}

The trial points are drawn once from Optuna's :class:`~optuna.samplers.QMCSampler`
(scrambled Sobol, seeded) and given to every method in the same order, so each method gets
the same budget at the same points (AlgoPerf's external tuning ruleset). A longer budget
keeps the earlier points: the sequence's first ``n`` points do not depend on how many follow.

Example:
    >>> settings = tune_settings({"trials": 4, "seeds": [1000]}, "tune")
    >>> points = trial_points(settings)
    >>> len(points), sorted(points[0])
    (4, ['optim.lr'])
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
import yaml
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.trial import TrialState

from medseg.compare.planning import SEED_RANGE
from medseg.config import Config, apply_overrides, config_from_dict
from medseg.errors import ConfigError

#: the section of a comparison config that ``--tune`` reads
TUNE_SECTION = "tune"
#: trials per method unless the section says otherwise
DEFAULT_TRIALS = 8
#: the most trials per method: far more than any budget a comparison is run under
MAX_TRIALS = 1000
#: the tuning seeds unless the section says otherwise: far from the evaluation seeds 0, 1, ...
DEFAULT_TUNE_SEEDS = (1000,)
#: a trial within this much of a method's best validation score counts as near the best
#: (the width of the learning rates that get there is the method's sensitivity)
NEAR_BEST = 0.02
#: the setting whose sensitivity the report draws, when the space has it
LEARNING_RATE = "optim.lr"


@dataclass(frozen=True)
class Dimension:
    """One tuned setting: uniform over ``[low, high]``, or log-uniform when ``log``."""

    low: float
    high: float
    log: bool = False

    def distribution(self) -> FloatDistribution:
        return FloatDistribution(self.low, self.high, log=self.log)

    def describe(self) -> str:
        return f"{'log-uniform' if self.log else 'uniform'} [{self.low:g}, {self.high:g}]"


def _default_space() -> dict[str, Dimension]:
    return {LEARNING_RATE: Dimension(1e-5, 1e-1, log=True)}


@dataclass(frozen=True)
class TuneSettings:
    """The budget every method is tuned under: the space, trials per method, the tuning seeds
    (each trial trains once per seed; its score is their mean) and the sampler's seed."""

    space: dict[str, Dimension] = field(default_factory=_default_space)
    trials: int = DEFAULT_TRIALS
    seeds: tuple[int, ...] = DEFAULT_TUNE_SEEDS
    sampler_seed: int = 0

    @property
    def sensitivity_key(self) -> str:
        """The setting drawn on the sensitivity plot: the learning rate when tuned, else the
        first setting of the space."""
        return LEARNING_RATE if LEARNING_RATE in self.space else next(iter(self.space))

    def distributions(self) -> dict[str, BaseDistribution]:
        """The space as Optuna's distributions."""
        return {key: dim.distribution() for key, dim in self.space.items()}

    def describe_space(self) -> str:
        return "; ".join(f"`{key}` {dim.describe()}" for key, dim in self.space.items())


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {str(value)[:40]!r}")
    return float(value)


def _whole(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: expected a whole number, got {str(value)[:40]!r}")
    return value


def _dimension(raw: Any, where: str) -> Dimension:
    if not isinstance(raw, dict) or not {"low", "high"} <= set(raw) or not set(raw) <= {"low", "high", "log"}:
        raise ConfigError(f"{where}: expected {{low: NUMBER, high: NUMBER, log: true|false}}")
    low, high = _number(raw["low"], f"{where}.low"), _number(raw["high"], f"{where}.high")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log: expected true or false")
    if not low < high:
        raise ConfigError(f"{where}: low {low:g} must be below high {high:g}")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log-uniform range needs low > 0, got {low:g}")
    return Dimension(low, high, log)


def tune_settings(raw: Any, where: str = TUNE_SECTION) -> TuneSettings:
    """Validate a ``tune:`` section (None: every default).

    Raises:
        ConfigError: one line naming the key: an unknown key, a range that is empty or not
            positive on a log scale, trials outside 1..:data:`MAX_TRIALS`, a seed out of
            range or listed twice.
    """
    if raw is None:
        return TuneSettings()
    known = {"space", "trials", "seeds", "sampler_seed"}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with keys {', '.join(sorted(known))}")
    unknown = sorted(str(key) for key in raw if key not in known)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0][:60]}; valid keys: {', '.join(sorted(known))}")
    space_raw = raw.get("space")
    if space_raw is None:
        space = _default_space()
    elif isinstance(space_raw, dict) and space_raw:
        space = {str(key): _dimension(dim, f"{where}.space.{key}") for key, dim in space_raw.items()}
    else:
        raise ConfigError(f"{where}.space: expected a mapping of config keys to {{low, high, log}}")
    trials = _whole(raw.get("trials", DEFAULT_TRIALS), f"{where}.trials")
    if not 1 <= trials <= MAX_TRIALS:
        raise ConfigError(f"{where}.trials: {trials} is not from 1 to {MAX_TRIALS}")
    seeds_raw = raw.get("seeds", list(DEFAULT_TUNE_SEEDS))
    if not isinstance(seeds_raw, list) or not seeds_raw:
        raise ConfigError(f"{where}.seeds: expected a list of one or more seeds, e.g. [1000]")
    seeds: list[int] = []
    for item in seeds_raw:
        seed = _whole(item, f"{where}.seeds")
        SEED_RANGE.check(seed, f"{where}.seeds: a seed")
        if seed in seeds:
            raise ConfigError(f"{where}.seeds: seed {seed} is listed twice")
        seeds.append(seed)
    sampler_seed = _whole(raw.get("sampler_seed", 0), f"{where}.sampler_seed")
    SEED_RANGE.check(sampler_seed, f"{where}.sampler_seed")
    return TuneSettings(space, trials, tuple(seeds), sampler_seed)


def check_disjoint_seeds(settings: TuneSettings, evaluation_seeds: Sequence[int]) -> None:
    """Refuse tuning seeds that are also evaluation seeds: a setting chosen on a seed's
    validation score would be scored again on that seed's runs.

    Raises:
        ConfigError: naming the shared seeds.
    """
    shared = sorted(set(settings.seeds) & set(evaluation_seeds))
    if shared:
        raise ConfigError(
            f"{TUNE_SECTION}.seeds: {', '.join(map(str, shared))} also "
            f"{'is an evaluation seed' if len(shared) == 1 else 'are evaluation seeds'}; "
            "tuning seeds must differ from --seeds/--seed-list (e.g. tune.seeds: [1000])"
        )


def setting_items(params: Mapping[str, float]) -> list[str]:
    """``{"optim.lr": 1e-05}`` -> ``["optim.lr=1.0e-05"]``: overrides that read back as the
    same floats (YAML's own spelling, never a string)."""
    return [f"{key}={yaml.safe_dump(float(value)).splitlines()[0]}" for key, value in params.items()]


def check_space(cfg: Config, settings: TuneSettings) -> None:
    """Check that every tuned key is a config setting that takes both ends of its range.

    Raises:
        ConfigError: naming the key and the problem (unknown key, a value out of its range).
    """
    for key, dim in settings.space.items():
        for end in (dim.low, dim.high):
            try:
                config_from_dict(apply_overrides(cfg.to_dict(), setting_items({key: end})))
            except ConfigError as err:
                raise ConfigError(f"{TUNE_SECTION}.space.{key}: {err}") from None


def trial_points(settings: TuneSettings) -> list[dict[str, float]]:
    """The first ``settings.trials`` points of the scrambled Sobol sequence seeded with
    ``settings.sampler_seed``, as config settings; the same for every method.

    Optuna's QMCSampler learns its search space from a study's first trial, which it samples
    at random: that trial is made and set aside (pruned), so every point returned is
    quasirandom.
    """
    space = settings.distributions()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True,
                                             seed=settings.sampler_seed)
    study = optuna.create_study(sampler=sampler)  # in memory: only the points are kept
    study.tell(study.ask(space), state=TrialState.PRUNED)
    points = []
    for _ in range(settings.trials):
        trial = study.ask(space)
        points.append({key: float(trial.params[key]) for key in settings.space})
        study.tell(trial, state=TrialState.PRUNED)
    return points


@dataclass(frozen=True)
class TrialResult:
    """One finished trial of one method: its number (its point's index), settings, score on
    the validation split (mean over the tuning seeds; NaN when it failed) and epochs to the
    target (mean over the seeds, a miss counting one past its last epoch; NaN when unknown)."""

    number: int
    params: dict[str, float]
    value: float
    epochs_to_target: float = math.nan


def best_trial(trials: Sequence[TrialResult]) -> TrialResult | None:
    """The trial with the highest validation score; ties go to fewer epochs to the target
    (unknown counts as more), then to the earlier trial. None when no trial has a score."""
    scored = [trial for trial in trials if math.isfinite(trial.value)]
    if not scored:
        return None

    def rank(trial: TrialResult) -> tuple[float, float, int]:
        epochs = trial.epochs_to_target if math.isfinite(trial.epochs_to_target) else math.inf
        return (-trial.value, epochs, trial.number)

    return min(scored, key=rank)


@dataclass(frozen=True)
class NearBest:
    """The settings of ``key`` whose trials scored within ``tolerance`` of the best: their
    lowest and highest value, how many trials, and the width in decades (log10 high/low)."""

    low: float
    high: float
    count: int

    @property
    def decades(self) -> float:
        return math.log10(self.high / self.low) if self.low > 0 else math.nan


def near_best(trials: Sequence[TrialResult], key: str, tolerance: float = NEAR_BEST) -> NearBest | None:
    """The range of ``key`` over the trials within ``tolerance`` of the best score (None when
    no trial has a score). The range spans the outermost such trials: a trial between them
    may score lower."""
    best = best_trial(trials)
    if best is None:
        return None
    near = [trial.params[key] for trial in trials
            if math.isfinite(trial.value) and trial.value >= best.value - tolerance]
    return NearBest(min(near), max(near), len(near))


def best_so_far(trials: Sequence[TrialResult]) -> list[float]:
    """The best score after each trial, in trial order (NaN until one has a score)."""
    running, best = [], math.nan
    for trial in sorted(trials, key=lambda t: t.number):
        if math.isfinite(trial.value) and not trial.value <= best:
            best = trial.value
        running.append(best)
    return running
