"""DICOM series as 3-D volumes on a NIfTI-style voxel grid (read with pydicom).

An input is a folder holding the files of one series, a ``.zip`` of such a folder (its
members are read in memory: nothing is extracted), or a single DICOM file (a one-slice
series). Hidden entries and macOS litter (``._*``, ``.DS_Store``, ``__MACOSX``:
:data:`~medseg.imaging.files.SKIPPED_NAMES`) and a ``DICOMDIR`` index are skipped; any other file
that is not DICOM is refused.

Geometry, from the headers alone (file names and InstanceNumber are ignored):

- slices are sorted by their position along the slice normal, ``ImagePositionPatient ·
  (row cosine × column cosine)`` (the cosines of ImageOrientationPatient); the first slice
  is the lowest position along the normal (for an axial series, the most inferior);
- voxel order ``(Columns, Rows, N)``: voxel (i, j, k) is column i, row j of slice k, as
  NIfTI converters store it; pixel rows and columns keep their stored order, so each slice
  is viewed as the scanner wrote it (:data:`DICOM_TO_SLICES`; an axial series comes out
  anterior at the top and the patient's right on the left, like the NIfTI slices);
- the voxel-to-world affine follows NIfTI's RAS convention: its columns are ``row cosine ×
  PixelSpacing[1]`` (the step between columns), ``column cosine × PixelSpacing[0]`` (between
  rows), the step between consecutive slice positions (one slice: the normal ×
  SpacingBetweenSlices, else SliceThickness, else 1 mm), and the first slice's
  ImagePositionPatient as origin; x and y are negated (DICOM's patient axes are LPS).

Values are the stored pixels with RescaleSlope / RescaleIntercept applied (pydicom's
``apply_rescale``), as float32.

Only regular files are opened (:func:`~medseg.paths.regular_file`): a FIFO or a device among
a series' files, or given as the input, is refused by name instead of blocking the process.
Every read is bounded by what the header declares before the value is read: a header element
over :data:`DEFERRED_ELEMENT_BYTES` is skipped, not read (and a file's header reads take at most
:data:`HEADER_BYTES` in all), and the pixel data's declared length is checked against Rows ×
Columns × BitsAllocated / 8 (uncompressed, plus :data:`PIXEL_SLACK_BYTES`; encapsulated data
may take :data:`ENCAPSULATED_FACTOR` times that) and against the bytes the file holds, so a
small (or sparse) file declaring gigabytes is refused without allocating them.

Refused with a :class:`~medseg.errors.DataError` naming the file, before any pixel data is
decoded: a file that is not DICOM, several series (each listed: UID, SeriesDescription,
files), multi-frame or colour images, a NumberOfFrames, SamplesPerPixel or BitsAllocated that is not
a whole number, a SpacingBetweenSlices or SliceThickness that is not a number, a missing
ImagePositionPatient, ImageOrientationPatient
or PixelSpacing, images that differ in size, spacing or orientation, two slices at one
position, slice positions not evenly spaced (beyond :data:`POSITION_TOLERANCE_MM` +
:data:`SPACING_RTOL` of the step), Rows × Columns × files over the voxel cap of
:mod:`medseg.imaging.limits`, a transfer syntax no installed decoder reads (uncompressed, RLE
Lossless and deflate need pydicom alone, JPEG and JPEG 2000 Pillow; JPEG-LS needs a plugin:
pylibjpeg, pyjpegls or gdcm). A zip member whose name is absolute or climbs out with ``..``
is refused, and so is a zip whose members declare more than :data:`ZIP_BYTES_PER_VOXEL`
bytes per allowed voxel plus :data:`ZIP_SLACK_BYTES` uncompressed. Pixel data that cannot be
decoded (truncated) is refused when read.

Example:
    >>> series = read_dicom_series("flair_dicom/")
    >>> series.values.shape  # (Columns, Rows, N), modality units
    (256, 256, 22)
    >>> series.series.affine  # voxel -> RAS millimetres
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_partial
from pydicom.pixels import apply_rescale, get_decoder

from medseg.errors import DataError
from medseg.imaging.files import SKIPPED_NAMES, list_folder
from medseg.imaging.limits import VOLUME_VOXELS_ENV, check_volume_shape, max_volume_voxels
from medseg.paths import regular_file

#: direction cosines of two images (or two inputs) agree within this, per component
ORIENTATION_TOLERANCE = 1e-3
#: pixel and slice spacings agree within this relative tolerance
SPACING_RTOL = 1e-3
#: positions (origins, slice steps) agree within this many millimetres
POSITION_TOLERANCE_MM = 0.01
#: the orientation transform (nibabel ``ornt``) from (Columns, Rows, N) to slices (N, Rows, Columns)
DICOM_TO_SLICES = np.array([[2.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
#: a zip may declare this many uncompressed bytes per voxel of the cap, plus the slack
ZIP_BYTES_PER_VOXEL = 4
ZIP_SLACK_BYTES = 64 * 2**20
#: a header element longer than this is skipped while reading, not read (pydicom's ``defer_size``)
DEFERRED_ELEMENT_BYTES = 64 * 2**10
#: the most bytes read from one file besides its pixel data (elements nested in sequences,
#: which pydicom cannot skip, included)
HEADER_BYTES = 16 * 2**20
#: uncompressed pixel data may run this many bytes past Rows x Columns x BitsAllocated / 8
PIXEL_SLACK_BYTES = 64 * 2**10
#: encapsulated (compressed) pixel data may take this many times the uncompressed size, + slack
ENCAPSULATED_FACTOR = 2
#: the elements that hold pixels, and their bits per pixel (None: BitsAllocated)
_PIXEL_ELEMENTS = {"PixelData": None, "FloatPixelData": 32, "DoubleFloatPixelData": 64}
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
#: the length pydicom reports for an element of undefined length (encapsulated pixel data)
_UNDEFINED_LENGTH = 0xFFFFFFFF
#: DICOM's patient axes (LPS) to NIfTI's world axes (RAS)
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class DicomSeries:
    """One series' headers, checked and in slice order (no pixel data read).

    Attributes:
        source: the folder, zip or file given.
        files: the series' files in slice order (paths; ``<zip>:<member>`` for a zip).
        shape: (Columns, Rows, N).
        affine: voxel-to-world, RAS millimetres (module docstring).
        uid: SeriesInstanceUID ("" when absent).
        description: SeriesDescription ("" when absent).
        headers: the files' datasets in slice order, read without pixel data (what a DICOM
            SEG references: :mod:`medseg.imaging.dicom_seg`); kept only while the series is.
    """

    source: Path
    files: tuple[str, ...]
    shape: tuple[int, int, int]
    affine: np.ndarray
    uid: str
    description: str
    headers: tuple[Dataset, ...] = field(default=(), repr=False, compare=False)


@dataclass(frozen=True)
class DicomVolume:
    """A decoded series: ``values`` float32 (Columns, Rows, N), rescaled to modality units."""

    series: DicomSeries
    values: np.ndarray


@dataclass(frozen=True)
class _Member:
    """A file of the input: its name in messages, how to open it (binary) and its size."""

    name: str
    open: Callable[[], IO[bytes]]
    size: int


class _BoundedReader:
    """A member's open file for pydicom whose reads may take ``budget`` bytes in all: a
    declared length past it is refused before anything is read (seeks, which skip deferred
    elements, cost nothing)."""

    def __init__(self, handle: IO[bytes], member: _Member, budget: int) -> None:
        self._handle, self._member, self.budget = handle, member, budget

    def read(self, size: int | None = -1) -> bytes:
        wanted = self._member.size - self.tell() if size is None or size < 0 else size
        if wanted > self.budget:
            raise DataError(f"{self._member.name}: declares more data than its image needs (a read "
                            f"of {wanted} bytes, {self.budget} left of the bound); refused before "
                            "reading")
        data = self._handle.read(wanted)
        self.budget -= len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._handle.seek(offset, whence)

    def tell(self) -> int:
        return self._handle.tell()


@dataclass(frozen=True)
class _Image:
    """The geometry of one image, from its header."""

    member: _Member
    header: Dataset
    rows: int
    columns: int
    spacing: np.ndarray  # (between rows, between columns) mm
    cosines: np.ndarray  # (6,): row cosine, column cosine
    position: np.ndarray  # (3,) LPS mm


def _reason(err: BaseException) -> str:
    """An exception's message on one line."""
    return " ".join(str(err).split()) or type(err).__name__


