"""Plan a comparison: check the methods, seeds and per-method settings, lay out every run,
and tell which runs are finished, interrupted or new.

Each run has ``cfg.optim.name = method`` (plus that method's ``--method-set`` values),
``cfg.seed = k``, its own ``output.dir`` (``out_dir/runs/<method>/seed<k>``) and the shared
``data.split_file``; nothing else changes between runs, except for the methods of
:data:`~medseg.compare.spec.MODEL_METHODS` (``adam+bgn``: ``optim.name = adam`` and
``model.bgn = true``). Nothing here trains or writes.

Example:
    >>> methods, seeds = check_methods(["adam", "adam+znorm"]), check_seeds([0, 1, 2])
    >>> specs = plan_runs(cfg, methods, seeds, out_dir, split_file)     # doctest: +SKIP
    >>> [run_state(spec) for spec in specs]                              # doctest: +SKIP
    ['done', 'resume', 'new', ...]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from medseg.compare.spec import MODEL_METHODS, RunSpec, read_record
from medseg.config import Config, apply_overrides, config_from_dict
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
    for method in methods:
        if method not in METHOD_NAMES:
            raise ConfigError(
                f"--methods: unknown optimizer {method!r}; choose from {', '.join(METHOD_NAMES)}"
            )
    duplicates = sorted({m for m in methods if methods.count(m) > 1})
    if duplicates:
        raise ConfigError(f"--methods: {duplicates[0]!r} is listed twice")
    return methods


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """Validate the seed list (non-empty, non-negative, no duplicates).

    Raises:
        ConfigError: naming the offending seed.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ConfigError("--seeds: give at least one seed")
    for seed in seeds:
        if seed < 0:
            raise ConfigError(f"--seeds: seed {seed} is negative")
        if seeds.count(seed) > 1:
            raise ConfigError(f"--seed-list: seed {seed} is listed twice")
    return seeds


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
    other method keeps the shared ``model`` section.

    Raises:
        ConfigError: when a method's ``optim.*`` overrides give an invalid value.
    """
    method_overrides = method_overrides or {}
    configs = {m: _method_config(cfg, m, method_overrides.get(m, ())) for m in methods}
    specs = []
    for seed in seeds:
        for method in methods:
            run_cfg = dataclasses.replace(
                cfg,
                seed=seed,
                data=dataclasses.replace(cfg.data, split_file=split_file),
                model=configs[method].model,
                optim=configs[method].optim,
                output=dataclasses.replace(
                    cfg.output,
                    run_name=f"{method}-seed{seed}",
                    dir=str(out_dir / "runs" / method / f"seed{seed}"),
                ),
            )
            specs.append(RunSpec(method, seed, run_cfg))
    return specs


def _first_difference(a: Any, b: Any, where: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_difference(a.get(key), b.get(key), f"{where}.{key}" if where else key)
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
        difference = _first_difference(recorded, spec.cfg.to_dict())
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
