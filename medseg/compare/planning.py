"""Plan a comparison: check the methods, seeds and per-method settings, lay out every run,
and tell which runs are finished, interrupted or new.

Each run has ``cfg.optim.name = method`` (plus that method's ``--method-set`` values),
``cfg.seed = k``, its own ``output.dir`` (``out_dir/runs/<method>/seed<k>``) and the shared
``data.split_file``; nothing else changes between runs, except for the methods of
:data:`~medseg.compare.spec.MODEL_METHODS` (``adam+bgn``: ``optim.name = adam`` and
``model.bgn = true``). Nothing here trains or writes.

Every count and value is bounded before anything is allocated: at most :data:`MAX_SEEDS`
seeds, each in the config's range for ``seed`` (0 to :data:`medseg.config.MAX_SEED`), each
method once; every run's config is validated as :func:`medseg.config.load_config` validates
a file.

Example:
    >>> methods, seeds, overrides = check_comparison(["adam", "adam+znorm"], range(3), {})
    >>> specs = plan_runs(cfg, methods, seeds, out_dir, split_file)     # doctest: +SKIP
    >>> [run_state(spec) for spec in specs]                              # doctest: +SKIP
    ['done', 'resume', 'new', ...]
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from medseg.compare.spec import MODEL_METHODS, RunSpec, read_record
from medseg.config import Config, Range, apply_overrides, config_from_dict
from medseg.errors import ConfigError, MedsegError
from medseg.optim import OPTIMIZER_NAMES

RunState = Literal["done", "resume", "new"]

#: every method a comparison accepts: the optimizers, then the model methods
METHOD_NAMES: tuple[str, ...] = (*OPTIMIZER_NAMES, *MODEL_METHODS)
#: the methods the report studies (``--methods standard``): Adam, the gradient transforms of
#: the three papers and their usual alternatives, all on Adam's update
STANDARD_METHODS: tuple[str, ...] = (
    "adam", "adamw", "adam+gc", "adam+clip", "adam+znorm", "adam+bgn", "lamb", "adam+agc",
    "adam+blocknorm",
)
#: the name that stands for :data:`STANDARD_METHODS`
STANDARD = "standard"
#: the most seeds one comparison runs: the report's statistics need tens of seeds, and a
#: thousand seeds of each method is more training than any comparison it is made for
MAX_SEEDS = 1000
#: the values a seed may take: the config's rule for ``seed`` (0 to ``medseg.config.MAX_SEED``)
SEED_RANGE: Range = next(f for f in dataclasses.fields(Config) if f.name == "seed").metadata["range"]


def check_methods(methods: Sequence[str]) -> list[str]:
    """Validate the method names against :data:`METHOD_NAMES`; ``["standard"]`` stands for
    :data:`STANDARD_METHODS`.

    Raises:
        ConfigError: on an empty list, a duplicate or an unknown name (listing the valid ones).
    """
    methods = [m.strip() for m in methods if m.strip()]
    if methods == [STANDARD]:
        methods = list(STANDARD_METHODS)
    if not methods:
        raise ConfigError("--methods: give at least one optimizer, e.g. adam,adam+znorm")
    seen: set[str] = set()
    for method in methods:
        if method not in METHOD_NAMES:
            raise ConfigError(
                f"--methods: unknown optimizer {method!r}; choose from {', '.join(METHOD_NAMES)}"
            )
        if method in seen:
            raise ConfigError(f"--methods: {method!r} is listed twice")
        seen.add(method)
    return methods


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """Validate the seeds: 1 to :data:`MAX_SEEDS` of them (counted before any is read, so
    ``range(10**8)`` costs nothing), whole numbers in :data:`SEED_RANGE`, each once.

    Raises:
        ConfigError: naming the count or the offending seed.
    """
    if len(seeds) > MAX_SEEDS:
        raise ConfigError(f"--seeds: {len(seeds)} seeds; a comparison runs at most {MAX_SEEDS}")
    if not seeds:
        raise ConfigError("--seeds: give at least one seed")
    checked: dict[int, None] = {}  # the seeds in order, each once
    for item in seeds:
        try:
            seed = operator.index(item)  # ints, numpy's too; not floats or text
        except TypeError:
            seed = None
        if seed is None or isinstance(item, bool):
            raise ConfigError(f"--seed-list: seed {item!r} is not a whole number")
        SEED_RANGE.check(seed, "--seed-list: a seed")
        if seed in checked:
            raise ConfigError(f"--seed-list: seed {seed} is listed twice")
        checked[seed] = None
    return list(checked)


def check_method_overrides(
    overrides: Mapping[str, Sequence[str]], methods: Sequence[str]
) -> dict[str, list[str]]:
    """Validate per-method ``optim.*`` overrides such as ``{"adamw": ["optim.weight_decay=0.01"]}``.

    Only the ``optim`` section may differ between methods; everything else stays identical.

    Raises:
        ConfigError: on a method not in ``methods``, or a key outside ``optim`` (or
            ``optim.name``). Values are checked by :func:`plan_runs`.
    """
    checked = {}
    for method, items in overrides.items():
        if method not in methods:
            raise ConfigError(f"--method-set {method}: {method!r} is not one of --methods")
        for item in items:
            key = item.partition("=")[0].strip()
            if not key.startswith("optim.") or key == "optim.name":
                raise ConfigError(
                    f"--method-set {method}:{item}: only optim.* settings (not optim.name) may "
                    "differ between methods"
                )
        checked[method] = list(items)
    return checked


def check_comparison(
    methods: Sequence[str], seeds: Sequence[int], method_overrides: Mapping[str, Sequence[str]]
) -> tuple[list[str], list[int], dict[str, list[str]]]:
    """:func:`check_methods`, :func:`check_seeds` and :func:`check_method_overrides` in one:
    what every entry point of a comparison checks before it creates or writes anything.

    Raises:
        ConfigError: as those functions.
    """
    methods = check_methods(methods)
    return methods, check_seeds(seeds), check_method_overrides(method_overrides, methods)


def _method_config(cfg: Config, method: str, overrides: Sequence[str]) -> Config:
    """``cfg`` with ``method``'s optimizer, model changes and ``--method-set`` values."""
    model_method = MODEL_METHODS.get(method)
    optimizer = model_method.optimizer if model_method else method
    model_overrides = model_method.model_overrides if model_method else ()
    raw = apply_overrides(cfg.to_dict(), [f"optim.name={optimizer}", *model_overrides, *overrides])
    try:
        return config_from_dict(raw)
    except ConfigError as err:
        where = f"--method-set {method}" if overrides else f"method {method}"
        raise ConfigError(f"{where}: {err}") from None


