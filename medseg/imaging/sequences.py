"""The three MR sequences the LGG models read, from separate NIfTI files or DICOM series.

The models were trained on kaggle_3m slices whose RGB channels are, in order, pre-contrast
T1 ("pre"), FLAIR and post-contrast T1 ("post"): :data:`SEQUENCES`. :func:`load_sequences`
stacks three co-registered volumes into those channels as a :class:`~medseg.imaging.nifti.Volume`.
Each input is a NIfTI file (``.nii``/``.nii.gz``, 3-D or 4-D with one channel) or a DICOM
series: a folder of one series' files, a ``.zip`` of one, or a DICOM file
(:mod:`medseg.imaging.dicom`).

- One voxel grid: the inputs must have the same shape, voxel spacing (relative tolerance
  :data:`~medseg.imaging.dicom.SPACING_RTOL`), direction cosines (each component within
  :data:`~medseg.imaging.dicom.ORIENTATION_TOLERANCE`) and origin (within
  :data:`~medseg.imaging.dicom.POSITION_TOLERANCE_MM` mm), compared on the voxel-to-world
  affines (RAS) in each file's voxel order; otherwise a DataError names the two inputs and
  how they differ.
- Intensities, each sequence separately over its whole volume
  (:func:`~medseg.imaging.nifti.normalize_sequence`): a sequence whose voxels are all integers
  within 0..255 is taken as is (kaggle_3m slices are uint8 per channel, so volumes made from
  kaggle_3m pixels round-trip exactly); any other is rescaled robustly, its 0.5th..99.5th
  percentile mapped to 0..255. NaN or infinite NIfTI voxels read as the sequence's lowest
  intensity and are counted.
- The reference input is the FLAIR (or the only input given): the volume takes its affine,
  header and slice view (a NIfTI reference is cut into axial slices, ``SLICE_AXCODES``; a
  DICOM reference is viewed as stored, ``DICOM_TO_SLICES``), and outputs are named after it
  (:func:`input_name`).
- Fewer than three sequences are refused, naming the missing ones, unless
  ``single_sequence``: then exactly one is given and repeated into all three channels (the
  model sees inputs unlike its training data; its masks are less reliable)
  (:func:`missing_sequences`).
- An expert mask volume (NIfTI) must be on the reference's grid and is viewed like it
  (:func:`load_sequence_mask`).

Example:
    >>> volume = load_sequences(plan_sequences(
    ...     {"pre": "t1.nii.gz", "flair": "flair_dicom/", "post": "t1c.zip"}))
    >>> volume.slices.shape  # (N, H, W, 3) uint8: pre, FLAIR, post
    (22, 256, 256, 3)
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation
from PIL import Image

from medseg.errors import DataError
from medseg.imaging.dicom import (
    DICOM_TO_SLICES,
    ORIENTATION_TOLERANCE,
    POSITION_TOLERANCE_MM,
    SPACING_RTOL,
    is_dicom_file,
    read_dicom_series,
    scan_dicom_series,
)
from medseg.imaging.limits import load_image
from medseg.imaging.nifti import (
    Volume,
    load_mask_volume,
    normalize_sequence,
    open_nifti,
    read_voxels,
    slice_transform,
)
from medseg.paths import is_regular_file

#: the sequences in channel order (R, G, B of a kaggle_3m slice); the one table of them that
#: every module reads (CLI flags ``--pre``/``--flair``/``--post``, the app's uploaders and views)
SEQUENCES = ("pre", "flair", "post")
#: what each sequence is, in messages (the app's views capitalise it: "Pre-contrast")
SEQUENCE_NAMES = {"pre": "pre-contrast", "flair": "FLAIR", "post": "post-contrast"}
#: each sequence's full name, as the app's uploaders label it
SEQUENCE_TITLES = {"pre": "Pre-contrast T1", "flair": "FLAIR", "post": "Post-contrast T1"}
#: the input that names the outputs and gives the grid and slice view
REFERENCE = "flair"
NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: PIL modes of one-channel (one sequence) slice images
GREY_MODES = frozenset({"1", "L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
#: what every refusal of fewer sequences says
READS_THREE = f"the model reads three ({', '.join(SEQUENCE_NAMES[key] for key in SEQUENCES)})"


class OneSequenceError(DataError):
    """An input holding one MR sequence (a 3-D volume, a grey slice) refused: the app catches
    it to word the refusal its own way."""


def one_sequence_error(shown: str | Path) -> OneSequenceError:
    """The refusal of an input holding one MR sequence (a 3-D volume, a grey slice).

    Example:
        >>> raise one_sequence_error("scan.nii.gz")
    """
    return OneSequenceError(
        f"{shown}: one MR sequence; {READS_THREE}: give --pre, --flair and --post, or "
        "--single-sequence to repeat this one into all three channels"
    )


@dataclass(frozen=True)
class Grid:
    """A voxel grid: spatial ``shape`` (file order) and voxel-to-world ``affine`` (RAS mm)."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size (mm) along each voxel axis."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def directions(self) -> np.ndarray:
        """Unit direction (RAS) of each voxel axis, as columns."""
        return self.affine[:3, :3] / self.spacing

    @property
    def origin(self) -> np.ndarray:
        """World position (RAS mm) of voxel (0, 0, 0)."""
        return self.affine[:3, 3]


