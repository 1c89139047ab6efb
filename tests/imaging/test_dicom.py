"""DICOM series: the real files pydicom ships, and series written here with known geometry
(slice order from positions, RAS affine, rescale, refusals, zips)."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.pixels import get_decoder

import medseg.imaging.dicom
from medseg.errors import DataError
from medseg.imaging.dicom import ZIP_SLACK_BYTES, read_dicom_series, scan_dicom_series
from tests.support import write_dicom_series

MR_SMALL = Path(get_testdata_file("MR_small.dcm"))
#: MR_small.dcm's header: ImagePositionPatient, PixelSpacing 0.3125, SliceThickness 0.8, axial
MR_SMALL_AFFINE = np.array([[-0.3125, 0, 0, 83.9063], [0, -0.3125, 0, 91.2], [0, 0, 0.8, 6.6406],
                            [0, 0, 0, 1]])
ROWS, COLUMNS = 12, 16  # not square: a transposition cannot go unnoticed


def _pydicom_folder(name: str) -> Path:
    return Path(get_testdata_files(f"dicomdirtests/98892003/{name}/*")[0]).parent


def _copy(files, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for file in files:
        shutil.copy(file, folder / Path(file).name)
    return folder


def _stack(n: int = 3, seed: int = 0) -> np.ndarray:
    """(n, ROWS, COLUMNS) uint16 slices; slice k holds k + 1 in pixel [0, 0]."""
    pixels = np.random.default_rng(seed).integers(0, 4000, size=(n, ROWS, COLUMNS)).astype(np.uint16)
    pixels[:, 0, 0] = np.arange(1, n + 1)
    return pixels


def test_mr_small_is_a_one_slice_series_with_its_geometry(tmp_path):
    stored = pydicom.dcmread(MR_SMALL).pixel_array
    for given in (MR_SMALL, _copy([MR_SMALL], tmp_path / "series")):
        volume = read_dicom_series(given)
        assert volume.series.shape == (64, 64, 1)
        np.testing.assert_allclose(volume.series.affine, MR_SMALL_AFFINE, atol=1e-6)
        np.testing.assert_array_equal(volume.values[:, :, 0], stored.T)  # (Columns, Rows, N)
        assert volume.values.dtype == np.float32


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
                                  "MR_small_jpeg_ls_lossless.dcm", "MR_small_bigendian.dcm"])
def test_encoded_variants_decode_to_mr_small_or_are_refused_by_name(name):
    path = Path(get_testdata_file(name))
    syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    if name in ("MR_small_RLE.dcm", "MR_small_bigendian.dcm"):
        assert get_decoder(syntax).is_available  # pydicom alone decodes these
    if get_decoder(syntax).is_available:  # JPEG 2000 with Pillow's OpenJPEG
        np.testing.assert_array_equal(read_dicom_series(path).values, read_dicom_series(MR_SMALL).values)
    else:  # JPEG-LS without a plugin
        with pytest.raises(DataError, match=rf"{name}: pixel data encoded as {syntax.name} .* no "
                                            r"installed decoder reads"):
            scan_dicom_series(path)


def _no_decoder_known(syntax):
    raise NotImplementedError(f"no decoder for {syntax}")


@pytest.mark.parametrize("get_decoder", [
    lambda syntax: SimpleNamespace(is_available=False),  # a decoder whose plugin is missing
    _no_decoder_known,  # pydicom knows no decoder at all
])
def test_a_syntax_no_installed_decoder_reads_is_refused_before_decoding(monkeypatch, get_decoder):
    """JPEG-LS needs a plugin (highdicom brings pyjpegls); without one, a clear refusal."""
    path = Path(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"))
    monkeypatch.setattr(medseg.imaging.dicom, "get_decoder", get_decoder)
    with pytest.raises(DataError) as err:
        read_dicom_series(path)
    assert str(err.value).count("\n") == 0
    assert "JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80)" in str(err.value)


def test_truncated_pixel_data_is_refused_by_name():
    with pytest.raises(DataError, match=r"MR_truncated\.dcm: cannot decode the pixel data \(The number "
                                        r"of bytes of pixel data is less than expected"):
        read_dicom_series(get_testdata_file("MR_truncated.dcm"))


def test_pydicom_mr_folders_hold_several_series_and_are_refused_with_the_list():
    with pytest.raises(DataError) as err:
        read_dicom_series(_pydicom_folder("MR1"))
    message = str(err.value)
    assert "MR1: holds 3 series, expected one: " in message
    for uid in ("1.3.6.1.4.1.5962.1.1.0.0.0.1196533885.18148.0.475",
                "1.3.6.1.4.1.5962.1.1.0.0.0.1196533885.18148.0.134",
                "1.3.6.1.4.1.5962.1.1.0.0.0.1196533885.18148.0.15"):
        assert f"{uid} (FAST LOCALIZER, 1 file)" in message
    with pytest.raises(DataError, match=r"MR2: holds 3 series.*\.136 \(T/S/C RF FAST PILOT, 3 files\)"):
        scan_dicom_series(_pydicom_folder("MR2"))


def test_a_tri_planar_localizer_is_not_one_stack(tmp_path):
    """MR2's series ...0.136: three files, one axial and two coronal."""
    files = [f for f in _pydicom_folder("MR2").iterdir()
             if pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID.endswith(".136")]
    assert len(files) == 3
    with pytest.raises(DataError, match=r"ImageOrientationPatient .* differs from .*; a series is one "
                                        r"stack of parallel slices"):
        scan_dicom_series(_copy(files, tmp_path / "localizer"))