def plan_runs(
    cfg: Config, methods: Sequence[str], seeds: Sequence[int], out_dir: Path,
    split_file: str | None, method_overrides: Mapping[str, Sequence[str]] | None = None,
) -> list[RunSpec]:
    """One :class:`RunSpec` per seed x method, seed-major (all methods of seed 0 first).

    A method of :data:`~medseg.compare.spec.MODEL_METHODS` trains its optimizer on the
    model with its ``model.*`` changes (``adam+bgn``: Adam, ``model.bgn = true``); every
    other method keeps the shared ``model`` section. Every run's config is built by
    :func:`~medseg.config.config_from_dict`, so it is validated as a config file is.

    Raises:
        ConfigError: when a method's ``optim.*`` overrides give an invalid value, or a run's
            config is invalid (a seed out of range), naming the method or the run.
    """
    method_overrides = method_overrides or {}
    configs = {m: _method_config(cfg, m, method_overrides.get(m, ())) for m in methods}
    return [RunSpec(method, seed, _run_config(configs[method], method, seed, out_dir, split_file))
            for seed in seeds for method in methods]


def _run_config(method_cfg: Config, method: str, seed: int, out_dir: Path, split_file: str | None) -> Config:
    """``method_cfg`` for one seed: its seed, the shared split, its own run folder; validated."""
    raw = method_cfg.to_dict()
    raw["seed"] = seed
    raw["data"]["split_file"] = split_file
    raw["output"].update(run_name=f"{method}-seed{seed}", dir=str(out_dir / "runs" / method / f"seed{seed}"))
    try:
        return config_from_dict(raw)
    except ConfigError as err:
        raise ConfigError(f"{method} seed {seed}: {err}") from None


def first_difference(a: Any, b: Any, where: str = "") -> str | None:
    """The first setting where two config dicts differ, as ``"key.path: a != b"``; None when
    they are equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = first_difference(a.get(key), b.get(key), f"{where}.{key}" if where else key)
            if found:
                return found
        return None
    return None if a == b else f"{where}: {a!r} != {b!r}"


def _with_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """A recorded config with the settings added since it was written at their defaults (as
    is, when it no longer validates)."""
    try:
        return config_from_dict(raw).to_dict()
    except ConfigError:
        return raw


def run_state(spec: RunSpec) -> RunState:
    """``"done"``, ``"resume"`` or ``"new"`` for a planned run.

    Raises:
        MedsegError: when the run directory holds a run of a different config, an unreadable
            run record, or training files that this comparison did not start.
    """
    run_dir, run = spec.run_dir, spec.folder
    has_metrics = run.metrics_file.exists()
    has_checkpoint = run.last_checkpoint.exists()
    has_record = run.compare_record.exists()
    if has_record:
        recorded = _with_defaults(read_record(run_dir)["config"])
        difference = first_difference(recorded, spec.cfg.to_dict())
        if difference:
            raise MedsegError(
                f"{run_dir}: holds a run with a different config ({difference}); "
                "use another --out or remove that run directory"
            )
    elif has_metrics or has_checkpoint:
        raise MedsegError(
            f"{run_dir}: holds training files not written by this comparison; "
            "use another --out or remove that run directory"
        )
    if has_metrics or (has_record and read_record(run_dir).get("diverged")):
        return "done"  # a diverged run is finished: rerunning it would diverge again
    return "resume" if has_checkpoint else "new"
