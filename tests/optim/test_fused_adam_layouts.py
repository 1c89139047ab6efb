"""The factory's Adam-based methods update every parameter layout as foreach Adam does.

torch 2.14's fused Adam writes wrong updates into a parameter whose elements do not fill a
dense block of memory (a strided view such as ``w[..., 0]``): on the CPU its loss rises where
foreach Adam's falls. Dense layouts in any order of the dims (contiguous, channels_last,
transposed) it updates correctly.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from medseg.optim import ZNorm, build_optimizer

STEPS = 50
LR, WEIGHT_DECAY = 1e-2, 1e-2

#: parameter layouts: name -> a function of a generator giving the parameter's tensor
LAYOUTS: dict[str, Callable[[torch.Generator], torch.Tensor]] = {
    # every other element of a (10, 5, 2) block: strides (10, 2), gaps between the elements
    "strided view": lambda g: torch.randn(10, 5, 2, generator=g)[..., 0],
    "every other element": lambda g: torch.randn(4, 12, generator=g)[:, ::2],
    "channels_last 4-D": lambda g: torch.randn(3, 4, 5, 6, generator=g).contiguous(
        memory_format=torch.channels_last),
    "transposed": lambda g: torch.randn(6, 5, generator=g).t(),
    "dense": lambda g: torch.randn(5, 6, generator=g),
}

#: the factory's method -> its reference with foreach Adam, same settings
REFERENCES: dict[str, Callable[[list[nn.Parameter]], torch.optim.Optimizer]] = {
    "adam": lambda ps: torch.optim.Adam(ps, lr=LR, weight_decay=WEIGHT_DECAY, foreach=True),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=LR, weight_decay=WEIGHT_DECAY, foreach=True),
    "adam+znorm": lambda ps: ZNorm(
        torch.optim.Adam(ps, lr=LR, weight_decay=WEIGHT_DECAY, foreach=True)),
}


def parameters(layouts: list[str]) -> list[nn.Parameter]:
    generator = torch.Generator().manual_seed(0)
    return [nn.Parameter(LAYOUTS[name](generator)) for name in layouts]


def train(params: list[nn.Parameter], optimizer: torch.optim.Optimizer) -> list[float]:
    """``STEPS`` steps on a loss whose gradient differs per element; the losses seen."""
    losses = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = sum(((p - 1.0) ** 2 * torch.arange(p.numel()).view(p.shape)).sum() for p in params)
        loss.backward()
        losses.append(loss.item())
        optimizer.step()
    return losses


@pytest.mark.parametrize("method", sorted(REFERENCES))
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_each_layout_is_updated_as_foreach_adam_updates_it(method, layout):
    # each layout beside a dense weight, as in a model: the optimizer sees both
    mine = parameters([layout, "dense"])
    reference = parameters([layout, "dense"])
    assert [p.stride() for p in mine] == [p.stride() for p in reference]
    losses = train(mine, build_optimizer(method, mine, lr=LR, weight_decay=WEIGHT_DECAY))
    expected = train(reference, REFERENCES[method](reference))
    assert losses[-1] < losses[0]
    for got, want in zip(mine, reference, strict=True):
        torch.testing.assert_close(got.detach(), want.detach(), atol=1e-5, rtol=0)
    assert losses == pytest.approx(expected, rel=1e-5)


def test_the_strided_view_goes_to_foreach_and_dense_layouts_stay_fused():
    dense = parameters(["dense", "channels_last 4-D", "transposed"])
    assert build_optimizer("adam", dense).defaults["fused"] is True
    mixed = parameters(["dense", "strided view"])
    opt = build_optimizer("adamw", mixed)
    assert opt.defaults["foreach"] is True and not opt.defaults.get("fused")
