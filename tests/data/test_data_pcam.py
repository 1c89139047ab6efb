"""PCam: lazy per-process HDF5 reading, official splits, workers, file errors."""

from __future__ import annotations

import gzip
import re
import shutil

import h5py
import numpy as np
import pytest
import torch
from monai.data import DataLoader

from medseg.config import DataConfig
from medseg.data.datasets import build_datasets
from medseg.data.pcam import LABEL_REGION_SIZE, PATCH_SIZE, LoadPCamPatchd, label_region, pcam_files
from medseg.errors import DataError


def pcam_cfg(root, **overrides):
    return DataConfig(format="pcam", root=str(root), **overrides)


def test_official_splits_and_sample_layout(pcam):
    datasets = build_datasets(pcam_cfg(pcam.root, augment=False), seed=0)
    assert {name: len(ds) for name, ds in datasets.items()} == {"train": 24, "val": 10, "test": 8}
    sample = datasets["val"][7]
    assert set(sample) == {"image", "label", "index"}
    assert sample["index"] == 7
    assert sample["image"].shape == (3, 96, 96) and sample["image"].dtype == torch.float32
    assert sample["label"].shape == (1,) and sample["label"].dtype == torch.float32
    assert sample["label"].item() == 1.0  # label i % 2
    # normalized per channel: the z-score of the written patch, same orientation
    patch = pcam.x["val"][7].astype(np.float64).transpose(2, 0, 1)
    expected = (patch - patch.mean(axis=(1, 2), keepdims=True)) / patch.std(axis=(1, 2),
                                                                             keepdims=True)
    np.testing.assert_allclose(sample["image"].numpy(), expected, atol=1e-4)


def test_loader_reads_only_the_requested_patch(pcam, monkeypatch):
    requested = []
    original = h5py.Dataset.__getitem__

    def spy(self, item):
        requested.append(item)
        return original(self, item)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    loader = LoadPCamPatchd(*pcam_files(pcam.root, "train"))
    assert loader._datasets is None  # nothing opened before the first read
    sample = loader({"index": 5})
    assert requested == [5, 5]  # one patch from x, one label from y
    np.testing.assert_array_equal(sample["image"].numpy(), pcam.x["train"][5].transpose(2, 0, 1))
    assert sample["label"].tolist() == [1.0]


def test_dataloader_with_two_workers_reads_every_patch_once(pcam):
    dataset = build_datasets(pcam_cfg(pcam.root, augment=False), seed=0)["train"]
    dataset[0]  # the parent process opens its own handles first
    loader = DataLoader(dataset, batch_size=5, num_workers=2, shuffle=False)
    indices, labels, markers = [], [], []
    for batch in loader:
        assert batch["image"].shape[1:] == (3, 96, 96) and batch["label"].shape[1:] == (1,)
        indices += batch["index"].tolist()
        labels += batch["label"][:, 0].tolist()
        markers.append(batch["image"][:, 0, 0, 0])
    assert indices == list(range(24))
    assert labels == [float(i % 2) for i in range(24)]
    # pixel [0, 0, 0] encodes the index: the normalized values keep the order of the indices
    patches = pcam.x["train"].astype(np.float64)
    mean, std = patches[..., 0].mean(axis=(1, 2)), patches[..., 0].std(axis=(1, 2))
    np.testing.assert_allclose(torch.cat(markers).numpy(), (np.arange(24) - mean) / std, atol=1e-4)


def test_max_samples_caps_each_split(pcam):
    datasets = build_datasets(pcam_cfg(pcam.root, max_samples=6), seed=0)
    assert {name: len(ds) for name, ds in datasets.items()} == {"train": 6, "val": 6, "test": 6}
    assert [datasets["test"][i]["index"] for i in range(6)] == list(range(6))


def test_training_augmentation_keeps_labels_and_shapes(pcam):
    train = build_datasets(pcam_cfg(pcam.root), seed=0)["train"]
    for i in range(6):
        sample = train[i]
        assert sample["image"].shape == (3, 96, 96) and sample["label"].item() == i % 2


