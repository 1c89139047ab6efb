"""Test support shared by every test directory (``import tests.support``).

* :func:`write_lgg`: a tiny LGG download in the real kaggle_3m layout (RGB TIFF slices, 0/255
  TIFF masks, ``data.csv``, ``README.md``), returned with the arrays written.
* :func:`write_pcam`: the six PatchCamelyon HDF5 files, returned with the arrays written.
* :func:`write_dicom_series`: one MR series, a DICOM file per slice (pydicom), with known
  geometry.
* :func:`lgg_settings` / :func:`pcam_settings`: the tiny run configs (mappings, as in YAML);
  :func:`write_config` saves one.
* :func:`train_tiny`: :func:`medseg.engine.train` on one intra-op thread.

The session fixtures of ``tests/conftest.py`` are built from these; tests that need data of
another shape (more patients, a healthy patient, non-square slices) call the writers directly.

Everything is written independently of medseg (tifffile, h5py, pydicom and literal file
names), so a reader that gets the layout wrong cannot agree with the writer by construction.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
import tifffile
import yaml

if TYPE_CHECKING:
    from medseg.engine import TrainResult

# --- LGG (kaggle_3m) ---------------------------------------------------------------------

#: slice size on disk of the session dataset (``tiny_lgg``): larger than the training size
LGG_SIZE = 64
#: ``data.image_size`` of the session-trained segmenter: smaller than the slices on disk, so
#: scores at the slices' native size differ from scores at the training size
LGG_IMAGE_SIZE = 32
#: the session dataset: 5 patients x 4 slices (split 3 / 1 / 1 by the tiny config)
LGG_SLICES = 4
LGG_PATIENTS = {f"TCGA_AA_{1000 + i}_20000101": LGG_SLICES for i in range(5)}
#: the tumour box, rows x columns (wider than tall: a transposition cannot go unnoticed)
TUMOUR_BOX = (10, 20)


@dataclass
class LggFixture:
    """A written LGG folder and the arrays in it."""

    top: Path  # the download's top folder, holding kaggle_3m/
    root: Path  # kaggle_3m/
    images: dict[str, list[np.ndarray]]  # patient -> (H, W, 3) uint8 slices in k order (k = index + 1)
    masks: dict[str, list[np.ndarray]]  # patient -> (H, W) masks in {0, 1}
    healthy_patients: tuple[str, ...]  # the patients without tumour

    @property
    def healthy(self) -> str:
        """The healthy patient ("" when there is none; the first when there are several)."""
        return self.healthy_patients[0] if self.healthy_patients else ""


def has_tumour(k: int) -> bool:
    """Whether slice ``k`` of a patient with tumour holds one: all but k = 1, 4, 7, 10, ..."""
    return k % 3 != 1


def lgg_slice(k: int, rng: np.random.Generator, tumour: bool,
              size: tuple[int, int] = (LGG_SIZE, LGG_SIZE)) -> tuple[np.ndarray, np.ndarray]:
    """An (H, W, 3) uint8 slice whose pixel [0, 0, 0] is k, and its {0, 1} mask.

    The tumour is a :data:`TUMOUR_BOX` box whose corner moves with k (rows 4 + k % 5, columns
    6 + 2 (k % 7)), bright (240) in the FLAIR channel (index 1) on a background of 20-119.
    """
    height, width = size
    image = rng.integers(20, 120, size=(height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), np.uint8)
    if tumour:
        top, left = 4 + k % 5, 6 + 2 * (k % 7)
        rows, cols = TUMOUR_BOX
        if top + rows > height or left + cols > width:
            raise ValueError(f"slices of {height}x{width} are too small for the tumour box")
        mask[top : top + rows, left : left + cols] = 1
        image[..., 1][mask == 1] = 240
    image[0, 0, 0] = k
    return image, mask


def write_lgg(top: Path, slices_per_patient: Mapping[str, int] = LGG_PATIENTS, *,
              size: int | tuple[int, int] = LGG_SIZE, healthy: str | Iterable[str] = (),
              seed: int = 0) -> LggFixture:
    """Write ``top/kaggle_3m/<patient>/<patient>_<k>.tif`` and ``..._<k>_mask.tif`` (0/255),
    ``data.csv`` and ``README.md``, as in the Kaggle download.

    Args:
        top: the download folder (created).
        slices_per_patient: patient folder name -> number of slices (k = 1..n).
        size: slice size, ``S`` or ``(H, W)``.
        healthy: the patient(s) without tumour; the others have one on the slices where
            :func:`has_tumour` holds.
        seed: the noise of the background.
    """
    height, width = (size, size) if isinstance(size, int) else size
    healthy_patients = (healthy,) if isinstance(healthy, str) else tuple(healthy)
    healthy_patients = tuple(name for name in healthy_patients if name)
    unknown = set(healthy_patients) - set(slices_per_patient)
    if unknown:
        raise ValueError(f"healthy patients {sorted(unknown)} are not among the patients")
    rng = np.random.default_rng(seed)
    root = top / "kaggle_3m"
    images: dict[str, list[np.ndarray]] = {}
    masks: dict[str, list[np.ndarray]] = {}
    for patient, n in slices_per_patient.items():
        folder = root / patient
        folder.mkdir(parents=True)
        images[patient], masks[patient] = [], []
        for k in range(1, n + 1):
            tumour = patient not in healthy_patients and has_tumour(k)
            image, mask = lgg_slice(k, rng, tumour, (height, width))
            tifffile.imwrite(folder / f"{patient}_{k}.tif", image, photometric="rgb")
            tifffile.imwrite(folder / f"{patient}_{k}_mask.tif", mask * 255)
            images[patient].append(image)
            masks[patient].append(mask)
    (root / "data.csv").write_text("Patient\n" + "\n".join(p.rsplit("_", 1)[0] for p in images))
    (root / "README.md").write_text("fixture\n")
    return LggFixture(top, root, images, masks, healthy_patients)


# --- PatchCamelyon ------------------------------------------------------------------------

#: split -> the word PCam's file names use
PCAM_FILE_SPLITS = {"train": "train", "val": "valid", "test": "test"}
#: the session dataset (``tiny_pcam``)
PCAM_SIZES = {"train": 16, "val": 8, "test": 12}


@dataclass
class PcamFixture:
    """A written PCam folder and the arrays in it."""

    root: Path
    x: dict[str, np.ndarray]  # split -> (N, 96, 96, 3) uint8
    y: dict[str, np.ndarray]  # split -> (N, 1, 1, 1) uint8


def pcam_path(root: Path, split: str, kind: str) -> Path:
    """``camelyonpatch_level_2_split_<train|valid|test>_<x|y>.h5`` of ``split`` (train/val/test)."""
    return root / f"camelyonpatch_level_2_split_{PCAM_FILE_SPLITS[split]}_{kind}.h5"


def write_pcam(root: Path, sizes: Mapping[str, int] = PCAM_SIZES, *, seed: int = 0) -> PcamFixture:
    """Write the PCam HDF5 files of ``sizes`` (split -> patches): ``x`` (N, 96, 96, 3) uint8
    (chunked, as the originals) and ``y`` (N, 1, 1, 1) uint8.

    Patch i has label i % 2 and i % 256 in pixel [0, 0, 0]; positives have a bright centre
    (rows and columns 32-63, +100), so a classifier can learn the task.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    xs, ys = {}, {}
    for split, n in sizes.items():
        labels = (np.arange(n) % 2).astype(np.uint8)
        x = rng.integers(0, 140, size=(n, 96, 96, 3), dtype=np.uint8)
        x[labels == 1, 32:64, 32:64] += 100
        x[:, 0, 0, 0] = np.arange(n) % 256
        y = labels.reshape(n, 1, 1, 1)
        with h5py.File(pcam_path(root, split, "x"), "w") as f:
            f.create_dataset("x", data=x, chunks=(max(1, min(4, n)), 96, 96, 3) if n else None)
        with h5py.File(pcam_path(root, split, "y"), "w") as f:
            f.create_dataset("y", data=y)
        xs[split], ys[split] = x, y
    return PcamFixture(root, xs, ys)


