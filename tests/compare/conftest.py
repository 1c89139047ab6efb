"""A tiny PatchCamelyon-format dataset and config for end-to-end comparison tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support import write_pcam

SPLIT_SIZES = {"train": 32, "val": 16, "test": 16}


def tiny_config(data_root: Path, **train: object) -> dict:
    return {
        "seed": 0,
        "data": {"format": "pcam", "root": str(data_root), "image_size": 96, "augment": True,
                 "num_workers": 0},
        "model": {"arch": "deep_resnet", "depth": 2, "width": 4, "encoder_weights": None},
        "optim": {"name": "adam", "lr": 1e-3},
        "train": {"epochs": 1, "batch_size": 8, "max_steps_per_epoch": 2, "device": "cpu",
                  "scheduler": "none", "log_every": 1, "log_grad_stats": True, **train},
    }


@pytest.fixture(scope="session")
def tiny_pcam(tmp_path_factory) -> Path:
    return write_pcam(tmp_path_factory.mktemp("pcam"), SPLIT_SIZES).root


@pytest.fixture(scope="session")
def tiny_config_file(tiny_pcam, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tiny_pcam)))
    return path
