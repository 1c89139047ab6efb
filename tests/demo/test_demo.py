"""Demo data: real layouts, determinism, size, learnable synthetic lesions, documented labels."""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from skimage.color import rgb2hed

from medseg import __version__
from medseg.data.check import check_dataset
from medseg.demo.lgg import write_demo_lgg
from medseg.demo.marker import read_demo_marker, remove_demo
from medseg.demo.pcam import write_demo_pcam
from medseg.errors import DataError
from tests.demo.conftest import files_of

MB = 2**20


def read_lgg(root: Path) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """patient -> [(image, mask 0/255)] in slice order, read with tifffile (not medseg)."""
    patients = {}
    for folder in sorted(p for p in (root / "kaggle_3m").iterdir() if p.is_dir()):
        n = len(list(folder.glob("*_mask.tif")))
        patients[folder.name] = [
            (tifffile.imread(folder / f"{folder.name}_{k}.tif"),
             tifffile.imread(folder / f"{folder.name}_{k}_mask.tif"))
            for k in range(1, n + 1)
        ]
    return patients


def test_lgg_layout_names_and_readme(demo_lgg):
    patients = read_lgg(demo_lgg)
    assert len(patients) == 12
    for name, slices in patients.items():
        assert re.fullmatch(r"TCGA_[A-Z]{2}_\d{4}_(19|20)\d{6}", name)
        assert 12 <= len(slices) <= 16
        assert len(list((demo_lgg / "kaggle_3m" / name).iterdir())) == 2 * len(slices)
        for image, mask in slices:
            assert image.shape == (256, 256, 3) and image.dtype == np.uint8
            assert mask.shape == (256, 256) and set(np.unique(mask)) <= {0, 255}
    with open(demo_lgg / "kaggle_3m" / "data.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["Patient"] for row in rows] == [name.rsplit("_", 1)[0] for name in patients]
    readme = (demo_lgg / "README.md").read_text()
    assert "SYNTHETIC" in readme and "MNI152" in readme and "nilearn" in readme


def test_lgg_lesions_are_flair_bright_varied_and_sometimes_absent(demo_lgg):
    patients = read_lgg(demo_lgg)
    areas = {name: [int((m > 0).sum()) for _, m in slices] for name, slices in patients.items()}
    assert sum(1 for a in areas.values() if max(a) == 0) == 1  # one patient without tumour
    for a in areas.values():
        if max(a) == 0:
            continue
        assert a[0] == 0 and a[-1] == 0  # the lowest and highest slices have none
        positive = [x for x in a if x]
        assert len(positive) >= 2 and len(set(positive)) == len(positive)  # size varies
        assert max(a) > 600  # large enough to learn at 128x128 (> 150 pixels there)
    slices = [s for p in patients.values() for s in p]
    assert 0.2 < np.mean([m.any() for _, m in slices]) < 0.6
    for image, mask in slices:
        if mask.sum() < 255 * 200:
            continue
        flair, lesion = image[..., 1].astype(float), mask > 0
        brain = (image.max(axis=-1) > 20) & ~lesion
        assert flair[lesion].mean() > 1.25 * flair[brain].mean()
    centres = [np.argwhere(m > 0).mean(axis=0) for p in patients.values() for _, m in p if m.any()]
    assert np.ptp(np.array(centres), axis=0).min() > 40  # lesions at different places


def test_lgg_patients_differ_and_look_radiological(demo_lgg):
    patients = read_lgg(demo_lgg)
    middle = [slices[len(slices) // 2][0][..., 0].astype(float) for slices in patients.values()]
    assert all(np.abs(a - b).mean() > 3 for a, b in itertools.pairwise(middle))
    brain = np.mean([m > 20 for m in middle], axis=0)
    rows = np.nonzero(brain.mean(axis=1) > 0.05)[0]
    cols = np.nonzero(brain.mean(axis=0) > 0.05)[0]
    assert np.ptp(rows) > np.ptp(cols)  # heads are longer front-to-back than wide
    assert abs((cols.min() + cols.max()) / 2 - 127.5) < 20  # centred left-right


def test_lgg_is_deterministic_and_small(demo_lgg, tmp_path):
    again = write_demo_lgg(tmp_path / "again", seed=0)
    assert files_of(again) == files_of(demo_lgg)
    assert sum(len(b) for b in files_of(demo_lgg).values()) < 30 * MB


def test_lgg_check_counts_match_an_independent_count(demo_lgg):
    patients = read_lgg(demo_lgg)
    masks = [m for slices in patients.values() for _, m in slices]
    assert check_dataset(demo_lgg).to_dict() == {
        "format": "lgg",
        "root": str(demo_lgg / "kaggle_3m"),
        "patients": len(patients),
        "slices": len(masks),
        "positive_slices": sum(int(m.any()) for m in masks),
        "positive_patients": sum(any(m.any() for _, m in s) for s in patients.values()),
        "skipped": 0,
    }


def test_pcam_files_follow_the_documented_rule(demo_pcam):
    names = {"train": "train", "val": "valid", "test": "test"}
    xs, ys = {}, {}
    for split, sizes in zip(names, (768, 192, 192), strict=True):
        with h5py.File(demo_pcam / f"camelyonpatch_level_2_split_{names[split]}_x.h5") as f:
            assert list(f) == ["x"] and f["x"].shape == (sizes, 96, 96, 3)
            xs[split] = f["x"][:]
        with h5py.File(demo_pcam / f"camelyonpatch_level_2_split_{names[split]}_y.h5") as f:
            assert list(f) == ["y"] and f["y"].shape == (sizes, 1, 1, 1)
            ys[split] = f["y"][:].reshape(-1)
        assert xs[split].dtype == ys[split].dtype == np.uint8
        assert 0.2 < ys[split].mean() < 0.8
    # positive = centre 32x32 haematoxylin density above the median of all patches
    density = {s: rgb2hed(x[:, 32:64, 32:64])[..., 0].mean(axis=(1, 2)) for s, x in xs.items()}
    threshold = np.median(np.concatenate(list(density.values())))
    for split in names:
        np.testing.assert_array_equal(ys[split], density[split] > threshold)
    assert len({x.tobytes() for x in xs["train"][:100]}) == 100  # no duplicated patches
    readme = (demo_pcam / "README.md").read_text()
    assert "SYNTHETIC" in readme and "immunohistochemistry" in readme


def test_pcam_is_deterministic_small_and_checks(demo_pcam, tmp_path):
    again = write_demo_pcam(tmp_path / "again", seed=0)
    assert files_of(again) == files_of(demo_pcam)
    assert sum(len(b) for b in files_of(demo_pcam).values()) < 30 * MB
    report = check_dataset(demo_pcam).to_dict()
    assert report["splits"] == {"train": 768, "val": 192, "test": 192}


@pytest.mark.parametrize("kind", ["lgg", "pcam"])
def test_the_marker_lists_every_file_with_its_digest(demo_lgg, demo_pcam, kind):
    folder = demo_lgg if kind == "lgg" else demo_pcam
    marker = json.loads((folder / "medseg_demo.json").read_text())
    assert {k: marker[k] for k in ("synthetic", "kind", "written_by", "version", "seed")} == {
        "synthetic": True, "kind": kind, "written_by": "medseg demo-data", "version": __version__, "seed": 0,
    }
    written = {name: hashlib.sha256(data).hexdigest() for name, data in files_of(folder).items()
               if name != "medseg_demo.json"}
    assert marker["files"] == written
    assert read_demo_marker(folder) == marker
    if kind == "lgg":
        assert read_demo_marker(folder / "kaggle_3m") == marker  # where data.root may point


def test_no_marker_and_a_broken_marker(tmp_path):
    assert read_demo_marker(tmp_path) is None
    (tmp_path / "medseg_demo.json").write_text('{"synthetic": true, "kind": "lgg"}')
    with pytest.raises(DataError, match=r"medseg_demo\.json: not a valid medseg demo marker"):
        read_demo_marker(tmp_path)


def test_rewriting_replaces_only_the_demo_s_own_files(demo_pcam, tmp_path):
    folder = Path(shutil.copytree(demo_pcam, tmp_path / "pcam"))
    (folder / "notes.txt").write_text("mine")
    write_demo_pcam(folder, seed=1)
    assert read_demo_marker(folder)["seed"] == 1
    assert (folder / "notes.txt").read_text() == "mine"
    assert files_of(folder) != files_of(demo_pcam)


def test_a_changed_demo_file_is_never_replaced(demo_pcam, tmp_path):
    folder = Path(shutil.copytree(demo_pcam, tmp_path / "pcam"))
    real = folder / "camelyonpatch_level_2_split_train_x.h5"
    real.write_bytes(b"the user's real PCam file")
    before = files_of(folder)
    with pytest.raises(DataError, match=r"train_x\.h5: changed since medseg demo-data wrote it"):
        remove_demo(folder, "pcam")
    with pytest.raises(DataError, match=r"train_x\.h5: changed since"):
        write_demo_pcam(folder, seed=0)
    assert files_of(folder) == before


def test_a_file_of_a_demo_name_without_a_marker_is_never_replaced(tmp_path):
    folder = tmp_path / "pcam"
    folder.mkdir()
    (folder / "README.md").write_text("my notes")
    with pytest.raises(DataError, match=r"README\.md: exists and is not demo data"):
        write_demo_pcam(folder)
    assert (folder / "README.md").read_text() == "my notes"
