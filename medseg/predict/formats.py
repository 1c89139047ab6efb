"""What each output holds: the marks that say "written by ``medseg predict``", the mask and
overlay pictures, the NIfTI mask, the lesion report and the DICOM SEG; written by
:mod:`medseg.predict.run` and offered for download by the app, byte for byte alike.

- PNGs carry the text chunk ``Software`` :data:`PREDICTION_MARK`; a prediction from one MR
  sequence repeated into the three channels also ``Comment`` :data:`SINGLE_SEQUENCE_NOTE`.
- NIfTI masks have the ``descrip`` :data:`PREDICTION_MARK`, or :data:`SINGLE_SEQUENCE_MARK`.
- Probability maps (``--probabilities``: before the threshold and any postprocessing): a
  slice's a 16-bit grey PNG holding round(probability x :data:`PROBABILITY_SCALE`) (lossless
  to 1/65535), a volume's a float32 NIfTI on its grid; marked like the masks.
- Reports say ``"written_by": "medseg predict"``; DICOM SEGs carry it as ManufacturerModelName.
- Overlays blend the predicted mask in :data:`~medseg.imaging.palette.PREDICTED` yellow at
  :data:`~medseg.imaging.palette.PREDICTION_OPACITY` (:mod:`medseg.imaging.palette`).

highdicom is imported only when a SEG is built.

Example:
    >>> text = report_text(prediction_report("scan.nii.gz", 0.5, lesion_report(masks, affine, ornt)))
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from nibabel.orientations import apply_orientation
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from medseg import __version__
from medseg.imaging.dicom import DicomSeries
from medseg.imaging.nifti import Volume, inverse_transform, save_mask_volume, save_slice_map
from medseg.imaging.palette import PREDICTED, PREDICTION_OPACITY, blend
from medseg.imaging.sequences import SequencePlan

if TYPE_CHECKING:  # highdicom (medseg.imaging.dicom_seg) is imported only for a DICOM input
    from highdicom.seg import Segmentation

#: the mark of a file written by ``medseg predict`` (PNG ``Software`` text, NIfTI ``descrip``)
PREDICTION_MARK = "medseg predict"
#: what a prediction from one MR sequence repeated into the 3 channels says about itself
SINGLE_SEQUENCE_NOTE = "one MR sequence in all 3 channels"
#: the NIfTI ``descrip`` of such a prediction (still recognised as a prediction)
SINGLE_SEQUENCE_MARK = f"{PREDICTION_MARK}; {SINGLE_SEQUENCE_NOTE}"
#: a slice's probability map PNG stores round(probability x this) as 16-bit grey
PROBABILITY_SCALE = 65535


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


def png_bytes(picture: np.ndarray, single_sequence: bool = False) -> bytes:
    """A uint8 (H, W) or (H, W, 3) picture as a predicted PNG file (:func:`png_text`)."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(picture)).save(buffer, format="PNG", pnginfo=png_text(single_sequence))
    return buffer.getvalue()


def mask_picture(mask: np.ndarray) -> np.ndarray:
    """A binary (H, W) mask (nonzero: tumour) as a black-and-white uint8 picture: 0 or 255."""
    return (np.asarray(mask) > 0).astype(np.uint8) * 255


def probability_picture(probabilities: np.ndarray) -> np.ndarray:
    """A (H, W) probability map in [0, 1] as a uint16 picture: round(p x
    :data:`PROBABILITY_SCALE`); read back, divide by it (within 1/65535 of the original)."""
    return np.rint(np.clip(probabilities, 0, 1) * PROBABILITY_SCALE).astype(np.uint16)


def overlay_picture(image_hwc: np.ndarray, mask_hw: np.ndarray) -> np.ndarray:
    """The slice with the mask's pixels blended towards the palette's predicted yellow,
    (H, W, 3) uint8."""
    return blend(image_hwc, [(mask_hw, PREDICTED.rgb)], opacity=PREDICTION_OPACITY)


def write_mask_nifti(masks_nhw: np.ndarray, volume: Volume, path: Path, single_sequence: bool) -> None:
    """Write predicted (N, H, W) masks as a NIfTI file on ``volume``'s grid (its affine and
    voxel order), described by :func:`nifti_description`; atomically.

    Raises:
        OSError: when the file cannot be written.
    """
    save_mask_volume(masks_nhw, volume, path, description=nifti_description(single_sequence))


