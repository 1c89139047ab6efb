"""``build_optimizer``: one name and one set of hyper-parameters for every method of a comparison.

Example:
    >>> opt = build_optimizer("adam+znorm", model.parameters(), lr=1e-3, momentum=0.9)
    >>> opt                                     # momentum does not apply to Adam: ignored
    ZNorm(granularity='tensor', eps=1e-08, min_ndim=2) over
      Adam (...)
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from timm.optim import Lamb
from torch import Tensor
from torch.optim import Optimizer

from medseg.optim.functional import is_dense_layout
from medseg.optim.wrappers import (
    AdaptiveGradClip,
    BlockNorm,
    ClipGradNorm,
    GradCentralization,
    GradientTransform,
    ZNorm,
)

OPTIMIZER_NAMES: tuple[str, ...] = (
    "adam",
    "adamw",
    "sgd",
    "adam+znorm",
    "znorm",
    "adamw+znorm",
    "sgd+znorm",
    "adam+gc",
    "adam+clip",
    "adam+agc",
    "adam+blocknorm",
    "lamb",
)
"""Every name :func:`build_optimizer` accepts ("znorm" is an alias of "adam+znorm")."""

OPTIMIZER_ALIASES: dict[str, str] = {"znorm": "adam+znorm"}

HPARAM_KEYS: tuple[str, ...] = (
    "lr",
    "weight_decay",
    "momentum",
    "betas",
    "granularity",
    "eps",
    "min_ndim",
    "max_norm",
    "conv_only",
    "clip_factor",
)

_BASE_KEYS: dict[str, tuple[str, ...]] = {
    "adam": ("lr", "weight_decay", "betas"),
    "adamw": ("lr", "weight_decay", "betas"),
    "sgd": ("lr", "weight_decay", "momentum"),
    "lamb": ("lr",),  # timm's defaults otherwise (weight_decay 0.01, betas, eps 1e-6, ...)
}
_BASE_CLASSES: dict[str, type[Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "lamb": Lamb,
}
# Devices whose parameters Adam and AdamW update with torch's fused kernel: on the CPU it was
# measured 3x faster than ``foreach``; on CUDA it is torch's fastest Adam.
_FUSED_DEVICE_TYPES: tuple[str, ...] = ("cpu", "cuda")
_WRAPPERS: dict[str, tuple[type[GradientTransform], tuple[str, ...]]] = {
    "znorm": (ZNorm, ("granularity", "eps", "min_ndim")),
    "gc": (GradCentralization, ("conv_only",)),
    "clip": (ClipGradNorm, ("max_norm",)),
    "agc": (AdaptiveGradClip, ("clip_factor",)),
    "blocknorm": (BlockNorm, ("eps", "min_ndim")),
}


def build_optimizer(
    name: str, params: Iterable[Tensor] | Iterable[dict[str, Any]], **hparams: Any
) -> Optimizer:
    """Build ``name``'s optimizer over ``params``.

    Adam and AdamW run their fused implementation (one pass over each tensor per step: about
    3x faster than ``foreach`` on a 2-core CPU, see docs/benchmarks.md) when every parameter
    is one it updates correctly (:func:`fused_adam_can_update`), else ``foreach`` for the whole
    optimizer; SGD runs ``foreach``; ``lamb`` is
    ``timm.optim.Lamb`` with timm's defaults but ``lr``. A ``+znorm``, ``+gc``, ``+clip``,
    ``+agc`` or ``+blocknorm`` suffix wraps the base optimizer in :class:`ZNorm`,
    :class:`GradCentralization`, :class:`ClipGradNorm`, :class:`AdaptiveGradClip` or
    :class:`BlockNorm`.

    Weight decay applies to weights only (timm's convention): in every param group whose
    weight decay is non-zero, the parameters with ``ndim <= 1`` (biases, normalization
    scales and shifts) move to a group of their own with ``weight_decay`` 0.

    Args:
        name: one of :data:`OPTIMIZER_NAMES`.
        params: parameters, or param-group dicts, as for any torch optimizer.
        **hparams: any of :data:`HPARAM_KEYS`. A key that does not apply to ``name`` is
            ignored (``momentum`` for Adam, ``granularity`` without ZNorm...), so one config
            serves every method of a comparison; torch's defaults fill the keys not given.
            ``eps`` and ``min_ndim`` are ZNorm's and block normalization's (Adam keeps its
            own eps 1e-8); ``clip_factor`` is AGC's (its eps is 1e-3).

    Raises:
        ValueError: an unknown name or hyper-parameter key, an invalid value, or no parameters.
        TypeError: ``params`` is not an iterable of tensors or param-group dicts.

    Example:
        >>> opt = build_optimizer("sgd+znorm", model.parameters(), lr=0.1, momentum=0.9)
    """
    method = OPTIMIZER_ALIASES.get(name, name)
    if method not in OPTIMIZER_NAMES:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZER_NAMES)}")
    unknown = sorted(set(hparams) - set(HPARAM_KEYS))
    if unknown:
        raise ValueError(
            f"unknown optimizer option {unknown[0]!r}; valid options: {', '.join(HPARAM_KEYS)}"
        )
    base, _, transform = method.partition("+")
    kwargs = _pick(hparams, _BASE_KEYS[base])
    groups = _decay_weights_only(_param_groups(params), _default_weight_decay(base, kwargs))
    optimizer = _build_base(base, groups, kwargs)
    if not transform:
        return optimizer
    wrapper, keys = _WRAPPERS[transform]
    return wrapper(optimizer, **_pick(hparams, keys))


def _pick(hparams: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: hparams[key] for key in keys if key in hparams}


def _build_base(base: str, groups: list[dict[str, Any]], kwargs: dict[str, Any]) -> Optimizer:
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    if base == "lamb":
        return Lamb(groups, **kwargs)
    if base == "sgd":
        return torch.optim.SGD(groups, foreach=True, **kwargs)
    tensors = [p for group in groups for p in group["params"]]
    if all(fused_adam_can_update(p) for p in tensors):
        kwargs["fused"] = True
    else:
        kwargs["foreach"] = True
    return _BASE_CLASSES[base](groups, **kwargs)


def fused_adam_can_update(p: Tensor) -> bool:
    """Whether torch's fused Adam/AdamW updates ``p`` correctly: a floating-point CPU or CUDA
    tensor whose elements fill a dense block of memory, in any order of the dims (contiguous,
    channels_last, transposed).

    On a view with gaps between its elements (``w[..., 0]`` of a (10, 5, 2) tensor, ``w[:, ::2]``)
    torch 2.14.1's fused kernel writes wrong updates: on the CPU the loss rises where foreach
    Adam's falls (tests/optim/test_fused_adam_layouts.py). Such a parameter sends the whole
    optimizer to ``foreach``; a model's own parameters are dense.
    """
    return (p.device.type in _FUSED_DEVICE_TYPES and p.is_floating_point()
            and is_dense_layout(p.shape, p.stride()))


def _default_weight_decay(base: str, kwargs: dict[str, Any]) -> float:
    """The weight decay a group without its own gets: the one given, else the class default."""
    if "weight_decay" in kwargs:
        return float(kwargs["weight_decay"])
    default = inspect.signature(_BASE_CLASSES[base]).parameters["weight_decay"].default
    return float(default)


def _decay_weights_only(groups: list[dict[str, Any]], default: float) -> list[dict[str, Any]]:
    """Split every decaying group into its ``ndim >= 2`` parameters (the group as given) and
    its ``ndim <= 1`` ones (the same settings with ``weight_decay`` 0); empty parts are dropped."""
    split = []
    for group in groups:
        if group.get("weight_decay", default) == 0:
            split.append(group)
            continue
        weights = [p for p in group["params"] if p.ndim >= 2]
        others = [p for p in group["params"] if p.ndim <= 1]
        split += [part for part in (
            {**group, "params": weights},
            {**group, "params": others, "weight_decay": 0.0},
        ) if part["params"]]
    return split


def _param_groups(params: Any) -> list[dict[str, Any]]:
    """``params`` as a list of param-group dicts whose ``params`` are lists of tensors."""
    if isinstance(params, (Tensor, str, bytes, Mapping)) or not isinstance(params, Iterable):
        raise TypeError(
            f"params must be an iterable of tensors or param-group dicts, got {type(params).__name__}"
        )
    items = list(params)
    if not items:
        raise ValueError("params is empty: there is nothing to optimize")
    if all(isinstance(item, Tensor) for item in items):
        return [{"params": items}]
    groups = []
    for item in items:
        if not isinstance(item, Mapping) or "params" not in item:
            raise TypeError(
                "params must be all tensors or all param-group dicts with a 'params' entry, "
                f"got a {type(item).__name__} among them"
            )
        group_params = item["params"]
        group_params = [group_params] if isinstance(group_params, Tensor) else list(group_params)
        for p in group_params:
            if not isinstance(p, Tensor):
                raise TypeError(f"a param group's 'params' must be tensors, got {type(p).__name__}")
        groups.append({**item, "params": group_params})
    return groups
