"""Planning outputs and the overwrite policy: every output path is planned before anything is
written (:func:`plan_jobs`), and the whole run is refused
(:class:`~medseg.errors.DataError`, nothing written) when

- two inputs map to one output, or one input is given twice;
- an output would replace an input, or land inside a DICOM series folder that is an input;
- an output exists, unless ``overwrite`` and it is an earlier prediction
  (:func:`is_prediction`: the marks of :mod:`medseg.predict.formats`);
- ``out_dir`` (or a folder planned in it) is a file or cannot be written.

:func:`~medseg.predict.run.predict_paths` plans and writes while holding ``out_dir``'s lock
(:func:`medseg.locks.folder_lock`), so a second prediction into the same folder is refused
instead of replacing the first one's files.

| input | written under ``out_dir`` (names: :mod:`medseg.predict.outputs`) |
|---|---|
| slice ``x.png`` | ``x_pred.png``, ``x_pred_overlay.png`` |
| folder ``F`` | ``F/<slice>_pred.png``, ``F/<slice>_pred_overlay.png`` |
| volume ``scan.nii.gz`` | ``scan/scan_<k>_pred.png`` and ``_pred_overlay.png`` per axial slice, ``scan_pred.nii.gz``, ``scan_pred.json`` |
| sequences (``pre``, ``flair``, ``post``) | as a volume named after the FLAIR input (:func:`~medseg.imaging.sequences.input_name`) |
| sequences whose FLAIR (or only input) is a DICOM series, also | ``<name>_pred_seg.dcm``, unless the series lacks what a SEG refers to (:func:`seg_source` says why) |
| with ``probabilities``, also | ``<stem>_prob.png`` per slice of a slice or folder input; ``<name>_prob.nii.gz`` per volume or sequence set |

Example:
    >>> jobs = plan_jobs([Path("case_3/")], Path("predictions"))
    >>> [path.name for path, _ in jobs[0].outputs()][:2]
    ['case_3_1_pred.png', 'case_3_1_pred_overlay.png']
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
from PIL import Image

from medseg.errors import DataError
from medseg.imaging.dicom import DicomSeries, scan_dicom_series
from medseg.imaging.sequences import Grid, SequencePlan, grid_difference, plan_sequences
from medseg.paths import is_regular_file
from medseg.predict.formats import PREDICTION_MARK
from medseg.predict.inputs import Input, classify_input
from medseg.predict.outputs import (
    DICOM_SEG,
    MASK_NIFTI,
    MASK_PNG,
    OVERLAY_PNG,
    PROB_NIFTI,
    PROB_PNG,
    REPORT_JSON,
    VOLUME_SUFFIXES,
    file_suffix,
    output_path,
    slice_stems,
)

_REPORT_BYTES = 64 * 2**20  # a larger .json is not a report of ours (is_prediction)


@dataclass
class Job:
    """One input and the outputs planned for it.

    ``sources`` are the slice files read (none for a volume); ``stems[i]`` names the PNGs of
    slice i in ``folder``; ``nifti`` is a volume's mask file and ``report`` its lesion report;
    ``plan`` the sequence inputs; ``seg`` the DICOM SEG of a DICOM reference, ``seg_series`` its
    source headers, or ``seg_skipped`` why there is none; ``grey`` the one-sequence slice
    files; ``single_sequence``: one sequence, repeated; ``probability_pngs``: each slice's
    probability map is written too (slice and folder inputs), ``probability_nifti`` a volume's.
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
    probability_pngs: bool = False
    probability_nifti: Path | None = None

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
            pairs += [(output_path(self.folder, stem, MASK_PNG), origin),
                      (output_path(self.folder, stem, OVERLAY_PNG), origin)]
            if self.probability_pngs:
                pairs.append((output_path(self.folder, stem, PROB_PNG), origin))
        pairs += [(path, self.input) for path in (self.nifti, self.probability_nifti, self.seg, self.report)
                  if path is not None]
        return pairs


