"""Per-parameter gradient statistics for logging (train's ``log_grad_stats``, gradient-flow plots).

Example:
    >>> loss.backward()
    >>> gradient_stats(model.named_parameters())["encoder.conv1.weight"]
    {'norm': 0.83, 'mean': -1.2e-05, 'std': 0.0041}
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import torch
from torch import Tensor


def gradient_stats(named_parameters: Iterable[tuple[str, Tensor]]) -> dict[str, dict[str, float]]:
    """The L2 ``norm``, ``mean`` and population ``std`` of each parameter's gradient.

    Parameters without a gradient are skipped. Per device and dtype: one multi-tensor norm
    pass, one mean pass and a single transfer of the results to the host; the std follows
    from the two (``sqrt(norm**2 / n - mean**2)``, in float64). fp16/bf16 gradients are
    reduced in fp32.

    Args:
        named_parameters: ``(name, parameter)`` pairs, e.g. ``model.named_parameters()``.

    Returns:
        ``{name: {"norm": ..., "mean": ..., "std": ...}}`` in the order given.
    """
    named = [(name, p.grad) for name, p in named_parameters if p.grad is not None]
    groups: dict[tuple[torch.device, torch.dtype], list[tuple[str, Tensor]]] = defaultdict(list)
    for name, grad in named:
        groups[(grad.device, grad.dtype)].append((name, grad))
    stats: dict[str, dict[str, float]] = {}
    for items in groups.values():
        grads = [grad for _, grad in items]
        reduce_dtype = torch.promote_types(grads[0].dtype, torch.float32)
        norms = torch.stack(torch._foreach_norm(grads, 2, dtype=reduce_dtype))
        means = torch.stack([grad.mean(dtype=reduce_dtype) for grad in grads])
        norms, means = torch.stack([norms, means]).to("cpu", torch.float64)
        counts = torch.tensor([grad.numel() for grad in grads], dtype=torch.float64)
        stds = (norms.square() / counts - means.square()).clamp_min(0).sqrt()
        for (name, _), norm, mean, std in zip(
            items, norms.tolist(), means.tolist(), stds.tolist(), strict=True
        ):
            stats[name] = {"norm": norm, "mean": mean, "std": std}
    return {name: stats[name] for name, _ in named}
