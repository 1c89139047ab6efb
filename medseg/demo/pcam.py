"""A small PatchCamelyon-format dataset cut from real histology, with SYNTHETIC labels.

The pixels come from ``skimage.data.immunohistochemistry()`` (a 512x512 image of tissue
with haematoxylin counterstain and brown DAB immunostaining, bundled with scikit-image; the
only bundled RGB histology image). Patches of 96x96 are sampled at random positions,
rotations (any angle), scales (0.8-1.25) and flips, with a mild per-channel stain gain.

Labels follow a documented synthetic rule, in the spirit of PCam's own (which refers to
tumour tissue in the centre 32x32 region): a patch is positive when the mean haematoxylin
density (``skimage.color.rgb2hed`` channel 0) of its centre 32x32 region is above the median
over all demo patches. So about half the patches are positive, and the label is a property of
what the patch shows, hence learnable — but it is not tumour.

To keep the splits apart as PCam does (no slide in two splits), the source image is cut
into a 4x4 grid of 128x128 cells, each cell given to one split (10 train, 3 valid, 3 test,
stratified by haematoxylin density); a patch's labelled centre region always lies inside
one of its split's cells (its margins may reach into neighbouring cells).

Example:
    >>> write_demo_pcam("demo_data/pcam", seed=0)
    PosixPath('demo_data/pcam')
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from scipy import ndimage
from skimage import data as skdata
from skimage.color import rgb2hed

from medseg.data.pcam import (
    LABEL_REGION_SIZE,
    PATCH_SIZE,
    PCAM_SPLITS,
    label_region,
    pcam_file_name,
)
from medseg.demo.marker import start_demo
from medseg.files import atomic_path, write_text

SPLIT_SIZES = {"train": 768, "val": 192, "test": 192}
CELL = 128

README = """\
# medseg demo data: PatchCamelyon format (HDF5)

THE LABELS ARE SYNTHETIC. THE HISTOLOGY IS REAL.

- Pixels: `skimage.data.immunohistochemistry()`, a 512x512 image of tissue with haematoxylin
  counterstain and DAB immunostaining (Human Protein Atlas image bundled with scikit-image,
  file `skimage/data/ihc.png`). It is the only RGB histology image scikit-image ships, so all
  patches come from it: patches of 96x96 at random positions, rotations, scales (0.8-1.25),
  flips and a mild per-channel stain gain (seed {seed}).
- Labels (`y`): 1 when the mean haematoxylin density (`skimage.color.rgb2hed`, channel 0) of
  the patch's centre 32x32 region is above the median over all demo patches, else 0. PCam's
  real labels mark tumour tissue in that centre region; these do not.
- Splits: the source image is cut into a 4x4 grid of 128x128 cells assigned to train (10),
  valid (3) and test (3), stratified by haematoxylin density; each patch's centre region
  lies in a cell of its own split.
- Files: the six `camelyonpatch_level_2_split_{{train,valid,test}}_{{x,y}}.h5` of PCam, with
  datasets `x` (N, 96, 96, 3) uint8 and `y` (N, 1, 1, 1) uint8; {sizes} patches
  (train/valid/test).

Use it to try medseg's classification path without downloading anything. Scores on it say
nothing about metastasis detection: for that use the real PatchCamelyon (Veeling et al. 2018,
GitHub basveeling/pcam, files on Zenodo).

