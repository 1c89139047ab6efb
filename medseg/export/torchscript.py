"""``model.ts``: a module traced to TorchScript (``torch.jit.trace``; TorchScript is what MONAI
Deploy's bundle operator loads). Traced, not scripted: smp's networks are not scriptable; the
traced graph keeps the batch and spatial sizes dynamic (the parity check runs it at sizes
other than the one traced).

Example:
    >>> write_torchscript(SliceModel(network, 256), Path("exports/demo/model.ts"), 256)
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn


def write_torchscript(model: nn.Module, path: Path, image_size: int) -> None:
    """Trace ``model`` (on the CPU, eval mode) on one (1, 3, S, S) input and save it to
    ``path`` (written in place: give a temporary name)."""
    example = torch.zeros(1, 3, image_size, image_size)
    with warnings.catch_warnings(), torch.no_grad():  # torch.jit's deprecation notes
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, str(path))


def load_torchscript(path: Path) -> torch.jit.ScriptModule:
    """A saved TorchScript module, on the CPU, in eval mode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path), map_location="cpu")
    return module.eval()
