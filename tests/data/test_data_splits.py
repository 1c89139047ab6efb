"""Patient-level splits: properties, persistence, reuse through ``split_file``."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.data import CacheDataset, DataLoader

from medseg.config import DataConfig
from medseg.data.datasets import build_datasets
from medseg.data.splits import read_split_file, save_split, split_patients
from medseg.errors import DataError, find_medseg_error


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(3, 60),
    val=st.sampled_from([0.0, 0.05, 0.1, 0.2, 0.3]),
    test=st.sampled_from([0.0, 0.05, 0.1, 0.2, 0.3]),
    seed=st.integers(0, 2**31),
)
def test_split_is_a_seeded_partition_of_patients(n, val, test, seed):
    patients = [f"TCGA_XX_{i:04d}_20000101" for i in range(n)]
    split = split_patients(patients, val, test, seed)
    parts = [set(split[k]) for k in ("train", "val", "test")]
    assert sum(len(p) for p in parts) == n and set().union(*parts) == set(patients)
    assert len(split["val"]) == (max(1, round(n * val)) if val else 0)
    assert len(split["test"]) == (max(1, round(n * test)) if test else 0)
    assert len(split["train"]) >= 1
    assert all(split[k] == sorted(split[k]) for k in split)
    assert split_patients(list(reversed(patients)), val, test, seed) == split


def test_different_seeds_give_different_splits():
    patients = [f"P{i:02d}" for i in range(30)]
    splits = {tuple(split_patients(patients, 0.2, 0.2, seed)["test"]) for seed in range(5)}
    assert len(splits) == 5


def test_too_few_patients_is_a_data_error():
    with pytest.raises(DataError, match=r"cannot split 2 patients.*need at least 3 patients"):
        split_patients(["a", "b"], 0.1, 0.1, seed=0)


def test_save_and_load_round_trip(tmp_path):
    split = {"train": ["a", "b"], "val": ["c"], "test": ["d"]}
    save_split(split, tmp_path / "run" / "split.json", seed=7)
    assert json.loads((tmp_path / "run" / "split.json").read_text()) == {"seed": 7, **split}
    assert read_split_file(tmp_path / "run" / "split.json") == (split, 7)
    save_split(split, tmp_path / "run" / "split.json")
    assert read_split_file(tmp_path / "run" / "split.json") == (split, None)
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["split.json"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a readable JSON split file"),
        ('{"train": ["a"], "val": []}', "'test' must be a list of patient names"),
        ('{"train": ["a"], "val": ["a"], "test": []}', "patient a is in both 'train' and 'val'"),
    ],
)
def test_bad_split_files(tmp_path, content, message):
    (tmp_path / "split.json").write_text(content)
    with pytest.raises(DataError, match=rf"split\.json: {message}"):
        read_split_file(tmp_path / "split.json")


def test_build_datasets_splits_by_patient_and_writes_split_json(lgg, tmp_path):
    cfg = DataConfig(root=str(lgg.top), image_size=32, val_fraction=0.25, test_fraction=0.25)
    datasets = build_datasets(cfg, seed=3, run_dir=tmp_path / "run")
    split, seed = read_split_file(tmp_path / "run" / "split.json")
    assert seed == 3
    assert split == split_patients(list(lgg.images), 0.25, 0.25, seed=3)
    for name in ("train", "val", "test"):
        records = datasets[name].data
        assert {r["patient"] for r in records} == set(split[name])
        assert len(records) == sum(len(lgg.images[p]) for p in split[name])
    sample = datasets["val"][0]
    assert sample["patient"] == split["val"][0] and sample["slice"] == 1
    # evaluation splits keep the mask at the slice's native size (40x56)
    assert sample["image"].shape == (3, 32, 32) and sample["label"].shape == (1, 40, 56)
    assert datasets["train"][0]["label"].shape == (1, 32, 32)


def test_split_file_is_reused_and_copied_to_the_run(lgg, tmp_path):
    patients = sorted(lgg.images)
    save_split({"train": patients[:2], "val": patients[2:3], "test": patients[3:]},
               tmp_path / "mine.json", seed=11)
    cfg = DataConfig(root=str(lgg.root), image_size=32, split_file=str(tmp_path / "mine.json"))
    datasets = build_datasets(cfg, seed=0, run_dir=tmp_path / "run")
    assert {r["patient"] for r in datasets["val"].data} == {patients[2]}
    assert json.loads((tmp_path / "run" / "split.json").read_text())["seed"] == 11


def test_split_file_with_unknown_patient_names_the_file(lgg, tmp_path):
    save_split({"train": ["TCGA_ZZ_9999_19990101"], "val": [], "test": []}, tmp_path / "s.json")
    cfg = DataConfig(root=str(lgg.top), split_file=str(tmp_path / "s.json"))
    with pytest.raises(DataError, match=r"s\.json: split lists patients that are not in .*"
                                        r"TCGA_ZZ_9999_19990101"):
        build_datasets(cfg, seed=0)


def test_max_samples_keeps_the_first_slices_of_each_split(lgg):
    cfg = DataConfig(root=str(lgg.top), image_size=32, val_fraction=0.25, test_fraction=0.25,
                     max_samples=2)
    datasets = build_datasets(cfg, seed=0)
    for dataset in datasets.values():
        assert [r["slice"] for r in dataset.data] == [1, 2]


def test_cache_dataset_gives_the_same_eval_samples(lgg):
    cfg = DataConfig(root=str(lgg.top), image_size=32, augment=False, num_workers=0)
    plain = build_datasets(cfg, seed=0)["train"]
    cached = build_datasets(dataclasses.replace(cfg, cache=True), seed=0)["train"]
    assert isinstance(cached, CacheDataset)
    for i in (0, len(plain) - 1):
        assert plain[i]["patient"] == cached[i]["patient"]
        assert plain[i]["slice"] == cached[i]["slice"]
        assert type(cached[i]["image"]) is type(plain[i]["image"])
        assert plain[i]["image"].equal(cached[i]["image"])
        assert plain[i]["label"].equal(cached[i]["label"])


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_a_corrupt_slice_s_data_error_is_found_behind_monai_and_dataloader_workers(lgg):
    path = lgg.root / "TCGA_AA_0001_20000101" / "TCGA_AA_0001_20000101_2.tif"
    path.write_bytes(b"II*\x00garbage")
    cfg = DataConfig(root=str(lgg.top), image_size=32, val_fraction=0.0, test_fraction=0.0)
    train = build_datasets(cfg, seed=0)["train"]
    attempts = [
        lambda: train[1],
        lambda: list(DataLoader(train, batch_size=4, num_workers=2)),
        lambda: build_datasets(dataclasses.replace(cfg, cache=True, num_workers=0), seed=0),
    ]
    for attempt in attempts:
        with pytest.raises(RuntimeError) as caught:
            attempt()
        found = find_medseg_error(caught.value)
        assert type(found) is DataError
        assert str(found).startswith(f"{path}: cannot read TIFF (") and "\n" not in str(found)