Written by `medseg demo-data pcam OUT --seed {seed}`.
"""


def _cells(source: np.ndarray, rng: np.random.Generator) -> dict[str, list[tuple[int, int]]]:
    """Assign the 4x4 grid cells to splits, stratified by haematoxylin density.

    Cells sorted by mean density fall into three groups (low, middle, high); val and test each
    get one random cell of every group, train the other ten. So every split sees light and
    dense tissue, and each has a comparable share of positives.
    """
    haematoxylin = rgb2hed(source.astype(np.uint8))[..., 0]
    grid = [(row, col) for row in range(4) for col in range(4)]
    density = [haematoxylin[r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL].mean()
               for r, c in grid]
    cells: dict[str, list[tuple[int, int]]] = {"train": [], "val": [], "test": []}
    for group in np.array_split(np.argsort(density), 3):
        val, test, *train = rng.permutation(group)
        cells["val"].append(grid[val])
        cells["test"].append(grid[test])
        cells["train"] += [grid[i] for i in train]
    return cells


def _sample_patches(
    source: np.ndarray, rng: np.random.Generator, cells: list[tuple[int, int]], n: int
) -> np.ndarray:
    """``n`` patches (n, 96, 96, 3) uint8 whose centre regions lie inside ``cells``."""
    chosen = np.array(cells)[rng.integers(len(cells), size=n)]
    margin = LABEL_REGION_SIZE * 1.25 * np.sqrt(2) / 2  # the rotated, scaled centre region stays inside
    centres = chosen * CELL + rng.uniform(margin, CELL - margin, size=(n, 2))
    angles, scales = rng.uniform(0, 2 * np.pi, size=n), rng.uniform(0.8, 1.25, size=n)
    flips = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    gains = rng.uniform(0.95, 1.05, size=(n, 1, 1, 3))
    grid = np.arange(PATCH_SIZE) - (PATCH_SIZE - 1) / 2
    rows, cols = np.meshgrid(grid, grid, indexing="ij")
    cos, sin = (scales * np.cos(angles))[:, None, None], (scales * np.sin(angles))[:, None, None]
    cols = cols[None] * flips[:, None, None]
    coords = np.stack([
        centres[:, 0, None, None] + cos * rows[None] - sin * cols,
        centres[:, 1, None, None] + sin * rows[None] + cos * cols,
    ])
    patches = np.stack([
        ndimage.map_coordinates(source[..., c], coords, order=1, mode="reflect") for c in range(3)
    ], axis=-1)
    return np.clip(np.rint(patches * gains), 0, 255).astype(np.uint8)


def _centre_haematoxylin(patches: np.ndarray) -> np.ndarray:
    """Mean haematoxylin density of each patch's labelled centre region."""
    rows, cols = label_region()
    return rgb2hed(patches[:, rows, cols])[..., 0].mean(axis=(1, 2))


def _write_h5(path: Path, key: str, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.create_dataset(
            key, data=array, chunks=(min(len(array), 64), *array.shape[1:]),
            compression="gzip", compression_opts=1, track_times=False,
        )


def write_demo_pcam(out: str | Path, seed: int = 0) -> Path:
    """Write the six PCam HDF5 files and a README into ``out``; return ``out``.

    Splits hold 768/192/192 patches (train/valid/test); the marker ``out/medseg_demo.json``
    (:mod:`medseg.demo.marker`) lists the files. The same seed gives the same bytes. An
    earlier PCam demo in ``out`` is replaced (only the files its marker lists); no other file
    is ever replaced.

    Args:
        out: destination folder (created).
        seed: seed of every random choice.

    Raises:
        DataError: when ``out`` holds another demo, a changed demo file, or a file of a name
            the demo writes that is not demo data.
    """
    out = Path(out)
    record = start_demo(out, "pcam", seed)
    rng = np.random.default_rng(seed)
    source = skdata.immunohistochemistry().astype(np.float32)
    cells = _cells(source, rng)
    patches = {split: _sample_patches(source, rng, cells[split], n) for split, n in SPLIT_SIZES.items()}
    density = {split: _centre_haematoxylin(p) for split, p in patches.items()}
    threshold = np.median(np.concatenate(list(density.values())))
    files = [out / pcam_file_name(split, kind) for split in PCAM_SPLITS for kind in ("x", "y")]
    with record.writing([*files, out / "README.md"]):
        for split in PCAM_SPLITS:
            labels = (density[split] > threshold).astype(np.uint8).reshape(-1, 1, 1, 1)
            _write_h5(out / pcam_file_name(split, "x"), "x", patches[split])
            _write_h5(out / pcam_file_name(split, "y"), "y", labels)
        sizes = "/".join(str(n) for n in SPLIT_SIZES.values())
        write_text(out / "README.md", README.format(seed=seed, sizes=sizes))
    return out