def _numbers(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in np.asarray(values).ravel()) + ")"


def grid_difference(a: Grid, b: Grid) -> str | None:
    """How two grids differ, as "shape: (…) vs (…)" (None when they agree within the
    tolerances of the module docstring)."""
    if a.shape != b.shape:
        return f"shape: {a.shape} vs {b.shape}"
    if not np.allclose(a.spacing, b.spacing, rtol=SPACING_RTOL, atol=0):
        return f"voxel spacing: {_numbers(a.spacing)} vs {_numbers(b.spacing)} mm"
    turned = float(np.abs(a.directions - b.directions).max())
    if turned > ORIENTATION_TOLERANCE:
        codes = ["".join(str(c) for c in nib.aff2axcodes(grid.affine)) for grid in (a, b)]
        if codes[0] != codes[1]:
            return f"orientation: voxel axes towards {codes[0]} vs {codes[1]}"
        return f"orientation: direction cosines differ by up to {turned:.3g} (voxel axes towards {codes[0]})"
    if np.abs(a.origin - b.origin).max() > POSITION_TOLERANCE_MM:
        return f"position (origin): {_numbers(a.origin)} vs {_numbers(b.origin)} mm"
    return None


@dataclass(frozen=True)
class SequenceInput:
    """One sequence's input, its headers read: ``key`` (in :data:`SEQUENCES`), ``path``,
    ``dicom`` (else NIfTI), ``grid`` and ``to_slices`` (voxel axes -> slice axes)."""

    key: str
    path: Path
    dicom: bool
    grid: Grid
    to_slices: np.ndarray

    @property
    def label(self) -> str:
        """``FLAIR (path)``, as messages name it."""
        return f"{self.key.upper()} ({self.path})"

    @property
    def folder(self) -> Path | None:
        """The DICOM series folder of this input (nothing may be written into it), else None."""
        return self.path if self.dicom and self.path.is_dir() else None


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def input_name(path: str | Path) -> str:
    """The name outputs take from an input: a NIfTI file without ``.nii``/``.nii.gz``, a zip
    or DICOM file without its suffix, a folder's own name."""
    path = Path(path)
    if path.name.lower().endswith(".nii.gz"):
        return path.name[: -len(".nii.gz")]
    return path.resolve().name if path.is_dir() else path.stem


def open_sequence(key: str, path: str | Path) -> SequenceInput:
    """Read one sequence input's headers (no voxel or pixel data).

    Raises:
        DataError: naming the input when it is missing, of an unknown kind, a NIfTI volume
            with several channels, or refused by the NIfTI or DICOM reader.
    """
    path = Path(path)
    flag = f"--{key} {path}"
    if not path.exists():
        raise DataError(f"{flag}: no such file or folder")
    if _is_nifti(path):
        image = open_nifti(path)
        if not (len(image.shape) == 3 or (len(image.shape) == 4 and image.shape[3] == 1)):
            raise DataError(f"{flag}: expected one MR sequence (a 3-D volume), got shape {image.shape}; "
                            "a volume holding the three sequences is given as a positional INPUT")
        shape = image.shape
        grid = Grid((int(shape[0]), int(shape[1]), int(shape[2])), image.affine.copy())
        return SequenceInput(key, path, False, grid, slice_transform(image.affine))
    if path.is_dir() or path.suffix.lower() == ".zip" or is_dicom_file(path):
        series = scan_dicom_series(path)
        return SequenceInput(key, path, True, Grid(series.shape, series.affine), DICOM_TO_SLICES)
    raise DataError(f"{flag}: expected a NIfTI volume (.nii, .nii.gz), a DICOM series folder, a "
                    ".zip of one, or a DICOM file")


