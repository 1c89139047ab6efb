"""Fixtures for the app tests: tiny LGG and PCam folders in the real formats, and a tiny
segmenter and classifier trained on them with :func:`medseg.engine.train` (once per session).

The folders are written here rather than with ``medseg.data.write_demo_lgg`` (which renders
12 patients at 256x256 from a brain template) to keep the session fixture to a few seconds.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

SIZE = 64
PATIENTS = ("TCGA_AA_0001_20000101", "TCGA_AA_0002_20000101", "TCGA_BB_0003_20000101",
            "TCGA_BB_0004_20000101")
SLICES = 4


def write_lgg(root: Path, seed: int = 0) -> Path:
    """kaggle_3m layout: per patient, RGB .tif slices and 0/255 .tif masks; slice 1 is empty.

    The tumour is a disc that is bright in the FLAIR channel (index 1).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for patient in PATIENTS:
        folder = root / "kaggle_3m" / patient
        folder.mkdir(parents=True)
        for k in range(1, SLICES + 1):
            image = rng.integers(0, 80, (SIZE, SIZE, 3), dtype=np.uint8)
            mask = np.zeros((SIZE, SIZE), np.uint8)
            if k > 1:
                cy, cx = rng.integers(18, SIZE - 18, 2)
                disc = (yy - cy) ** 2 + (xx - cx) ** 2 < rng.integers(6, 14) ** 2
                mask[disc] = 255
                image[disc, 1] = 230
            Image.fromarray(image).save(folder / f"{patient}_{k}.tif")
            Image.fromarray(mask).save(folder / f"{patient}_{k}_mask.tif")
    return root


def write_pcam(root: Path, n: int = 12, seed: int = 0) -> Path:
    """PCam layout: x (N, 96, 96, 3) uint8 and y (N, 1, 1, 1) uint8 files per split."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        labels = (np.arange(n) % 2).astype(np.uint8)
        patches = rng.integers(0, 120, (n, 96, 96, 3), dtype=np.uint8)
        patches[labels == 1, 32:64, 32:64, 0] = 250
        with h5py.File(root / f"camelyonpatch_level_2_split_{split}_x.h5", "w") as f:
            f.create_dataset("x", data=patches)
        with h5py.File(root / f"camelyonpatch_level_2_split_{split}_y.h5", "w") as f:
            f.create_dataset("y", data=labels.reshape(n, 1, 1, 1))
    return root


def train_tiny(data: dict, model: dict, out: Path) -> Path:
    from medseg.config import config_from_dict
    from medseg.engine import train

    cfg = config_from_dict({
        "data": {"num_workers": 0, "augment": False, **data},
        "model": {"encoder": "resnet18", **model},
        "optim": {"name": "adam", "lr": 1e-2},
        "train": {"epochs": 1, "batch_size": 4, "max_steps_per_epoch": 2, "device": "cpu",
                  "scheduler": "none"},
        "output": {"run_name": out.name, "dir": str(out)},
    })
    return train(cfg).run_dir


@pytest.fixture(scope="session")
def lgg_dir(tmp_path_factory) -> Path:
    return write_lgg(tmp_path_factory.mktemp("lgg"))


@pytest.fixture(scope="session")
def pcam_dir(tmp_path_factory) -> Path:
    return write_pcam(tmp_path_factory.mktemp("data") / "pcam")


@pytest.fixture(scope="session")
def segmentation_run(lgg_dir, tmp_path_factory) -> Path:
    """A run folder (best.pt, last.pt, config.yaml, metrics.json, history.csv) of a tiny
    ResNet-18 UNet at 64x64."""
    out = tmp_path_factory.mktemp("models") / "tiny_lgg"
    return train_tiny(
        {"format": "lgg", "root": str(lgg_dir), "image_size": SIZE, "val_fraction": 0.25,
         "test_fraction": 0.25},
        {"arch": "unet"}, out,
    )


@pytest.fixture(scope="session")
def classification_run(pcam_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pcam_models") / "tiny_pcam"
    return train_tiny({"format": "pcam", "root": str(pcam_dir), "image_size": 96},
                      {"arch": "resnet"}, out)
