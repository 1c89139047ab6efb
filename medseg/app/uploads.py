"""Checking and reading uploads: one file (a slice + mask, a NIfTI volume + mask volume) or a
scan's three MR sequences (NIfTI files or zipped DICOM series, + a mask volume).

Uploads are written only into a private :class:`tempfile.TemporaryDirectory` that is removed
before the function returns, under fixed names (``image.png``, ``flair.zip``, ``mask.nii.gz``:
the uploaded name never becomes a path), and read back with the readers ``medseg predict``
uses, so the rules are the same (:mod:`medseg.imaging.sequences`): the slice and volume readers,
the intensity rule, one voxel grid for the sequences, the DICOM refusals, and one MR sequence
(a 3-D NIfTI volume, a grey slice, one of the three sequences) refused unless
``single_sequence``, then repeated into the three channels. Every problem is a one-line
:class:`~medseg.errors.DataError` naming the uploaded file (shortened, control characters
shown as ``?``; sequences by their uploader's label,
:data:`~medseg.imaging.sequences.SEQUENCE_TITLES`). An upload is classified by
:func:`~medseg.predict.inputs.classify_input`, as ``medseg predict`` classifies its inputs.

Downloads are named by :func:`~medseg.predict.outputs.download_name`: ``<stem>_pred.png`` for a
slice; for a volume ``<stem>_pred.nii.gz`` on its grid, the lesion report ``<stem>_pred.json``
and, for a DICOM FLAIR a SEG can refer to, ``<stem>_pred_seg.dcm``, with the contents
``medseg predict`` writes (:mod:`medseg.predict.formats`).

Example:
    >>> upload = read_upload(("case.png", png_bytes), ("case_mask.png", mask_bytes))
    >>> upload.images.shape, upload.masks.shape
    ((1, 256, 256, 3), (1, 256, 256))
    >>> upload = read_sequences({"pre": ("t1.nii.gz", t1), "flair": ("flair.zip", flair),
    ...                          "post": ("t1c.nii.gz", t1c)})
"""

from __future__ import annotations

import os
import tempfile
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from nibabel.orientations import apply_orientation

from medseg.app.text import one_line, shown_name
from medseg.app.viewer import SEQUENCE_CHANNELS, VIEW_NAMES
from medseg.engine.lesions import lesion_report, stack_geometry
from medseg.errors import DataError
from medseg.imaging.dicom import DicomSeries, scan_dicom_series
from medseg.imaging.dicom_seg import segmentation_bytes
from medseg.imaging.images import read_mask
from medseg.imaging.nifti import Volume, load_mask_volume, load_volume
from medseg.imaging.seg_masks import read_seg_mask
from medseg.imaging.sequences import (
    READS_THREE,
    SEQUENCE_TITLES,
    SEQUENCES,
    OneSequenceError,
    SequencePlan,
    load_sequence_mask,
    load_sequences,
    missing_sequences,
    plan_sequences,
)
from medseg.imaging.volume_info import (
    VolumeInfo,
    dicom_info,
    nifti_info,
    seg_info,
    suggested_sequence,
)
from medseg.predict import (
    SEQUENCE_SUFFIXES,
    SLICE_SUFFIXES,
    VOLUME_SUFFIXES,
    classify_input,
    file_suffix,
    prediction_report,
    prediction_segmentation,
    read_slice,
    seg_source,
)
from medseg.predict.reference import ReferenceScore, score_reference

#: longest file name most file systems accept, in bytes (UTF-8)
MAX_NAME_BYTES = 255
#: the choice that repeats one MR sequence into the three channels, as messages name it
SINGLE_SEQUENCE_BOX = "Use this one sequence in all three channels"
#: the MRI-sequence view of a single sequence whose role is unknown (a 3-D NIfTI, a grey slice)
ONE_SEQUENCE_VIEW = "One sequence (given)"

#: an expert mask of three sequences given as a DICOM SEG over one of their DICOM series
SEG_SUFFIX = ".dcm"
#: what the three sequences' expert-mask uploader takes: a NIfTI volume or a DICOM SEG
SEQUENCE_MASK_SUFFIXES = (*VOLUME_SUFFIXES, SEG_SUFFIX)