@dataclass(frozen=True)
class SequencePlan:
    """The sequence inputs of one scan, checked from their headers: ``inputs`` in
    :data:`SEQUENCES` order (only those given) and ``single`` (one, to be repeated)."""

    inputs: tuple[SequenceInput, ...]
    single: bool

    @property
    def reference(self) -> SequenceInput:
        """The FLAIR, or the only input."""
        return next((s for s in self.inputs if s.key == REFERENCE), self.inputs[0])

    @property
    def name(self) -> str:
        """What the outputs are named after: :func:`input_name` of the reference."""
        return input_name(self.reference.path)

    @property
    def slices(self) -> int:
        """The number of slices of the reference's view."""
        reference = self.reference
        axis = int(np.flatnonzero(reference.to_slices[:, 0] == 0)[0])
        return reference.grid.shape[axis]


def missing_sequences(given: Iterable[str], single_sequence: bool = False) -> tuple[str, ...]:
    """The sequences (keys, in :data:`SEQUENCES` order) whose absence refuses the inputs
    ``given``: none when all three are given, or exactly one with ``single_sequence``.

    Example:
        >>> missing_sequences(["flair"]), missing_sequences(["flair"], single_sequence=True)
        (('pre', 'post'), ())
    """
    given = set(given)
    missing = tuple(key for key in SEQUENCES if key not in given)
    return () if single_sequence and len(given) == 1 else missing


def _missing_error(given: Mapping[str, Path], single_sequence: bool) -> DataError:
    missing = missing_sequences(given, single_sequence)
    shown = " and ".join(f"--{key} ({SEQUENCE_NAMES[key]})" for key in missing)
    verb = "is" if len(missing) == 1 else "are"
    flags = ", ".join(f"--{key} {path}" for key, path in given.items())
    if single_sequence:
        return DataError(f"{flags}: --single-sequence repeats one MR sequence, got {len(given)}: give "
                         f"{shown} too, or only one")
    if len(given) == 1:
        only = next(iter(given))
        return DataError(f"{flags}: one MR sequence ({SEQUENCE_NAMES[only]}); {READS_THREE}: {shown} "
                         f"{verb} missing; give them, or --single-sequence to repeat this one into all "
                         "three channels")
    return DataError(f"{flags}: {len(given)} MR sequences; {READS_THREE}: {shown} {verb} missing")


def plan_sequences(
    paths: Mapping[str, str | Path | None], *, single_sequence: bool = False
) -> SequencePlan:
    """Check the sequence inputs of one scan from their headers (module docstring).

    Args:
        paths: sequence (``pre``, ``flair``, ``post``) -> input; None or absent: not given.
        single_sequence: accept exactly one input, to be repeated into all three channels.

    Raises:
        DataError: for an unknown sequence, a missing sequence (naming it and its flag)
            without ``single_sequence``, several with it, an input refused by its reader,
            or two inputs on different grids (naming both and the difference).
    """
    unknown = sorted(set(paths) - set(SEQUENCES))
    if unknown:
        raise DataError(f"unknown MR sequence(s) {unknown}; expected {', '.join(SEQUENCES)}")
    given = {key: Path(path) for key in SEQUENCES if (path := paths.get(key)) is not None}
    if not given:
        raise DataError("no MR sequence given: --pre, --flair and --post")
    if missing_sequences(given, single_sequence):
        raise _missing_error(given, single_sequence)
    seen: dict[Path, str] = {}
    for key, path in given.items():
        if (earlier := seen.setdefault(path.resolve(), key)) != key:
            raise DataError(f"--{earlier} and --{key} are the same input ({path}); give each MR "
                            "sequence its own file, or one with --single-sequence")
    plan = SequencePlan(tuple(open_sequence(key, path) for key, path in given.items()), len(given) == 1)
    reference = plan.reference
    for other in plan.inputs:
        if other is reference:
            continue
        first, second = sorted((other, reference), key=lambda s: SEQUENCES.index(s.key))
        difference = grid_difference(first.grid, second.grid)
        if difference is not None:
            raise DataError(f"{first.label} and {second.label} differ in {difference}; the three "
                            "sequences must be co-registered on one voxel grid")
    return plan


