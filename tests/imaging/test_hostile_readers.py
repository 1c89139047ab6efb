"""The readers under hostile input (issue 22): a FIFO or a device is refused by name and never
opened; a header declaring gigabytes is refused before anything is allocated; values that
overflow float32 are refused, not read as zeros; damaged headers are one-line DataErrors."""

from __future__ import annotations

import os
import shutil
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from medseg.errors import DataError
from medseg.imaging.dicom import is_dicom_file, read_dicom_series, scan_dicom_series
from medseg.imaging.images import read_mask, read_slice_image
from medseg.imaging.limits import check_image_size, check_volume_shape, load_image
from medseg.imaging.nifti import (
    count_volume_slices,
    load_mask_volume,
    load_volume,
    volume_channels,
)
from tests.imaging.hostile import (
    MR_SMALL,
    TWO_GIB,
    fifo,
    no_hang,
    rgb24,
    write_mr_small,
    write_nifti,
    write_sparse_dicom,
)
from tests.support import write_dicom_series

READERS = {
    "load_image": (load_image, "slice.png"),
    "read_slice_image": (read_slice_image, "slice.tif"),
    "read_mask": (read_mask, "slice_mask.tif"),
    "load_volume": (load_volume, "flair.nii.gz"),
    "load_mask_volume": (load_mask_volume, "mask.nii"),
    "count_volume_slices": (count_volume_slices, "brain.nii"),
    "volume_channels": (volume_channels, "brain.nii.gz"),
    "read_dicom_series (file)": (read_dicom_series, "flair.dcm"),
    "scan_dicom_series (zip)": (scan_dicom_series, "flair.zip"),
    "is_dicom_file": (is_dicom_file, "flair"),
}


def _fifo_refusal(path: Path) -> str:
    return f"{path}: not a regular file (a FIFO); medseg reads only regular files"


@pytest.mark.parametrize("reader", READERS)
def test_a_fifo_is_refused_by_name_without_opening_it(tmp_path, reader):
    read, name = READERS[reader]
    path = fifo(tmp_path / name)
    with no_hang(), pytest.raises(DataError) as err:
        read(path)
    assert str(err.value) == _fifo_refusal(path)


@pytest.mark.parametrize("read", [load_image, load_volume, read_dicom_series])
def test_a_device_is_refused_without_reading_it(read):
    with no_hang(), pytest.raises(DataError, match=r"^/dev/zero: not a regular file \(a character "
                                                   r"device\)"):
        read(Path("/dev/zero"))  # would read zeros without end


def test_a_fifo_among_a_series_files_is_refused_by_name(tmp_path):
    folder = tmp_path / "flair"
    write_dicom_series(folder, np.ones((2, 4, 5), np.uint16), [(0, 0, 0), (0, 0, 1)])
    pipe = fifo(folder / "slice2.dcm")
    with no_hang(), pytest.raises(DataError) as err:
        read_dicom_series(folder)
    assert str(err.value) == _fifo_refusal(pipe)