def plan_input(item: Input, out_dir: Path, probabilities: bool = False) -> Job:
    """The outputs of one classified input (with its probability map when ``probabilities``)."""
    if item.kind == "volume":
        return Job(item.path, "volume", out_dir / item.name, [], slice_stems(item.name, item.count),
                   output_path(out_dir, item.name, MASK_NIFTI), single_sequence=item.single_sequence,
                   report=output_path(out_dir, item.name, REPORT_JSON),
                   probability_nifti=output_path(out_dir, item.name, PROB_NIFTI) if probabilities else None)
    folder = out_dir / item.name if item.kind == "folder" else out_dir
    return Job(item.path, item.kind, folder, list(item.slices), [p.stem for p in item.slices],
               grey=item.grey, single_sequence=item.single_sequence, probability_pngs=probabilities)


def plan_scan(sequences: Mapping[str, str | Path | None], out_dir: Path, single_sequence: bool,
              probabilities: bool = False) -> Job:
    """The outputs of one scan's sequence inputs, checked from their headers (named after
    the FLAIR input).

    Raises:
        DataError: as :func:`~medseg.imaging.sequences.plan_sequences`.
    """
    plan = plan_sequences(sequences, single_sequence=single_sequence)
    name = plan.name
    job = Job(plan.reference.path, "sequences", out_dir / name, [], slice_stems(name, plan.slices),
              output_path(out_dir, name, MASK_NIFTI), plan=plan, single_sequence=plan.single,
              report=output_path(out_dir, name, REPORT_JSON),
              probability_nifti=output_path(out_dir, name, PROB_NIFTI) if probabilities else None)
    job.seg_series, job.seg_skipped = seg_source(plan)
    if job.seg_series is not None:
        job.seg = output_path(out_dir, name, DICOM_SEG)
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
    """True when ``path`` is a file written by ``medseg predict`` (see
    :data:`~medseg.predict.formats.PREDICTION_MARK`); only its header is read (a report: the
    whole file, when under 64 MiB); anything but a regular file is not (never opened)."""
    if not is_regular_file(path):
        return False
    name = path.name.lower()
    if name.endswith(".json"):
        return _report_writer(path) == PREDICTION_MARK
    if name.endswith(".dcm"):
        from medseg.imaging.dicom_seg import seg_model_name

        return seg_model_name(path) == PREDICTION_MARK
    try:
        if file_suffix(path.name, VOLUME_SUFFIXES) is not None:
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


def check_out_folder(out_dir: Path) -> None:
    """Refuse an ``out_dir`` that is a file, or whose nearest existing folder is not
    writable (before the folder's lock creates it).

    Raises:
        DataError: naming ``--out`` and the file or folder in the way.
    """
    _check_folder(out_dir, out_dir)


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


def check_plan(jobs: Sequence[Job], out_dir: Path, overwrite: bool) -> None:
    """Refuse the plan before anything is written (module docstring).

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


def plan_jobs(
    inputs: Sequence[str | Path], out_dir: Path, *, sequences: Mapping[str, str | Path | None] | None = None,
    single_sequence: bool = False, overwrite: bool = False, probabilities: bool = False,
) -> list[Job]:
    """Classify every input once, plan its outputs (and its probability maps when
    ``probabilities``) and check the plan (module docstring); the scan's ``sequences``, when
    given, come last.

    Raises:
        DataError: for no input, an input refused by :func:`~medseg.predict.inputs.classify_input`
            or :func:`~medseg.imaging.sequences.plan_sequences`, or a refused plan.
    """
    given = {key: path for key, path in (sequences or {}).items() if path is not None}
    if not inputs and not given:
        raise DataError("no input: give slices, folders or volumes (INPUT), or --pre, --flair "
                        "and --post")
    jobs = [plan_input(classify_input(Path(p), single_sequence), out_dir, probabilities) for p in inputs]
    if given:
        jobs.append(plan_scan(given, out_dir, single_sequence, probabilities))
    check_plan(jobs, out_dir, overwrite)
    return jobs
