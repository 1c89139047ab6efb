"""Checking and reading uploaded files: a slice (+ mask) or a NIfTI volume (+ mask volume).

Uploads are written only into a private :class:`tempfile.TemporaryDirectory` that is removed
before the function returns, under fixed names (``image.png``, ``mask.nii.gz``: the uploaded
name never becomes a path), and read back with the readers of :mod:`medseg.data`
(:func:`~medseg.data.read_mask`, :func:`~medseg.data.load_volume`); a slice may also be a
grey PNG or JPEG. Every problem is a one-line :class:`~medseg.errors.DataError` naming the
uploaded file (shortened, control characters shown as ``?``). Predicted masks download as
``<stem>_pred.png`` / ``<stem>_pred.nii.gz`` (:func:`prediction_file_name`).

Example:
    >>> upload = read_upload(("case.png", png_bytes), ("case_mask.png", mask_bytes))
    >>> upload.images.shape, upload.masks.shape
    ((1, 256, 256, 3), (1, 256, 256))
"""

from __future__ import annotations

import io
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from medseg.app.text import one_line, shown_name
from medseg.data import load_mask_volume, load_volume, read_mask, save_mask_volume
from medseg.data.limits import load_image
from medseg.engine.predict import PRED, SLICE_SUFFIXES, VOLUME_SUFFIXES
from medseg.errors import DataError

#: longest file name most file systems accept, in bytes (UTF-8)
MAX_NAME_BYTES = 255
#: longest stem kept in a download's file name, in characters
MAX_STEM_CHARS = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

#: (file name, file bytes) as handed over by the browser.
UploadedFile = tuple[str, bytes]


@dataclass
class Upload:
    """Decoded upload: ``images`` (N, H, W, 3) uint8 and optional ``masks`` (N, H, W) {0, 1}.

    ``volume`` is the :class:`medseg.data.Volume` of a NIfTI upload (None for a slice);
    ``pixel_area_mm2`` is the in-plane voxel area when the file carries a spacing.
    """

    name: str
    images: np.ndarray
    masks: np.ndarray | None
    volume: object | None
    pixel_area_mm2: float | None

    @property
    def is_volume(self) -> bool:
        return self.volume is not None


def upload_suffix(name: str) -> str:
    """The accepted suffix ``name`` ends with, lower case (``".nii.gz"``, ``".png"``, ...).

    Raises:
        DataError: for any other file type.
    """
    lower = name.lower()
    for suffix in VOLUME_SUFFIXES + SLICE_SUFFIXES:
        if lower.endswith(suffix):
            return suffix
    accepted = ", ".join(SLICE_SUFFIXES + VOLUME_SUFFIXES)
    raise DataError(f"{shown_name(name)}: unsupported file type; upload one of {accepted}")


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


def prediction_file_name(upload_name: str, is_volume: bool) -> str:
    """The download name of the mask predicted for ``upload_name``: ``<stem>_pred.nii.gz``
    for a volume, ``<stem>_pred.png`` for a slice. The stem is the upload's base name without
    its suffix, in ASCII letters, digits, ``.``, ``_`` and ``-`` only, at most
    :data:`MAX_STEM_CHARS` characters (``upload`` when nothing is left).
    """
    base = re.split(r"[/\\]", upload_name)[-1]
    lower = base.lower()
    for suffix in VOLUME_SUFFIXES + SLICE_SUFFIXES:
        if lower.endswith(suffix):
            base = base[: -len(suffix)]
            break
    ascii_base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()
    stem = _UNSAFE.sub("_", ascii_base).strip("._-")[:MAX_STEM_CHARS].rstrip("._-")
    return f"{stem or 'upload'}{PRED}{'.nii.gz' if is_volume else '.png'}"


def check_size(name: str, size: int, max_mb: float) -> None:
    """Raise :class:`DataError` when an upload is empty or larger than ``max_mb`` megabytes."""
    if size == 0:
        raise DataError(f"{shown_name(name)}: the file is empty")
    if size > max_mb * 1024 * 1024:
        raise DataError(
            f"{shown_name(name)}: {size / 2**20:.1f} MB is over the {max_mb:g} MB upload limit"
        )


def _read_in(folder: Path, role: str, upload: UploadedFile, reader):
    """Write one upload into ``folder`` as ``<role><suffix>`` and read it with ``reader``;
    errors name the upload, on one line."""
    name, data = upload
    path = folder / f"{role}{upload_suffix(name)}"
    path.write_bytes(data)
    try:
        return reader(path)
    except DataError as err:
        message = str(err).replace(str(path), shown_name(name)).replace(str(folder), "")
        raise DataError(one_line(message)) from None