#: (file name, file bytes) as handed over by the browser.
UploadedFile = tuple[str, bytes]
_T = TypeVar("_T")


@dataclass
class Upload:
    """A decoded upload: ``images`` (N, H, W, 3) uint8 and optional ``masks`` (N, H, W) {0, 1}.

    Attributes:
        name: the uploaded name the downloads are named after: the one file, or the FLAIR
            (else the only) sequence.
        volume: the :class:`~medseg.imaging.nifti.Volume` of a volume or sequences (None for a
            slice): its grid is the NIfTI download's.
        pixel_area_mm2: the in-plane pixel area when the file carries a spacing.
        single_sequence: one MR sequence, repeated into the three channels.
        sequences: sequence (``pre``, ``flair``, ``post``) -> uploaded name, in sequence mode.
        plan: the checked sequence inputs (their temporary files are gone).
        seg_series: the DICOM reference's headers, when a DICOM SEG can refer to them.
        seg_skipped: why a DICOM reference gets no DICOM SEG.
        mask_name: the uploaded expert mask's name, when one was given.
    """

    name: str
    images: np.ndarray
    masks: np.ndarray | None
    volume: Volume | None
    pixel_area_mm2: float | None
    single_sequence: bool = False
    sequences: dict[str, str] = field(default_factory=dict)
    plan: SequencePlan | None = None
    seg_series: DicomSeries | None = None
    seg_skipped: str | None = None
    mask_name: str | None = None

    @property
    def is_volume(self) -> bool:
        return self.volume is not None

    @property
    def dicom(self) -> bool:
        """The slices and grid come from a DICOM series (viewed as stored)."""
        return self.plan is not None and self.plan.reference.dicom

    @property
    def views(self) -> dict[str, int | None]:
        """The MRI-sequence views that exist, name -> channel (None: the RGB composite):
        the three and the composite, or the one sequence given (by its role when known)."""
        if not self.single_sequence:
            return dict(SEQUENCE_CHANNELS)
        return {next((VIEW_NAMES[key] for key in self.sequences), ONE_SEQUENCE_VIEW): 0}


def upload_suffix(name: str) -> str:
    """The accepted suffix ``name`` ends with, lower case (``".nii.gz"``, ``".png"``, ...).

    Raises:
        DataError: for any other file type.
    """
    suffix = file_suffix(name, VOLUME_SUFFIXES + SLICE_SUFFIXES)
    if suffix is None:
        accepted = ", ".join(SLICE_SUFFIXES + VOLUME_SUFFIXES)
        raise DataError(f"{shown_name(name)}: unsupported file type; upload one of {accepted}")
    return suffix


def upload_kind(name: str) -> str:
    """Return ``"slice"`` or ``"volume"`` from a file name.

    Raises:
        DataError: for any other file type.
    """
    return "volume" if upload_suffix(name) in VOLUME_SUFFIXES else "slice"


def check_name(name: str) -> None:
    """Raise :class:`DataError` for a name no file system holds: empty, with a control
    character (NUL, newline) or a lone surrogate (not text), or over :data:`MAX_NAME_BYTES`
    bytes."""
    if not name:
        raise DataError("the uploaded file has no name")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in name):
        raise DataError(f"{shown_name(name)}: the file name holds a control character "
                        "(shown as ?); rename the file and upload it again")
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise DataError(f"{shown_name(name)}: the file name is {size} bytes long, over "
                        f"{MAX_NAME_BYTES}; rename the file and upload it again")


def check_size(name: str, size: int, max_mb: float) -> None:
    """Raise :class:`DataError` when an upload is empty or larger than ``max_mb`` megabytes."""
    if size == 0:
        raise DataError(f"{shown_name(name)}: the file is empty")
    if size > max_mb * 1024 * 1024:
        raise DataError(
            f"{shown_name(name)}: {size / 2**20:.1f} MB is over the {max_mb:g} MB upload limit"
        )