def test_is_dicom_file_still_answers_for_files_folders_and_nothing(tmp_path):
    assert is_dicom_file(MR_SMALL)
    assert not is_dicom_file(tmp_path) and not is_dicom_file(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("hello")
    assert not is_dicom_file(tmp_path / "notes.txt")


def _peak_bytes(read, path: Path) -> tuple[DataError, int]:
    """The DataError ``read(path)`` raises and the peak of Python allocations meanwhile."""
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as err:
            read(path)
        return err.value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_sparse_dicom_declaring_2_gib_of_pixels_is_refused_before_reading(tmp_path):
    """64x64 pixels of 16 bits are 8192 bytes; the PixelData length field says 2 GiB and the
    file is that long (sparse). Before: the whole value was read, then decoded (~9 GB)."""
    path = write_sparse_dicom(tmp_path / "sparse.dcm")
    assert path.stat().st_size > TWO_GIB
    error, peak = _peak_bytes(read_dicom_series, path)
    assert str(error) == (f"{path}: PixelData declares {TWO_GIB} bytes, but 64x64 pixels of 16 bits "
                          "take 8192; refused before reading")
    assert peak < 4 * 2**20


def _encapsulated_with_a_2_gib_fragment(path: Path) -> Path:
    """MR_small_RLE.dcm whose one RLE fragment declares 2 GiB, the file holding them (sparse)
    and the sequence delimiter after them: well-formed, and 2 GiB of encapsulated data."""
    data = bytearray(Path(get_testdata_file("MR_small_RLE.dcm")).read_bytes())
    at = data.rfind(b"\xe0\x7f\x10\x00OB\x00\x00") + 28  # tag, VR, length, offset table item
    struct.pack_into("<I", data, at, TWO_GIB)
    with open(path, "wb") as handle:
        handle.write(bytes(data[: at + 4]))
        handle.seek(at + 4 + TWO_GIB)
        handle.write(b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")
    return path


def test_encapsulated_pixel_data_of_2_gib_is_refused_before_reading(tmp_path):
    path = _encapsulated_with_a_2_gib_fragment(tmp_path / "rle.dcm")
    error, peak = _peak_bytes(read_dicom_series, path)
    assert str(error).startswith(f"{path}: its encapsulated PixelData may take ")
    assert str(error).endswith("over 81920 (64x64 pixels of 16 bits take 8192); refused before reading")
    assert peak < 4 * 2**20


def _with_a_2_gib_element(path: Path, marker: bytes, nested: bool) -> Path:
    """MR_small.dcm holding an OB element of 2 GiB (sparse) before its pixel data: a private
    element of the dataset, or the pixel data of an icon image (nested in a sequence)."""
    import pydicom
    from pydicom.dataset import Dataset

    dataset = pydicom.dcmread(MR_SMALL)
    if nested:
        icon = Dataset()
        icon.add_new(0x7FE00010, "OB", marker)
        icon.is_undefined_length_sequence_item = True
        dataset.IconImageSequence = [icon]
        dataset["IconImageSequence"].is_undefined_length = True  # parsed as read, not skipped
    else:
        block = dataset.private_block(0x0029, "medseg test", create=True)
        block.add_new(0x10, "OB", marker)
    dataset.save_as(path)
    data = path.read_bytes()
    at = data.index(marker)
    assert struct.unpack_from("<I", data, at - 4)[0] == len(marker)
    with open(path, "wb") as handle:
        handle.write(data[: at - 4] + struct.pack("<I", TWO_GIB))
        handle.seek(at + TWO_GIB)
        handle.write(data[at + len(marker):])
    return path


def test_a_2_gib_header_element_is_skipped_not_read(tmp_path):
    path = _with_a_2_gib_element(tmp_path / "private.dcm", b"\x5a" * 16, nested=False)
    tracemalloc.start()
    try:
        values = read_dicom_series(path).values
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(values, read_dicom_series(MR_SMALL).values)
    assert peak < 4 * 2**20


def test_a_2_gib_element_nested_in_a_sequence_is_refused_before_reading(tmp_path):
    path = _with_a_2_gib_element(tmp_path / "icon.dcm", b"\x5a" * 16, nested=True)
    error, peak = _peak_bytes(scan_dicom_series, path)
    assert str(error).startswith(f"{path}: declares more data than its image needs (a read of "
                                 f"{TWO_GIB} bytes")
    assert peak < 4 * 2**20


@pytest.mark.parametrize(("values", "message"), [
    ({"NumberOfFrames": "abc"}, "NumberOfFrames 'abc' is not a whole number"),
    ({"NumberOfFrames": "-2"}, "NumberOfFrames -2 is negative"),
    ({"SamplesPerPixel": None, "NumberOfFrames": "1.5"}, "NumberOfFrames '1.5' is not a whole number"),
    ({"SliceThickness": "abc"}, "SliceThickness 'abc' is not a number"),
    ({"SliceThickness": "inf"}, "SliceThickness 'inf' is not a number"),
])
def test_header_numbers_that_are_not_numbers_are_one_line_refusals(tmp_path, values, message):
    values = {keyword: value for keyword, value in values.items() if value is not None}
    path = write_mr_small(tmp_path / "frames.dcm", **values)
    with pytest.raises(DataError) as err:
        read_dicom_series(path)
    assert str(err.value) == f"{path}: {message}"


@pytest.mark.filterwarnings("ignore:A value of '0'")
def test_a_zero_number_of_frames_still_reads_as_one(tmp_path):
    path = write_mr_small(tmp_path / "zero.dcm", NumberOfFrames="0")
    np.testing.assert_array_equal(read_dicom_series(path).values, read_dicom_series(MR_SMALL).values)


# --- NIfTI values ------------------------------------------------------------------------


def test_float64_values_overflowing_float32_are_refused_not_zeroed(tmp_path):
    """Before: cast to float32 they became inf, the percentiles NaN, the slices all zero."""
    data = np.random.default_rng(0).random((6, 5, 4)) * 1e300
    path = write_nifti(tmp_path / "huge.nii", data)
    with pytest.raises(DataError) as err:
        load_volume(path)
    assert str(err.value) == (f"{path}: voxel values reach {np.abs(data).max():.3g}, beyond the float32 "
                              "range (±3.4e+38) intensities are computed in; refused, not read as zeros")


def test_a_scl_slope_scaling_past_float32_is_refused(tmp_path):
    data = np.arange(1, 121, dtype=np.int16).reshape(6, 5, 4)
    path = write_nifti(tmp_path / "slope.nii", data, slope=3e38)
    for read in (load_volume, load_mask_volume):
        with pytest.raises(DataError, match=r"slope\.nii: voxel values reach 3\.6e\+40 once scaled by "
                                            r"scl_slope 3e\+38 and scl_inter 0, beyond the float32"):
            read(path)


@pytest.mark.parametrize("slope", [np.inf, -np.inf])
def test_an_infinite_scl_slope_is_refused(tmp_path, slope):
    """nibabel ignores an infinite scl_slope and reads the voxels unscaled (an infinite
    scl_inter it refuses itself)."""
    path = write_nifti(tmp_path / "inf.nii", np.ones((6, 5, 4), np.int16), slope=slope)
    with pytest.raises(DataError) as err:
        load_volume(path)
    assert str(err.value) == f"{path}: scl_slope is {slope:g}; the voxel values cannot be scaled"


def test_nan_padding_stays_background_under_a_finite_slope(tmp_path):
    """The NaN-padding rule still holds when the file is scaled: stored NaN is padding."""
    data = np.arange(120, dtype=np.float32).reshape(6, 5, 4)
    data[0, 0, :2] = np.nan
    volume = load_volume(write_nifti(tmp_path / "padded.nii", data, slope=2.0, inter=1.0))
    assert volume.nonfinite_voxels == 2


def test_rgb24_and_complex_voxels_are_refused_by_datatype(tmp_path):
    """Before: RGB24 raised numpy's UFuncTypeError (a traceback); complex read as zeros."""
    for name, data, datatype in (("rgb.nii", rgb24((6, 5, 4)), "128 (RGB)"),
                                 ("complex.nii.gz", np.ones((6, 5, 4), np.complex64), "32 (complex64)")):
        path = write_nifti(tmp_path / name, data)
        for read in (load_volume, load_mask_volume, count_volume_slices):
            with pytest.raises(DataError) as err:
                read(path)
            assert str(err.value) == (f"{path}: stores voxels of NIfTI datatype {datatype}; expected one "
                                      "grey value per voxel (an integer or floating-point datatype)")


@pytest.mark.parametrize("shape", [(6, 5, 0), (0, 5, 4), (6, 5, 4, 0)])
def test_a_volume_of_no_voxel_is_refused_from_its_header(tmp_path, shape):
    """Before: IndexError (load_volume) or "changed on disk" (predict --flair)."""
    path = write_nifti(tmp_path / "empty.nii", np.zeros(shape, np.float32))
    with pytest.raises(DataError) as err:
        count_volume_slices(path)
    declared = "x".join(map(str, shape))
    assert str(err.value) == f"{path}: the volume declares shape {declared}, holding no voxel; there is no image"
    with pytest.raises(DataError, match="holding no voxel"):
        load_volume(path)


def test_the_size_checks_refuse_nothing_to_read():
    with pytest.raises(DataError, match=r"^s: the volume declares shape 0x64x1, holding no voxel"):
        check_volume_shape("s", (0, 64, 1))  # a DICOM series of Columns 0
    with pytest.raises(DataError, match=r"^a\.tif: the image declares 0x5 pixels; there is no image"):
        check_image_size("a.tif", (0, 5))


def test_a_series_folder_of_regular_files_still_reads(tmp_path):
    """The refusals above leave an ordinary copy of MR_small alone."""
    folder = tmp_path / "series"
    folder.mkdir()
    shutil.copy(MR_SMALL, folder / "IM1")
    os.symlink(folder / "IM1", tmp_path / "link.dcm")  # a link to a regular file is read
    assert read_dicom_series(folder).series.shape == (64, 64, 1)
    assert read_dicom_series(tmp_path / "link.dcm").series.shape == (64, 64, 1)


def test_a_sparse_tail_after_the_pixel_data_is_not_parsed(tmp_path):
    """Reading stops after the pixel data (and at tags that do not ascend): 2 GiB of zeros
    after it are neither read nor parsed element by element (8 bytes at a time: minutes)."""
    path = tmp_path / "tail.dcm"
    shutil.copy(get_testdata_file("MR_small_RLE.dcm"), path)
    os.truncate(path, TWO_GIB)
    with no_hang(10):
        values = read_dicom_series(path).values
    np.testing.assert_array_equal(values, read_dicom_series(MR_SMALL).values)
