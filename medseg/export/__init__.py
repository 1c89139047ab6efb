"""Exports of a trained segmenter that run without medseg: ONNX (ONNX Runtime), TorchScript
and a MONAI bundle (MONAI's bundle runner, MONAI Label, MONAI Deploy).

| module | its one job |
|---|---|
| :mod:`~medseg.export.graph` | :class:`SliceModel`: the input rule, the network and the sigmoid as one module |
| :mod:`~medseg.export.parity` | the sample slices and the parity check every export passes |
| :mod:`~medseg.export.onnx` | ``model.onnx`` with its medseg metadata |
| :mod:`~medseg.export.torchscript` | ``model.ts`` (traced) |
| :mod:`~medseg.export.bundle` | the MONAI bundle: configs, weights, model card |
| :mod:`~medseg.export.run` | :func:`export_checkpoint`: ``medseg export`` |

Every export is checked against PyTorch eager (``medseg predict``'s probabilities) before it
is kept; the record ``export.json`` (:mod:`medseg.predict.exported`) is written last.

Example:
    >>> from medseg.export.run import export_checkpoint
    >>> result = export_checkpoint("models/demo_lgg/best.pt", "onnx", "exports/demo_onnx")
"""
