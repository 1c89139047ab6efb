"""``model.onnx``: :class:`~medseg.export.graph.SliceModel` exported to ONNX, with the medseg
metadata :mod:`medseg.predict.exported` reads.

The graph is recorded by torch's TorchScript-based exporter (``dynamo=False``: the dynamo
exporter needs onnxscript, which medseg does not install) at opset :data:`OPSET`, with the batch,
height and width dynamic: any N >= 1 and any H, W >= 1 (the graph resizes each slice to the
training size, a multiple of 32, and the probabilities back).

Example:
    >>> write_onnx(SliceModel(network, 256), Path("exports/demo/model.onnx"), {"medseg.task": ...})
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from medseg.export.graph import SliceModel
from medseg.predict.exported import INPUT_NAME, OUTPUT_NAME

OPSET = 20
_AXES = {0: "batch", 2: "height", 3: "width"}


def write_onnx(model: SliceModel, path: Path, metadata: Mapping[str, str]) -> None:
    """Export ``model`` (on the CPU, eval mode) to ``path`` with ``metadata`` as the model's
    metadata properties (``path`` is written in place: give a temporary name)."""
    import onnx

    example = torch.zeros(1, 3, model.image_size, model.image_size)
    with warnings.catch_warnings():  # the exporter's deprecation and tracer notes
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: _AXES, OUTPUT_NAME: _AXES})
    proto = onnx.load(str(path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
