"""NIfTI volumes as stacks of axial slices, and masks written back on the same voxel grid.

Slices are oriented like the LGG training slices, whatever the file's voxel order: one
slice per axial plane from inferior to superior, anterior at the top and the patient's
right on the image's left (radiological view). :func:`save_mask_volume` applies the inverse
reordering, so the mask file has the input's shape, affine and voxel order.

The models were trained on three sequences (pre-contrast T1, FLAIR, post-contrast T1 as
RGB). A 4-D volume with 3 channels on its last axis is read as those three; a single
sequence (3-D volume) is repeated into all three channels, which is a limitation: the model
then sees inputs unlike its training data and its masks are less reliable (``medseg
predict`` refuses it unless told ``--single-sequence``; separate sequence files are read by
:mod:`medseg.imaging.sequences`).

Intensities: each channel follows :func:`normalize_sequence`, the rule that matches the uint8
kaggle_3m training slices: a channel whose voxels are all integers within 0..255 is taken as
is (a volume built from kaggle_3m pixels reads back exactly), any other is rescaled robustly
(0.5th..99.5th percentile over the whole volume to 0..255).

Only a regular file is opened (:func:`~medseg.paths.regular_file`: a FIFO would block
forever). Headers are checked before any voxel is read: the voxel cap of
:mod:`medseg.imaging.limits` (and at least one voxel), one real number per voxel (RGB24 and
complex voxels are refused), finite ``scl_slope`` / ``scl_inter``, an affine that maps the voxel
axes onto three world axes. Stored NaN or infinite voxels (registration tools pad with NaN) read
as background and are counted (:attr:`Volume.nonfinite_voxels`); a volume holding nothing else
is refused. Voxel values that scaling makes infinite, or that lie beyond float32's range (the
precision intensities are normalised in), are refused rather than silently zeroed.

Example:
    >>> volume = load_volume("flair.nii.gz")
    >>> volume.slices.shape  # (N, H, W, 3) uint8
    (155, 240, 240, 3)
    >>> save_mask_volume(volume.slices[..., 1] > 200, volume, "mask.nii.gz")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.arrayproxy import ArrayProxy
from nibabel.openers import ImageOpener
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

from medseg.errors import DataError
from medseg.files import atomic_path
from medseg.imaging.limits import check_volume_shape
from medseg.paths import regular_file

#: Slice-stack axes: inferior->Superior, anterior->Posterior (rows), right->Left (columns).
SLICE_AXCODES = ("S", "P", "L")
#: the largest magnitude a voxel may have: intensities are normalised in float32
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class Volume:
    """A volume as slices: a NIfTI file, or MR sequences stacked by
    :mod:`medseg.imaging.sequences` (NIfTI files or DICOM series).

    Attributes:
        slices: (N, H, W, 3) uint8 slices: axial for NIfTI (see the module docstring for
            orientation), as stored for a DICOM series (:mod:`medseg.imaging.dicom`).
        affine: the file's voxel-to-world affine (RAS; built from the headers for DICOM).
        header: the file's NIfTI header (a fresh one for DICOM).
        shape: the file's spatial shape (3 voxel counts, in file order; (Columns, Rows, N)
            for DICOM).
        nonfinite_voxels: NaN or infinite voxels of the file, read as background (the
            volume's lowest finite intensity); say so wherever the volume is shown.
        to_slices: how the file's voxel axes become the slice axes (a nibabel ``ornt``);
            None: from ``affine`` and :data:`SLICE_AXCODES`.
    """

    slices: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header
    shape: tuple[int, int, int]
    nonfinite_voxels: int = 0
    to_slices: np.ndarray | None = None

    def slice_transform(self) -> np.ndarray:
        """The orientation transform (nibabel ``ornt``) from the file's voxel axes to the
        slice axes (N, H, W): ``to_slices`` when set (a DICOM series is viewed as stored),
        else the one :data:`SLICE_AXCODES` gives for ``affine`` (NIfTI)."""
        return slice_transform(self.affine) if self.to_slices is None else self.to_slices


def _rescale(channel: np.ndarray) -> np.ndarray:
    """Map the 0.5th..99.5th percentile of a (finite) channel to 0..255 (robust to outliers)."""
    values = channel.astype(np.float32)
    low, high = np.percentile(values, [0.5, 99.5])
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    scaled = np.clip((values - low) / (high - low), 0.0, 1.0) * 255.0
    return np.rint(scaled).astype(np.uint8)


def normalize_sequence(values: np.ndarray) -> np.ndarray:
    """One MR sequence (any shape, finite values) as uint8 the way training saw it.

    Voxels that are all integers within 0..255 are taken as is (kaggle_3m slices are uint8 per
    channel, so volumes made from their pixels round-trip exactly); anything else is rescaled
    robustly, its 0.5th..99.5th percentile mapped to 0..255.

    Example:
        >>> normalize_sequence(np.array([0.0, 17.0, 255.0])).tolist()
        [0, 17, 255]
    """
    values = np.asarray(values)
    if values.dtype == np.bool_:
        return values.astype(np.uint8)
    in_range = values.size > 0 and values.min() >= 0 and values.max() <= 255
    if in_range and (np.issubdtype(values.dtype, np.integer) or np.array_equal(values, np.round(values))):
        return values.astype(np.uint8)
    return _rescale(values)


def slice_transform(affine: np.ndarray) -> np.ndarray:
    """The nibabel orientation transform from a NIfTI file's voxel axes to the slice axes
    (:data:`SLICE_AXCODES`) for its ``affine``."""
    return ornt_transform(io_orientation(affine), axcodes2ornt(SLICE_AXCODES))


def inverse_transform(ornt: np.ndarray) -> np.ndarray:
    """The orientation transform undoing ``ornt`` (slice axes back to the file's axes)."""
    inverse = np.empty_like(np.asarray(ornt, dtype=float))
    for axis, (target, flip) in enumerate(np.asarray(ornt)):
        inverse[int(target)] = (axis, flip)
    return inverse


def _check_voxel_type(path: Path, image: nib.Nifti1Image) -> None:
    """Refuse voxels that are not one real number each (RGB24, RGBA32, complex)."""
    dtype = image.get_data_dtype()
    if dtype.fields is not None or dtype.kind not in "biuf":
        code = int(image.header["datatype"])
        raise DataError(f"{path}: stores voxels of NIfTI datatype {code} "
                        f"({image.header.get_value_label('datatype')}); expected one grey value per "
                        "voxel (an integer or floating-point datatype)")


def _check_scaling(path: Path, image: nib.Nifti1Image) -> None:
    """Refuse an infinite ``scl_slope`` or ``scl_inter``, read from the header as stored (nibabel
    ignores such a slope; NaN or 0 mean "not scaled" and pass)."""
    header_class = type(image.header)
    try:
        with ImageOpener(str(path)) as handle:
            stored = header_class(handle.read(header_class.sizeof_hdr), check=False)
        slope, inter = float(stored["scl_slope"]), float(stored["scl_inter"])
    except Exception as err:  # a header nibabel read a moment ago: damaged or changed since
        raise DataError(f"{path}: cannot read NIfTI ({err})") from None
    for name, value in (("scl_slope", slope), ("scl_inter", inter)):
        if np.isinf(value):
            raise DataError(f"{path}: {name} is {value:g}; the voxel values cannot be scaled")


def open_nifti(path: Path) -> nib.Nifti1Image:
    """The NIfTI image at ``path``, its header only: voxel count and type, scaling and affine
    checked (module docstring).

    Raises:
        DataError: naming the file when it is missing or not a regular file, not NIfTI, holds
            no voxel or more than :func:`~medseg.imaging.limits.max_volume_voxels`, stores
            voxels that are not one real number each, has an infinite scaling or an unusable
            affine.
    """
    path = regular_file(path)
    try:
        image = nib.load(path)
    except Exception as err:  # nibabel raises many types for damaged files
        raise DataError(f"{path}: cannot read NIfTI ({err})") from None
    if not isinstance(image, nib.Nifti1Image):
        raise DataError(f"{path}: not a NIfTI file (.nii or .nii.gz)")
    check_volume_shape(path, image.shape)
    _check_voxel_type(path, image)
    _check_scaling(path, image)
    affine = image.affine
    if not np.isfinite(affine).all() or np.isnan(io_orientation(affine)).any():
        raise DataError(
            f"{path}: the voxel-to-world affine (sform/qform) is singular or not finite; "
            "cannot tell which axis is axial"
        )
    return image


def _scaling(image: nib.Nifti1Image) -> tuple[float, float]:
    """The (slope, intercept) nibabel applies when reading ``image``'s voxels."""
    return float(getattr(image.dataobj, "slope", 1.0)), float(getattr(image.dataobj, "inter", 0.0))


def _stored_nonfinite(image: nib.Nifti1Image) -> int:
    """How many voxels are NaN or infinite as stored, before scaling."""
    proxy = image.dataobj
    if not isinstance(proxy, ArrayProxy):  # voxels in memory: nothing scaled them
        return 0
    stored = np.asanyarray(proxy.get_unscaled())
    if not np.issubdtype(stored.dtype, np.floating):
        return 0
    return int(stored.size - np.count_nonzero(np.isfinite(stored)))


def _out_of_range(path: Path, image: nib.Nifti1Image, peak: float) -> DataError:
    slope, inter = _scaling(image)
    scaled = f" once scaled by scl_slope {slope:g} and scl_inter {inter:g}" if (slope, inter) != (1.0, 0.0) else ""
    return DataError(f"{path}: voxel values reach {peak:.3g}{scaled}, beyond the float32 range "
                     f"(±{FLOAT32_MAX:.3g}) intensities are computed in; refused, not read as zeros")


def read_voxels(path: Path, image: nib.Nifti1Image) -> tuple[np.ndarray, int]:
    """The voxel array of ``image`` (scaled as stored), NaN and infinite voxels replaced by
    the lowest finite intensity (background: registration tools pad with NaN), and how many
    there were.

    Raises:
        DataError: when the data cannot be read, holds no finite voxel at all (an image of
            nothing, which a model would still segment), or values beyond float32's range
            (:data:`FLOAT32_MAX`), stored or made so by scaling (a voxel that scaling makes
            infinite is not NaN padding).
    """
    try:
        data = np.asanyarray(image.dataobj)
    except Exception as err:  # truncated or damaged data
        raise DataError(f"{path}: cannot read NIfTI ({err})") from None
    if not np.issubdtype(data.dtype, np.floating):
        return data, 0  # integers, unscaled: finite and within float32's range
    finite = np.isfinite(data)
    nonfinite = int(data.size - np.count_nonzero(finite))
    if nonfinite and _scaling(image) != (1.0, 0.0) and _stored_nonfinite(image) < nonfinite:
        raise _out_of_range(path, image, np.inf)
    if nonfinite == data.size:
        nan = int(np.isnan(data).sum())
        raise DataError(
            f"{path}: every voxel is NaN or infinite ({nan} NaN, {data.size - nan} infinite); "
            "there is no image to segment"
        )
    if nonfinite:
        data = np.where(finite, data, data[finite].min())
    peak = max(abs(float(data.min())), abs(float(data.max())))
    if peak > FLOAT32_MAX:
        raise _out_of_range(path, image, peak)
    return data, nonfinite


def _channels(path: Path, shape: tuple[int, ...]) -> int:
    """1 or 3: the channels of a 3-D volume or a 4-D volume with channels last.

    Raises:
        DataError: for any other shape.
    """
    if len(shape) == 3:
        return 1
    if len(shape) == 4 and shape[3] in (1, 3):
        return shape[3]
    raise DataError(
        f"{path}: expected a 3-D volume or 4-D with 3 channels on the last axis, got shape {shape}"
    )


def _to_slice_order(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Reorder a 3-D voxel array from the file's orientation to :data:`SLICE_AXCODES`."""
    return apply_orientation(data, slice_transform(affine))


def volume_channels(path: str | Path) -> int:
    """The MR sequences a NIfTI volume holds, from its header alone: 1 (3-D, or 4-D with one
    channel) or 3 (4-D with 3 channels last).

    Raises:
        DataError: as :func:`count_volume_slices`.
    """
    path = Path(path)
    return _channels(path, open_nifti(path).shape)


def count_volume_slices(path: str | Path) -> int:
    """The number of axial slices :func:`load_volume` will cut, from the header alone.

    Raises:
        DataError: as :func:`load_volume` for the header (missing, not NIfTI, too large,
            unusable affine, wrong shape); the voxels are not read.
    """
    path = Path(path)
    image = open_nifti(path)
    _channels(path, image.shape)
    superior = int(np.flatnonzero(io_orientation(image.affine)[:, 0] == 2)[0])
    return int(image.shape[superior])


def load_volume(path: str | Path) -> Volume:
    """Read a 3-D NIfTI volume (or 4-D with 3 channels last) as axial slices.

    Each channel's intensities follow :func:`normalize_sequence` (integers within 0..255 kept
    as they are, anything else rescaled robustly over the whole volume); a single channel is
    repeated into the 3 channels the models expect. The header is checked before any voxel is
    read (size cap of :mod:`medseg.imaging.limits`, affine).

    Raises:
        DataError: when the file is missing, not NIfTI, over the voxel cap, not 3-D / 4-D
            with 1 or 3 channels, has a singular affine, or holds no finite voxel.
    """
    path = Path(path)
    image = open_nifti(path)
    n_channels = _channels(path, image.shape)
    data, nonfinite = read_voxels(path, image)
    channels = [data] if data.ndim == 3 else [data[..., c] for c in range(n_channels)]
    slices = [normalize_sequence(_to_slice_order(channel, image.affine)) for channel in channels]
    stacked = np.stack(slices if len(slices) == 3 else slices * 3, axis=-1)
    return Volume(
        slices=np.ascontiguousarray(stacked),
        affine=image.affine.copy(),
        header=image.header.copy(),
        shape=(int(data.shape[0]), int(data.shape[1]), int(data.shape[2])),
        nonfinite_voxels=nonfinite,
    )


def load_mask_volume(path: str | Path, to_slices: np.ndarray | None = None) -> np.ndarray:
    """Read a NIfTI mask volume as (N, H, W) uint8 in {0, 1}, slices ordered like
    :func:`load_volume` (any non-zero voxel is tumour; no intensity rescaling), or by
    ``to_slices`` (a nibabel ``ornt``: another volume's :meth:`Volume.slice_transform`).

    Raises:
        DataError: when the file is missing, not a readable 3-D NIfTI volume, over the voxel
            cap, has a singular affine, or holds no finite voxel.
    """
    path = Path(path)
    image = open_nifti(path)
    shape = image.shape
    if not (len(shape) == 3 or (len(shape) == 4 and shape[3] == 1)):
        raise DataError(f"{path}: expected a 3-D mask volume, got shape {shape}")
    data, _ = read_voxels(path, image)  # NaN voxels are background: not tumour
    if data.ndim == 4:
        data = data[..., 0]
    ornt = slice_transform(image.affine) if to_slices is None else to_slices
    return (apply_orientation(data, ornt) != 0).astype(np.uint8)


def save_mask_volume(
    mask_nhw: np.ndarray, volume: Volume, path: str | Path, *, description: str | None = None
) -> None:
    """Write a uint8 NIfTI mask (nonzero -> 1) on the voxel grid of ``volume``'s file
    (:func:`save_slice_map`).

    Raises:
        DataError: when the mask's shape differs from the slices'.
    """
    save_slice_map((np.asarray(mask_nhw) != 0).astype(np.uint8), volume, path, description=description)


def save_slice_map(
    map_nhw: np.ndarray, volume: Volume, path: str | Path, *, description: str | None = None
) -> None:
    """Write a per-voxel map over ``volume.slices`` (a mask, a probability map) as NIfTI on
    the voxel grid of ``volume``'s file: its affine, header and voxel order, the map's dtype,
    no scaling, display range 0..1.

    Args:
        map_nhw: (N, H, W) values over ``volume.slices`` (uint8 mask, float32 probabilities).
        volume: the volume the map was predicted from.
        path: output ``.nii`` or ``.nii.gz``; written atomically.
        description: the header's ``descrip`` (at most 80 bytes; default: the input's).

    Raises:
        DataError: when the map's shape differs from the slices'.
    """
    path = Path(path)
    values = np.asarray(map_nhw)
    if values.shape != volume.slices.shape[:3]:
        raise DataError(
            f"{path}: map shape {values.shape} does not match the volume's slices "
            f"{volume.slices.shape[:3]}"
        )
    to_file = inverse_transform(volume.slice_transform())
    data = np.ascontiguousarray(apply_orientation(values, to_file))
    image_class = nib.Nifti2Image if isinstance(volume.header, nib.Nifti2Header) else nib.Nifti1Image
    header = volume.header.copy()
    header.set_data_dtype(data.dtype)
    image = image_class(data, volume.affine, header)
    image.header.set_slope_inter(1.0, 0.0)
    image.header["cal_min"], image.header["cal_max"] = 0, 1
    if description is not None:
        image.header["descrip"] = description.encode()[:80]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        nib.save(image, tmp)
