"""Issue 22 through the app's upload functions, which call the same readers as ``medseg
predict``: RGB24 voxels, a volume of no voxel, values overflowing float32 and a DICOM
NumberOfFrames of "abc" are one-line DataErrors naming the uploaded file, not tracebacks."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from medseg.app.uploads import read_sequences, read_upload
from medseg.errors import DataError
from tests.imaging.hostile import rgb24, write_mr_small, write_nifti


def _nifti_bytes(tmp_path: Path, data: np.ndarray, **scaling: float) -> bytes:
    return write_nifti(tmp_path / "upload.nii", data, **scaling).read_bytes()


VOLUMES = {
    "rgb24": (lambda: rgb24((8, 8, 3)), {},
              "brain.nii: stores voxels of NIfTI datatype 128 (RGB); expected one grey value per voxel"),
    "no voxel": (lambda: np.zeros((8, 8, 0), np.float32), {},
                 "brain.nii: the volume declares shape 8x8x0, holding no voxel; there is no image"),
    "1e300": (lambda: np.full((8, 8, 3, 3), 1e300), {},
              "brain.nii: voxel values reach 1e+300, beyond the float32 range"),
    "scl_slope 3e38": (lambda: np.full((8, 8, 3), 7, np.int16), {"slope": 3e38},
                       "brain.nii: voxel values reach 2.1e+39 once scaled by scl_slope 3e+38"),
}


@pytest.mark.parametrize("case", VOLUMES)
def test_a_hostile_volume_upload_is_one_line_naming_the_upload(tmp_path, case):
    """Before: RGB24 raised UFuncTypeError, no voxel IndexError; 1e300 read as zeros."""
    make, scaling, message = VOLUMES[case]
    upload = ("brain.nii", _nifti_bytes(tmp_path, make(), **scaling))
    with pytest.raises(DataError) as err:
        read_upload(upload, single_sequence=True)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    if case != "1e300":  # 3-D: also an MR sequence upload
        with pytest.raises(DataError) as err:
            read_sequences({"flair": upload}, single_sequence=True)
        assert str(err.value).startswith(message)


def test_a_dicom_zip_with_number_of_frames_abc_is_one_line(tmp_path):
    """Before: int('abc') raised ValueError (a traceback in the app)."""
    dicom = write_mr_small(tmp_path / "IM1.dcm", NumberOfFrames="abc")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.write(dicom, "FLAIR/IM1.dcm")
    with pytest.raises(DataError) as err:
        read_sequences({"flair": ("flair.zip", buffer.getvalue())}, single_sequence=True)
    assert str(err.value) == "flair.zip:FLAIR/IM1.dcm: NumberOfFrames 'abc' is not a whole number"