def test_slices_are_sorted_by_position_not_by_name_or_instance_number(tmp_path):
    pixels = _stack()
    # z = 14, 10, 12 mm written as a.dcm, b.dcm, c.dcm: sorted by z the order is b, c, a
    files = write_dicom_series(tmp_path / "s", pixels, [(-5, -7, 14), (-5, -7, 10), (-5, -7, 12)],
                               names=["a.dcm", "b.dcm", "c.dcm"], pixel_spacing=(0.5, 0.8))
    volume = read_dicom_series(tmp_path / "s")
    assert volume.series.files == tuple(str(files[k]) for k in (1, 2, 0))
    assert volume.series.shape == (COLUMNS, ROWS, 3)
    for k, source in enumerate((1, 2, 0)):
        np.testing.assert_array_equal(volume.values[:, :, k], pixels[source].T)
    # columns step 0.8 mm along x, rows 0.5 mm along y, slices 2 mm along z; LPS -> RAS
    expected = np.array([[-0.8, 0, 0, 5], [0, -0.5, 0, 7], [0, 0, 2, 10], [0, 0, 0, 1]])
    np.testing.assert_allclose(volume.series.affine, expected)


def test_first_slice_is_the_lowest_along_the_normal_not_the_lowest_coordinate(tmp_path):
    # sagittal: rows along +y (posterior), columns along -z (downwards): normal = -x (right)
    sagittal = (0, 1, 0, 0, 0, -1)
    pixels = _stack()
    write_dicom_series(tmp_path / "s", pixels, [(1, 0, 0), (5, 0, 0), (3, 0, 0)], orientation=sagittal)
    volume = read_dicom_series(tmp_path / "s")
    # positions along the normal: -1, -5, -3 -> order x = 5, 3, 1
    assert [int(volume.values[0, 0, k]) for k in range(3)] == [2, 3, 1]
    expected = np.array([[0, 0, 2, -5], [-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]])
    np.testing.assert_allclose(volume.series.affine, expected)


