"""Fixtures of the engine tests: tiny datasets in the real on-disk formats, tiny configs that
train in seconds, and trained tiny runs shared by the session."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from medseg.config import Config, config_from_dict

LGG_PATIENTS = [f"TCGA_AA_{1000 + i}_20000101" for i in range(5)]
LGG_SLICES = 4
LGG_SIZE = 64


def write_tiny_lgg(root: Path, seed: int = 0) -> Path:
    """kaggle_3m layout: 5 patients x 4 slices of 64x64 RGB; slices 2-3 hold a bright disc
    (the tumour, also in the mask), slices 1 and 4 none."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:LGG_SIZE, :LGG_SIZE]
    for patient in LGG_PATIENTS:
        folder = root / "kaggle_3m" / patient
        folder.mkdir(parents=True)
        for k in range(1, LGG_SLICES + 1):
            image = rng.integers(20, 90, size=(LGG_SIZE, LGG_SIZE, 3), dtype=np.uint8)
            mask = np.zeros((LGG_SIZE, LGG_SIZE), np.uint8)
            if k in (2, 3):
                cy, cx, r = rng.integers(18, 46), rng.integers(18, 46), rng.integers(6, 12)
                mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r**2] = 255
                image[mask > 0] = np.clip(image[mask > 0].astype(int) + 140, 0, 255).astype(np.uint8)
            Image.fromarray(image).save(folder / f"{patient}_{k}.tif")
            Image.fromarray(mask).save(folder / f"{patient}_{k}_mask.tif")
    return root


def write_tiny_pcam(root: Path, seed: int = 0) -> Path:
    """PCam HDF5 layout with 16 / 8 / 8 patches; positives have a bright centre."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    for split, n in (("train", 16), ("valid", 8), ("test", 8)):
        labels = np.arange(n) % 2
        patches = rng.integers(40, 120, size=(n, 96, 96, 3), dtype=np.uint8)
        patches[labels == 1, 32:64, 32:64] += 100
        with h5py.File(root / f"camelyonpatch_level_2_split_{split}_x.h5", "w") as f:
            f.create_dataset("x", data=patches)
        with h5py.File(root / f"camelyonpatch_level_2_split_{split}_y.h5", "w") as f:
            f.create_dataset("y", data=labels.astype(np.uint8).reshape(n, 1, 1, 1))
    return root


def _lgg_settings(root: Path, run_dir: Path, **train: Any) -> dict[str, Any]:
    """A ResNet-18-UNet at 64x64 on the tiny LGG data: 3 train patients, 1 val, 1 test."""
    return {
        "seed": 0,
        "data": {"format": "lgg", "root": str(root), "image_size": 64, "val_fraction": 0.2,
                 "test_fraction": 0.2, "num_workers": 0, "augment": True},
        "model": {"arch": "unet", "encoder": "resnet18"},
        "optim": {"name": "adam+znorm", "lr": 1e-3},
        "train": {"epochs": 2, "batch_size": 4, "device": "cpu", "amp": "off", "log_every": 1,
                  "warmup_epochs": 1, **train},
        "output": {"dir": str(run_dir)},
    }


def _pcam_settings(root: Path, run_dir: Path, **train: Any) -> dict[str, Any]:
    """A ResNet-18 classifier on the tiny PCam data."""
    return {
        "seed": 0,
        "data": {"format": "pcam", "root": str(root), "image_size": 96, "num_workers": 0},
        "model": {"arch": "resnet", "encoder": "resnet18"},
        "optim": {"name": "adam+znorm", "lr": 1e-3},
        "train": {"epochs": 1, "batch_size": 8, "device": "cpu", "amp": "off", "log_every": 1, **train},
        "output": {"dir": str(run_dir)},
    }


def _lgg_config(root: Path, run_dir: Path, **train: Any) -> Config:
    return config_from_dict(_lgg_settings(root, run_dir, **train))


def _write_config(settings: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(settings))
    return path


@contextmanager
def _one_thread():
    """One intra-op thread: the CI machine's 2 cores are shared, and oversubscribed OpenMP
    threads make tiny convolutions many times slower. Every run of these tests uses it, so
    runs compared bit for bit (resume) sum in the same order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def one_thread():
    with _one_thread():
        yield


@pytest.fixture(scope="session")
def tiny_lgg(tmp_path_factory) -> Path:
    return write_tiny_lgg(tmp_path_factory.mktemp("lgg"))


@pytest.fixture(scope="session")
def tiny_pcam(tmp_path_factory) -> Path:
    return write_tiny_pcam(tmp_path_factory.mktemp("pcam_data") / "pcam")


@pytest.fixture(scope="session")
def trained_lgg(tiny_lgg, tmp_path_factory):
    """One finished 2-epoch LGG run shared by the read-only tests."""
    from medseg.engine import train

    run_dir = tmp_path_factory.mktemp("runs") / "lgg"
    with _one_thread():
        return train(_lgg_config(tiny_lgg, run_dir))


@pytest.fixture(scope="session")
def trained_pcam(tiny_pcam, tmp_path_factory):
    """One finished 1-epoch PCam run."""
    from medseg.engine import train

    run_dir = tmp_path_factory.mktemp("runs") / "pcam"
    with _one_thread():
        return train(config_from_dict(_pcam_settings(tiny_pcam, run_dir)))


@pytest.fixture(scope="session")
def lgg_settings():
    """``lgg_settings(root, run_dir, **train) -> dict``: the tiny LGG config as a mapping."""
    return _lgg_settings


@pytest.fixture(scope="session")
def lgg_config():
    """``lgg_config(root, run_dir, **train) -> Config``: the tiny LGG config."""
    return _lgg_config


@pytest.fixture(scope="session")
def pcam_settings():
    """``pcam_settings(root, run_dir, **train) -> dict``: the tiny PCam config as a mapping."""
    return _pcam_settings


@pytest.fixture(scope="session")
def write_config():
    """``write_config(settings, path) -> path``: a config mapping saved as YAML."""
    return _write_config
