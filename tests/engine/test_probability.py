"""Probability models: ensembles average probabilities, mirroring averages flipped passes
flipped back, and both compose with predict_probabilities."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medseg.engine.inference import predict_probabilities
from medseg.engine.probability import Ensemble, Mirrored, Sigmoid, probability_model
from medseg.tasks import CLASSIFICATION, SEGMENTATION


class Ramp(nn.Module):
    """A 'segmenter' whose logit at (h, w) is scale * (image mean + w + 2h): no symmetry, so a
    missing or wrong flip-back changes the output."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        grid = torch.arange(width).view(1, width) + 2 * torch.arange(height).view(height, 1)
        return self.scale * (images.mean(1, keepdim=True) + grid)


class Score(nn.Module):
    """A 'classifier': one logit per image, the mean of its left half minus its right half."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        half = images.shape[-1] // 2
        return (images[..., :half].mean((1, 2, 3)) - images[..., half:].mean((1, 2, 3)))[:, None]


def _images() -> torch.Tensor:
    return torch.randn(2, 3, 4, 6, generator=torch.Generator().manual_seed(0))


def test_an_ensemble_gives_the_mean_of_its_members_probabilities() -> None:
    images = _images()
    networks = [Ramp(0.3), Ramp(-0.1), Ramp(0.05)]
    expected = sum(torch.sigmoid(network(images)) for network in networks) / 3
    got = Ensemble([Sigmoid(network) for network in networks])(images)
    torch.testing.assert_close(got, expected)
    # the mean of probabilities, not the sigmoid of the mean logit
    assert not torch.allclose(got, torch.sigmoid(sum(network(images) for network in networks) / 3))


def test_flip_tta_is_the_mean_over_flipped_inputs_flipped_back() -> None:
    images, network = _images(), Ramp(0.2)
    expected = (torch.sigmoid(network(images)) + torch.sigmoid(network(images.flip(-1))).flip(-1)) / 2
    torch.testing.assert_close(Mirrored(Sigmoid(network), SEGMENTATION.tta_flips)(images), expected)


def test_every_mirroring_of_a_classifier_is_averaged_without_flipping_its_scores() -> None:
    images, network = _images(), Score()
    passes = [images, images.flip(-1), images.flip(-2), images.flip((-2, -1))]
    expected = sum(torch.sigmoid(network(x)) for x in passes) / 4
    torch.testing.assert_close(Mirrored(Sigmoid(network), CLASSIFICATION.tta_flips)(images), expected)


def test_ensembles_and_tta_compose_through_predict_probabilities() -> None:
    images, networks = _images(), [Ramp(0.3), Ramp(-0.2)]
    model = probability_model(networks, tta="flip", flips=SEGMENTATION.tta_flips)
    expected = sum(
        torch.sigmoid(n(images)) + torch.sigmoid(n(images.flip(-1))).flip(-1) for n in networks) / 4
    torch.testing.assert_close(predict_probabilities(model, images, batch_size=1), expected)


def test_one_network_without_tta_is_predicted_as_before() -> None:
    images, network = _images(), Ramp(0.3)
    model = probability_model([network])
    torch.testing.assert_close(predict_probabilities(model, images), predict_probabilities(network, images))
    assert isinstance(model, Sigmoid)


@pytest.mark.parametrize("flips", [(), ((), ()), ((-3,),), ((0,),)])
def test_mirroring_refuses_bad_passes(flips) -> None:
    with pytest.raises(ValueError):
        Mirrored(Sigmoid(Ramp(1.0)), flips)


def test_probability_model_refuses_no_network_and_unknown_tta() -> None:
    with pytest.raises(ValueError, match="at least one"):
        probability_model([])
    with pytest.raises(ValueError, match="tta"):
        probability_model([Ramp(1.0)], tta="rotate")
