"""Datasets, splits, transforms, NIfTI volumes, DICOM series, MR sequences, dataset checks
and demo data.

Samples are dicts. LGG (segmentation): ``image`` float32 (3, S, S) normalized per channel,
``label`` float32 (1, S, S) in {0, 1}, ``patient`` str, ``slice`` int (1-based). PCam
(classification): ``image`` float32 (3, 96, 96), ``label`` float32 (1,), ``index`` int.

Pipelines return plain tensors; :func:`use_plain_tensors` (called once at start-up, as the
``medseg`` command and the app do) makes them faster by switching MONAI's MetaTensor tracking
off for the process.

The names below are imported on first use (PEP 562): importing one module of the package
(``medseg.data.nifti``, say) no longer loads them all (MONAI, h5py, scikit-image, pydicom).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medseg.lazy import lazy_exports

if TYPE_CHECKING:
    from medseg.data.check import DatasetReport, check_dataset
    from medseg.data.datasets import build_datasets
    from medseg.data.demo_lgg import write_demo_lgg
    from medseg.data.demo_marker import DEMO_MARKER, read_demo_marker
    from medseg.data.demo_pcam import write_demo_pcam
    from medseg.data.dicom import DicomSeries, DicomVolume, read_dicom_series, scan_dicom_series
    from medseg.data.lgg import (
        LggScan,
        Patient,
        Slice,
        find_lgg_root,
        list_patients,
        read_mask,
        read_slice_image,
        scan_lgg,
    )
    from medseg.data.nifti import (
        Volume,
        load_mask_volume,
        load_volume,
        normalize_sequence,
        save_mask_volume,
    )
    from medseg.data.pcam import LoadPCamPatchd, pcam_files
    from medseg.data.preprocess import preprocess_image, preprocess_patch
    from medseg.data.sequences import SEQUENCES, SequencePlan, load_sequences, plan_sequences
    from medseg.data.splits import read_split_file, save_split, split_patients
    from medseg.data.transforms import (
        LoadLGGSliced,
        lgg_transforms,
        pcam_transforms,
        use_plain_tensors,
    )

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "DatasetReport": "medseg.data.check",
    "check_dataset": "medseg.data.check",
    "build_datasets": "medseg.data.datasets",
    "write_demo_lgg": "medseg.data.demo_lgg",
    "DEMO_MARKER": "medseg.data.demo_marker",
    "read_demo_marker": "medseg.data.demo_marker",
    "write_demo_pcam": "medseg.data.demo_pcam",
    "DicomSeries": "medseg.data.dicom",
    "DicomVolume": "medseg.data.dicom",
    "read_dicom_series": "medseg.data.dicom",
    "scan_dicom_series": "medseg.data.dicom",
    "LggScan": "medseg.data.lgg",
    "Patient": "medseg.data.lgg",
    "Slice": "medseg.data.lgg",
    "find_lgg_root": "medseg.data.lgg",
    "list_patients": "medseg.data.lgg",
    "read_mask": "medseg.data.lgg",
    "read_slice_image": "medseg.data.lgg",
    "scan_lgg": "medseg.data.lgg",
    "Volume": "medseg.data.nifti",
    "load_mask_volume": "medseg.data.nifti",
    "load_volume": "medseg.data.nifti",
    "normalize_sequence": "medseg.data.nifti",
    "save_mask_volume": "medseg.data.nifti",
    "LoadPCamPatchd": "medseg.data.pcam",
    "pcam_files": "medseg.data.pcam",
    "SEQUENCES": "medseg.data.sequences",
    "SequencePlan": "medseg.data.sequences",
    "load_sequences": "medseg.data.sequences",
    "plan_sequences": "medseg.data.sequences",
    "read_split_file": "medseg.data.splits",
    "save_split": "medseg.data.splits",
    "split_patients": "medseg.data.splits",
    "LoadLGGSliced": "medseg.data.transforms",
    "lgg_transforms": "medseg.data.transforms",
    "pcam_transforms": "medseg.data.transforms",
    "preprocess_image": "medseg.data.preprocess",
    "preprocess_patch": "medseg.data.preprocess",
    "use_plain_tensors": "medseg.data.transforms",
}

__all__ = [
    "DEMO_MARKER",
    "SEQUENCES",
    "DatasetReport",
    "DicomSeries",
    "DicomVolume",
    "LggScan",
    "LoadLGGSliced",
    "LoadPCamPatchd",
    "Patient",
    "SequencePlan",
    "Slice",
    "Volume",
    "build_datasets",
    "check_dataset",
    "find_lgg_root",
    "lgg_transforms",
    "list_patients",
    "load_mask_volume",
    "load_sequences",
    "load_volume",
    "normalize_sequence",
    "pcam_files",
    "pcam_transforms",
    "plan_sequences",
    "preprocess_image",
    "preprocess_patch",
    "read_demo_marker",
    "read_dicom_series",
    "read_mask",
    "read_slice_image",
    "read_split_file",
    "save_mask_volume",
    "save_split",
    "scan_dicom_series",
    "scan_lgg",
    "split_patients",
    "use_plain_tensors",
    "write_demo_lgg",
    "write_demo_pcam",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
