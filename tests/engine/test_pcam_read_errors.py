"""A corrupt chunk in a PCam HDF5 file is a one-line DataError naming the file and the patch,
also when training reaches it."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from medseg.cli.main import main
from medseg.config import DataConfig
from medseg.data.datasets import build_datasets
from medseg.errors import DataError, find_medseg_error
from tests.support import PCAM_SIZES, assert_log_ends_in_one_line_error, pcam_path, write_pcam

CHUNK = 4  # patches per chunk


def _corrupt_chunk(path, chunk: int) -> None:
    """Rewrite dataset ``x`` gzip-compressed with checksums, then overwrite bytes inside one of
    its chunks on disk."""
    with h5py.File(path, "r") as f:
        x = f["x"][()]
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=x, chunks=(CHUNK, 96, 96, 3), compression="gzip", fletcher32=True)
    with h5py.File(path, "r") as f:
        info = f["x"].id.get_chunk_info(chunk)
    with open(path, "r+b") as handle:
        handle.seek(info.byte_offset + info.size // 2)
        handle.write(np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8).tobytes())


@pytest.fixture
def damaged_pcam(tmp_path):
    root = write_pcam(tmp_path / "pcam").root
    _corrupt_chunk(pcam_path(root, "train", "x"), chunk=1)  # patches 4-7
    return root


def test_reading_a_corrupt_chunk_names_the_file_and_the_patch(damaged_pcam):
    train = build_datasets(DataConfig(format="pcam", root=str(damaged_pcam), num_workers=0), seed=0)["train"]
    assert train[3]["image"].shape == (3, 96, 96)  # the chunks around it still read
    with pytest.raises(Exception) as caught:
        train[5]
    error = find_medseg_error(caught.value)
    assert isinstance(error, DataError)
    assert str(error).startswith(f"{pcam_path(damaged_pcam, 'train', 'x')}: cannot read patch 5: corrupt ")
    assert "\n" not in str(error)


def test_training_into_a_corrupt_chunk_exits_2(damaged_pcam, tmp_path, pcam_settings, write_config, capsys):
    config = write_config(pcam_settings(damaged_pcam, tmp_path / "run"), tmp_path / "run.yaml")
    assert PCAM_SIZES["train"] <= 2 * 8  # one epoch reads every training patch
    assert main(["train", str(config)]) == 2
    # the patches are read as the first epoch runs, after the log's first line (the precision)
    err = capsys.readouterr().err
    assert_log_ends_in_one_line_error(err, f"medseg: error: {pcam_path(damaged_pcam, 'train', 'x')}: cannot read patch ")


@pytest.fixture
def pcam_with_a_group_x(tmp_path):
    """A PCam folder whose training ``x`` is a group holding the patches, not a dataset."""
    root = write_pcam(tmp_path / "pcam").root
    path = pcam_path(root, "train", "x")
    with h5py.File(path, "r") as f:
        x = f["x"][()]
    with h5py.File(path, "w") as f:
        f.create_group("x").create_dataset("patches", data=x)
    return root


def test_data_check_and_train_name_an_x_that_is_a_group(pcam_with_a_group_x, tmp_path, pcam_settings,
                                                       write_config, capsys):
    expected = f"medseg: error: {pcam_path(pcam_with_a_group_x, 'train', 'x')}: 'x' is a group, not a dataset\n"
    config = write_config(pcam_settings(pcam_with_a_group_x, tmp_path / "run"), tmp_path / "run.yaml")
    for args in (["data", "check", str(pcam_with_a_group_x)], ["train", str(config)]):
        assert main(args) == 2
        assert capsys.readouterr().err == expected
