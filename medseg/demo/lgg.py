"""A small LGG-format dataset made from real anatomy with SYNTHETIC tumours.

The anatomy is the MNI152 2009a symmetric T1 template and its grey/white matter maps that
nilearn ships in its wheel (brain-extracted, 1 mm). Each demo patient samples it through a
different mild random rotation, scaling, tilt and smooth deformation, with its own intensity
gain, contrast and bias field, as axial slices seen radiologically (anterior up, patient's
right on the image's left) at 256x256. Three channels imitate the dataset's sequences:

- pre-contrast T1: the template T1;
- FLAIR-like: grey matter brighter than white matter, cerebrospinal fluid dark;
- post-contrast T1: the T1 with a slightly different contrast.

Tumours are synthetic: an irregular 3-D blob (a few random ellipsoid lobes plus a noisy
boundary) inside the brain, bright on FLAIR, dark on T1, some with an enhancing rim after
contrast. Its mask is exactly the FLAIR-bright region, so lesions vary in size and position
across neighbouring slices; the slices above and below it and one whole patient have none.

Example:
    >>> write_demo_lgg("demo_data/lgg", seed=0)
    PosixPath('demo_data/lgg')
"""

from __future__ import annotations

import csv
import datetime
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np
from PIL import Image
from scipy import ndimage

from medseg.demo.marker import start_demo
from medseg.files import atomic_path, atomic_write, write_text

N_PATIENTS = 12
SLICES_PER_PATIENT = (12, 16)
SIZE = 256
FIELD_OF_VIEW_MM = 200.0
SITES = ("CS", "DU", "EZ", "FG", "HT")
TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}

README = """\
# medseg demo data: LGG MRI segmentation format (kaggle_3m layout)

THE TUMOURS AND THEIR MASKS ARE SYNTHETIC. THE ANATOMY IS REAL.

- Anatomy: the MNI152 2009a nonlinear symmetric T1 template and its grey/white matter maps
  (ICBM 2009a, McConnell Brain Imaging Centre), as shipped inside the nilearn Python package
  (`nilearn/datasets/data/mni_icbm152_*_tal_nlin_sym_09a_converted.nii.gz`). Copyright (C)
  1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological Institute,
  McGill University; distributed with permission to use, copy and modify with this notice.
- Each of the {n_patients} patients is the template under a different mild random deformation
  and intensity variation, cut into {min_slices}-{max_slices} axial slices of 256x256 pixels
  (radiological view: anterior up, patient's right on the left).
- Channels (RGB) imitate the real dataset's pre-contrast T1, FLAIR and post-contrast T1:
  they are derived from the T1 template and the tissue maps, not acquired.
- Tumours are random irregular 3-D blobs drawn by medseg (seed {seed}): bright on FLAIR, dark
  on T1, some with an enhancing rim. Masks (`*_mask.tif`, 0/255) mark the FLAIR-bright region.
  Patient {healthy} has no tumour.

Use it to try medseg end to end (training, evaluation, the app) without downloading
anything. Scores on it say nothing about real tumour segmentation: for that use the real
LGG dataset (Kaggle "lgg-mri-segmentation", Buda et al. 2019).

Written by `medseg demo-data lgg OUT --seed {seed}`.
"""


