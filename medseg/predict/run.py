"""Running predictions: a :class:`Predictor` built once from a trained model (the shape of
nnU-Net v2's ``nnUNetPredictor``) predicts planned jobs (:mod:`medseg.predict.plan`) and writes
their outputs (:mod:`medseg.predict.formats`); :func:`predict_paths` is the whole of
``medseg predict``.

A volume's outputs are written in the order PNGs, NIfTI mask, probability map, DICOM SEG,
report; its SEG is built before anything is written.

The model may be an ensemble (several checkpoints of one task and input, or a CV folder:
:func:`medseg.engine.ensemble.load_ensemble`), mirrored at test time (``tta="flip"``). A CV
folder's postprocessing is applied to every mask written (PNGs, NIfTI, SEG, lesion report)
of each input as a whole: a volume's or a folder's slices as one 3-D stack (as ``medseg
evaluate`` scores a patient), a single slice alone; the raw mask is not written (``postprocess
=False`` writes it instead). Probability maps (``probabilities=True``) are those before the
threshold and before postprocessing. SciPy (the lesion report) is imported only for a volume and
highdicom only for a DICOM SEG: a one-slice prediction starts fast.

Example:
    >>> written = predict_paths("models/demo_lgg/best.pt", ["rgb_brain.nii.gz"], "predictions")
    >>> written = predict_paths("models/demo_lgg/best.pt", [], "predictions",
    ...                         sequences={"pre": "t1.nii.gz", "flair": "flair/", "post": "t1c.zip"})
    >>> predictor = Predictor.from_checkpoint("models/demo_lgg/best.pt", threshold=0.4)
    >>> masks = predictor.masks([slice_hwc])
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medseg.engine.distributed import resolve_device
from medseg.engine.ensemble import load_ensemble
from medseg.engine.inference import slice_probabilities
from medseg.engine.probability import TTA_MODES
from medseg.errors import CheckpointError, DataError, MedsegError
from medseg.files import write_bytes, write_text
from medseg.imaging.nifti import Volume, load_volume
from medseg.imaging.sequences import load_sequences
from medseg.locks import folder_lock
from medseg.metrics.threshold import binarize, check_threshold
from medseg.postprocessing import Postprocessing
from medseg.predict.exported import OnnxSegmenter, resolve_engine
from medseg.predict.formats import (
    mask_picture,
    overlay_picture,
    png_bytes,
    prediction_report,
    prediction_segmentation,
    probability_picture,
    report_text,
    write_mask_nifti,
    write_probability_nifti,
)
from medseg.predict.inputs import read_slice
from medseg.predict.outputs import MASK_PNG, OVERLAY_PNG, PROB_PNG, output_path
from medseg.predict.plan import Job, check_out_folder, plan_jobs
from medseg.tasks import SEGMENTATION

if TYPE_CHECKING:  # highdicom (medseg.imaging.dicom_seg) is imported only for a DICOM input
    from highdicom.seg import Segmentation

    from medseg.predict.reference import ReferenceScore

_CHUNK = 32  # slice files read and predicted at a time


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
    reference: ReferenceScore | None = None  # the prediction scored against --reference
    postprocessing: str = "none"  # the step applied to the masks written, in words


def _write_error(path: Path, err: OSError) -> DataError:
    return DataError(f"{path}: cannot write the prediction ({err.strerror or err})")


def _write_file(path: Path, data: bytes) -> None:
    try:
        write_bytes(path, data)
    except OSError as err:
        raise _write_error(path, err) from None


class Predictor:
    """A segmentation model that predicts tumour masks for planned inputs.

    Args:
        model: the network, in eval mode on its device, a probability model (an ensemble,
            mirrored: :mod:`medseg.engine.probability`), or an ONNX export in ONNX Runtime.
        image_size: the side the model was trained at (slices are resized to it and back).
        threshold: probability at or above which a pixel is tumour, in (0, 1).
        postprocessing: applied to each input's masks before they are written (module
            docstring); the identity by default.
        members: the checkpoints of the model, for the report (an ensemble's several).
        tta: the test-time mirroring the model applies ("none" or "flip"), for the report.
        postprocessing_file: the record ``postprocessing`` was read from, for the report.

    Raises:
        MedsegError: for a threshold outside (0, 1).
    """

    def __init__(self, model: torch.nn.Module | OnnxSegmenter, image_size: int,
                 threshold: float = 0.5, *, postprocessing: Postprocessing | None = None,
                 members: Sequence[str | Path] = (), tta: str = "none",
                 postprocessing_file: Path | None = None) -> None:
        check_threshold(threshold, "--threshold")
        self.model = model
        self.image_size = image_size
        self.threshold = threshold
        self.postprocessing = postprocessing or Postprocessing()
        self.members = tuple(str(member) for member in members)
        self.tta = tta
        self.postprocessing_file = postprocessing_file

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, *, threshold: float = 0.5,
                        device: str = "auto", engine: str = "auto", members: Sequence[str | Path] = (),
                        tta: str = "none", postprocess: bool = True) -> Predictor:
        """The predictor of a segmentation checkpoint written by ``medseg train``, of an
        ensemble (``checkpoint`` a CV folder, or with more ``members``), or of an ONNX export
        (:mod:`medseg.predict.exported`, run by ONNX Runtime on the CPU; one model as
        exported: no ``members``, no ``tta``).

        Args:
            members: further checkpoints averaged with ``checkpoint``.
            tta: "none" or "flip" (the mean over the task's mirrorings, flipped back).
            postprocess: apply a CV folder's recorded postprocessing (False: raw masks).

        Raises:
            CheckpointError: for an unreadable or classification checkpoint or export, or
                members that cannot form an ensemble.
            MedsegError: for an unknown device, engine or tta, a threshold outside (0, 1), or
                members or flip TTA asked of an ONNX export.
        """
        check_threshold(threshold, "--threshold")
        if tta not in TTA_MODES:
            raise MedsegError(f"--tta: {tta!r} is not one of {', '.join(TTA_MODES)}")
        if resolve_engine(checkpoint, engine) == "onnxruntime":
            if members or tta != "none":
                raise MedsegError(f"{checkpoint}: an ONNX export predicts with the one model it holds: "
                                  "--member and --tta flip need checkpoints (the torch engine)")
            exported = OnnxSegmenter.load(checkpoint)
            return cls(exported, exported.image_size, threshold, members=[checkpoint])
        ensemble = load_ensemble([checkpoint, *members], device=resolve_device(device, option="--device"))
        if ensemble.task.name != SEGMENTATION.name:
            raise CheckpointError(
                f"{checkpoint}: a {ensemble.task.name} checkpoint; medseg predict needs a segmentation checkpoint"
            )
        step = ensemble.postprocessing if postprocess else Postprocessing()
        return cls(ensemble.probability_model(tta), ensemble.image_size, threshold, postprocessing=step,
                   members=ensemble.checkpoints, tta=tta,
                   postprocessing_file=None if step.is_identity else ensemble.postprocessing_file)

    def probabilities(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Tumour probabilities (H, W) float32 for RGB slices (H, W, 3) uint8 of any sizes:
        :func:`~medseg.engine.inference.slice_probabilities` (or the ONNX export's)."""
        probabilities: list[np.ndarray] = [np.empty(0, np.float32)] * len(images)
        by_size: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for index, image in enumerate(images):
            by_size[image.shape[:2]].append(index)
        for indices in by_size.values():
            group = [images[i] for i in indices]
            probs = (self.model.probabilities(group) if isinstance(self.model, OnnxSegmenter)
                     else slice_probabilities(self.model, group, self.image_size))
            for index, prob in zip(indices, probs, strict=True):
                probabilities[index] = prob
        return probabilities

    def masks(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Binary masks (H, W) uint8 in {0, 1} for RGB slices (H, W, 3) uint8 of any sizes:
        :meth:`probabilities` at or above the threshold (each slice alone: no postprocessing)."""
        return [binarize(prob, self.threshold) for prob in self.probabilities(images)]

    def postprocessed(self, masks: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``masks`` of one input through :attr:`postprocessing`: as one 3-D stack when they
        share a size (a volume's, a patient folder's slices in order), else each alone."""
        if self.postprocessing.is_identity or not masks:
            return list(masks)
        if len({mask.shape for mask in masks}) == 1:
            return list(self.postprocessing.apply(np.stack(masks)))
        return [self.postprocessing.apply(mask) for mask in masks]

    def description(self, probabilities: str | None = None) -> dict[str, Any] | None:
        """The report's ``prediction`` section: the members, the mirroring, the postprocessing
        applied and the probability map written (``probabilities``: its file name); None for
        one model without any of them (the report as before)."""
        if len(self.members) <= 1 and self.tta == "none" and self.postprocessing.is_identity and not probabilities:
            return None
        step = self.postprocessing
        section: dict[str, Any] = {"members": list(self.members), "tta": self.tta}
        section["postprocessing"] = {
            **step.to_dict(), "description": step.describe(),
            "record": None if self.postprocessing_file is None else str(self.postprocessing_file),
            "raw_mask_written": step.is_identity,
        }
        if probabilities:
            section["probabilities"] = {"file": probabilities,
                                        "note": "before the threshold and before postprocessing"}
        return section

    def predict(self, jobs: Sequence[Job], reference: tuple[str, np.ndarray] | None = None) -> list[Prediction]:
        """Predict planned jobs (:func:`~medseg.predict.plan.plan_jobs`) and write their outputs.

        Args:
            reference: (name, (N, H, W) mask) of the one job's reference
                (:func:`~medseg.predict.reference.read_reference`): the prediction is scored
                against it (:attr:`Prediction.reference`, the report's ``reference`` section).

        Raises:
            DataError: for an input that cannot be read, a DICOM series a SEG cannot be made
                of (before that input's files are written), an output that cannot be written.
        """
        return [self._run_job(job, reference) for job in jobs]

    def _run_job(self, job: Job, reference: tuple[str, np.ndarray] | None = None) -> Prediction:
        record = Prediction(job.input, job.kind, single_sequence=job.single_sequence,
                            postprocessing=self.postprocessing.describe())
        if job.plan is not None:
            record.sequences = {source.key: source.path for source in job.plan.inputs}
        if job.nifti is not None:  # a volume or sequences
            self._run_volume(job, job.nifti, record, reference)
            return record
        if self.postprocessing.is_identity:  # each chunk written as it is predicted
            masks = []
            for start in range(0, len(job.sources), _CHUNK):
                images = self._read(job, start)
                probs = self.probabilities(images)
                chunk = [binarize(prob, self.threshold) for prob in probs]
                self._write_chunk(job, start, images, chunk, probs, record)
                masks += chunk
        else:  # the input's masks postprocessed together, then read again to be written
            probs = [prob for start in range(0, len(job.sources), _CHUNK)
                     for prob in self.probabilities(self._read(job, start))]
            masks = self.postprocessed([binarize(prob, self.threshold) for prob in probs])
            for start in range(0, len(job.sources), _CHUNK):
                self._write_chunk(job, start, self._read(job, start), masks[start : start + _CHUNK],
                                  probs[start : start + _CHUNK], record)
        if reference is not None:  # one slice (read_reference)
            from medseg.predict.reference import score_reference

            record.reference = score_reference(np.stack(masks), reference[1], None, reference[0])
        return record

    @staticmethod
    def _read(job: Job, start: int) -> list[np.ndarray]:
        """The slices of ``job`` from ``start``, one chunk of them."""
        return [read_slice(p, p in job.grey) for p in job.sources[start : start + _CHUNK]]

    @staticmethod
    def _write_chunk(job: Job, start: int, images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                     probs: Sequence[np.ndarray], record: Prediction) -> None:
        stems = job.stems[start : start + _CHUNK]
        for path, image, mask, prob, stem in zip(job.sources[start:], images, masks, probs, stems, strict=False):
            _write_slice_outputs(image, mask, job.folder, stem, record, path in job.grey,
                                 prob if job.probability_pngs else None)

    def _run_volume(self, job: Job, nifti: Path, record: Prediction,
                    reference: tuple[str, np.ndarray] | None = None) -> None:
        """Predict a volume or sequence set and write its PNGs, mask ``nifti``, SEG and report
        (in that order; the SEG is built before anything is written), the report scoring the
        prediction against ``reference`` when given."""
        volume = load_sequences(job.plan) if job.plan is not None else load_volume(job.input)
        record.nonfinite_voxels = volume.nonfinite_voxels
        images = list(volume.slices)
        probs = self.probabilities(images)
        masks = self.postprocessed([binarize(prob, self.threshold) for prob in probs])
        stack = np.stack(masks)
        seg = self._segmentation(job, volume, stack)
        for image, mask, stem in zip(images, masks, job.stems, strict=True):
            _write_slice_outputs(image, mask, job.folder, stem, record, job.single_sequence)
        try:
            write_mask_nifti(stack, volume, nifti, job.single_sequence)
        except OSError as err:
            raise _write_error(nifti, err) from None
        record.files.append(nifti)
        if job.probability_nifti is not None:
            try:
                write_probability_nifti(np.stack(probs), volume, job.probability_nifti, job.single_sequence)
            except OSError as err:
                raise _write_error(job.probability_nifti, err) from None
            record.files.append(job.probability_nifti)
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
        from medseg.engine.lesions import lesion_report, stack_geometry

        lesions = lesion_report(stack, volume.affine, volume.slice_transform())
        record.tumour_volume_ml, record.lesions = lesions["tumour_volume_ml"], lesions["n_lesions"]
        if reference is not None:
            from medseg.predict.reference import score_reference

            record.reference = score_reference(
                stack, reference[1], stack_geometry(volume.affine, volume.slice_transform()), reference[0])
        if job.report is not None:
            report = prediction_report(
                str(record.input), self.threshold, lesions,
                sequences={key: str(path) for key, path in record.sequences.items()},
                single_sequence=record.single_sequence,
                dicom_seg=record.dicom_seg.name if record.dicom_seg is not None else None,
                dicom_seg_skipped=record.dicom_seg_skipped,
                reference=record.reference.section() if record.reference is not None else None,
                prediction=self.description(job.probability_nifti.name if job.probability_nifti else None))
            try:
                write_text(job.report, report_text(report))
            except OSError as err:
                raise _write_error(job.report, err) from None
            record.files.append(job.report)

    def _segmentation(self, job: Job, volume: Volume, masks: np.ndarray) -> Segmentation | None:
        """The DICOM SEG of a DICOM reference's mask (N, H, W), or None when none is planned.

        Raises:
            DataError: when highdicom refuses the source series.
        """
        if job.seg_series is None or job.plan is None:
            return None
        return prediction_segmentation(masks, volume, job.plan, job.seg_series, self.threshold)


def _write_slice_outputs(image: np.ndarray, mask: np.ndarray, folder: Path, stem: str, record: Prediction,
                         single_sequence: bool, probabilities: np.ndarray | None = None) -> None:
    mask_path, overlay_path = output_path(folder, stem, MASK_PNG), output_path(folder, stem, OVERLAY_PNG)
    try:
        folder.mkdir(parents=True, exist_ok=True)  # only once there is something to write
    except OSError as err:
        raise _write_error(folder, err) from None
    _write_file(mask_path, png_bytes(mask_picture(mask), single_sequence))
    _write_file(overlay_path, png_bytes(overlay_picture(image, mask), single_sequence))
    record.files += [mask_path, overlay_path]
    if probabilities is not None:
        prob_path = output_path(folder, stem, PROB_PNG)
        _write_file(prob_path, png_bytes(probability_picture(probabilities), single_sequence))
        record.files.append(prob_path)
    record.slices += 1
    record.tumour_pixels += int(mask.sum())
    record.tumour_slices += int(mask.any())


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
    engine: str = "auto",
    reference: str | Path | None = None,
    members: Sequence[str | Path] = (),
    tta: str = "none",
    postprocess: bool = True,
    probabilities: bool = False,
) -> list[Prediction]:
    """Predict tumour masks for every input and write them under ``out_dir``: plan and check
    every output (:func:`~medseg.predict.plan.plan_jobs`), then load the model
    (:meth:`Predictor.from_checkpoint`) and predict (:meth:`Predictor.predict`), holding
    ``out_dir``'s lock (:func:`medseg.locks.folder_lock`) from planning to the last write.

    Args:
        checkpoint: a segmentation checkpoint written by ``medseg train``, a cross-validation
            folder (``medseg cv``: the ensemble of its folds), or an ONNX export
            (``model.onnx`` or its folder, written by ``medseg export``).
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
        engine: "auto" (an ONNX export runs in ONNX Runtime, a checkpoint in torch), "torch"
            or "onnxruntime" (:func:`~medseg.predict.exported.resolve_engine`).
        reference: a reference mask of the one input (a NIfTI mask on a volume's or sequence
            set's grid, a PNG/TIFF mask of a slice's size): the prediction is scored against
            it (:mod:`medseg.predict.reference`; a volume's report gains ``reference``).
        members: more checkpoints, averaged with ``checkpoint`` (an ensemble).
        tta: "none" or "flip": the mean over the task's mirrorings (LGG: left-right).
        postprocess: apply a CV folder's recorded postprocessing to every mask written (its
            report says so; the raw mask is not written); False writes the raw masks.
        probabilities: also write each input's probability map (before the threshold and
            the postprocessing): ``<stem>_prob.png`` (16-bit) per slice of a slice or folder
            input, ``<name>_prob.nii.gz`` (float32, on its grid) per volume or sequence set.

    Raises:
        CheckpointError: for an unreadable or classification checkpoint.
        DataError: for no input, a missing or unreadable input, one MR sequence without
            ``single_sequence``, sequences on different grids, or a refused plan
            (:mod:`medseg.predict.plan`), a ``reference`` with several inputs or off the
            input's grid or not binary, checked before anything is written; for a DICOM
            series a SEG cannot be made of (highdicom refuses it), before that input's files
            are written; for an output that cannot be written.
        MedsegError: for a threshold outside (0, 1), an unknown ``tta``, members or flip
            TTA asked of an ONNX export, or when another medseg process writes ``out_dir``
            (naming it), before anything is written.
    """
    check_threshold(threshold, "--threshold")
    if tta not in TTA_MODES:
        raise MedsegError(f"--tta: {tta!r} is not one of {', '.join(TTA_MODES)}")
    resolve_engine(checkpoint, engine)
    out_dir = Path(out_dir)
    check_out_folder(out_dir)
    with folder_lock(out_dir, what="--out folder"):
        jobs = plan_jobs(inputs, out_dir, sequences=sequences, single_sequence=single_sequence,
                         overwrite=overwrite, probabilities=probabilities)
        mask = None
        if reference is not None:  # here, not at the top: the measures import SciPy
            from medseg.predict.reference import read_reference

            mask = str(reference), read_reference(reference, jobs)
        return Predictor.from_checkpoint(checkpoint, threshold=threshold, device=device, engine=engine,
                                         members=members, tta=tta, postprocess=postprocess).predict(jobs, mask)