# --- DICOM -------------------------------------------------------------------------------

#: an axial series: rows run anterior -> posterior, columns patient's right -> left (LPS)
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def write_dicom_series(folder: Path, pixels: np.ndarray, positions: Sequence[Sequence[float]], *,
                       names: Sequence[str] | None = None, orientation: Sequence[float] = AXIAL,
                       pixel_spacing: tuple[float, float] = (1.0, 1.0),
                       series_uid: str = "1.2.826.0.1.3680043.8.498.1",
                       description: str = "test series", slope: float | None = None,
                       intercept: float | None = None) -> list[Path]:
    """Write ``pixels[k]`` (N, Rows, Columns; uint16 or int16 stored values) as one DICOM MR
    file per slice, ``folder/names[k]`` (default ``slice<k>.dcm``), slice k at ImagePositionPatient
    ``positions[k]`` (LPS mm); InstanceNumber counts down (N - k), so neither it nor the file
    names give the slice order. ``slope``/``intercept``: RescaleSlope/RescaleIntercept.
    Returns the files in k order."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.asarray(pixels)
    names = list(names) if names is not None else [f"slice{k}.dcm" for k in range(len(pixels))]
    written = []
    for k, (image, position, name) in enumerate(zip(pixels, positions, names, strict=True)):
        instance = f"{series_uid}.{k + 1}"
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = instance
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, instance
        ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.99", series_uid
        ds.Modality, ds.SeriesDescription, ds.InstanceNumber = "MR", description, len(pixels) - k
        ds.Rows, ds.Columns = image.shape
        ds.PixelSpacing = [f"{v:g}" for v in pixel_spacing]
        ds.ImageOrientationPatient = [f"{v:g}" for v in orientation]
        ds.ImagePositionPatient = [f"{v:g}" for v in position]
        ds.SliceThickness = "1"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        signed = image.dtype == np.int16
        ds.PixelRepresentation = int(signed)
        if slope is not None:
            ds.RescaleSlope = f"{slope:g}"
        if intercept is not None:
            ds.RescaleIntercept = f"{intercept:g}"
        ds.PixelData = image.astype("<i2" if signed else "<u2").tobytes()
        ds.save_as(folder / name, enforce_file_format=True)
        written.append(folder / name)
    return written


# --- tiny runs ----------------------------------------------------------------------------


def lgg_settings(root: Path, run_dir: Path, **train: Any) -> dict[str, Any]:
    """The tiny segmentation run: a ResNet-18 UNet at :data:`LGG_IMAGE_SIZE` on the session LGG
    data (3 train patients = 3 steps of 4 slices per epoch, 1 val, 1 test), 2 epochs of
    adam+znorm with 1 warmup epoch then cosine, on the CPU without AMP. ``train`` overrides
    keys of the ``train`` section."""
    return {
        "seed": 0,
        "data": {"format": "lgg", "root": str(root), "image_size": LGG_IMAGE_SIZE,
                 "val_fraction": 0.2, "test_fraction": 0.2, "num_workers": 0, "augment": True},
        "model": {"arch": "unet", "encoder": "resnet18"},
        "optim": {"name": "adam+znorm", "lr": 1e-3},
        "train": {"epochs": 2, "batch_size": 4, "device": "cpu", "amp": "off", "log_every": 1,
                  "warmup_epochs": 1, **train},
        "output": {"dir": str(run_dir)},
    }


def pcam_settings(root: Path, run_dir: Path, **train: Any) -> dict[str, Any]:
    """The tiny classification run: a ResNet-18 classifier on the session PCam data, 1 epoch
    of 2 steps (batch 8), on the CPU without AMP."""
    return {
        "seed": 0,
        "data": {"format": "pcam", "root": str(root), "image_size": 96, "num_workers": 0},
        "model": {"arch": "resnet", "encoder": "resnet18"},
        "optim": {"name": "adam+znorm", "lr": 1e-3},
        "train": {"epochs": 1, "batch_size": 8, "device": "cpu", "amp": "off", "log_every": 1,
                  **train},
        "output": {"dir": str(run_dir)},
    }


def write_config(settings: Mapping[str, Any], path: Path) -> Path:
    """Save a config mapping as YAML at ``path``."""
    path.write_text(yaml.safe_dump(dict(settings)))
    return path


@contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread: the CI machine's 2 cores are shared, and oversubscribed OpenMP
    threads make tiny convolutions many times slower. Every training run of the tests uses it,
    so runs compared bit for bit (resume) sum in the same order."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train_tiny(settings: Mapping[str, Any], **kwargs: Any) -> TrainResult:
    """:func:`medseg.engine.train` of a config mapping on one thread (``kwargs``: resume,
    callbacks)."""
    from medseg.config import config_from_dict
    from medseg.engine import train

    with one_thread():
        return train(config_from_dict(dict(settings)), **kwargs)


def assert_log_ends_in_one_line_error(stderr: str, *fragments: str) -> None:
    """A command that logs as it works (``train``: its first line names the precision) may have
    logged before it failed: its error is then the last line, the only error line, with no
    traceback, and holds every fragment."""
    lines = stderr.splitlines()
    assert lines and lines[-1].startswith("medseg: error: "), stderr
    assert sum(line.startswith("medseg: error: ") for line in lines) == 1, stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[-1]