class _Folder:
    """The private folder uploads are written into, under fixed names, and how messages
    name them: by the uploaded name (and a sequence by its uploader's label)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._renames: list[tuple[str, str]] = []

    def write(self, role: str, upload: UploadedFile, suffix: str) -> Path:
        """Write ``upload`` as ``<role><suffix>``; ``role``: a sequence, ``mask`` or ``image``."""
        name, data = upload
        path = self.path / f"{role}{suffix}"
        path.write_bytes(data)
        shown = shown_name(name)
        label = {**SEQUENCE_TITLES, "mask": "Expert mask"}.get(role)
        if label is not None:  # how medseg.imaging.sequences names an input: "--flair PATH", "FLAIR (PATH)"
            self._renames[:0] = [(f"--{role} {path}", f"{label} ({shown})"),
                                 (f"{role.upper()} ({path})", f"{label} ({shown})")]
        self._renames.append((str(path), shown))
        return path

    def message(self, err: DataError) -> str:
        """``err`` as the page shows it: uploaded names, no temporary path, one line."""
        text = str(err)
        for old, new in [*self._renames, (f"{self.path}{os.sep}", ""), (str(self.path), ""),
                         ("given as a positional INPUT", "uploaded as one file")]:
            text = text.replace(old, new)
        return one_line(text)

    def read(self, reader: Callable[[], _T]) -> _T:
        """``reader()``, its DataError in the page's words."""
        try:
            return reader()
        except DataError as err:
            raise DataError(self.message(err)) from None


def _check_files(files: list[UploadedFile], max_mb: float) -> None:
    for name, data in files:
        check_name(name)
        check_size(name, len(data), max_mb)


def _check_same_size(mask_name: str, masks: np.ndarray, image_name: str, images: np.ndarray) -> None:
    if masks.shape != images.shape[:-1]:
        skip = 1 if len(images) == 1 and len(masks) == 1 else 0  # a slice: H x W
        got = "x".join(map(str, masks.shape[skip:]))
        want = "x".join(map(str, images.shape[skip:-1]))
        raise DataError(f"{mask_name}: the mask is {got} but {image_name} is {want}")


def _one_sequence_refusal(name: str) -> DataError:
    return DataError(f"{shown_name(name)}: one MR sequence; {READS_THREE}: upload them as three "
                     f"sequences, or tick “{SINGLE_SEQUENCE_BOX}”")


def _pixel_area(volume: Volume) -> float | None:
    """The in-plane area (mm²) of a volume's slice pixels, from its affine; None when unknown."""
    mm_per_unit = {"mm": 1.0, "unknown": 1.0, "meter": 1000.0, "micron": 1e-3}
    scale = mm_per_unit.get(volume.header.get_xyzt_units()[0])
    if scale is None:
        return None
    spacing = np.linalg.norm(np.asarray(volume.affine, dtype=float)[:3, :3], axis=0)
    to_slices = volume.slice_transform()
    in_plane = [float(spacing[axis]) for axis in range(3) if int(to_slices[axis, 0]) != 0]
    area = in_plane[0] * in_plane[1] * scale**2
    return area if np.isfinite(area) and area > 0 else None