def _read_values(source: SequenceInput) -> tuple[np.ndarray, int]:
    """A sequence's voxels in its file's voxel order, and how many were NaN or infinite."""
    if source.dicom:
        return read_dicom_series(source.path).values, 0
    data, nonfinite = read_voxels(source.path, open_nifti(source.path))
    return (data[..., 0] if data.ndim == 4 else data), nonfinite


def load_sequences(plan: SequencePlan) -> Volume:
    """Read the planned sequences into one :class:`~medseg.imaging.nifti.Volume`: slices
    (N, H, W, 3) uint8 (pre, FLAIR, post; one repeated when ``plan.single``) in the
    reference's view, with its affine and header (a fresh NIfTI header for DICOM).

    Raises:
        DataError: when an input cannot be read (the headers were checked by
            :func:`plan_sequences`), or changed on disk since: its grid differs.
    """
    reference = plan.reference
    channels, nonfinite = [], 0
    for source in plan.inputs:
        values, bad = _read_values(source)
        if values.shape != source.grid.shape:
            raise DataError(f"{source.label}: changed on disk since it was checked (shape "
                            f"{values.shape}, was {source.grid.shape})")
        channels.append(normalize_sequence(apply_orientation(values, reference.to_slices)))
        nonfinite += bad
    if plan.single:
        channels *= 3
    header = nib.Nifti1Header() if reference.dicom else open_nifti(reference.path).header.copy()
    return Volume(
        slices=np.ascontiguousarray(np.stack(channels, axis=-1)),
        affine=reference.grid.affine.copy(),
        header=header,
        shape=reference.grid.shape,
        nonfinite_voxels=nonfinite,
        to_slices=reference.to_slices,
    )


def load_sequence_mask(path: str | Path, plan: SequencePlan) -> np.ndarray:
    """A NIfTI mask volume over :func:`load_sequences`' slices of ``plan``: (N, H, W) uint8 in
    {0, 1} (any non-zero voxel is tumour), viewed like the reference.

    Raises:
        DataError: naming the mask when it is not a readable 3-D NIfTI volume, or when it
            and the reference differ in grid (naming both and the difference).
    """
    path = Path(path)
    image = open_nifti(path)
    shape, reference = image.shape, plan.reference
    if len(shape) >= 3:  # any other shape: load_mask_volume says what is wrong
        grid = Grid((int(shape[0]), int(shape[1]), int(shape[2])), image.affine)
        difference = grid_difference(grid, reference.grid)
        if difference is not None:
            raise DataError(f"MASK ({path}) and {reference.label} differ in {difference}; the mask "
                            "must be on the sequences' voxel grid")
    return load_mask_volume(path, to_slices=reference.to_slices)


def slice_sequences(path: str | Path) -> int | None:
    """The MR sequences a 2-D slice image holds, from its header: 1 for a grey image
    (:data:`GREY_MODES`), 3 for RGB; None for any other or an unreadable file, or anything
    but a regular file (the slice reader then says what is wrong)."""
    if not is_regular_file(path):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                mode = image.mode
    except Exception:  # unreadable, too large: reported when read
        return None
    return 1 if mode in GREY_MODES else 3 if mode == "RGB" else None


def read_single_sequence_slice(path: str | Path) -> np.ndarray:
    """A grey slice image repeated into three channels, (H, W, 3) uint8, its intensities by
    :func:`~medseg.imaging.nifti.normalize_sequence` (8-bit grey kept as is).

    Raises:
        DataError: when the file is unreadable, too large, not grey, or holds NaN or infinite
            pixels.
    """
    path = Path(path)
    image = load_image(path)
    if image.mode not in GREY_MODES:
        raise DataError(f"{path}: expected a grey (one-channel) slice, got PIL mode {image.mode!r}")
    values = np.asarray(image)
    if not np.isfinite(values).all():
        raise DataError(f"{path}: holds NaN or infinite pixels")
    grey = normalize_sequence(values)
    return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=-1))
