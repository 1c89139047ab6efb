"""The parity check every export passes before it is kept: the export's probabilities against
PyTorch eager's (:func:`medseg.engine.inference.slice_probabilities`, what ``medseg predict``
computes from the checkpoint) on random slices of two sizes and on real MR slices.

The real slices are axial slices of the MNI152 2009a T1 template that nilearn's wheel ships
(no download), read by :func:`medseg.imaging.nifti.load_volume` as one sequence repeated into
the three channels.

Example:
    >>> parity = check_parity(lambda s: engine.probabilities(s), model, 256, "ONNX Runtime")
    >>> parity.line()
    'parity: ONNX Runtime vs PyTorch eager: max |Δp| 2.4e-07 over 4 random and 4 real slices (limit 1e-04)'
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from medseg.engine.inference import slice_probabilities
from medseg.errors import CheckpointError, DataError
from medseg.imaging.nifti import load_volume

#: the largest absolute difference of probabilities an export may show
PARITY_LIMIT = 1e-4
#: the random slices' sizes: square at 256 (kaggle_3m) and one neither square nor a multiple of 32
RANDOM_SIZES = ((256, 256), (200, 232))
RANDOM_PER_SIZE = 2
REAL_SLICES = 4
REAL_SOURCE = "MNI152 2009a T1 template (nilearn), axial slices"
_TEMPLATE = "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"

Probabilities = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Parity:
    """The outcome of a parity check."""

    engine: str
    max_abs_diff: float
    random_slices: int
    real_slices: int
    limit: float = PARITY_LIMIT
    reference: str = "PyTorch eager (medseg predict)"
    real_source: str = REAL_SOURCE

    def line(self) -> str:
        return (f"parity: {self.engine} vs PyTorch eager: max |Δp| {self.max_abs_diff:.1e} over "
                f"{self.random_slices} random and {self.real_slices} real slices (limit {self.limit:.0e})")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def random_slices(seed: int = 0) -> list[np.ndarray]:
    """(N, H, W, 3) uint8 stacks of random slices, one per size of :data:`RANDOM_SIZES`."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(RANDOM_PER_SIZE, h, w, 3), dtype=np.uint8) for h, w in RANDOM_SIZES]


def real_slices() -> np.ndarray:
    """:data:`REAL_SLICES` axial slices (N, H, W, 3) uint8 through the middle of the MNI template.

    Raises:
        DataError: when nilearn's template is not installed.
    """
    spec = importlib.util.find_spec("nilearn")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations or not (Path(locations[0]) / _TEMPLATE).exists():
        raise DataError(f"the parity check's real slices ({REAL_SOURCE}) are missing: reinstall nilearn")
    slices = load_volume(Path(locations[0]) / _TEMPLATE).slices
    middle = len(slices) // 2
    return slices[middle - 30 : middle + 30 : 60 // REAL_SLICES][:REAL_SLICES]


def check_parity(candidate: Probabilities, model: nn.Module, image_size: int, engine: str) -> Parity:
    """Compare ``candidate`` (slices (N, H, W, 3) uint8 -> probabilities (N, H, W)) with
    PyTorch eager on the sample slices.

    Raises:
        CheckpointError: when the largest difference exceeds :data:`PARITY_LIMIT` (nothing is
            kept), or the shapes differ.
    """
    stacks, real = random_slices(), real_slices()
    worst = 0.0
    for stack in [*stacks, real]:
        expected = slice_probabilities(model, stack, image_size)
        got = np.asarray(candidate(stack))
        if got.shape != expected.shape:
            raise CheckpointError(f"{engine}: probabilities of shape {got.shape}, expected {expected.shape}")
        worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - expected))))
    parity = Parity(engine, worst, sum(len(s) for s in stacks), len(real))
    if not worst <= PARITY_LIMIT:  # NaN fails too
        raise CheckpointError(f"{engine}: the export differs from the checkpoint ({parity.line()}); "
                              "nothing was written")
    return parity