def is_dicom_file(path: str | Path) -> bool:
    """True when ``path`` is a regular file with the DICOM marker (``DICM`` at byte 128);
    False when it is missing, a folder or unreadable.

    Raises:
        DataError: when ``path`` is a FIFO, a device or a socket (never opened:
            :func:`~medseg.paths.regular_file`).
    """
    path = Path(path)
    if path.is_dir() or not path.exists():
        return False
    regular_file(path)
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _file_member(path: Path) -> _Member:
    """A file of the input, refused unless it is a regular file (never opened otherwise)."""
    size = regular_file(path).stat().st_size
    return _Member(str(path), lambda: path.open("rb"), size)


def _folder_members(folder: Path) -> list[_Member]:
    members = []
    for path in list_folder(folder):
        if SKIPPED_NAMES.fullmatch(path.name) or path.name.upper() == "DICOMDIR":
            continue
        if path.is_dir():
            raise DataError(f"{path}: a folder inside the DICOM series folder {folder}; give the "
                            "folder that holds one series' files")
        members.append(_file_member(path))
    return members


def _zip_budget() -> int:
    return ZIP_BYTES_PER_VOXEL * max_volume_voxels() + ZIP_SLACK_BYTES


def _zip_members(source: Path, archive: zipfile.ZipFile) -> list[_Member]:
    members, declared = [], 0
    for info in archive.infolist():
        name = info.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or ".." in parts or (parts and parts[0].endswith(":")):
            raise DataError(f"{source}: member {info.filename!r} has an unsafe path (absolute or "
                            "climbing out with '..'); refused")
        if info.is_dir() or any(SKIPPED_NAMES.fullmatch(part) for part in parts):
            continue
        if parts[-1].upper() == "DICOMDIR":
            continue
        declared += info.file_size
        members.append(_Member(f"{source}:{info.filename}", partial(archive.open, info), info.file_size))
    budget = _zip_budget()
    if declared > budget:
        raise DataError(
            f"{source}: its files declare {declared} bytes uncompressed, over the limit of {budget} "
            f"({ZIP_BYTES_PER_VOXEL} bytes per voxel of {VOLUME_VOXELS_ENV} + {ZIP_SLACK_BYTES}); "
            "refused before decompressing"
        )
    return members


