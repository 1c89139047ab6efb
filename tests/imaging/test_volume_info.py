"""What a slot's file holds, from its headers: hand-made NIfTI affines and DICOM series, their
size, spacing and orientation; the SeriesDescription keyword rule."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medseg.errors import DataError
from medseg.imaging.dicom import scan_dicom_series
from medseg.imaging.volume_info import (
    dicom_info,
    image_plane,
    nifti_info,
    suggested_sequence,
)
from tests.support import write_dicom_series

CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # rows towards the feet, columns to the patient's left


def test_nifti_size_zooms_and_axis_codes(tmp_path):
    affine = np.array([[0, 0, -1.5, 10], [-0.8, 0, 0, 20], [0, 2.0, 0, -5], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(np.zeros((7, 5, 3), np.int16), affine), tmp_path / "t1.nii.gz")
    info = nifti_info(tmp_path / "t1.nii.gz")
    assert info.size == (7, 5, 3) and info.spacing == pytest.approx((0.8, 2.0, 1.5))
    assert info.axes == "PSL" and info.description == "" and info.modality == ""
    assert info.text() == "NIfTI: 7 × 5 × 3 voxels, voxels 0.8 × 2 × 1.5 mm, axes PSL"
    (tmp_path / "bad.nii").write_bytes(b"x")
    with pytest.raises(DataError, match=r"bad\.nii: cannot read NIfTI"):
        nifti_info(tmp_path / "bad.nii")


def test_dicom_description_modality_size_spacing_and_plane(tmp_path):
    pixels = np.zeros((3, 4, 6), np.uint16)  # 3 slices of 4 rows x 6 columns
    write_dicom_series(tmp_path / "axial", pixels, [(0.0, 0.0, 4.0 * k) for k in range(3)],
                       pixel_spacing=(0.9, 0.5), description="AX T1 POST GD")
    info = dicom_info(scan_dicom_series(tmp_path / "axial"))
    assert (info.kind, info.modality, info.description) == ("DICOM", "MR", "AX T1 POST GD")
    assert info.size == (4, 6, 3)  # rows x columns x slices
    assert info.spacing == pytest.approx((0.9, 0.5, 4.0)) and info.thickness == 1.0
    assert info.plane == "axial" and info.axes == "LPS"
    assert info.text() == ("DICOM MR “AX T1 POST GD”: 4 × 6 × 3 (rows × columns × slices), pixels "
                           "0.9 × 0.5 mm, slices 4 mm apart (1 mm thick), axial, axes LPS")
    write_dicom_series(tmp_path / "coronal", pixels, [(0.0, -3.0 * k, 0.0) for k in range(3)],
                       orientation=CORONAL, description="COR FLAIR")
    info = dicom_info(scan_dicom_series(tmp_path / "coronal"))
    assert info.plane == "coronal" and info.axes == "LIP"  # slices sorted along the normal


@pytest.mark.parametrize(("normal", "plane"), [
    ((0, 0, 1), "axial"), ((0, 1, 0), "coronal"), ((1, 0, 0), "sagittal"),
    ((0, 0.6, 0.8), "axial"), ((0, 0.62, 0.78), "oblique"),
])
def test_image_plane_by_the_largest_component_of_the_normal(normal, plane):
    normal = np.asarray(normal, dtype=float)
    first = np.cross(normal, [1.0, 0, 0] if abs(normal[0]) < 0.9 else [0, 1.0, 0])
    second = np.cross(normal, first)
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1] = 2 * first / np.linalg.norm(first), second / np.linalg.norm(second)
    assert image_plane(affine) == plane


@pytest.mark.parametrize(("description", "sequence"), [
    ("Ax FLAIR", "flair"), ("T2 FLAIR post", "flair"), ("t1_pre-contrast", "pre"),
    ("Pre-contrast T1", "pre"), ("AX T1 POST GD", "post"), ("T1+C", "post"), ("t1ce", "post"),
    ("T1 MPRAGE CONTRAST", "post"), ("Ax T1 CE", "post"), ("Sag T1 MPRAGE", "pre"), ("T1", "pre"),
    ("AX T2", None), ("DWI b1000", None), ("", None), ("T10 map", None), ("preview", None),
    ("decent", None),
])
def test_the_series_description_keyword_rule(description, sequence):
    assert suggested_sequence(description) == sequence
