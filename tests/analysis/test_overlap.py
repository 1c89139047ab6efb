"""The gradient-overlap probe: hand-computed parts on a one-pixel block, an independent autograd
computation on a two-block net, and the probe leaving the model's computation untouched."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torchvision.models import resnet18, resnet50
from torchvision.models.resnet import BasicBlock

from medseg.analysis import RESIDUAL_SPLITS, OverlapProbe
from medseg.models import add_backward_grad_norm
from medseg.models.bgn import node_targets
from medseg.models.deep_resnet import ResidualBlock


@pytest.fixture(autouse=True)
def one_thread():
    from tests.support import one_thread

    with one_thread():
        yield


def one_pixel_block(w1: float, w2: float) -> ResidualBlock:
    """A width-1 deep-ResNet block on 1x1 images: y = relu(x + w2 relu(w1 x))."""
    block = ResidualBlock(1)
    for conv, weight in ((block.conv1, w1), (block.conv2, w2)):
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
        conv.weight.data[0, 0, 1, 1] = weight  # the only tap that sees a 1x1 image
    return block


def test_parts_by_hand_on_a_one_pixel_block():
    block = one_pixel_block(w1=2.0, w2=-0.25)
    x = torch.tensor([1.0, 2.0]).view(2, 1, 1, 1).requires_grad_()
    with OverlapProbe(block) as probe:
        y = block(x)
        y.sum().backward()
    # y = relu(x - 0.5 x) = 0.5 x > 0: the gradient at the sum is 1 per sample;
    # skip part 1, branch part w2 * w1 = -0.5, total 0.5
    assert y.flatten().tolist() == [0.5, 1.0]
    assert x.grad.flatten().tolist() == [0.5, 0.5]
    (row,) = probe.rows()
    assert row["block"] == ""  # the model itself
    assert row["skip_norm"] == pytest.approx(math.sqrt(2))
    assert row["branch_norm"] == pytest.approx(0.5 * math.sqrt(2))
    assert row["total_norm"] == pytest.approx(0.5 * math.sqrt(2))
    assert row["cosine"] == pytest.approx(-1.0)


def test_a_dead_branch_has_no_cosine():
    block = one_pixel_block(w1=-1.0, w2=3.0)  # relu(w1 x) = 0 for x > 0
    x = torch.tensor([1.0, 2.0]).view(2, 1, 1, 1).requires_grad_()
    with OverlapProbe(block) as probe:
        block(x).sum().backward()
    (row,) = probe.rows()
    assert row["branch_norm"] == 0.0 and row["skip_norm"] == pytest.approx(math.sqrt(2))
    assert math.isnan(row["cosine"])


class TwoBlockNet(nn.Module):
    """stem -> torchvision BasicBlock with a downsampling skip -> deep-ResNet block -> head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        downsample = nn.Sequential(nn.Conv2d(4, 8, 1, stride=2, bias=False), nn.BatchNorm2d(8))
        self.block1 = BasicBlock(4, 8, stride=2, downsample=downsample)
        self.block2 = ResidualBlock(8)
        self.head = nn.Linear(8 * 3 * 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block2(self.block1(self.stem(x))).flatten(1))


def _loss(out: torch.Tensor) -> torch.Tensor:
    return (out - 1.0).square().mean()


def test_parts_match_an_independent_autograd_computation_on_two_blocks():
    net = TwoBlockNet()
    x = torch.randn(3, 2, 6, 6, generator=torch.Generator().manual_seed(1))

    # independent: the real forward, gradients at each block's input and output
    reference = copy.deepcopy(net)
    h0 = reference.stem(x)
    h1 = reference.block1(h0)
    h2 = reference.block2(h1)
    g0, g1, g2 = torch.autograd.grad(_loss(reference.head(h2.flatten(1))), [h0, h1, h2])
    # the gradient at each block's sum: through its final relu
    gz1, gz2 = g1 * (h1 > 0), g2 * (h2 > 0)
    skip2 = gz2  # identity skip
    (skip1,) = torch.autograd.grad(reference.block1.downsample(h0), h0, gz1)
    branch1, branch2 = g0 - skip1, g1 - skip2

    with OverlapProbe(net) as probe:
        _loss(net(x)).backward()
    rows = probe.rows()
    assert [row["block"] for row in rows] == ["block1", "block2"]
    for row, total, skip, branch in ((rows[0], g0, skip1, branch1), (rows[1], g1, skip2, branch2)):
        # the block's whole gradient at its input is the sum of the two parts
        assert row["total_norm"] == pytest.approx(torch.linalg.vector_norm(total).item(), rel=1e-6)
        assert row["skip_norm"] == pytest.approx(torch.linalg.vector_norm(skip).item(), rel=1e-6)
        assert row["branch_norm"] == pytest.approx(torch.linalg.vector_norm(branch).item(), rel=1e-5)
        cosine = nn.functional.cosine_similarity(skip.flatten(), branch.flatten(), dim=0).item()
        assert row["cosine"] == pytest.approx(cosine, abs=1e-5)
        # ||s + b||^2 = ||s||^2 + ||b||^2 + 2 cos ||s|| ||b||
        s, b = row["skip_norm"], row["branch_norm"]
        assert row["total_norm"] ** 2 == pytest.approx(s**2 + b**2 + 2 * row["cosine"] * s * b)
    assert not any(math.isclose(row["skip_norm"], row["branch_norm"]) for row in rows)