def _nonempty(source: Path, members: list[_Member]) -> list[_Member]:
    if not members:
        raise DataError(f"{source}: holds no DICOM files")
    return members


@contextmanager
def _members(source: Path) -> Iterator[list[_Member]]:
    """The files of a folder, zip or single file (a zip stays open while they are read)."""
    if source.is_dir():
        yield _nonempty(source, _folder_members(source))
        return
    if not source.exists():
        raise DataError(f"{source}: no such file or folder")
    member = _file_member(source)
    if source.suffix.lower() != ".zip":
        yield [member]
        return
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as err:
        raise DataError(f"{source}: cannot read zip ({_reason(err)})") from None
    with archive:
        yield _nonempty(source, _zip_members(source, archive))


class _StopRule:
    """Where pydicom stops reading a dataset: at its pixel data (``pixels`` False) or just
    after it, and at an element whose tag does not follow the one before (tags ascend in a
    dataset: what follows is not DICOM, such as the zeros of a sparse tail)."""

    def __init__(self, pixels: bool) -> None:
        self._pixels, self._last, self._past_pixels = pixels, -1, False

    def __call__(self, tag: int, vr: str | None, length: int) -> bool:
        if self._past_pixels or tag <= self._last:
            return True
        self._last = tag
        if tag in _PIXEL_TAGS:
            self._past_pixels = True
            return not self._pixels
        return False


def _dcmread(reader: _BoundedReader, *, pixels: bool) -> Dataset:
    """The dataset pydicom reads through ``reader`` (:class:`_StopRule`), elements over
    :data:`DEFERRED_ELEMENT_BYTES` skipped (read, bounded, only when asked for while the file is
    open)."""
    return read_partial(reader, _StopRule(pixels), defer_size=DEFERRED_ELEMENT_BYTES)  # type: ignore[arg-type]


def _not_dicom(member: _Member) -> DataError:
    return DataError(f"{member.name}: not a DICOM file (no 'DICM' marker at byte 128)")


def _read(member: _Member) -> Dataset:
    """The member's header, read within :data:`HEADER_BYTES`; it keeps no hold on the file
    (pydicom's ``buffer``: a closed zip member still holds its decompressor), so a skipped
    element stays unread.

    Raises:
        DataError: naming the member when it is not DICOM, cannot be read or declares more
            than the bound.
    """
    try:
        with member.open() as handle:
            dataset = _dcmread(_BoundedReader(handle, member, HEADER_BYTES), pixels=False)
        dataset.buffer = None
        return dataset
    except DataError:
        raise
    except InvalidDicomError:
        raise _not_dicom(member) from None
    except Exception as err:  # pydicom, zipfile (CRC, encryption) and OS errors
        raise DataError(f"{member.name}: cannot read DICOM ({_reason(err)})") from None