def write_probability_nifti(probabilities_nhw: np.ndarray, volume: Volume, path: Path,
                            single_sequence: bool) -> None:
    """Write a (N, H, W) probability map as a float32 NIfTI file on ``volume``'s grid (its
    affine, header and voxel order, as :func:`write_mask_nifti`), described by
    :func:`nifti_description`; atomically.

    Raises:
        DataError: when the map's shape differs from the volume's slices.
        OSError: when the file cannot be written.
    """
    save_slice_map(np.asarray(probabilities_nhw, dtype=np.float32), volume, path,
                   description=nifti_description(single_sequence))


def mask_nifti_bytes(masks_nhw: np.ndarray, volume: Volume, single_sequence: bool = False) -> bytes:
    """:func:`write_mask_nifti`'s file as bytes (written as ``pred.nii.gz`` in a private
    temporary folder, read back, deleted)."""
    with tempfile.TemporaryDirectory(prefix="medseg-download-") as tmp:
        path = Path(tmp) / "pred.nii.gz"
        write_mask_nifti(masks_nhw, volume, path, single_sequence)
        return path.read_bytes()


def prediction_report(
    input: str, threshold: float, lesions: Mapping[str, Any], *,
    sequences: Mapping[str, str] | None = None, single_sequence: bool = False,
    dicom_seg: str | None = None, dicom_seg_skipped: str | None = None,
    reference: Mapping[str, Any] | None = None, prediction: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON report of a volume prediction (``<name>_pred.json``).

    Keys: ``written_by`` (:data:`PREDICTION_MARK`), ``medseg_version``, ``input`` (the volume,
    or the FLAIR / only sequence input), ``sequences`` (``pre``/``flair``/``post`` -> input,
    when given), ``single_sequence``, ``threshold``, then ``lesions``
    (:func:`~medseg.engine.lesions.lesion_report`: ``voxel_size_mm``, ``voxel_volume_ml``,
    ``tumour_voxels``, ``tumour_volume_ml``, ``lesions``, ``n_lesions``), and for a DICOM
    reference ``dicom_seg``: ``{"file": "<name>_pred_seg.dcm"}`` (``dicom_seg``, a file
    name), or ``{"file": null, "skipped": why}`` (``dicom_seg_skipped``), and when the
    prediction was scored against a reference mask ``reference``
    (:meth:`~medseg.predict.reference.ReferenceScore.section`: ``mask``,
    ``patient_measures``, ``lesions``), and ``prediction`` (when given: an ensemble, test-time
    mirroring, postprocessing or probability maps were used; see
    :meth:`medseg.predict.run.Predictor.description`).

    Example:
        >>> prediction_report("scan.nii.gz", 0.5, lesion_report(masks, affine, ornt))["n_lesions"]
        2
    """
    report: dict[str, Any] = {"written_by": PREDICTION_MARK, "medseg_version": __version__,
                              "input": input}
    if sequences:
        report["sequences"] = dict(sequences)
    report.update(single_sequence=single_sequence, threshold=threshold, **lesions)
    if dicom_seg is not None:
        report["dicom_seg"] = {"file": dicom_seg}
    elif dicom_seg_skipped is not None:
        report["dicom_seg"] = {"file": None, "skipped": dicom_seg_skipped}
    if reference is not None:
        report["reference"] = dict(reference)
    if prediction is not None:
        report["prediction"] = dict(prediction)
    return report


def report_text(report: Mapping[str, Any]) -> str:
    """A report (:func:`prediction_report`) as the JSON text of ``<name>_pred.json``."""
    return json.dumps(report, indent=2) + "\n"


def prediction_segmentation(masks: np.ndarray, volume: Volume, plan: SequencePlan, series: DicomSeries,
                            threshold: float) -> Segmentation:
    """The DICOM SEG of a mask (N, H, W) predicted over ``volume``
    (:func:`~medseg.imaging.sequences.load_sequences` of ``plan``) at ``threshold``, referring to
    the reference's ``series`` (:func:`~medseg.predict.plan.seg_source`); it records the
    sequences used and says when one was repeated.

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
