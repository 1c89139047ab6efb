"""Prediction: tumour masks for slices, folders of slices, NIfTI volumes and the three MR
sequences of a scan (NIfTI files or DICOM series), for ``medseg predict`` and the app alike.

Modelled on nnU-Net v2's predictor: inputs are classified once, every output is named once
and planned before anything is written, and one object built from a trained model predicts.

| module | its one job |
|---|---|
| :mod:`~medseg.predict.outputs` | file names: input suffixes, ``<stem>_pred.png`` ..., download names |
| :mod:`~medseg.predict.inputs` | finding and classifying inputs; the one-sequence rule |
| :mod:`~medseg.predict.plan` | planning outputs; the overwrite policy (:func:`is_prediction`) |
| :mod:`~medseg.predict.formats` | what each output holds: marks, pictures, NIfTI, report, DICOM SEG |
| :mod:`~medseg.predict.run` | :class:`Predictor`, :func:`predict_paths`, :class:`Prediction` |
| :mod:`~medseg.predict.reference` | scoring against a reference mask (``--reference``; imports SciPy) |

The names below are imported on first use (PEP 562): ``medseg.predict.outputs`` loads
neither torch nor the model code.

Example:
    >>> from medseg.predict import predict_paths
    >>> records = predict_paths("models/demo_lgg/best.pt", ["case_3/"], "predictions")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medseg.lazy import lazy_exports

if TYPE_CHECKING:
    from medseg.predict.formats import (
        PREDICTION_MARK,
        SINGLE_SEQUENCE_MARK,
        SINGLE_SEQUENCE_NOTE,
        mask_nifti_bytes,
        mask_picture,
        nifti_description,
        overlay_picture,
        png_bytes,
        png_text,
        prediction_report,
        prediction_segmentation,
        report_text,
        write_mask_nifti,
    )
    from medseg.predict.inputs import (
        Input,
        classify_input,
        folder_slices,
        read_slice,
    )
    from medseg.predict.outputs import (
        DICOM_SEG,
        MASK_NIFTI,
        MASK_PNG,
        OVERLAY_PNG,
        PRED,
        REPORT_JSON,
        SEQUENCE_SUFFIXES,
        SLICE_SUFFIXES,
        VOLUME_SUFFIXES,
        download_name,
        file_suffix,
    )
    from medseg.predict.plan import (
        Job,
        is_prediction,
        plan_jobs,
        seg_source,
    )
    from medseg.predict.run import (
        Prediction,
        Predictor,
        predict_paths,
    )

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "PREDICTION_MARK": "medseg.predict.formats",
    "SINGLE_SEQUENCE_MARK": "medseg.predict.formats",
    "SINGLE_SEQUENCE_NOTE": "medseg.predict.formats",
    "mask_nifti_bytes": "medseg.predict.formats",
    "mask_picture": "medseg.predict.formats",
    "nifti_description": "medseg.predict.formats",
    "overlay_picture": "medseg.predict.formats",
    "png_bytes": "medseg.predict.formats",
    "png_text": "medseg.predict.formats",
    "prediction_report": "medseg.predict.formats",
    "prediction_segmentation": "medseg.predict.formats",
    "report_text": "medseg.predict.formats",
    "write_mask_nifti": "medseg.predict.formats",
    "Input": "medseg.predict.inputs",
    "classify_input": "medseg.predict.inputs",
    "folder_slices": "medseg.predict.inputs",
    "read_slice": "medseg.predict.inputs",
    "DICOM_SEG": "medseg.predict.outputs",
    "MASK_NIFTI": "medseg.predict.outputs",
    "MASK_PNG": "medseg.predict.outputs",
    "OVERLAY_PNG": "medseg.predict.outputs",
    "PRED": "medseg.predict.outputs",
    "REPORT_JSON": "medseg.predict.outputs",
    "SEQUENCE_SUFFIXES": "medseg.predict.outputs",
    "SLICE_SUFFIXES": "medseg.predict.outputs",
    "VOLUME_SUFFIXES": "medseg.predict.outputs",
    "download_name": "medseg.predict.outputs",
    "file_suffix": "medseg.predict.outputs",
    "Job": "medseg.predict.plan",
    "is_prediction": "medseg.predict.plan",
    "plan_jobs": "medseg.predict.plan",
    "seg_source": "medseg.predict.plan",
    "Prediction": "medseg.predict.run",
    "Predictor": "medseg.predict.run",
    "predict_paths": "medseg.predict.run",
}

__all__ = [
    "DICOM_SEG",
    "MASK_NIFTI",
    "MASK_PNG",
    "OVERLAY_PNG",
    "PRED",
    "PREDICTION_MARK",
    "REPORT_JSON",
    "SEQUENCE_SUFFIXES",
    "SINGLE_SEQUENCE_MARK",
    "SINGLE_SEQUENCE_NOTE",
    "SLICE_SUFFIXES",
    "VOLUME_SUFFIXES",
    "Input",
    "Job",
    "Prediction",
    "Predictor",
    "classify_input",
    "download_name",
    "file_suffix",
    "folder_slices",
    "is_prediction",
    "mask_nifti_bytes",
    "mask_picture",
    "nifti_description",
    "overlay_picture",
    "plan_jobs",
    "png_bytes",
    "png_text",
    "predict_paths",
    "prediction_report",
    "prediction_segmentation",
    "read_slice",
    "report_text",
    "seg_source",
    "write_mask_nifti",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
