"""Tiny datasets written in the real on-disk layouts (kaggle_3m TIFFs, PCam HDF5).

Fixtures ``lgg`` and ``pcam``, written in tmp_path. Slices are non-square (HEIGHT x WIDTH)
so that a transposition cannot go unnoticed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile

HEIGHT, WIDTH = 40, 56


@dataclass
class LggFixture:
    top: Path  # the download's top folder, holding kaggle_3m/
    root: Path  # kaggle_3m/
    images: dict[str, list[np.ndarray]]  # patient -> slices in k order (k = index + 1)
    masks: dict[str, list[np.ndarray]]  # patient -> masks in {0, 1}
    healthy: str  # the patient without tumour


def lgg_slice(k: int, rng: np.random.Generator, tumour: bool) -> tuple[np.ndarray, np.ndarray]:
    """An (H, W, 3) slice whose pixel [0, 0, 0] is k, and its {0,1} mask (an off-centre box)."""
    image = rng.integers(20, 120, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    if tumour:
        top, left = 4 + k % 5, 6 + 2 * (k % 7)
        mask[top : top + 10, left : left + 20] = 1  # 10 rows x 20 columns: wider than tall
        image[..., 1][mask == 1] = 240  # FLAIR-bright where the mask is
    image[0, 0, 0] = k
    return image, mask


def write_lgg(top: Path, slices_per_patient: dict[str, int], *, healthy: str = "",
              seed: int = 0) -> LggFixture:
    """Write ``top/kaggle_3m/<patient>/<patient>_<k>.tif`` (+ masks), data.csv and README.md."""
    rng = np.random.default_rng(seed)
    root = top / "kaggle_3m"
    images: dict[str, list[np.ndarray]] = {}
    masks: dict[str, list[np.ndarray]] = {}
    for patient, n in slices_per_patient.items():
        folder = root / patient
        folder.mkdir(parents=True)
        images[patient], masks[patient] = [], []
        for k in range(1, n + 1):
            image, mask = lgg_slice(k, rng, tumour=patient != healthy and k % 3 != 1)
            tifffile.imwrite(folder / f"{patient}_{k}.tif", image, photometric="rgb")
            tifffile.imwrite(folder / f"{patient}_{k}_mask.tif", mask * 255)
            images[patient].append(image)
            masks[patient].append(mask)
    (root / "data.csv").write_text("Patient\n" + "\n".join(p.rsplit("_", 1)[0] for p in images))
    (root / "README.md").write_text("fixture\n")
    return LggFixture(top, root, images, masks, healthy)


PATIENTS = {
    "TCGA_AA_0001_20000101": 11,  # k up to 11: "10" and "11" sort before "2" as text
    "TCGA_BB_0002_20010101": 3,
    "TCGA_CC_0003_20020202": 4,
    "TCGA_DD_0004_20030303": 5,
}
HEALTHY = "TCGA_BB_0002_20010101"


@dataclass
class PcamFixture:
    root: Path
    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]


PCAM_FILE_SPLITS = {"train": "train", "val": "valid", "test": "test"}


def pcam_path(root: Path, split: str, kind: str) -> Path:
    return root / f"camelyonpatch_level_2_split_{PCAM_FILE_SPLITS[split]}_{kind}.h5"


def write_pcam(root: Path, sizes: dict[str, int], seed: int = 0) -> PcamFixture:
    """Write the six PCam files; patch i of a split has i in pixel [0, 0, 0] and label i % 2."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    xs, ys = {}, {}
    for split, n in sizes.items():
        x = rng.integers(0, 256, size=(n, 96, 96, 3), dtype=np.uint8)
        x[:, 0, 0, 0] = np.arange(n)
        y = (np.arange(n) % 2).astype(np.uint8).reshape(n, 1, 1, 1)
        with h5py.File(pcam_path(root, split, "x"), "w") as f:
            f.create_dataset("x", data=x, chunks=(4, 96, 96, 3))
        with h5py.File(pcam_path(root, split, "y"), "w") as f:
            f.create_dataset("y", data=y)
        xs[split], ys[split] = x, y
    return PcamFixture(root, xs, ys)


@pytest.fixture
def lgg(tmp_path: Path) -> LggFixture:
    return write_lgg(tmp_path / "lgg-mri-segmentation", PATIENTS, healthy=HEALTHY)


@pytest.fixture
def pcam(tmp_path: Path) -> PcamFixture:
    return write_pcam(tmp_path / "pcam", {"train": 24, "val": 10, "test": 8})
