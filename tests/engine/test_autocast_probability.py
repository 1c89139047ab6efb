"""Autocast: a probability model whose forward runs in bf16 (or fp16), float32 out."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from medseg.engine.inference import predict_probabilities
from medseg.engine.probability import Autocast, Mirrored, Sigmoid


class Recording(nn.Module):
    """A 3x3 convolution that records the dtype of its output and the layout of its input."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 1, 3, padding=1)
        self.seen: list[tuple[torch.dtype, bool]] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.conv(images)
        self.seen.append((logits.dtype, images.is_contiguous(memory_format=torch.channels_last)))
        return logits


def images() -> torch.Tensor:
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("channels_last", [False, True])
def test_the_forward_runs_in_bf16_and_probabilities_come_out_float32(channels_last):
    network = Recording()
    model = Autocast(Sigmoid(network), torch.bfloat16, channels_last=channels_last)
    probs = model(images())
    assert network.seen == [(torch.bfloat16, channels_last)]
    assert network.conv.weight.is_contiguous(memory_format=torch.channels_last) is channels_last
    assert probs.dtype is torch.float32 and probs.shape == (2, 1, 8, 8)
    exact = torch.sigmoid(network.conv(images()))
    # bf16 keeps 8 bits of mantissa: logits within ~1%, so sigmoid within 0.01
    assert 0 < (probs - exact).abs().max().item() < 0.01


def test_a_network_is_wrapped_in_sigmoid_and_the_wrapper_composes():
    network = Recording()
    mirrored = Mirrored(Autocast(network), flips=((), (-1,)))
    batch = images()
    probs = predict_probabilities(mirrored, batch, batch_size=1)
    exact = (torch.sigmoid(network.conv(batch)) + torch.sigmoid(network.conv(batch.flip(-1))).flip(-1)) / 2
    assert probs.dtype is torch.float32
    torch.testing.assert_close(probs, exact, atol=0.01, rtol=0)
    assert {dtype for dtype, _ in network.seen} == {torch.bfloat16}


def test_only_low_precision_dtypes_are_accepted():
    with pytest.raises(ValueError, match=re.escape("torch.bfloat16 or torch.float16, got torch.float32")):
        Autocast(Recording(), torch.float32)