def _value(header: Dataset, keyword: str) -> Any:
    """A header value (None when absent), without pydicom's warnings on invalid values: the
    caller refuses those in its own words.

    Raises:
        TypeError, ValueError, OverflowError: when pydicom cannot convert the stored value.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return header.get(keyword)


def _whole(member: _Member, header: Dataset, keyword: str, default: int) -> int:
    """A whole-number header value, at least 0 (``default`` when absent or empty).

    Raises:
        DataError: naming the file and the value when it is not a whole number.
    """
    value: Any = "(unreadable)"
    try:
        value = _value(header, keyword)
        if value is None or value == "":
            return default
        number = int(str(value).strip())
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{member.name}: {keyword} {str(value)[:40]!r} is not a whole "
                        "number") from None
    if number < 0:
        raise DataError(f"{member.name}: {keyword} {number} is negative")
    return number


def _floats(member: _Member, header: Dataset, keyword: str, count: int) -> np.ndarray:
    try:
        value = _value(header, keyword)
        numbers = np.array([float(v) for v in value], dtype=float) if value is not None else None
    except (TypeError, ValueError, OverflowError):
        numbers = None
    if numbers is None or numbers.shape != (count,) or not np.isfinite(numbers).all():
        raise DataError(f"{member.name}: no usable {keyword} ({count} numbers); cannot place the "
                        "image in space")
    return numbers


def _check_decodable(member: _Member, header: Dataset) -> None:
    meta = getattr(header, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is None:
        raise DataError(f"{member.name}: no TransferSyntaxUID in the file meta information")
    try:
        available = get_decoder(syntax).is_available
    except NotImplementedError:  # pydicom knows no decoder at all for this syntax
        available = False
    if not available:
        raise DataError(
            f"{member.name}: pixel data encoded as {syntax.name} ({syntax}), which no installed "
            "decoder reads; convert the series to uncompressed DICOM or NIfTI, or install a "
            "pydicom plugin for it (pylibjpeg, pyjpegls or gdcm)"
        )


def _image(member: _Member, header: Dataset) -> _Image:
    """The geometry of one image, its header checked (module docstring).

    Raises:
        DataError: naming the file.
    """
    frames = _whole(member, header, "NumberOfFrames", 1)
    if frames > 1:
        raise DataError(f"{member.name}: a multi-frame image ({frames} frames); expected one file "
                        "per slice")
    if "Rows" not in header or "Columns" not in header:
        kind = getattr(header.get("SOPClassUID"), "name", "unknown SOP class")
        raise DataError(f"{member.name}: holds no image ({kind})")
    samples = _whole(member, header, "SamplesPerPixel", 1)
    photometric = str(header.get("PhotometricInterpretation", "MONOCHROME2"))
    if samples != 1 or photometric != "MONOCHROME2":
        raise DataError(f"{member.name}: a {photometric} image with {samples} sample(s) per pixel; "
                        "expected a grey MR image (MONOCHROME2)")
    _check_decodable(member, header)
    cosines = _floats(member, header, "ImageOrientationPatient", 6)
    row, column = cosines[:3], cosines[3:]
    tolerance = 10 * ORIENTATION_TOLERANCE
    if (abs(np.linalg.norm(row) - 1) > tolerance or abs(np.linalg.norm(column) - 1) > tolerance
            or abs(row @ column) > tolerance):
        raise DataError(f"{member.name}: ImageOrientationPatient {cosines.tolist()} is not two "
                        "orthogonal unit vectors")
    spacing = _floats(member, header, "PixelSpacing", 2)
    if not (spacing > 0).all():
        raise DataError(f"{member.name}: PixelSpacing {spacing.tolist()} must be positive")
    position = _floats(member, header, "ImagePositionPatient", 3)
    return _Image(member, header, int(header.Rows), int(header.Columns), spacing, cosines, position)


def _one_series(source: Path, headers: list[tuple[_Member, Dataset]]) -> list[tuple[_Member, Dataset]]:
    """The headers of the only series; several series are refused, each listed."""
    groups: dict[str, list[tuple[_Member, Dataset]]] = {}
    for member, header in headers:
        groups.setdefault(str(header.get("SeriesInstanceUID", "")), []).append((member, header))
    if len(groups) == 1:
        return headers
    listing = "; ".join(
        f"{uid or '(no SeriesInstanceUID)'} ({str(items[0][1].get('SeriesDescription', '')) or 'no description'}, "
        f"{len(items)} file{'s' if len(items) != 1 else ''})"
        for uid, items in groups.items()
    )
    raise DataError(f"{source}: holds {len(groups)} series, expected one: {listing}; give a folder "
                    "(or zip) per series")


def _check_alike(first: _Image, image: _Image) -> None:
    """Refuse an image of another size, spacing or orientation than the series' first."""
    name, other = image.member.name, first.member.name
    if (image.rows, image.columns) != (first.rows, first.columns):
        raise DataError(f"{name}: {image.rows}x{image.columns} pixels, {other} has "
                        f"{first.rows}x{first.columns}; a series is one stack of equal images")
    if not np.allclose(image.spacing, first.spacing, rtol=SPACING_RTOL, atol=0):
        raise DataError(f"{name}: PixelSpacing {image.spacing.tolist()} differs from {other}'s "
                        f"{first.spacing.tolist()}")
    if np.abs(image.cosines - first.cosines).max() > ORIENTATION_TOLERANCE:
        raise DataError(f"{name}: ImageOrientationPatient {image.cosines.tolist()} differs from "
                        f"{other}'s {first.cosines.tolist()}; a series is one stack of parallel slices")


