"""A tiny PatchCamelyon-format dataset and config for end-to-end comparison tests."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from medseg.data.pcam import pcam_file_name

SPLIT_SIZES = {"train": 32, "val": 16, "test": 16}


def write_tiny_pcam(root: Path) -> Path:
    """Six PCam HDF5 files; label 1 patches are brighter, so the task is learnable."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in SPLIT_SIZES.items():
        labels = rng.integers(0, 2, size=n).astype(np.uint8)
        base = rng.integers(40, 160, size=(n, 96, 96, 3))
        images = np.clip(base + 60 * labels[:, None, None, None], 0, 255).astype(np.uint8)
        with h5py.File(root / pcam_file_name(split, "x"), "w") as handle:
            handle.create_dataset("x", data=images)
        with h5py.File(root / pcam_file_name(split, "y"), "w") as handle:
            handle.create_dataset("y", data=labels.reshape(n, 1, 1, 1))
    return root


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
    return write_tiny_pcam(tmp_path_factory.mktemp("pcam"))


@pytest.fixture(scope="session")
def tiny_config_file(tiny_pcam, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tiny_pcam)))
    return path
