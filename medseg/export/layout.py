"""The files of an export, by name: what :mod:`medseg.export.run` writes and the app opens
(:mod:`medseg.app.run_cards`, :mod:`medseg.app.review_models`), without importing torch.

Example:
    >>> MODEL_FILES["bundle"]
    'models/model.ts'
"""

from __future__ import annotations

from medseg.predict.exported import MODEL_ONNX

MODEL_TS = "model.ts"
#: the MONAI bundle's files, relative to its folder (:mod:`medseg.export.bundle`)
METADATA = "configs/metadata.json"
INFERENCE = "configs/inference.json"
WEIGHTS = "models/model.pt"
TORCHSCRIPT = "models/model.ts"
README = "docs/README.md"
LICENSE = "LICENSE"
BUNDLE_FILES = (METADATA, INFERENCE, WEIGHTS, TORCHSCRIPT, README, LICENSE)
#: format -> the model file a reader opens (a bundle's network alone: ``models/model.ts``)
MODEL_FILES = {"onnx": MODEL_ONNX, "torchscript": MODEL_TS, "bundle": TORCHSCRIPT}