def read_upload(
    image: UploadedFile, mask: UploadedFile | None = None, *, max_mb: float = 200,
    single_sequence: bool = False,
) -> Upload:
    """Check and decode an uploaded slice or NIfTI volume and its optional mask.

    Args:
        image: (name, bytes) of a .tif/.tiff/.png/.jpg slice or a .nii/.nii.gz volume.
        mask: (name, bytes) of the matching mask: a slice mask for a slice, a mask volume
            for a volume; any non-zero value is tumour.
        max_mb: upload size limit in megabytes.
        single_sequence: accept an image holding one MR sequence (a grey slice, a 3-D
            volume) and repeat it into the three channels.

    Raises:
        DataError: on a wrong file type, an empty, oversized or corrupt file, a mask of
            another kind or size than the image, one MR sequence without ``single_sequence``.
    """
    _check_files([image] if mask is None else [image, mask], max_mb)
    kind = upload_kind(image[0])
    if mask is not None and upload_kind(mask[0]) != kind:
        raise DataError(f"{shown_name(mask[0])}: a {kind} needs a mask of the same kind "
                        f"({shown_name(image[0])})")
    with tempfile.TemporaryDirectory(prefix="medseg-upload-") as tmp:
        folder = _Folder(Path(tmp))
        path = folder.write("image", image, upload_suffix(image[0]))
        mask_path = folder.write("mask", mask, upload_suffix(mask[0])) if mask is not None else None
        try:
            item = classify_input(path, single_sequence)
        except OneSequenceError:
            raise _one_sequence_refusal(image[0]) from None
        except DataError as err:
            raise DataError(folder.message(err)) from None
        single = item.single_sequence
        volume: Volume | None = None
        masks: np.ndarray | None = None
        if item.kind == "slice":
            images = folder.read(lambda: read_slice(path, single))[None]
            if mask_path is not None:
                masks = folder.read(lambda: read_mask(mask_path))[None]
        else:
            volume = folder.read(lambda: load_volume(path))
            images = volume.slices
            if mask_path is not None:
                masks = folder.read(lambda: load_mask_volume(mask_path))
    if mask is not None and masks is not None:
        _check_same_size(shown_name(mask[0]), masks, shown_name(image[0]), images)
    pixel_area = _pixel_area(volume) if volume is not None else None
    return Upload(image[0], images, masks, volume, pixel_area, single_sequence=single,
                  mask_name=mask[0] if mask is not None else None)


def _missing_refusal(given: Mapping[str, str], single_sequence: bool) -> DataError | None:
    """The refusal of too few sequences (:func:`~medseg.imaging.sequences.missing_sequences`),
    naming the uploads given and the uploaders left empty; None when they are enough."""
    missing = missing_sequences(given, single_sequence)
    if not missing:
        return None
    named = ", ".join(f"{SEQUENCE_TITLES[key]} ({shown_name(name)})" for key, name in given.items())
    absent = " and ".join(SEQUENCE_TITLES[key] for key in missing)
    verb = "is" if len(missing) == 1 else "are"
    if single_sequence:
        return DataError(f"{named}: “{SINGLE_SEQUENCE_BOX}” takes one MR sequence, got "
                         f"{len(given)}: upload {absent} too, or only one")
    if len(given) == 1:
        return DataError(f"{named}: one MR sequence; {READS_THREE}: {absent} {verb} missing; "
                         f"upload them, or tick “{SINGLE_SEQUENCE_BOX}”")
    return DataError(f"{named}: {len(given)} MR sequences; {READS_THREE}: {absent} {verb} missing")


def _sequence_suffix(key: str, name: str) -> str:
    suffix = file_suffix(name, SEQUENCE_SUFFIXES)
    if suffix is None:
        raise DataError(f"{SEQUENCE_TITLES[key]} ({shown_name(name)}): unsupported file type; upload a "
                        "NIfTI volume (.nii, .nii.gz) or a zipped DICOM series (.zip)")
    return suffix