def _check_same_size(mask_name: str, masks: np.ndarray, image_name: str, images: np.ndarray) -> None:
    if masks.shape != images.shape[:-1]:
        skip = 1 if len(images) == 1 and len(masks) == 1 else 0  # a slice: H x W
        got = "x".join(map(str, masks.shape[skip:]))
        want = "x".join(map(str, images.shape[skip:-1]))
        raise DataError(f"{mask_name}: the mask is {got} but {image_name} is {want}")


def read_slice_upload(path: Path) -> np.ndarray:
    """Read an uploaded slice as (H, W, 3) uint8; a grey image is repeated into 3 channels.

    The header is checked against :func:`medseg.data.limits.max_image_pixels` before decoding.

    Raises:
        DataError: when the file is not a readable 8-bit grey, RGB or RGBA image, or too large.
    """
    image = load_image(path)
    with image:
        if image.mode in ("L", "LA", "P", "RGBA"):
            image = image.convert("RGB")
        if image.mode != "RGB":
            raise DataError(
                f"{path}: expected an 8-bit grey or RGB image, got PIL mode {image.mode!r}"
            )
        return np.asarray(image).copy()


def _pixel_area(volume) -> float | None:
    """In-plane voxel area in mm² of a volume's axial slices, None when unknown."""
    from nibabel.orientations import io_orientation

    mm_per_unit = {"mm": 1.0, "unknown": 1.0, "meter": 1000.0, "micron": 1e-3}
    scale = mm_per_unit.get(volume.header.get_xyzt_units()[0])
    if scale is None:
        return None
    zooms = volume.header.get_zooms()[:3]
    axes = io_orientation(volume.affine)[:, 0].astype(int)  # file axis -> world axis (RAS)
    in_plane = [float(zooms[i]) for i in range(3) if axes[i] != 2]  # not the S-I axis
    area = in_plane[0] * in_plane[1] * scale**2
    return area if np.isfinite(area) and area > 0 else None


def read_upload(
    image: UploadedFile, mask: UploadedFile | None = None, *, max_mb: float = 200
) -> Upload:
    """Check and decode an uploaded slice or NIfTI volume and its optional mask.

    Args:
        image: (name, bytes) of a .tif/.tiff/.png/.jpg slice or a .nii/.nii.gz volume.
        mask: (name, bytes) of the matching mask: a slice mask for a slice, a mask volume
            for a volume; any non-zero value is tumour.
        max_mb: upload size limit in megabytes.

    Raises:
        DataError: on a wrong file type, an empty, oversized or corrupt file, a mask of
            another kind or size than the image.
    """
    uploads = [image] if mask is None else [image, mask]
    for name, data in uploads:
        check_name(name)
        check_size(name, len(data), max_mb)
    kind = upload_kind(image[0])
    if mask is not None and upload_kind(mask[0]) != kind:
        raise DataError(f"{shown_name(mask[0])}: a {kind} needs a mask of the same kind "
                        f"({shown_name(image[0])})")
    with tempfile.TemporaryDirectory(prefix="medseg-upload-") as tmp:
        folder = Path(tmp)
        masks = None
        if kind == "slice":
            images = _read_in(folder, "image", image, read_slice_upload)[None]
            if mask is not None:
                masks = _read_in(folder, "mask", mask, read_mask)[None]
            volume, pixel_area = None, None
        else:
            volume = _read_in(folder, "image", image, load_volume)
            images = volume.slices
            if mask is not None:
                masks = _read_in(folder, "mask", mask, load_mask_volume)
            pixel_area = _pixel_area(volume)
    if mask is not None and masks is not None:
        _check_same_size(shown_name(mask[0]), masks, shown_name(image[0]), images)
    return Upload(image[0], images, masks, volume, pixel_area)


def mask_png_bytes(mask: np.ndarray) -> bytes:
    """Encode a binary (H, W) mask as a black-and-white PNG (tumour 255)."""
    buffer = io.BytesIO()
    Image.fromarray((np.asarray(mask) > 0).astype(np.uint8) * 255).save(buffer, format="PNG")
    return buffer.getvalue()


def mask_volume_bytes(masks_nhw: np.ndarray, volume) -> bytes:
    """Encode predicted (N, H, W) masks as a NIfTI file aligned with the uploaded ``volume``
    (written as ``pred.nii.gz`` in a private temporary folder, read back, deleted)."""
    with tempfile.TemporaryDirectory(prefix="medseg-download-") as tmp:
        path = Path(tmp) / "pred.nii.gz"
        save_mask_volume(masks_nhw, volume, path)
        return path.read_bytes()
