"""Optimizer wrappers that transform the gradients in place, then step an inner optimizer.

In the spirit of timm's ``Lookahead``: a wrapper is a :class:`torch.optim.Optimizer` that
shares the inner optimizer's ``param_groups``, ``state`` and ``defaults``, so LR schedulers,
``torch.amp.GradScaler`` (which unscales the gradients before ``step`` and skips steps with
inf/NaN gradients) and checkpoints treat it as the inner optimizer.

Example:
    >>> opt = ZNorm(torch.optim.Adam(model.parameters(), lr=1e-3))
    >>> loss.backward()
    >>> opt.step()          # gradients z-scored, then Adam's step
    >>> opt.zero_grad()
"""

from __future__ import annotations

import math
import textwrap
from abc import ABCMeta, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from timm.utils.agc import adaptive_clip_grad
from torch import Tensor
from torch.optim import Optimizer

from medseg.optim.functional import blocknorm_, centralize_, znorm_
from medseg.optim.settings import ZNORM_DEFAULTS, Granularity, check_znorm_settings


class GradientTransform(Optimizer, metaclass=ABCMeta):
    """Base wrapper: ``step`` transforms the gradients of the parameters that have one
    (:meth:`transform_gradients_`), then steps the inner optimizer. Wrappers nest; the
    outer one transforms first.

    Args:
        optimizer: any :class:`torch.optim.Optimizer`.

    Raises:
        TypeError: ``optimizer`` is not a torch optimizer.
    """

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"{type(self).__name__} wraps a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        # Optimizer.__init__ is not called (as in timm's Lookahead): param_groups, state and
        # defaults are the inner optimizer's, read through the properties below.
        self.optimizer = optimizer
        self._optimizer_step_pre_hooks: dict[int, Callable] = OrderedDict()
        self._optimizer_step_post_hooks: dict[int, Callable] = OrderedDict()
        self._patch_step_function()  # step hooks and profiler labels, as torch optimizers have

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self.optimizer.param_groups

    @property
    def state(self) -> dict[Tensor, Any]:  # type: ignore[override]
        return self.optimizer.state

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        return self.optimizer.defaults

    @property
    def settings(self) -> dict[str, Any]:
        """The wrapper's own hyper-parameters (shown by ``repr``)."""
        return {}

    @abstractmethod
    def transform_gradients_(self, params: list[Tensor]) -> None:
        """Transform ``p.grad`` of each of ``params`` (all have a gradient) in place."""

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Re-evaluate ``closure`` (if given, with grad enabled), transform the gradients and
        step the inner optimizer. Returns the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        self.transform_gradients_(params)
        self.optimizer.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self.optimizer.add_param_group(param_group)

    def state_dict(self) -> dict[str, Any]:
        """The inner optimizer's state dict (the wrapper's settings are constructor arguments)."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state_dict)

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__.copy()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={value!r}" for key, value in self.settings.items())
        return f"{type(self).__name__}({settings}) over\n" + textwrap.indent(
            repr(self.optimizer), "  "
        )


class ZNorm(GradientTransform):
    """ZNorm (Yun 2024): each layer's gradient becomes its z-score before the inner step.

    Args:
        optimizer: the inner optimizer (Adam in the paper).
        granularity: ``"tensor"`` (one mean/std per gradient tensor) or ``"channel"`` (per
            output channel); see :func:`medseg.optim.znorm_`.
        eps: added to the std.
        min_ndim: gradients with fewer dims (biases, norm layers) are passed through unchanged.

    Raises:
        TypeError: ``optimizer`` is not a torch optimizer.
        ValueError: an invalid setting.

    Example:
        >>> opt = ZNorm(torch.optim.Adam(model.parameters(), lr=1e-3), granularity="tensor")
    """

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        granularity: Granularity = ZNORM_DEFAULTS.granularity,
        eps: float = ZNORM_DEFAULTS.eps,
        min_ndim: int = ZNORM_DEFAULTS.min_ndim,
    ) -> None:
        check_znorm_settings(granularity, eps, min_ndim)
        super().__init__(optimizer)
        self.granularity = granularity
        self.eps = eps
        self.min_ndim = min_ndim

    @property
    def settings(self) -> dict[str, Any]:
        return {"granularity": self.granularity, "eps": self.eps, "min_ndim": self.min_ndim}

    def transform_gradients_(self, params: list[Tensor]) -> None:
        znorm_(
            [p.grad for p in params if p.grad is not None],
            granularity=self.granularity,
            eps=self.eps,
            min_ndim=self.min_ndim,
        )


class GradCentralization(GradientTransform):
    """Gradient Centralization (Yong et al. 2020) before the inner step.

    Args:
        optimizer: the inner optimizer.
        conv_only: centralize only conv kernels (``ndim > 3``) instead of every ``ndim > 1``
            gradient.

    Raises:
        TypeError: ``optimizer`` is not a torch optimizer.

    Example:
        >>> opt = GradCentralization(torch.optim.Adam(model.parameters(), lr=1e-3))
    """

    def __init__(self, optimizer: Optimizer, *, conv_only: bool = False) -> None:
        super().__init__(optimizer)
        self.conv_only = conv_only

    @property
    def settings(self) -> dict[str, Any]:
        return {"conv_only": self.conv_only}

    def transform_gradients_(self, params: list[Tensor]) -> None:
        centralize_([p.grad for p in params if p.grad is not None], conv_only=self.conv_only)


class ClipGradNorm(GradientTransform):
    """Clip the global gradient norm of the wrapped parameters to ``max_norm`` before the step
    (``torch.nn.utils.clip_grad_norm_``, multi-tensor where the device supports it).

    Args:
        optimizer: the inner optimizer.
        max_norm: the largest global L2 norm let through.

    Raises:
        TypeError: ``optimizer`` is not a torch optimizer.
        ValueError: ``max_norm`` is not a positive finite number.

    Example:
        >>> opt = ClipGradNorm(torch.optim.Adam(model.parameters(), lr=1e-3), max_norm=1.0)
    """

    def __init__(self, optimizer: Optimizer, *, max_norm: float = 1.0) -> None:
        if not _positive_finite(max_norm):
            raise ValueError(f"max_norm must be a positive finite number, got {max_norm!r}")
        super().__init__(optimizer)
        self.max_norm = max_norm

    @property
    def settings(self) -> dict[str, Any]:
        return {"max_norm": self.max_norm}

    def transform_gradients_(self, params: list[Tensor]) -> None:
        torch.nn.utils.clip_grad_norm_(params, self.max_norm)


class BlockNorm(GradientTransform):
    """Block-normalized gradients before the inner step: each gradient with ``ndim >=
    min_ndim`` is divided by its L2 norm plus ``eps`` (:func:`medseg.optim.blocknorm_`).

    Under Adam this is tensor-level ZNorm without the centring (see docs/znorm.md).

    Args:
        optimizer: the inner optimizer.
        eps: added to the norm.
        min_ndim: gradients with fewer dims (biases, norm layers) are passed through unchanged.

    Raises:
        TypeError: ``optimizer`` is not a torch optimizer.
        ValueError: an invalid setting.

    Example:
        >>> opt = BlockNorm(torch.optim.Adam(model.parameters(), lr=1e-3))
    """

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        eps: float = ZNORM_DEFAULTS.eps,
        min_ndim: int = ZNORM_DEFAULTS.min_ndim,
    ) -> None:
        check_znorm_settings("tensor", eps, min_ndim)
        super().__init__(optimizer)
        self.eps = eps
        self.min_ndim = min_ndim

    @property
    def settings(self) -> dict[str, Any]:
        return {"eps": self.eps, "min_ndim": self.min_ndim}

    def transform_gradients_(self, params: list[Tensor]) -> None:
        blocknorm_([p.grad for p in params if p.grad is not None], eps=self.eps,
                   min_ndim=self.min_ndim)


class AdaptiveGradClip(GradientTransform):
    """Adaptive gradient clipping (AGC; Brock et al. 2021, arXiv:2102.06171) before the step.

    Per unit (output row of a weight, a whole bias or norm parameter): a gradient whose norm
    exceeds ``clip_factor · max(||w||, eps)`` is scaled down to that norm
    (``timm.utils.agc.adaptive_clip_grad``, applied to every parameter).

    Args:
        optimizer: the inner optimizer.
        clip_factor: the largest ratio of gradient norm to weight norm let through.
        eps: the smallest weight norm used, so zero-initialized weights can move.

    Raises:
        TypeError: ``optimizer`` is not a torch optimizer.
        ValueError: ``clip_factor`` or ``eps`` is not a positive finite number.

    Example:
        >>> opt = AdaptiveGradClip(torch.optim.Adam(model.parameters(), lr=1e-3))
    """

    def __init__(
        self, optimizer: Optimizer, *, clip_factor: float = 0.01, eps: float = 1e-3
    ) -> None:
        for name, value in (("clip_factor", clip_factor), ("eps", eps)):
            if not _positive_finite(value):
                raise ValueError(f"AGC {name} must be a positive finite number, got {value!r}")
        super().__init__(optimizer)
        self.clip_factor = clip_factor
        self.eps = eps

    @property
    def settings(self) -> dict[str, Any]:
        return {"clip_factor": self.clip_factor, "eps": self.eps}

    def transform_gradients_(self, params: list[Tensor]) -> None:
        adaptive_clip_grad(params, clip_factor=self.clip_factor, eps=self.eps)


def _positive_finite(value: Any) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and 0 < value < math.inf