def read_sequences(
    sequences: Mapping[str, UploadedFile | None], mask: UploadedFile | None = None, *,
    max_mb: float = 200, single_sequence: bool = False,
) -> Upload:
    """Check and decode a scan's uploaded MR sequences and its optional mask volume, as
    ``medseg predict --pre/--flair/--post`` reads them
    (:func:`~medseg.imaging.sequences.plan_sequences`, :func:`~medseg.imaging.sequences.load_sequences`).

    Args:
        sequences: ``pre``, ``flair``, ``post`` -> (name, bytes) of a NIfTI volume or a
            zipped DICOM series; None or absent: not uploaded.
        mask: (name, bytes) of a NIfTI mask volume on the sequences' grid.
        max_mb: upload size limit in megabytes.
        single_sequence: accept exactly one sequence, repeated into the three channels.

    Raises:
        DataError: on a wrong file type, an empty, oversized or corrupt file, a missing
            sequence (naming it) without ``single_sequence``, several with it, sequences or
            a mask on different grids (naming both), a DICOM series refused by the reader.
    """
    given = {key: upload for key in SEQUENCES if (upload := sequences.get(key)) is not None}
    if not given:
        raise DataError("no MR sequence uploaded: upload the pre-contrast T1, FLAIR and "
                        "post-contrast T1")
    _check_files([*given.values(), *([mask] if mask is not None else [])], max_mb)
    suffixes = {key: _sequence_suffix(key, name) for key, (name, _) in given.items()}
    mask_suffix = file_suffix(mask[0], SEQUENCE_MASK_SUFFIXES) if mask is not None else None
    if mask is not None and mask_suffix is None:
        raise DataError(f"{shown_name(mask[0])}: the mask of three sequences is a NIfTI volume "
                        "(.nii, .nii.gz) on their grid or a DICOM SEG (.dcm) of one of their series")
    refusal = _missing_refusal({key: name for key, (name, _) in given.items()}, single_sequence)
    if refusal is not None:
        raise refusal
    with tempfile.TemporaryDirectory(prefix="medseg-upload-") as tmp:
        folder = _Folder(Path(tmp))
        paths = {key: folder.write(key, upload, suffixes[key]) for key, upload in given.items()}
        mask_path = folder.write("mask", mask, mask_suffix) if mask is not None and mask_suffix else None
        plan = folder.read(lambda: plan_sequences(paths, single_sequence=single_sequence))
        volume = folder.read(lambda: load_sequences(plan))
        masks = folder.read(lambda: sequence_mask(mask_path, plan)) if mask_path is not None else None
        series, skipped = folder.read(lambda: seg_source(plan))
        if skipped is not None:
            skipped = folder.message(DataError(skipped))
    return Upload(given[plan.reference.key][0], volume.slices, masks, volume, _pixel_area(volume),
                  single_sequence=plan.single, sequences={key: name for key, (name, _) in given.items()},
                  plan=plan, seg_series=series, seg_skipped=skipped,
                  mask_name=mask[0] if mask is not None else None)


def sequence_mask(path: Path, plan: SequencePlan) -> np.ndarray:
    """The expert mask of a scan's sequences over their slices, (N, H, W) in {0, 1}: a NIfTI
    volume on their grid (:func:`~medseg.imaging.sequences.load_sequence_mask`) or a DICOM SEG
    (``.dcm``) referring to one of their DICOM series, its frames placed by geometry
    (:func:`~medseg.imaging.seg_masks.read_seg_mask`) and viewed like the reference.

    Raises:
        DataError: naming the mask, for a NIfTI mask on another grid, a DICOM SEG when no
            sequence is a DICOM series, or one :func:`~medseg.imaging.seg_masks.read_seg_mask`
            refuses (another series, another geometry).
    """
    if not path.name.lower().endswith(SEG_SUFFIX):
        return load_sequence_mask(path, plan)
    candidates = [scan_dicom_series(source.path) for source in plan.inputs if source.dicom]
    if not candidates:
        raise DataError(f"{path}: a DICOM SEG refers to a DICOM series, and no sequence is one; "
                        "upload the mask as a NIfTI volume on the sequences' grid")
    _, mask = read_seg_mask(path, candidates)  # the series' grid is the reference's (planned)
    return apply_orientation(mask, plan.reference.to_slices)


def slot_info(role: str, upload: UploadedFile, *, max_mb: float = 200) -> VolumeInfo:
    """What an uploaded sequence (``role`` in :data:`SEQUENCES`) or expert mask (``"mask"``)
    holds, from its headers (:mod:`medseg.imaging.volume_info`): checked on its own, as soon
    as it is uploaded; how it fits the other uploads is checked by :func:`read_sequences`.

    Raises:
        DataError: naming the upload (by its uploader's label), for a name or size
            :func:`check_name` / :func:`check_size` refuse, an unsupported type, or headers
            the NIfTI, DICOM or DICOM SEG reader refuses.

    Example:
        >>> slot_info("flair", ("flair.zip", data)).text()
        'DICOM MR “AX FLAIR”: 256 × 256 × 22 (rows × columns × slices), ...'
    """
    name, data = upload
    check_name(name)
    check_size(name, len(data), max_mb)
    if role == "mask":
        suffix = file_suffix(name, SEQUENCE_MASK_SUFFIXES)
        if suffix is None:
            raise DataError(f"{shown_name(name)}: the mask of three sequences is a NIfTI volume "
                            "(.nii, .nii.gz) or a DICOM SEG (.dcm)")
    else:
        suffix = _sequence_suffix(role, name)
    with tempfile.TemporaryDirectory(prefix="medseg-upload-") as tmp:
        folder = _Folder(Path(tmp))
        path = folder.write(role, upload, suffix)
        if suffix == SEG_SUFFIX:
            return folder.read(lambda: seg_info(path))
        if suffix in VOLUME_SUFFIXES:
            return folder.read(lambda: nifti_info(path))
        return folder.read(lambda: dicom_info(scan_dicom_series(path)))


