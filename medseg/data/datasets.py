"""Train/val/test datasets for a :class:`~medseg.config.DataConfig`.

Example:
    >>> from medseg.config import DataConfig
    >>> datasets = build_datasets(DataConfig(root="demo_data/lgg", image_size=128), seed=0,
    ...                           run_dir="models/run")
    >>> sorted(datasets), datasets["train"][0]["image"].shape
    (['test', 'train', 'val'], torch.Size([3, 128, 128]))
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monai.data import CacheDataset, Dataset
from monai.transforms import Compose

from medseg.config import DataConfig
from medseg.data.lgg import list_patients
from medseg.data.pcam import (
    PCAM_SPLITS,
    LoadPCamPatchd,
    PCamRecords,
    inspect_pcam_split,
    pcam_files,
)
from medseg.data.splits import SPLIT_NAMES, read_split_file, save_split, split_patients
from medseg.data.transforms import lgg_transforms, pcam_transforms
from medseg.errors import DataError
from medseg.runs import split_path


def _dataset(records: Sequence[Any], transform: Compose, data_cfg: DataConfig) -> Dataset:
    if data_cfg.cache:
        return CacheDataset(
            records, transform, cache_rate=1.0, num_workers=max(1, data_cfg.num_workers),
            progress=False,
        )
    return Dataset(records, transform)


def _lgg_split(data_cfg: DataConfig, patients: list[str], seed: int) -> tuple[dict, int | None]:
    if data_cfg.split_file is None:
        split = split_patients(patients, data_cfg.val_fraction, data_cfg.test_fraction, seed)
        return split, seed
    split, split_seed = read_split_file(data_cfg.split_file)
    missing = sorted(set().union(*split.values()) - set(patients))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(
            f"{data_cfg.split_file}: split lists patients that are not in {data_cfg.root}: {shown}"
        )
    return split, split_seed


def _build_lgg(data_cfg: DataConfig, seed: int, run_dir: Path | None) -> dict[str, Dataset]:
    patients = {p.name: p for p in list_patients(data_cfg.root)}
    split, split_seed = _lgg_split(data_cfg, list(patients), seed)
    if run_dir is not None:
        save_split(split, split_path(run_dir), seed=split_seed)
    datasets = {}
    for name in SPLIT_NAMES:
        records = [
            {"image": str(s.image_path), "label": str(s.mask_path), "patient": p, "slice": s.index}
            for p in split[name]
            for s in patients[p].slices
        ][: data_cfg.max_samples]
        training = name == "train"
        transform = lgg_transforms(
            data_cfg.image_size, augment=data_cfg.augment and training, native_label=not training
        )
        transform.set_random_state(seed=seed)
        datasets[name] = _dataset(records, transform, data_cfg)
    return datasets


def _build_pcam(data_cfg: DataConfig, seed: int) -> dict[str, Dataset]:
    datasets = {}
    for name in PCAM_SPLITS:
        x_path, y_path = pcam_files(data_cfg.root, name)
        n = inspect_pcam_split(x_path, y_path)
        if data_cfg.max_samples is not None:
            n = min(n, data_cfg.max_samples)
        transform = pcam_transforms(
            LoadPCamPatchd(x_path, y_path), augment=data_cfg.augment and name == "train"
        )
        transform.set_random_state(seed=seed)
        datasets[name] = _dataset(PCamRecords(n), transform, data_cfg)
    return datasets


def build_datasets(
    data_cfg: DataConfig, *, seed: int, run_dir: str | Path | None = None
) -> dict[str, Dataset]:
    """Build the "train", "val" and "test" datasets of ``data_cfg``.

    LGG: patients are split by :func:`~medseg.data.splits.split_patients` (or read from
    ``data_cfg.split_file``; patients of the data missing from that file are left out) and
    the split is written to ``run_dir/split.json``; the "val" and "test" masks keep their
    slice's native size (scores are computed there), "train" masks are resized with the
    image. PCam: the official splits. Training data is augmented when ``data_cfg.augment``; ``data_cfg.max_samples`` keeps the first N
    samples of each split; ``data_cfg.cache`` uses a MONAI ``CacheDataset`` (the
    deterministic steps are computed once and held in memory).

    Args:
        data_cfg: the data section of the config.
        seed: seeds the patient split and the random transforms.
        run_dir: where ``split.json`` goes (LGG); nothing is written when None.

    Raises:
        DataError: when the data or the split file is missing or malformed.
    """
    if data_cfg.format == "lgg":
        return _build_lgg(data_cfg, seed, Path(run_dir) if run_dir is not None else None)
    return _build_pcam(data_cfg, seed)