def _forward_backward(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad()
    out = model(x)
    out.square().mean().backward()
    return out.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("make", [resnet18, resnet50, TwoBlockNet], ids=["basic", "bottleneck", "mixed"])
def test_the_probe_changes_neither_outputs_nor_gradients(make):
    torch.manual_seed(0)
    model = make() if make is TwoBlockNet else make(num_classes=3)
    x = torch.randn(2, *((2, 6, 6) if make is TwoBlockNet else (3, 32, 32)))
    out, grads = _forward_backward(model, x)
    with OverlapProbe(model) as probe:
        probed_out, probed_grads = _forward_backward(model, x)
    assert torch.equal(out, probed_out)
    for a, b in zip(grads, probed_grads, strict=True):
        assert torch.equal(a, b)
    blocks = [name for name, module in model.named_modules() if type(module) in RESIDUAL_SPLITS]
    assert [row["block"] for row in probe.rows()] == blocks
    assert all(row["total_norm"] > 0 for row in probe.rows())


def test_exit_restores_the_blocks_and_later_passes_are_not_recorded():
    model = TwoBlockNet()
    x = torch.randn(2, 2, 6, 6)
    with OverlapProbe(model) as probe:
        assert "forward" in vars(model.block1)
        _forward_backward(model, x)
    assert "forward" not in vars(model.block1) and "forward" not in vars(model.block2)
    _forward_backward(model, x)
    assert len(probe.rows()) == 2


def test_blocks_run_without_grad_are_not_recorded():
    model = TwoBlockNet()
    with OverlapProbe(model) as probe, torch.no_grad():
        out = model(torch.randn(2, 2, 6, 6))
    assert out.shape == (2, 1) and probe.rows() == []


def _rows_for_loss_scale(model: nn.Module, x: torch.Tensor, scale: float) -> list[dict]:
    with OverlapProbe(model) as probe:
        (scale * model(x).sum()).backward()
    return probe.rows()


def test_with_bgn_nodes_the_probe_sees_normalized_gradients():
    torch.manual_seed(0)
    model = resnet18(num_classes=1)
    x = torch.randn(2, 3, 32, 32)
    plain = [_rows_for_loss_scale(model, x, scale) for scale in (1.0, 1000.0)]
    add_backward_grad_norm(model)
    normalized = [_rows_for_loss_scale(model, x, scale) for scale in (1.0, 1000.0)]
    # without nodes the parts scale with the loss; after a node they do not
    assert plain[1][-1]["total_norm"] == pytest.approx(1000 * plain[0][-1]["total_norm"], rel=1e-4)
    for small, large in zip(*normalized, strict=True):
        assert large["skip_norm"] == pytest.approx(small["skip_norm"], rel=1e-4)
        assert large["branch_norm"] == pytest.approx(small["branch_norm"], rel=1e-4)
    # layer4.1: identity skip, so its skip part is the node's unit-RMS gradient (2 x 512
    # values at 1x1) masked by the final relu: at most sqrt(1024)
    assert 0 < normalized[0][-1]["skip_norm"] <= 32.0 + 1e-4


def test_the_probe_knows_every_block_type_bgn_follows():
    model = resnet18()
    probed = {type(module) for _, module in node_targets(model)}
    assert probed <= set(RESIDUAL_SPLITS)
    assert set(RESIDUAL_SPLITS) == {BasicBlock, type(resnet50().layer1[0]), ResidualBlock}