def test_gzipped_download_says_how_to_decompress(pcam):
    path = pcam.root / "camelyonpatch_level_2_split_valid_y.h5"
    with open(path, "rb") as src, gzip.open(f"{path}.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    path.unlink()
    with pytest.raises(DataError, match=rf"split_valid_y\.h5\.gz: gzip-compressed download; "
                                        rf"decompress it first with: gunzip {path}\.gz"):
        build_datasets(pcam_cfg(pcam.root), seed=0)


def test_missing_file(pcam):
    (pcam.root / "camelyonpatch_level_2_split_test_x.h5").unlink()
    with pytest.raises(DataError, match=r"split_test_x\.h5: missing PatchCamelyon file"):
        build_datasets(pcam_cfg(pcam.root), seed=0)


def test_length_mismatch(pcam):
    with h5py.File(pcam.root / "camelyonpatch_level_2_split_train_y.h5", "w") as f:
        f.create_dataset("y", data=np.zeros((23, 1, 1, 1), np.uint8))
    with pytest.raises(DataError, match=r"split_train_y\.h5: holds 23 labels but "
                                        r"camelyonpatch_level_2_split_train_x\.h5 holds 24"):
        build_datasets(pcam_cfg(pcam.root), seed=0)


def test_wrong_dataset_key_lists_the_keys_found(pcam):
    with h5py.File(pcam.root / "camelyonpatch_level_2_split_valid_x.h5", "w") as f:
        f.create_dataset("images", data=np.zeros((10, 96, 96, 3), np.uint8))
    with pytest.raises(DataError, match=r"split_valid_x\.h5: no HDF5 dataset 'x' "
                                        r"\(found 'images'\)"):
        build_datasets(pcam_cfg(pcam.root), seed=0)


def test_wrong_shape_and_not_hdf5(pcam):
    with h5py.File(pcam.root / "camelyonpatch_level_2_split_test_x.h5", "w") as f:
        f.create_dataset("x", data=np.zeros((8, 64, 64, 3), np.uint8))
    with pytest.raises(DataError, match=r"split_test_x\.h5: dataset /x has shape \(8, 64, 64, 3\), "
                                        r"expected \(N, 96, 96, 3\)"):
        build_datasets(pcam_cfg(pcam.root), seed=0)
    (pcam.root / "camelyonpatch_level_2_split_test_x.h5").write_bytes(b"not hdf5")
    with pytest.raises(DataError, match=r"split_test_x\.h5: not a readable HDF5 file"):
        build_datasets(pcam_cfg(pcam.root), seed=0)


@pytest.mark.parametrize(("height", "width", "size", "rows", "cols"), [
    (96, 96, 32, (32, 64), (32, 64)),  # PCam: the centre 32 x 32 of a 96 x 96 patch
    (8, 8, 4, (2, 6), (2, 6)),
    (9, 8, 4, (2, 6), (2, 6)),  # odd margin (5): one pixel nearer the top
    (8, 11, 3, (2, 5), (4, 7)),
    (5, 5, 5, (0, 5), (0, 5)),
])
def test_label_region_is_the_centre_square(height, width, size, rows, cols):
    assert label_region(height, width, size) == (slice(*rows), slice(*cols))


def test_label_region_defaults_to_pcam_and_refuses_a_square_that_does_not_fit():
    assert label_region() == label_region(PATCH_SIZE, PATCH_SIZE, LABEL_REGION_SIZE)
    assert (PATCH_SIZE, LABEL_REGION_SIZE) == (96, 32)
    for size in (0, 9):
        with pytest.raises(ValueError, match=f"centre size {size} does not fit a 8x8 patch"):
            label_region(8, 8, size)


# --- issue 22: x or y that is not a dataset stored in its file ------------------------------


def _replace_key(path, key, make):
    """Rewrite ``path`` so that ``key`` is what ``make(file, key)`` puts there."""
    path.unlink()
    with h5py.File(path, "w") as f:
        make(f, key)


NOT_A_STORED_DATASET = {
    "group": (lambda f, k: f.create_group(k).create_dataset(k, data=np.zeros((8, 1, 1, 1), np.uint8)),
              "{key!r} is a group, not a dataset"),
    "named type": (lambda f, k: f.__setitem__(k, np.dtype("u1")), "{key!r} is a Datatype, not a dataset"),
    "broken link": (lambda f, k: f.__setitem__(k, h5py.SoftLink("/nowhere")), "{key!r} cannot be opened"),
    "link into another file": (lambda f, k: f.__setitem__(k, h5py.ExternalLink("other.h5", "/x")),
                               "{key!r} is a link into another file"),
    "external storage": (lambda f, k: f.create_dataset(k, shape=(8, 96, 96, 3), dtype=np.uint8,
                                                       external=[("/dev/zero", 0, h5py.h5f.UNLIMITED)]),
                         "dataset {key!r} keeps its data in other files"),
}


@pytest.mark.parametrize("key", ["x", "y"])
@pytest.mark.parametrize("case", sorted(NOT_A_STORED_DATASET))
def test_x_or_y_that_is_not_a_dataset_stored_in_the_file_is_named(pcam, case, key):
    path = pcam.root / f"camelyonpatch_level_2_split_test_{key}.h5"
    make, problem = NOT_A_STORED_DATASET[case]
    _replace_key(path, key, make)
    with pytest.raises(DataError) as err:
        build_datasets(pcam_cfg(pcam.root), seed=0)
    assert str(err.value).startswith(f"{path}: {problem.format(key=key)}") and "\n" not in str(err.value)
    with pytest.raises(DataError, match=re.escape(f"{path}: ")):  # also when read without the check
        LoadPCamPatchd(*pcam_files(pcam.root, "test"))({"index": 0})


def test_an_empty_split_and_a_label_that_is_not_0_or_1_are_named(pcam):
    x_path, y_path = pcam_files(pcam.root, "val")
    with h5py.File(y_path, "r+") as f:
        f["y"][3] = 7
    with pytest.raises(DataError, match=re.escape(f"{y_path}: label 7 at index 3; labels must be 0 or 1")):
        LoadPCamPatchd(x_path, y_path)({"index": 3})
    for path, key, shape in ((x_path, "x", (0, 96, 96, 3)), (y_path, "y", (0, 1, 1, 1))):
        _replace_key(path, key, lambda f, k, shape=shape: f.create_dataset(k, shape=shape, dtype=np.uint8))
    with pytest.raises(DataError, match=re.escape(f"{x_path}: holds no patches")):
        build_datasets(pcam_cfg(pcam.root), seed=0)


def test_a_file_with_many_keys_lists_five(pcam):
    path = pcam.root / "camelyonpatch_level_2_split_valid_x.h5"
    with h5py.File(path, "w") as f:
        for i in range(12):
            f.create_dataset(f"k{i:02d}", data=np.zeros(1, np.uint8))
    with pytest.raises(DataError, match=re.escape(
            f"{path}: no HDF5 dataset 'x' (found 'k00', 'k01', 'k02', 'k03', 'k04' and 7 more)")):
        build_datasets(pcam_cfg(pcam.root), seed=0)