#: MR_small tilted 35 degrees from sagittal about the patient's y axis: rows along +y
#: (posterior), columns (sin 35, 0, -cos 35) (down and to the left): normal (-cos 35, 0, -sin 35)
OBLIQUE = (0, 1, 0, 0.573576, 0, -0.819152)
OBLIQUE_NORMAL = np.array([-0.819152, 0, -0.573576])
#: slice k written (and numbered) as OBLIQUE_NAMES[k]: neither names nor InstanceNumbers sort
OBLIQUE_NAMES = ("IM3", "IM5", "IM1", "IM4", "IM2")


def _oblique_mr_small_series(folder: Path) -> list[np.ndarray]:
    """Five slices cut from MR_small.dcm's real pixels (64 rows x 48 columns, columns 4k to
    4k + 47 for slice k), OBLIQUE, slice k at (10, 20, -90) + 3 k mm along the normal (LPS),
    written in shuffled file order. Returns the slices' stored pixels, k order."""
    source = pydicom.dcmread(MR_SMALL)
    slices = [np.ascontiguousarray(source.pixel_array[:, 4 * k : 4 * k + 48]) for k in range(5)]
    folder.mkdir()
    for k in (2, 4, 0, 3, 1):
        ds = pydicom.dcmread(MR_SMALL)
        ds.Columns = 48
        ds.PixelData = slices[k].tobytes()
        ds.ImageOrientationPatient = [f"{v:g}" for v in OBLIQUE]
        ds.ImagePositionPatient = [f"{v:.4f}" for v in np.array([10, 20, -90]) + 3 * k * OBLIQUE_NORMAL]
        ds.InstanceNumber = int(OBLIQUE_NAMES[k][2:])
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{source.SOPInstanceUID}.{k}"
        ds.save_as(folder / OBLIQUE_NAMES[k], enforce_file_format=True)
    return slices


def test_an_oblique_series_is_sorted_along_its_normal_not_by_its_dominant_axis(tmp_path):
    """Positions go down in z and x (the dominant axes of the normal and of the positions) as
    they go up along the normal: sorting by either of those would reverse the stack."""
    slices = _oblique_mr_small_series(tmp_path / "oblique")
    volume = read_dicom_series(tmp_path / "oblique")
    assert volume.series.files == tuple(str(tmp_path / "oblique" / OBLIQUE_NAMES[k]) for k in range(5))
    assert volume.series.shape == (48, 64, 5)
    for k in range(5):
        np.testing.assert_array_equal(volume.values[:, :, k], slices[k].T)
    # columns: row cosine x 0.3125; rows: column cosine x 0.3125; slices: 3 mm along the
    # normal; origin (10, 20, -90); x and y negated (LPS -> RAS)
    expected = np.array([[0, -0.3125 * 0.573576, 3 * 0.819152, -10],
                         [-0.3125, 0, 0, -20],
                         [0, -0.3125 * 0.819152, -3 * 0.573576, -90],
                         [0, 0, 0, 1]])
    np.testing.assert_allclose(volume.series.affine, expected, atol=1e-4)


def test_rescale_slope_and_intercept_are_applied(tmp_path):
    pixels = _stack()
    write_dicom_series(tmp_path / "s", pixels, [(0, 0, z) for z in (0, 1, 2)], slope=2, intercept=-100)
    values = read_dicom_series(tmp_path / "s").values
    np.testing.assert_array_equal(values[:, :, 1], 2.0 * pixels[1].T - 100)
    assert values[0, 0, 0] == -98  # stored 1


def test_each_slice_is_rescaled_by_its_own_slope_and_intercept(tmp_path):
    """Philips MR and PET store a RescaleSlope / RescaleIntercept per image, not per series."""
    pixels = _stack()
    rescale = {0: (1.0, 0.0), 1: (2.0, -100.0), 2: (0.5, 10.0)}  # slice k (z = k mm): slope, intercept
    files = write_dicom_series(tmp_path / "s", pixels, [(0, 0, z) for z in (2, 0, 1)], slope=1, intercept=0)
    for file, z in zip(files, (2, 0, 1), strict=True):
        ds = pydicom.dcmread(file)
        ds.RescaleSlope, ds.RescaleIntercept = (f"{v:g}" for v in rescale[z])
        ds.save_as(file, enforce_file_format=True)
    values = read_dicom_series(tmp_path / "s").values
    for z, source in enumerate((1, 2, 0)):  # the file written at z
        slope, intercept = rescale[z]
        np.testing.assert_array_equal(values[:, :, z], slope * pixels[source].T.astype(np.float32) + intercept)


