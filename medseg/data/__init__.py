"""Datasets, splits, transforms, NIfTI volumes, DICOM series, MR sequences, dataset checks
and demo data.

Samples are dicts. LGG (segmentation): ``image`` float32 (3, S, S) normalized per channel,
``label`` float32 (1, S, S) in {0, 1}, ``patient`` str, ``slice`` int (1-based). PCam
(classification): ``image`` float32 (3, 96, 96), ``label`` float32 (1,), ``index`` int.

Pipelines return plain tensors; :func:`use_plain_tensors` (called once at start-up, as the
``medseg`` command and the app do) makes them faster by switching MONAI's MetaTensor tracking
off for the process.
"""

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
from medseg.data.sequences import SEQUENCES, SequencePlan, load_sequences, plan_sequences
from medseg.data.splits import read_split_file, save_split, split_patients
from medseg.data.transforms import (
    LoadLGGSliced,
    lgg_transforms,
    pcam_transforms,
    preprocess_image,
    preprocess_patch,
    use_plain_tensors,
)

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