def _one_slice_thickness(image: _Image) -> float:
    """The step of a one-slice series: SpacingBetweenSlices, else SliceThickness, else 1 mm
    (a value of 0 counts as absent).

    Raises:
        DataError: naming the file when the value is not a finite number.
    """
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value: Any = "(unreadable)"
        try:
            value = _value(image.header, keyword)
            thickness = abs(float(value)) if value not in (None, "") else 0.0
        except (TypeError, ValueError, OverflowError):
            thickness = np.nan
        if not np.isfinite(thickness):
            raise DataError(f"{image.member.name}: {keyword} {str(value)[:40]!r} is not a number")
        if thickness > 0:
            return thickness
    return 1.0


def _slice_step(source: Path, images: list[_Image], normal: np.ndarray) -> np.ndarray:
    """The step (LPS mm) between consecutive sorted slices, checked to be even."""
    if len(images) == 1:
        return normal * _one_slice_thickness(images[0])
    positions = np.array([image.position for image in images])
    steps = np.diff(positions, axis=0)
    along = steps @ normal
    same = np.flatnonzero(along <= POSITION_TOLERANCE_MM)
    if same.size:
        k = int(same[0])
        raise DataError(
            f"{source}: {images[k].member.name} and {images[k + 1].member.name} lie at the same "
            f"position ({positions[k] @ normal:.4g} mm along the slice normal); the series holds "
            "several images per position (echoes, phases or repeats)"
        )
    mean = (positions[-1] - positions[0]) / (len(images) - 1)
    tolerance = POSITION_TOLERANCE_MM + SPACING_RTOL * float(np.linalg.norm(mean))
    deviations = np.linalg.norm(steps - mean, axis=1)
    if deviations.max() > tolerance:
        worst = int(np.argmax(deviations))
        raise DataError(
            f"{source}: slices are not evenly spaced: steps of {along.min():.4g} to {along.max():.4g} "
            f"mm along the slice normal ({images[worst].member.name} to "
            f"{images[worst + 1].member.name}: {along[worst]:.4g} mm, off the mean step by "
            f"{deviations[worst]:.4g} mm); resample it to an even spacing"
        )
    return mean


def _scan(source: Path, members: list[_Member]) -> tuple[DicomSeries, list[_Image]]:
    """Check the headers and sort the slices (module docstring); no pixel data is read."""
    headers = _one_series(source, [(member, _read(member)) for member in members])
    images = [_image(member, header) for member, header in headers]
    first = images[0]
    check_volume_shape(source, (first.columns, first.rows, len(images)))
    for image in images[1:]:
        _check_alike(first, image)
    row, column = first.cosines[:3], first.cosines[3:]
    normal = np.cross(row, column)
    images.sort(key=lambda image: float(image.position @ normal))
    lps = np.eye(4)
    lps[:3, 0] = row * first.spacing[1]
    lps[:3, 1] = column * first.spacing[0]
    lps[:3, 2] = _slice_step(source, images, normal)
    lps[:3, 3] = images[0].position
    header = first.header
    series = DicomSeries(
        source=source,
        files=tuple(image.member.name for image in images),
        shape=(first.columns, first.rows, len(images)),
        affine=_LPS_TO_RAS @ lps,
        uid=str(header.get("SeriesInstanceUID", "")),
        description=str(header.get("SeriesDescription", "")),
        headers=tuple(image.header for image in images),
    )
    return series, images