def test_images_of_another_size_or_pixel_spacing_are_refused_by_name(tmp_path):
    folder = tmp_path / "s"
    files = write_dicom_series(folder, _stack(), [(0, 0, z) for z in (0, 1, 2)], pixel_spacing=(0.5, 0.8))
    ds = pydicom.dcmread(files[1])
    ds.PixelSpacing = ["0.5", "0.9"]
    ds.save_as(files[1], enforce_file_format=True)
    with pytest.raises(DataError, match=r"slice1\.dcm: PixelSpacing \[0\.5, 0\.9\] differs from "
                                        r".*slice0\.dcm's \[0\.5, 0\.8\]$"):
        scan_dicom_series(folder)
    write_dicom_series(folder, _stack(1)[:, :, :-1], [(0, 0, 1)], names=["slice1.dcm"], pixel_spacing=(0.5, 0.8))
    with pytest.raises(DataError, match=rf"slice1\.dcm: {ROWS}x{COLUMNS - 1} pixels, .*slice0\.dcm has "
                                        rf"{ROWS}x{COLUMNS}; a series is one stack of equal images"):
        read_dicom_series(folder)


def test_two_series_in_one_folder_are_listed(tmp_path):
    write_dicom_series(tmp_path / "s", _stack(2), [(0, 0, 0), (0, 0, 1)], names=["a1", "a2"],
                       series_uid="1.2.3.1", description="T1 pre")
    write_dicom_series(tmp_path / "s", _stack(3), [(0, 0, z) for z in (0, 1, 2)],
                       names=["b1", "b2", "b3"], series_uid="1.2.3.2", description="FLAIR")
    with pytest.raises(DataError, match=r"s: holds 2 series, expected one: 1\.2\.3\.1 \(T1 pre, 2 files\); "
                                        r"1\.2\.3\.2 \(FLAIR, 3 files\); give a folder \(or zip\) per series"):
        read_dicom_series(tmp_path / "s")


@pytest.mark.parametrize(("zs", "message"), [
    ((0, 2, 5), r"s: slices are not evenly spaced: steps of 2 to 3 mm along the slice normal "
                r"\(.*slice0\.dcm to .*slice1\.dcm: 2 mm, off the mean step by 0\.5 mm\)"),
    ((0, 2, 4.05), r"steps of 2 to 2\.05 mm"),  # off the mean by 0.025 > 0.01 + 0.1% of 2.025
    ((0, 2, 2), r"slice1\.dcm and .*slice2\.dcm lie at the same position \(2 mm"),
])
def test_uneven_or_repeated_positions_are_refused(tmp_path, zs, message):
    write_dicom_series(tmp_path / "s", _stack(), [(0, 0, z) for z in zs])
    with pytest.raises(DataError, match=message):
        scan_dicom_series(tmp_path / "s")


def test_rounding_jitter_in_positions_is_tolerated(tmp_path):
    # off the mean step (2.005 mm) by 0.005 mm: within 0.01 mm + 0.1%
    write_dicom_series(tmp_path / "s", _stack(), [(0, 0, z) for z in (0, 2, 4.01)])
    assert scan_dicom_series(tmp_path / "s").affine[2, 2] == pytest.approx(2.005)


@pytest.mark.parametrize("keyword", ["ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"])
def test_missing_geometry_is_refused_by_file(tmp_path, keyword):
    files = write_dicom_series(tmp_path / "s", _stack(2), [(0, 0, 0), (0, 0, 1)])
    ds = pydicom.dcmread(files[1])
    delattr(ds, keyword)
    ds.save_as(files[1])
    with pytest.raises(DataError, match=rf"slice1\.dcm: no usable {keyword}"):
        scan_dicom_series(tmp_path / "s")


