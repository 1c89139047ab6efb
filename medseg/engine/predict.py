"""``medseg predict``: tumour masks for slices, folders of slices, NIfTI volumes and the three
MR sequences of a scan given separately (NIfTI files or DICOM series).

Outputs are never named like expert masks (``*_mask.*``), so predicting into a folder of
slices and their masks leaves the masks alone:

| input | written under ``out_dir`` |
|---|---|
| slice ``x.png`` | ``x_pred.png`` (0/255, the input's size), ``x_pred_overlay.png`` |
| folder ``F`` | ``F/<slice>_pred.png``, ``F/<slice>_pred_overlay.png`` |
| volume ``scan.nii.gz`` | ``scan/scan_<k>_pred.png`` and ``_pred_overlay.png`` per axial slice, ``scan_pred.nii.gz`` |
| sequences (``pre``, ``flair``, ``post``) | as a volume named after the FLAIR input (:func:`~medseg.imaging.sequences.input_name`): ``<name>/<name>_<k>_pred.png`` ..., ``<name>_pred.nii.gz`` on its grid |
| a volume or sequences, also | ``<name>_pred.json``: the lesion report (:func:`prediction_report`) |
| sequences whose FLAIR (or only input) is a DICOM series, also | ``<name>_pred_seg.dcm``: a DICOM SEG in the source study (:mod:`medseg.imaging.dicom_seg`), unless the series lacks what a SEG refers to (the report and the record say why) |

The models read three MR sequences (pre-contrast T1, FLAIR, post-contrast T1 as RGB;
:mod:`medseg.imaging.sequences`). An input holding one sequence (a 3-D NIfTI volume, a grey
slice image, one or two of the sequence inputs) is refused unless ``single_sequence``; then
that sequence is repeated into all three channels, the record says so
(``Prediction.single_sequence``), the NIfTI mask's ``descrip`` is
:data:`SINGLE_SEQUENCE_MARK` and its PNGs carry the text ``Comment``
:data:`SINGLE_SEQUENCE_NOTE`. Volume intensities follow
:func:`~medseg.imaging.nifti.normalize_sequence` (integers within 0..255 kept as they are).

Every output path is planned before anything is written, and the whole run is refused
(:class:`~medseg.errors.DataError`, nothing written) when two inputs map to one output, when
an output would replace an input, when an output exists (unless ``overwrite`` and it is an
earlier prediction: PNGs carry the text chunk ``Software: medseg predict``, NIfTI masks a
description starting with ``medseg predict``, reports ``"written_by": "medseg predict"``,
DICOM SEGs that ManufacturerModelName), when an output would land inside a DICOM
series folder that is an input, or when ``out_dir`` is a file or cannot be written.

Example:
    >>> written = predict_paths("models/demo_lgg/best.pt", ["rgb_brain.nii.gz"], "predictions")
    >>> written = predict_paths("models/demo_lgg/best.pt", [], "predictions",
    ...                         sequences={"pre": "t1.nii.gz", "flair": "flair/", "post": "t1c.zip"})
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np
import torch
from nibabel.orientations import apply_orientation
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from medseg import __version__
from medseg.engine.checkpoint import load_model
from medseg.engine.distributed import resolve_device
from medseg.engine.inference import slice_probabilities
from medseg.errors import CheckpointError, DataError, MedsegError
from medseg.files import atomic_path, write_text
from medseg.imaging.dicom import DicomSeries, is_dicom_file, scan_dicom_series
from medseg.imaging.files import SKIPPED_NAMES, list_folder
from medseg.imaging.images import read_slice_image
from medseg.imaging.nifti import (
    Volume,
    count_volume_slices,
    inverse_transform,
    load_volume,
    save_mask_volume,
    volume_channels,
)
from medseg.imaging.sequences import (
    Grid,
    SequencePlan,
    grid_difference,
    load_sequences,
    one_sequence_error,
    plan_sequences,
    read_single_sequence_slice,
    slice_sequences,
)
from medseg.tasks import SEGMENTATION

if TYPE_CHECKING:  # highdicom (medseg.imaging.dicom_seg) is imported only for a DICOM input
    from highdicom.seg import Segmentation

SLICE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
VOLUME_SUFFIXES = (".nii", ".nii.gz")
#: what predicted files add to their input's name: ``<stem>_pred.png``, ``<name>_pred.nii.gz``
PRED = "_pred"
#: the mark of a file written by ``medseg predict`` (PNG ``Software`` text, NIfTI ``descrip``)
PREDICTION_MARK = "medseg predict"
#: what a prediction from one MR sequence repeated into the 3 channels says about itself
SINGLE_SEQUENCE_NOTE = "one MR sequence in all 3 channels"
#: the NIfTI ``descrip`` of such a prediction (still recognised as a prediction)
SINGLE_SEQUENCE_MARK = f"{PREDICTION_MARK}; {SINGLE_SEQUENCE_NOTE}"
#: stems of files in a folder that are never read as slices: expert masks and predictions
_NOT_SLICES = re.compile(r".*(_mask|_pred|_pred_overlay)", re.IGNORECASE)
OVERLAY_RGB = np.array([255, 221, 0], dtype=np.float32)  # the app's "predicted tumour" yellow
OVERLAY_ALPHA = 0.45
_CHUNK = 32  # slice files read and predicted at a time
_REPORT_BYTES = 64 * 2**20  # a larger .json is not a report of ours (is_prediction)


@dataclass
class Prediction:
    """What was written for one input."""

    input: Path  # for sequences: the FLAIR (or the only one given)
    kind: str  # "slice", "folder", "volume" or "sequences"
    slices: int = 0
    tumour_slices: int = 0
    tumour_pixels: int = 0
    files: list[Path] = field(default_factory=list)
    nonfinite_voxels: int = 0  # a volume's NaN/infinite voxels, read as background
    single_sequence: bool = False  # the model saw one MR sequence repeated in all 3 channels
    sequences: dict[str, Path] = field(default_factory=dict)  # "pre"/"flair"/"post" -> input
    tumour_volume_ml: float | None = None  # a volume's, with its lesion count (the report)
    lesions: int | None = None
    dicom_seg: Path | None = None  # the DICOM SEG written
    dicom_seg_skipped: str | None = None  # why a DICOM input got no SEG


@dataclass
class _Job:
    """One input and the outputs planned for it.

    ``sources`` are the slice files read (none for a volume); ``stems[i]`` names the PNGs of
    slice i in ``folder``; ``nifti`` is a volume's mask file and ``report`` its lesion report;
    ``plan`` the sequence inputs; ``seg`` the DICOM SEG of a DICOM reference, ``seg_series`` its
    source headers, or ``seg_skipped`` why there is none; ``grey`` the one-sequence slice
    files; ``single_sequence``: one sequence, repeated.
    """

    input: Path
    kind: str
    folder: Path
    sources: list[Path]
    stems: list[str]
    nifti: Path | None = None
    plan: SequencePlan | None = None
    grey: frozenset[Path] = frozenset()
    single_sequence: bool = False
    report: Path | None = None
    seg: Path | None = None
    seg_series: DicomSeries | None = None
    seg_skipped: str | None = None

    def inputs(self) -> list[Path]:
        """Every path read: slice files, the volume, the sequence inputs."""
        if self.plan is not None:
            return [source.path for source in self.plan.inputs]
        return self.sources or [self.input]

    def outputs(self) -> list[tuple[Path, Path]]:
        """(output file, the input file it comes from), in writing order."""
        origins = self.sources or [self.input] * len(self.stems)
        pairs = []
        for origin, stem in zip(origins, self.stems, strict=True):
            pairs += [(self.folder / f"{stem}{PRED}.png", origin),
                      (self.folder / f"{stem}{PRED}_overlay.png", origin)]
        pairs += [(path, self.input) for path in (self.nifti, self.seg, self.report) if path is not None]
        return pairs


def _is_volume(path: Path) -> bool:
    return path.name.lower().endswith(VOLUME_SUFFIXES)


def _volume_name(path: Path) -> str:
    name = path.name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else path.stem


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def folder_slices(folder: Path) -> list[Path]:
    """The slice images of a folder (kaggle_3m patient folder or any folder of slices) in
    natural order (``_2`` before ``_10``); expert masks (``*_mask.*``), predictions
    (``*_pred.*``, ``*_pred_overlay.*``) and hidden files (``._*`` included) left out.

    Raises:
        DataError: when the folder cannot be read.
    """
    return sorted(
        (p for p in list_folder(folder)
         if p.is_file() and p.suffix.lower() in SLICE_SUFFIXES and not SKIPPED_NAMES.fullmatch(p.name)
         and not _NOT_SLICES.fullmatch(p.stem)),
        key=_natural_key,
    )


def overlay(image_hwc: np.ndarray, mask_hw: np.ndarray) -> np.ndarray:
    """The slice with mask pixels blended towards yellow, (H, W, 3) uint8."""
    blended = image_hwc.astype(np.float32)
    tumour = mask_hw.astype(bool)
    blended[tumour] = (1 - OVERLAY_ALPHA) * blended[tumour] + OVERLAY_ALPHA * OVERLAY_RGB
    return np.rint(blended).clip(0, 255).astype(np.uint8)


def predict_masks(
    model: torch.nn.Module, images: Sequence[np.ndarray], image_size: int, threshold: float
) -> list[np.ndarray]:
    """Binary masks (H, W) uint8 in {0, 1} for RGB slices (H, W, 3) uint8 of any sizes:
    :func:`~medseg.engine.inference.slice_probabilities` at or above ``threshold``."""
    masks: list[np.ndarray] = [np.empty(0, np.uint8)] * len(images)
    by_size: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for index, image in enumerate(images):
        by_size[image.shape[:2]].append(index)
    for indices in by_size.values():
        probs = slice_probabilities(model, [images[i] for i in indices], image_size)
        for index, prob in zip(indices, probs, strict=True):
            masks[index] = (prob >= threshold).astype(np.uint8)
    return masks


_GIVE_DICOM = ("give a DICOM series as --pre, --flair and --post (or one of them with "
               "--single-sequence)")


def _grey_slices(sources: list[Path], single_sequence: bool) -> frozenset[Path]:
    """The one-sequence (grey) slice files among ``sources``.

    Raises:
        DataError: naming the first, unless ``single_sequence``.
    """
    grey = [p for p in sources if slice_sequences(p) == 1]
    if grey and not single_sequence:
        raise one_sequence_error(grey[0])
    return frozenset(grey)


def _plan_job(path: Path, out_dir: Path, single_sequence: bool = False) -> _Job:
    """The outputs of one input, from its name (a volume's header gives its slice count).

    Raises:
        DataError: for a missing input, an unsupported file, an empty folder, a volume
            whose header is refused, or one MR sequence without ``single_sequence``.
    """
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        slices = folder_slices(path)
        if not slices:
            if any(p.is_file() and is_dicom_file(p) for p in list_folder(path)):
                raise DataError(f"{path}: holds DICOM files, not slice images; {_GIVE_DICOM}")
            raise DataError(f"{path}: folder holds no slice images ({', '.join(SLICE_SUFFIXES)})")
        grey = _grey_slices(slices, single_sequence)
        return _Job(path, "folder", out_dir / path.resolve().name, slices, [p.stem for p in slices],
                    grey=grey, single_sequence=bool(grey))
    if _is_volume(path):
        name = _volume_name(path)
        stems = [f"{name}_{k}" for k in range(1, count_volume_slices(path) + 1)]
        single = volume_channels(path) == 1
        if single and not single_sequence:
            raise one_sequence_error(path)
        return _Job(path, "volume", out_dir / name, [], stems, out_dir / f"{name}{PRED}.nii.gz",
                    single_sequence=single, report=out_dir / f"{name}{PRED}.json")
    if path.suffix.lower() in SLICE_SUFFIXES:
        grey = _grey_slices([path], single_sequence)
        return _Job(path, "slice", out_dir, [path], [path.stem], grey=grey, single_sequence=bool(grey))
    if path.suffix.lower() in (".zip", ".dcm") or is_dicom_file(path):
        raise DataError(f"{path}: a DICOM input; {_GIVE_DICOM}")
    raise DataError(f"{path}: not a slice ({', '.join(SLICE_SUFFIXES)}) or a NIfTI volume (.nii, .nii.gz)")


def _plan_sequences(sequences: Mapping[str, str | Path | None], out_dir: Path,
                    single_sequence: bool) -> _Job:
    """The outputs of one scan's sequence inputs, checked from their headers (named after
    the FLAIR input).

    Raises:
        DataError: as :func:`~medseg.imaging.sequences.plan_sequences`.
    """
    plan = plan_sequences(sequences, single_sequence=single_sequence)
    name = plan.name
    stems = [f"{name}_{k}" for k in range(1, plan.slices + 1)]
    job = _Job(plan.reference.path, "sequences", out_dir / name, [], stems,
               out_dir / f"{name}{PRED}.nii.gz", plan=plan, single_sequence=plan.single,
               report=out_dir / f"{name}{PRED}.json")
    job.seg_series, job.seg_skipped = seg_source(plan)
    if job.seg_series is not None:
        job.seg = out_dir / f"{name}{PRED}_seg.dcm"
    return job


def seg_source(plan: SequencePlan) -> tuple[DicomSeries | None, str | None]:
    """The headers a DICOM SEG of the plan's prediction refers to, or why there is none:
    ``(series, None)`` for a DICOM reference a SEG can refer to, ``(None, why)`` for one it
    cannot (:func:`~medseg.imaging.dicom_seg.seg_refusal`), ``(None, None)`` for a NIfTI one.

    Raises:
        DataError: when the series is refused, or changed on disk since it was planned.
    """
    if not plan.reference.dicom:
        return None, None
    from medseg.imaging.dicom_seg import seg_refusal

    series = _seg_sources(plan)
    refusal = seg_refusal(series)
    return (None, refusal) if refusal is not None else (series, None)


def _seg_sources(plan: SequencePlan) -> DicomSeries:
    """The DICOM reference's headers, in slice order (read again, without pixel data, from
    its folder, zip or file), on the grid the plan checked.

    Raises:
        DataError: when the series is refused, or changed on disk since it was planned.
    """
    reference = plan.reference
    series = scan_dicom_series(reference.path)
    difference = grid_difference(Grid(series.shape, series.affine), reference.grid)
    if difference is not None:
        raise DataError(f"{reference.label}: changed on disk since it was checked ({difference})")
    return series


def is_prediction(path: Path) -> bool:
    """True when ``path`` is a file written by ``medseg predict`` (see :data:`PREDICTION_MARK`);
    only its header is read (a report: the whole file, when under 64 MiB)."""
    name = path.name.lower()
    if name.endswith(".json"):
        return _report_writer(path) == PREDICTION_MARK
    if name.endswith(".dcm"):
        from medseg.imaging.dicom_seg import seg_model_name

        return seg_model_name(path) == PREDICTION_MARK
    try:
        if path.name.lower().endswith(VOLUME_SUFFIXES):
            header = nib.load(path).header
            if not isinstance(header, nib.Nifti1Header):
                return False
            description = bytes(header["descrip"].item())
            return description == PREDICTION_MARK.encode() or description.startswith(
                f"{PREDICTION_MARK}; ".encode())
        with Image.open(path) as image:
            return image.format == "PNG" and image.info.get("Software") == PREDICTION_MARK
    except Exception:  # unreadable, not an image: not ours
        return False


def _report_writer(path: Path) -> object:
    """The ``written_by`` of a JSON report (None when unreadable or not one)."""
    try:
        if path.stat().st_size > _REPORT_BYTES:
            return None
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document.get("written_by") if isinstance(document, dict) else None


def _check_folder(folder: Path, out_dir: Path) -> None:
    """Refuse a planned folder that is a file, or whose nearest existing folder is not
    writable."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    where = f"--out {out_dir}" + ("" if existing == out_dir else f": {existing}")
    if not existing.is_dir():
        raise DataError(f"{where}: exists and is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(f"{where}: folder is not writable (permission denied or read-only)")


def _check_plan(jobs: list[_Job], out_dir: Path, overwrite: bool) -> None:
    """Refuse the plan before anything is written (see the module docstring).

    Raises:
        DataError: naming the output and the inputs or file in the way.
    """
    inputs = {p.resolve(): p for job in jobs for p in job.inputs()}
    series_folders = {source.folder.resolve(): source for job in jobs if job.plan is not None
                      for source in job.plan.inputs if source.folder is not None}
    planned: dict[Path, tuple[Path, Path]] = {}  # resolved output -> (output, the input it comes from)
    for job in jobs:
        for output, origin in job.outputs():
            key = output.resolve()
            if key in planned:
                other = planned[key][1]
                if other.resolve() == origin.resolve():
                    raise DataError(f"{origin}: given twice")
                raise DataError(
                    f"{output}: both {other} and {origin} would be written there; predict them "
                    "into different --out folders"
                )
            planned[key] = output, origin
            if key in inputs:
                raise DataError(f"{output}: is an input ({inputs[key]}); predictions never replace inputs")
            for folder, source in series_folders.items():
                if key.is_relative_to(folder):
                    raise DataError(f"{output}: would be written inside the DICOM series folder of "
                                    f"{source.label}; choose another --out")
    for folder in {out_dir, *(job.folder for job in jobs)}:
        _check_folder(folder, out_dir)
    for output, _ in planned.values():
        if output.is_dir():
            raise DataError(f"{output}: a folder is where a prediction would be written")
        if output.exists() or output.is_symlink():
            if not overwrite:
                raise DataError(f"{output}: already exists; remove it, choose another --out, or pass "
                                "--overwrite to replace earlier predictions")
            if not is_prediction(output):
                raise DataError(f"{output}: exists and was not written by medseg predict; --overwrite "
                                "replaces earlier predictions only")


def nifti_description(single_sequence: bool) -> str:
    """The ``descrip`` of a predicted NIfTI mask: :data:`SINGLE_SEQUENCE_MARK` for a
    prediction from one MR sequence, else :data:`PREDICTION_MARK`."""
    return SINGLE_SEQUENCE_MARK if single_sequence else PREDICTION_MARK


def png_text(single_sequence: bool) -> PngInfo:
    """The text chunks of a predicted PNG: ``Software`` :data:`PREDICTION_MARK`, and for a
    prediction from one MR sequence ``Comment`` :data:`SINGLE_SEQUENCE_NOTE`."""
    info = PngInfo()
    info.add_text("Software", PREDICTION_MARK)
    if single_sequence:
        info.add_text("Comment", SINGLE_SEQUENCE_NOTE)
    return info


def report_text(report: Mapping[str, Any]) -> str:
    """A report (:func:`prediction_report`) as the JSON text of ``<name>_pred.json``."""
    return json.dumps(report, indent=2) + "\n"


def _write_error(path: Path, err: OSError) -> DataError:
    return DataError(f"{path}: cannot write the prediction ({err.strerror or err})")


def _write_png(path: Path, picture: np.ndarray, single_sequence: bool) -> None:
    try:
        with atomic_path(path) as tmp:
            Image.fromarray(picture).save(tmp, format="PNG", pnginfo=png_text(single_sequence))
    except OSError as err:
        raise _write_error(path, err) from None


def _write_slice_outputs(image: np.ndarray, mask: np.ndarray, folder: Path, stem: str, record: Prediction,
                         single_sequence: bool) -> None:
    mask_path, overlay_path = folder / f"{stem}{PRED}.png", folder / f"{stem}{PRED}_overlay.png"
    try:
        folder.mkdir(parents=True, exist_ok=True)  # only once there is something to write
    except OSError as err:
        raise _write_error(folder, err) from None
    _write_png(mask_path, mask * 255, single_sequence)
    _write_png(overlay_path, overlay(image, mask), single_sequence)
    record.files += [mask_path, overlay_path]
    record.slices += 1
    record.tumour_pixels += int(mask.sum())
    record.tumour_slices += int(mask.any())


def _read_volume(job: _Job) -> Volume:
    if job.plan is not None:
        return load_sequences(job.plan)
    return load_volume(job.input)


def _read_slice(path: Path, grey: frozenset[Path]) -> np.ndarray:
    return read_single_sequence_slice(path) if path in grey else read_slice_image(path)


def _segmentation(job: _Job, volume: Volume, masks: np.ndarray, threshold: float) -> Segmentation | None:
    """The DICOM SEG of a DICOM reference's mask (N, H, W), or None when none is planned.

    Raises:
        DataError: when highdicom refuses the source series.
    """
    if job.seg_series is None or job.plan is None:
        return None
    return prediction_segmentation(masks, volume, job.plan, job.seg_series, threshold)


def prediction_segmentation(masks: np.ndarray, volume: Volume, plan: SequencePlan, series: DicomSeries,
                            threshold: float) -> Segmentation:
    """The DICOM SEG of a mask (N, H, W) predicted over ``volume``
    (:func:`~medseg.imaging.sequences.load_sequences` of ``plan``) at ``threshold``, referring to
    the reference's ``series`` (:func:`seg_source`); it records the sequences used and says
    when one was repeated.

    Raises:
        DataError: when highdicom refuses the source series.
    """
    from medseg.imaging.dicom_seg import CONTENT_DESCRIPTION, build_segmentation

    keys = ", ".join(source.key for source in plan.inputs)
    parameters = {"threshold": f"{threshold:g}",
                  "sequences": f"{keys} repeated into 3 channels" if plan.single else keys}
    description = f"RESEARCH USE ONLY; {SINGLE_SEQUENCE_NOTE}" if plan.single else CONTENT_DESCRIPTION
    in_file_order = apply_orientation(masks, inverse_transform(volume.slice_transform()))
    return build_segmentation(in_file_order, series, model_name=PREDICTION_MARK,
                              parameters=parameters, content_description=description)


def prediction_report(record: Prediction, threshold: float, lesions: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON report of a volume prediction (``<name>_pred.json``).

    Keys: ``written_by`` (:data:`PREDICTION_MARK`), ``medseg_version``, ``input`` (the volume,
    or the FLAIR / only sequence input), ``sequences`` (``pre``/``flair``/``post`` -> input,
    when given), ``single_sequence``, ``threshold``, then ``lesions``
    (:func:`~medseg.engine.lesions.lesion_report`: ``voxel_size_mm``, ``voxel_volume_ml``,
    ``tumour_voxels``, ``tumour_volume_ml``, ``lesions``, ``n_lesions``), and for a DICOM
    reference ``dicom_seg``: ``{"file": "<name>_pred_seg.dcm"}``, or ``{"file": null,
    "skipped": why}``.

    Example:
        >>> prediction_report(record, 0.5, lesion_report(masks, affine, ornt))["n_lesions"]
        2
    """
    report: dict[str, Any] = {"written_by": PREDICTION_MARK, "medseg_version": __version__,
                              "input": str(record.input)}
    if record.sequences:
        report["sequences"] = {key: str(path) for key, path in record.sequences.items()}
    report.update(single_sequence=record.single_sequence, threshold=threshold, **lesions)
    if record.dicom_seg is not None:
        report["dicom_seg"] = {"file": record.dicom_seg.name}
    elif record.dicom_seg_skipped is not None:
        report["dicom_seg"] = {"file": None, "skipped": record.dicom_seg_skipped}
    return report


def _run_volume(job: _Job, nifti: Path, model: torch.nn.Module, size: int, threshold: float,
                record: Prediction) -> None:
    """Predict a volume or sequence set and write its PNGs, mask ``nifti``, SEG and report (in
    that order; the SEG is built before anything is written)."""
    volume = _read_volume(job)
    record.nonfinite_voxels = volume.nonfinite_voxels
    images = list(volume.slices)
    masks = predict_masks(model, images, size, threshold)
    stack = np.stack(masks)
    seg = _segmentation(job, volume, stack, threshold)
    for image, mask, stem in zip(images, masks, job.stems, strict=True):
        _write_slice_outputs(image, mask, job.folder, stem, record, job.single_sequence)
    try:
        save_mask_volume(stack, volume, nifti, description=nifti_description(job.single_sequence))
    except OSError as err:
        raise _write_error(nifti, err) from None
    record.files.append(nifti)
    if seg is not None and job.seg is not None:
        from medseg.imaging.dicom_seg import save_segmentation

        try:
            save_segmentation(seg, job.seg)
        except OSError as err:
            raise _write_error(job.seg, err) from None
        record.files.append(job.seg)
        record.dicom_seg = job.seg
    record.dicom_seg_skipped = job.seg_skipped
    # here, not at the top: SciPy's import is 0.3 s of a one-slice cold start, and only
    # volumes are measured
    from medseg.engine.lesions import lesion_report

    lesions = lesion_report(stack, volume.affine, volume.slice_transform())
    record.tumour_volume_ml, record.lesions = lesions["tumour_volume_ml"], lesions["n_lesions"]
    if job.report is not None:
        try:
            write_text(job.report, report_text(prediction_report(record, threshold, lesions)))
        except OSError as err:
            raise _write_error(job.report, err) from None
        record.files.append(job.report)


def _run_job(job: _Job, model: torch.nn.Module, size: int, threshold: float) -> Prediction:
    record = Prediction(job.input, job.kind, single_sequence=job.single_sequence)
    if job.plan is not None:
        record.sequences = {source.key: source.path for source in job.plan.inputs}
    if job.nifti is not None:  # a volume or sequences
        _run_volume(job, job.nifti, model, size, threshold, record)
        return record
    for start in range(0, len(job.sources), _CHUNK):
        chunk = job.sources[start : start + _CHUNK]
        images = [_read_slice(p, job.grey) for p in chunk]
        masks = predict_masks(model, images, size, threshold)
        stems = job.stems[start : start + _CHUNK]
        for path, image, mask, stem in zip(chunk, images, masks, stems, strict=True):
            _write_slice_outputs(image, mask, job.folder, stem, record, path in job.grey)
    return record


def predict_paths(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    sequences: Mapping[str, str | Path | None] | None = None,
    single_sequence: bool = False,
    threshold: float = 0.5,
    device: str = "auto",
    overwrite: bool = False,
) -> list[Prediction]:
    """Predict tumour masks for every input and write them under ``out_dir``.

    Args:
        checkpoint: a segmentation checkpoint written by ``medseg train``.
        inputs: slice images (.tif/.png/.jpg), folders of slices (a kaggle_3m patient
            folder: masks beside the slices are ignored) or NIfTI volumes (.nii/.nii.gz;
            3 channels last, or one sequence with ``single_sequence``).
        out_dir: single slices are written here; a folder or volume gets ``out_dir/<name>/``
            for its slices, and a volume ``out_dir/<name>_pred.nii.gz`` and its lesion report
            ``out_dir/<name>_pred.json`` (plus ``out_dir/<name>_pred_seg.dcm`` for a DICOM
            FLAIR or single input).
        sequences: one scan's MR sequences, ``{"pre": ..., "flair": ..., "post": ...}``,
            each a NIfTI file or a DICOM series (folder, .zip or file) on one voxel grid;
            predicted as a volume named after the FLAIR input (last in the results).
        single_sequence: accept inputs holding one MR sequence (a 3-D volume, a grey slice,
            a single sequence input) and repeat it into the three channels.
        threshold: probability at or above which a pixel is tumour.
        device: "auto", "cpu", "cuda", ...
        overwrite: replace outputs that an earlier ``medseg predict`` wrote (never any
            other file, never an input).

    Raises:
        CheckpointError: for an unreadable or classification checkpoint.
        DataError: for no input, a missing or unreadable input, one MR sequence without
            ``single_sequence``, sequences on different grids, or a refused plan (module
            docstring), checked before anything is written; for a DICOM series a SEG cannot
            be made of (highdicom refuses it), before that input's files are written; for an
            output that cannot be written.
        MedsegError: for a threshold outside (0, 1).
    """
    if not 0.0 < threshold < 1.0:
        raise MedsegError(f"--threshold: {threshold} must be between 0 and 1")
    given = {key: path for key, path in (sequences or {}).items() if path is not None}
    if not inputs and not given:
        raise DataError("no input: give slices, folders or volumes (INPUT), or --pre, --flair "
                        "and --post")
    out_dir = Path(out_dir)
    jobs = [_plan_job(Path(p), out_dir, single_sequence) for p in inputs]
    if given:
        jobs.append(_plan_sequences(given, out_dir, single_sequence))
    _check_plan(jobs, out_dir, overwrite)
    loaded = load_model(checkpoint, device=resolve_device(device, option="--device"))
    if loaded.task != SEGMENTATION.name:
        raise CheckpointError(
            f"{checkpoint}: a {loaded.task} checkpoint; medseg predict needs a segmentation checkpoint"
        )
    size = loaded.config.data.image_size
    return [_run_job(job, loaded.model, size, threshold) for job in jobs]