def scan_dicom_series(path: str | Path) -> DicomSeries:
    """The geometry of a DICOM series (folder, zip or file) from its headers alone, with the
    headers themselves (no pixel data, slice order: :attr:`DicomSeries.headers`).

    Raises:
        DataError: for any refusal of the module docstring that headers reveal.
    """
    source = Path(path)
    with _members(source) as members:
        return _scan(source, members)[0]


def _pixel_bytes(image: _Image, dataset: Dataset) -> int:
    """The bytes the (skipped, unread) pixel data of ``dataset`` may take, its declared length
    checked against the image's size and the bytes the file holds (module docstring).

    Raises:
        DataError: naming the file when no pixel data is present, or it declares more than
            the image needs or the file holds.
    """
    member = image.member
    keyword = next((keyword for keyword in _PIXEL_ELEMENTS if keyword in dataset), None)
    if keyword is None:
        raise DataError(f"{member.name}: holds no pixel data")
    element = dataset.get_item(keyword, keep_deferred=True)
    if not isinstance(element, RawDataElement) or element.value is not None:
        return 0  # short enough to have been read with the header
    bits = _PIXEL_ELEMENTS[keyword] or _whole(member, dataset, "BitsAllocated", 0)
    expected = -(-image.rows * image.columns * bits // 8)  # one frame, one sample (checked)
    remaining = member.size - element.value_tell
    shape = f"{image.rows}x{image.columns} pixels of {bits} bits take {expected}"
    if element.length == _UNDEFINED_LENGTH:
        bound = ENCAPSULATED_FACTOR * expected + PIXEL_SLACK_BYTES
        if remaining > bound:
            raise DataError(f"{member.name}: its encapsulated {keyword} may take {remaining} bytes "
                            f"(to the end of the file), over {bound} ({shape}); refused before reading")
        return remaining
    if element.length > expected + expected % 2 + PIXEL_SLACK_BYTES:
        raise DataError(f"{member.name}: {keyword} declares {element.length} bytes, but {shape}; "
                        "refused before reading")
    if element.length > remaining:
        raise DataError(f"{member.name}: cannot decode the pixel data ({keyword} declares "
                        f"{element.length} bytes, the file holds {remaining} after its header: "
                        "truncated)")
    return int(element.length)


def _pixels(image: _Image) -> np.ndarray:
    """One slice's pixels (Rows, Columns), rescaled, as float32; the pixel data is read only
    after :func:`_pixel_bytes` bounded it."""
    member = image.member
    name = member.name
    try:
        with member.open() as handle:
            reader = _BoundedReader(handle, member, HEADER_BYTES)
            dataset = _dcmread(reader, pixels=True)
            reader.budget += _pixel_bytes(image, dataset)
            stored = dataset.pixel_array
            values = np.asarray(apply_rescale(stored, dataset), dtype=np.float32)
    except DataError:
        raise
    except InvalidDicomError:
        raise _not_dicom(member) from None
    except Exception as err:  # truncated data, a decoder failing, zipfile and OS errors
        raise DataError(f"{name}: cannot decode the pixel data ({_reason(err)})") from None
    if values.shape != (image.rows, image.columns):
        raise DataError(f"{name}: pixel data of shape {values.shape}, the header declares "
                        f"{image.rows}x{image.columns}")
    if not np.isfinite(values).all():
        raise DataError(f"{name}: pixel data holds NaN or infinite values")
    return values


def read_dicom_series(path: str | Path) -> DicomVolume:
    """Read a DICOM series (folder, zip or file) as a volume (module docstring).

    Args:
        path: a folder holding one series' files, a ``.zip`` of one, or one DICOM file.

    Returns:
        the series' geometry and its values, float32 (Columns, Rows, N).

    Raises:
        DataError: naming the file or series for every refusal of the module docstring;
            headers are all checked before any pixel data is decoded.

    Example:
        >>> volume = read_dicom_series("t1_post.zip")
        >>> volume.series.shape, volume.values.dtype
        ((256, 256, 22), dtype('float32'))
    """
    source = Path(path)
    with _members(source) as members:
        series, images = _scan(source, members)
        values = np.empty(series.shape, np.float32)
        for k, image in enumerate(images):
            values[:, :, k] = _pixels(image).T
    return DicomVolume(series, values)
