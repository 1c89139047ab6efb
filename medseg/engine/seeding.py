"""Seeds and random-number-generator state, captured as plain values for checkpoints.

A run is reproducible because every source of randomness is either seeded here or derived
from the data loader's generator, and :func:`capture_rng_state` /
:func:`restore_rng_state` carry all of them across a resume.
"""

from __future__ import annotations

import random
from typing import Any, cast

import numpy as np
import torch
from monai.data.utils import set_rnd
from monai.utils import set_determinism


def seed_everything(seed: int, *, deterministic: bool) -> None:
    """Seed python, numpy and torch; ``deterministic`` also makes cuDNN deterministic.

    Without ``deterministic``, cuDNN benchmarks its kernels (faster, not bitwise repeatable).
    """
    set_determinism(seed=seed)
    if not deterministic:
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = True


def reseed_transforms(dataset: Any, generator: torch.Generator) -> None:
    """Seed the random transforms of ``dataset`` from ``generator``.

    Worker processes get this from MONAI's ``worker_init_fn``; a loader without workers
    calls it once per epoch so its augmentations also follow the loader's generator.
    """
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item())
    set_rnd(dataset, seed)


def capture_rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every RNG state of this process, as tensors, lists and numbers."""
    version, internal, gauss_next = random.getstate()
    np_state = cast("tuple[str, np.ndarray, int, int, float]", np.random.get_state(legacy=True))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np_state
    return {
        "python": [version, list(internal), gauss_next],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loader": generator.get_state(),
    }


def restore_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    """Put back what :func:`capture_rng_state` captured."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
    generator.set_state(state["loader"])
