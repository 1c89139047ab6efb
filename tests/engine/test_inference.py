"""The one predictor: probabilities at the slices' native size, and scoring a loader."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from medseg.engine import patch_probabilities, predict_probabilities, slice_probabilities
from medseg.engine.inference import score_loader
from medseg.engine.loaders import native_collate
from medseg.tasks import SEGMENTATION


class ConstantLogit(nn.Module):
    """A 'segmenter' (or classifier) whose every logit is log 3: sigmoid 0.75."""

    def __init__(self, classifier: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.weight * torch.zeros_like(x[:, :1]) + math.log(3.0)
        return out.mean(dim=(2, 3)) if self.classifier else out


class LeftHalf(nn.Module):
    """A segmenter marking the left half of its input (logit +10 left, -10 right)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        width = x.shape[-1]
        logits = torch.full_like(x[:, :1], -10.0)
        logits[..., : width // 2] = 10.0
        return self.weight * logits


def test_slice_probabilities_come_back_at_the_slice_size() -> None:
    images = np.zeros((2, 40, 50, 3), np.uint8)
    probs = slice_probabilities(ConstantLogit(), images, image_size=32)
    assert probs.shape == (2, 40, 50) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, 0.75, rtol=1e-6)
    with pytest.raises(ValueError, match="one size"):
        slice_probabilities(ConstantLogit(), [images[0], np.zeros((8, 8, 3), np.uint8)], 32)


def test_probabilities_are_resized_back_bilinearly() -> None:
    # the model sees 8x8 and marks columns 0-3; at 16x16 the edge falls between 7 and 8
    probs = predict_probabilities(LeftHalf(), torch.zeros(1, 3, 8, 8), size=(16, 16))
    assert probs.shape == (1, 1, 16, 16)
    row = probs[0, 0, 5]
    high, low = 1 / (1 + math.exp(-10)), 1 / (1 + math.exp(10))
    assert row[:7] == pytest.approx(torch.full((7,), high)) and row[9:] == pytest.approx(torch.full((7,), low))
    # output pixel i samples input (i + 0.5) / 2 - 0.5: pixel 7 -> 3.25, pixel 8 -> 3.75
    assert row[7].item() == pytest.approx(0.75 * high + 0.25 * low)
    assert row[8].item() == pytest.approx(0.25 * high + 0.75 * low)
    assert predict_probabilities(LeftHalf(), torch.zeros(1, 3, 8, 8)).shape == (1, 1, 8, 8)


def test_patch_probabilities() -> None:
    patches = np.zeros((3, 96, 96, 3), np.uint8)
    np.testing.assert_allclose(patch_probabilities(ConstantLogit(classifier=True), patches), 0.75)


def test_score_loader_scores_masks_of_mixed_sizes_at_their_own_size() -> None:
    # two slices of different native sizes, both marked in their left half: Dice 1 each
    samples = []
    for number, (height, width) in enumerate([(16, 16), (12, 20)], start=1):
        label = torch.zeros(1, height, width)
        label[..., : width // 2] = 1
        samples.append({"image": torch.zeros(3, 8, 8), "label": label, "patient": "P", "slice": number})
    batch = native_collate(samples)
    assert isinstance(batch["label"], list) and batch["image"].shape == (2, 3, 8, 8)
    loader = DataLoader(samples, batch_size=2, collate_fn=native_collate)
    result = score_loader(LeftHalf(), loader, SEGMENTATION)
    assert [row["gt_pixels"] for row in result["per_slice"]] == [128, 120]
    assert result["dice"] == 1.0 and result["per_patient"] == {"P": 1.0}
    same_size = native_collate([samples[0], {**samples[0], "slice": 3}])
    assert isinstance(same_size["label"], torch.Tensor) and same_size["label"].shape == (2, 1, 16, 16)