def slot_warning(role: str, info: VolumeInfo) -> str | None:
    """A warning when the SeriesDescription of the file in a sequence's slot names another
    sequence (:func:`~medseg.imaging.volume_info.suggested_sequence`), else None: the upload is
    still read, the reader decides."""
    suggested = suggested_sequence(info.description)
    if suggested is None or role not in SEQUENCES or suggested == role:
        return None
    return (f"SeriesDescription “{info.description}” suggests {SEQUENCE_TITLES[suggested]}, not "
            f"{SEQUENCE_TITLES[role]}: check that this file is in the right slot")


def dicom_seg_bytes(upload: Upload, masks_nhw: np.ndarray, threshold: float) -> tuple[bytes | None, str | None]:
    """The DICOM SEG file of masks predicted at ``threshold`` over an upload whose FLAIR (or
    only sequence) is a DICOM series, or why there is none (both None for other uploads).

    Example:
        >>> seg, why = dicom_seg_bytes(upload, masks, 0.5)
    """
    if upload.seg_series is None or upload.plan is None or upload.volume is None:
        return None, upload.seg_skipped
    try:
        seg = prediction_segmentation(masks_nhw, upload.volume, upload.plan, upload.seg_series, threshold)
    except DataError as err:
        return None, one_line(str(err).replace(str(upload.seg_series.source), shown_name(upload.name)))
    return segmentation_bytes(seg), None


def upload_reference(upload: Upload, masks_nhw: np.ndarray) -> ReferenceScore:
    """Masks predicted over a volume upload scored against its expert mask, as ``medseg
    predict --reference`` scores them (:func:`~medseg.predict.reference.score_reference`): in
    mm and mL when the file carries a pixel spacing, else in pixels and voxels.

    Raises:
        ValueError: for an upload without an expert mask or volume.
    """
    if upload.volume is None or upload.masks is None:
        raise ValueError("scoring against an expert mask needs a volume and its mask")
    volume = upload.volume
    geometry = stack_geometry(volume.affine, volume.slice_transform()) if upload.pixel_area_mm2 else None
    return score_reference(masks_nhw, upload.masks, geometry, upload.mask_name or "expert mask")


def upload_report(upload: Upload, masks_nhw: np.ndarray, threshold: float, *, seg_file: str | None = None,
                  seg_skipped: str | None = None, reference: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The lesion report ``medseg predict`` writes as ``<name>_pred.json``
    (:func:`~medseg.predict.formats.prediction_report`) for masks predicted over a volume
    upload; ``input`` and ``sequences`` are the uploaded names.

    Args:
        seg_file: the DICOM SEG's download name, when one is offered.
        seg_skipped: why a DICOM reference has none.
        reference: the ``reference`` section (:meth:`ReferenceScore.section` of
            :func:`upload_reference`), when an expert mask was uploaded.
    """
    volume = upload.volume
    if volume is None:
        raise ValueError("a lesion report needs a volume")
    lesions = lesion_report(masks_nhw, volume.affine, volume.slice_transform())
    return prediction_report(upload.name, threshold, lesions, sequences=upload.sequences,
                             single_sequence=upload.single_sequence, dicom_seg=seg_file or None,
                             dicom_seg_skipped=seg_skipped, reference=reference)