def _load_template() -> dict[str, np.ndarray]:
    import nilearn

    folder = Path(nilearn.__file__).parent / "datasets" / "data"
    return {
        name: np.asarray(cast(nib.Nifti1Image, nib.load(folder / file)).dataobj, dtype=np.float32) / 255.0
        for name, file in TEMPLATE_FILES.items()
    }


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Smooth random 2-D field of unit standard deviation (drawn coarse, then upsampled)."""
    step = max(1, int(sigma // 3))
    coarse_shape = tuple(-(-n // step) for n in shape)
    coarse = ndimage.gaussian_filter(rng.standard_normal(coarse_shape).astype(np.float32),
                                     sigma / step, mode="wrap")
    field = ndimage.zoom(coarse, step, order=1, grid_mode=True, mode="grid-wrap")
    field = field[: shape[0], : shape[1]]
    return field / (field.std() + 1e-8)


def _patient_names(rng: np.random.Generator) -> list[str]:
    names: set[str] = set()
    while len(names) < N_PATIENTS:
        site = SITES[rng.integers(len(SITES))]
        day = datetime.date(1990, 1, 1) + datetime.timedelta(days=int(rng.integers(16 * 365)))
        names.add(f"TCGA_{site}_{rng.integers(1000, 10000)}_{day:%Y%m%d}")
    return sorted(names)


def _sample_anatomy(
    template: dict[str, np.ndarray], rng: np.random.Generator, n_slices: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Sample the template on this patient's grid; return the maps and slice z (mm)."""
    brain = template["t1"] > 0
    centre_x, centre_y = (np.mean(axis) for axis in np.nonzero(brain.any(axis=2)))
    pixel = FIELD_OF_VIEW_MM / SIZE
    offsets = (np.arange(SIZE, dtype=np.float32) - (SIZE - 1) / 2) * pixel
    v, u = np.meshgrid(offsets, offsets, indexing="ij")  # v: rows (down), u: columns (right)
    angle = np.radians(rng.uniform(-7, 7))
    scale = rng.uniform(0.92, 1.08)
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    warp = 2.5 * np.stack([_smooth_field(rng, (SIZE, SIZE), 24) for _ in range(2)])
    u_t = cos * u - sin * v + warp[0] + rng.uniform(-4, 4)
    v_t = sin * u + cos * v + warp[1] + rng.uniform(-4, 4)
    z_slices = np.linspace(rng.uniform(18, 30), rng.uniform(128, 142), n_slices)
    tilt_u, tilt_v = np.tan(np.radians(rng.uniform(-4, 4, size=2)))
    x = np.broadcast_to(centre_x - u_t, (n_slices, SIZE, SIZE))  # column -> patient's left
    y = np.broadcast_to(centre_y - v_t, (n_slices, SIZE, SIZE))  # row -> posterior
    z = z_slices[:, None, None] + tilt_u * u_t + tilt_v * v_t
    coords = np.stack([x, y, z])
    maps = {
        name: ndimage.map_coordinates(volume, coords, order=1, mode="constant", cval=0.0)
        for name, volume in template.items()
    }
    return maps, z_slices