def test_other_files_are_refused_but_mac_litter_is_skipped(tmp_path):
    folder = tmp_path / "s"
    write_dicom_series(folder, _stack(2), [(0, 0, 0), (0, 0, 1)])
    (folder / "._slice0.dcm").write_bytes(b"\0\5\26\7 AppleDouble")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "__MACOSX").mkdir()
    assert read_dicom_series(folder).series.shape == (COLUMNS, ROWS, 2)
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"notes\.txt: not a DICOM file"):
        scan_dicom_series(folder)


def test_the_voxel_cap_is_checked_before_any_pixel_data_is_decoded(tmp_path, monkeypatch):
    files = write_dicom_series(tmp_path / "s", _stack(), [(0, 0, z) for z in (0, 1, 2)])
    files[1].write_bytes(files[1].read_bytes()[:-50])  # truncated pixel data, never decoded
    monkeypatch.setenv("MEDSEG_MAX_VOLUME_VOXELS", str(COLUMNS * ROWS * 3 - 1))
    with pytest.raises(DataError, match=rf"s: the volume declares shape {COLUMNS}x{ROWS}x3 = "):
        read_dicom_series(tmp_path / "s")
    monkeypatch.setenv("MEDSEG_MAX_VOLUME_VOXELS", str(COLUMNS * ROWS * 3))
    with pytest.raises(DataError, match=r"slice1\.dcm: cannot decode the pixel data"):
        read_dicom_series(tmp_path / "s")


def test_a_zip_of_a_series_reads_like_its_folder(tmp_path):
    pixels = _stack()
    files = write_dicom_series(tmp_path / "s", pixels, [(0, 0, z) for z in (4, 0, 2)])
    archive = tmp_path / "flair.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in files:
            zf.write(file, f"FLAIR/{file.name}")
        zf.writestr("__MACOSX/FLAIR/._slice0.dcm", b"\0\5\26\7")
        zf.writestr("FLAIR/.DS_Store", b"Bud1")
    shutil.rmtree(tmp_path / "s")
    volume = read_dicom_series(archive)
    assert volume.series.files == tuple(f"{archive}:FLAIR/slice{k}.dcm" for k in (1, 2, 0))
    np.testing.assert_array_equal(volume.values[:, :, 0], pixels[1].T)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flair.zip"]  # nothing extracted


def test_a_zip_member_climbing_out_is_refused_and_nothing_is_written(tmp_path):
    work = tmp_path / "work"
    files = write_dicom_series(work / "s", _stack(2), [(0, 0, 0), (0, 0, 1)])
    archive = work / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(files[0], "series/slice0.dcm")
        zf.write(files[1], "../evil.dcm")
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(DataError, match=r"evil\.zip: member '\.\./evil\.dcm' has an unsafe path"):
        read_dicom_series(archive)
    assert sorted(tmp_path.rglob("*")) == before
    assert not (tmp_path / "evil.dcm").exists()


def test_a_zip_declaring_too_much_is_refused_before_decompressing(tmp_path, monkeypatch):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("s/a.dcm", b"\0" * (ZIP_SLACK_BYTES + 8))
    monkeypatch.setenv("MEDSEG_MAX_VOLUME_VOXELS", "1")
    with pytest.raises(DataError, match=rf"bomb\.zip: its files declare {ZIP_SLACK_BYTES + 8} bytes "
                                        r"uncompressed, over the limit"):
        scan_dicom_series(archive)


def test_not_a_zip_and_empty_inputs(tmp_path):
    (tmp_path / "broken.zip").write_bytes(b"PK not really")
    with pytest.raises(DataError, match=r"broken\.zip: cannot read zip"):
        scan_dicom_series(tmp_path / "broken.zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: holds no DICOM files"):
        scan_dicom_series(tmp_path / "empty")