def _lesion(
    rng: np.random.Generator, brain: np.ndarray, white: np.ndarray, z_slices: np.ndarray
) -> np.ndarray:
    """A random irregular 3-D blob (bool, slices x rows x columns) inside the brain."""
    n_slices = len(z_slices)
    pixel = FIELD_OF_VIEW_MM / SIZE
    k = int(rng.integers(n_slices // 4, 3 * n_slices // 4))
    rows, cols = np.nonzero(ndimage.binary_erosion(white[k] > 0.6, iterations=8))
    if rows.size == 0:
        rows, cols = np.nonzero(brain[k])
    pick = rng.integers(rows.size)
    centre = np.array([z_slices[k], rows[pick] * pixel, cols[pick] * pixel])
    radius = rng.uniform(20, 32)
    z_mm = z_slices[:, None, None]
    r_mm = np.arange(SIZE)[None, :, None] * pixel
    c_mm = np.arange(SIZE)[None, None, :] * pixel
    level = np.zeros((n_slices, SIZE, SIZE), np.float32)
    for lobe in range(int(rng.integers(2, 5))):
        shift = rng.normal(0, radius * 0.45, size=3) if lobe else np.zeros(3)
        axes = radius * rng.uniform(0.6, 1.0, size=3) * (1.0 if lobe == 0 else 0.75)
        dz, dr, dc = (z_mm - centre[0] - shift[0], r_mm - centre[1] - shift[1],
                      c_mm - centre[2] - shift[2])
        level = np.maximum(level, np.exp(-((dz / axes[0]) ** 2 + (dr / axes[1]) ** 2
                                           + (dc / axes[2]) ** 2)))
    roughness = np.stack([_smooth_field(rng, (SIZE, SIZE), 6) for _ in range(n_slices)])
    return (level + 0.08 * roughness > 0.4) & ndimage.binary_erosion(brain, iterations=3)


def _render(
    maps: dict[str, np.ndarray], lesion: np.ndarray, rng: np.random.Generator, rim: bool
) -> np.ndarray:
    """Three uint8 channels (pre-contrast T1, FLAIR, post-contrast T1), slices x H x W x 3."""
    t1, grey, white = maps["t1"], maps["gm"], maps["wm"]
    brain = ndimage.gaussian_filter((t1 > 0.05).astype(np.float32), (0, 0.7, 0.7))
    fluid = np.clip(brain - grey - white, 0, 1)
    soft = ndimage.gaussian_filter(lesion.astype(np.float32), (0, 1.2, 1.2))
    texture = np.stack([_smooth_field(rng, (SIZE, SIZE), 3) for _ in range(len(t1))])
    flair_normal = (0.66 * grey + 0.48 * white + 0.05 * fluid) * brain
    flair_lesion = rng.uniform(0.88, 1.0) + 0.05 * texture
    pre = t1 * (1 - 0.4 * soft)
    flair = flair_normal * (1 - soft) + flair_lesion * soft
    post = t1**0.85 * (1 - 0.45 * soft)
    if rim:
        shell = lesion & ~ndimage.binary_erosion(lesion, iterations=3)
        post = post + 0.45 * ndimage.gaussian_filter(shell.astype(np.float32), (0, 1.0, 1.0))
    bias = np.exp(0.08 * _smooth_field(rng, (SIZE, SIZE), 60))
    channels = []
    for channel in (pre, flair, post):
        gain, gamma = rng.uniform(0.85, 1.05), rng.uniform(0.85, 1.15)
        noisy = np.clip(channel * bias, 0, None) ** gamma * gain
        noisy = noisy + rng.normal(0, 0.012, noisy.shape) * (brain > 0.5)
        channels.append(np.clip(noisy * 255, 0, 255))
    return np.rint(np.stack(channels, axis=-1)).astype(np.uint8)


def _write_tiff(array: np.ndarray, path: Path) -> None:
    # PackBits: the black background compresses to almost nothing and decoding costs no more
    # than reading an uncompressed file.
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, compression="packbits")


def write_demo_lgg(out: str | Path, seed: int = 0) -> Path:
    """Write the demo dataset into ``out`` in the kaggle_3m layout; return ``out``.

    Writes ``out/kaggle_3m/<patient>/<patient>_<k>.tif`` (256x256 RGB uint8) and
    ``<patient>_<k>_mask.tif`` (0/255), ``out/kaggle_3m/data.csv`` (column ``Patient``),
    ``out/README.md`` and the marker ``out/medseg_demo.json`` (:mod:`medseg.demo.marker`).
    The same seed gives the same bytes. An earlier LGG demo in ``out`` is replaced (only the
    files its marker lists); no other file is ever replaced.

    Args:
        out: destination folder (created).
        seed: seed of every random choice.

    Raises:
        DataError: when ``out`` holds another demo, a changed demo file, or a file of a name
            the demo writes that is not demo data.
    """
    out = Path(out)
    record = start_demo(out, "lgg", seed)
    rng = np.random.default_rng(seed)
    template = _load_template()
    names = _patient_names(rng)
    healthy = names[int(rng.integers(len(names)))]
    root = out / "kaggle_3m"
    for name in names:
        n_slices = int(rng.integers(SLICES_PER_PATIENT[0], SLICES_PER_PATIENT[1] + 1))
        maps, z_slices = _sample_anatomy(template, rng, n_slices)
        brain = maps["t1"] > 0.05
        if name == healthy:
            lesion = np.zeros(brain.shape, bool)
        else:
            lesion = _lesion(rng, brain, maps["wm"], z_slices)
        images = _render(maps, lesion, rng, rim=bool(rng.random() < 0.5))
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        files = [folder / f"{name}_{k + 1}{kind}.tif" for k in range(n_slices) for kind in ("", "_mask")]
        with record.writing(files):
            for k in range(n_slices):
                _write_tiff(images[k], folder / f"{name}_{k + 1}.tif")
                _write_tiff(lesion[k].astype(np.uint8) * 255, folder / f"{name}_{k + 1}_mask.tif")
    with record.writing([root / "data.csv", out / "README.md"]):
        with atomic_write(root / "data.csv", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["Patient"])
            writer.writerows([name.rsplit("_", 1)[0]] for name in names)
        write_text(out / "README.md", README.format(
            n_patients=N_PATIENTS, min_slices=SLICES_PER_PATIENT[0], max_slices=SLICES_PER_PATIENT[1],
            seed=seed, healthy=healthy,
        ))
    return out
