"""The MONAI bundle of a segmenter: what MONAI's bundle runner, MONAI Label and MONAI Deploy
load, with nothing from medseg inside.

| file | holds |
|---|---|
| ``configs/metadata.json`` | version, task, the three input channels in order, value range and standardization, output channel, threshold, the run's metrics, intended use, references |
| ``configs/inference.json`` | ``network_def`` (smp's ``Unet``), preprocessing, ``SliceInferer``, postprocessing, the evaluator: ``python -m monai.bundle run`` on a folder of NIfTI volumes |
| ``models/model.pt`` | the network's state dict (``CheckpointLoader``) |
| ``models/model.ts`` | the network traced to TorchScript (MONAI Deploy) |
| ``docs/README.md``, ``LICENSE`` | the model card and the terms |

The pipeline reproduces ``medseg predict`` on a 4-D NIfTI volume (three channels last, each
already 0..255 as the kaggle_3m slices are): slices in medseg's view (``Orientationd`` to
S, P, L: axial, inferior to superior, radiological), each resized to the training size, each
channel of each slice z-scored, the network per slice, the sigmoid, the resize back, the
threshold (``>=``), the mask written on the input's grid. ``tests/export`` checks that its mask
equals ``medseg predict``'s.

Example:
    >>> files = write_bundle(loaded, Path("exports/demo_bundle"))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from medseg import __version__
from medseg.demo.marker import read_demo_marker
from medseg.engine.checkpoint import LoadedModel
from medseg.errors import CheckpointError, MedsegError
from medseg.export.layout import INFERENCE, LICENSE, METADATA, README, WEIGHTS
from medseg.files import atomic_path, write_text
from medseg.imaging.nifti import SLICE_AXCODES
from medseg.imaging.sequences import SEQUENCES
from medseg.metrics.threshold import DEFAULT_THRESHOLD
from medseg.tasks import SEGMENTATION, scalar_metrics

INTENDED_USE = "Research use only: not for diagnosis, treatment or any clinical decision."
CHANNELS = ("pre-contrast T1", "FLAIR", "post-contrast T1")
STANDARDIZATION = ("each axial slice resized bilinearly to {size} x {size}, then each channel of "
                   "each slice z-scored (its own mean and population std; a constant channel "
                   "becomes 0)")
REFERENCES = (
    "Buda M, Saha A, Mazurowski MA. Association of genomic subtypes of lower-grade gliomas with "
    "shape features automatically extracted by a deep learning algorithm. Computers in Biology "
    "and Medicine, 2019.",
    "Ronneberger O, Fischer P, Brox T. U-Net: Convolutional Networks for Biomedical Image "
    "Segmentation. MICCAI 2015, arXiv:1505.04597.",
    "He K, Zhang X, Ren S, Sun J. Deep Residual Learning for Image Recognition. CVPR 2016, "
    "arXiv:1512.03385.",
    "Yun J. ZNorm: Z-Score Gradient Normalization Accelerating Skip-Connected Network Training "
    "without Architectural Modification. arXiv:2408.01215, 2024.",
)
#: the per-slice z-score as a MONAI config expression on (C, N, H, W)
_ZSCORE = ("$lambda x: (lambda m, s: (x - m) / torch.where(s == 0, torch.ones_like(s), s))"
           "(x.mean(dim=(2, 3), keepdim=True), x.std(dim=(2, 3), keepdim=True, unbiased=False))")


def check_bundle_network(loaded: LoadedModel) -> None:
    """Refuse a network that smp's ``Unet`` alone cannot rebuild.

    Raises:
        CheckpointError: for a classifier or a network with medseg's BGN nodes.
    """
    path = loaded.checkpoint_path
    if loaded.task != SEGMENTATION.name:
        raise CheckpointError(f"{path}: a {loaded.task} checkpoint; a MONAI bundle is made of a "
                              "segmentation checkpoint")
    if loaded.config.model.bgn:
        raise CheckpointError(f"{path}: model.bgn adds medseg's own layers, which a MONAI bundle "
                              "cannot rebuild; export it as onnx or torchscript")


def network_def(loaded: LoadedModel) -> dict[str, Any]:
    """The bundle's ``network_def``: smp's ``Unet`` as :func:`medseg.models.unet.build_unet` builds it."""
    model = loaded.config.model
    return {"_target_": "segmentation_models_pytorch.Unet", "encoder_name": model.encoder,
            "encoder_weights": None, "in_channels": model.in_channels, "classes": 1}


def inference_config(loaded: LoadedModel, threshold: float) -> dict[str, Any]:
    """``configs/inference.json``: ``monai.bundle run`` over ``dataset_dir``'s NIfTI volumes."""
    size = loaded.config.data.image_size
    image, pred = "image", "pred"
    return {
        "imports": ["$import glob", "$import os", "$import numpy", "$import torch"],
        "bundle_root": ".",
        "dataset_dir": "$@bundle_root + '/data'",
        "output_dir": "$@bundle_root + '/eval'",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "network_def": network_def(loaded),
        "network": "$@network_def.to(@device)",
        "datalist": "$[{'image': f} for f in sorted(glob.glob(os.path.join(@dataset_dir, '*.nii*')))]",
        "preprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "LoadImaged", "keys": image, "reader": "NibabelReader"},
            {"_target_": "EnsureChannelFirstd", "keys": image},
            {"_target_": "Orientationd", "keys": image, "axcodes": "".join(SLICE_AXCODES)},
            {"_target_": "EnsureTyped", "keys": image, "dtype": "$torch.float32"},
            {"_target_": "Resized", "keys": image, "spatial_size": [-1, size, size],
             "mode": "trilinear", "align_corners": False, "anti_aliasing": False},
            {"_target_": "Lambdad", "keys": image, "func": _ZSCORE},
        ]},
        "dataset": {"_target_": "Dataset", "data": "@datalist", "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1,
                       "shuffle": False, "num_workers": 0},
        "inferer": {"_target_": "SliceInferer", "spatial_dim": 0, "roi_size": [size, size],
                    "sw_batch_size": 16, "progress": False},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": pred, "sigmoid": True},
            {"_target_": "Invertd", "keys": pred, "transform": "@preprocessing", "orig_keys": image,
             "nearest_interp": False, "to_tensor": True},
            {"_target_": "AsDiscreted", "keys": pred, "threshold": threshold},
            {"_target_": "SaveImaged", "keys": pred, "output_dir": "@output_dir",
             "output_postfix": "seg", "output_dtype": "$numpy.uint8", "resample": False,
             "separate_folder": False},
        ]},
        "handlers": [{"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/" + WEIGHTS + "'",
                      "load_dict": {"model": "@network"}, "map_location": "@device"}],
        "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device",
                      "val_data_loader": "@dataloader", "network": "@network",
                      "inferer": "@inferer", "postprocessing": "@postprocessing",
                      "val_handlers": "@handlers", "amp": False},
        "run": ["$@evaluator.run()"],
    }


def metadata(loaded: LoadedModel, threshold: float, parity: dict[str, Any]) -> dict[str, Any]:
    """``configs/metadata.json``."""
    import monai
    import numpy
    import segmentation_models_pytorch as smp

    cfg = loaded.config
    size = cfg.data.image_size
    # the checkpoint holds the validation row of its epoch: val_<key> (medseg.engine.trainer)
    metrics = scalar_metrics({key.removeprefix("val_"): value for key, value in loaded.metrics.items()},
                             SEGMENTATION)
    return {
        "version": __version__,
        "changelog": {__version__: f"exported by medseg export from {loaded.checkpoint_path.name} "
                                   f"(epoch {loaded.epoch})"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": numpy.__version__,
        "required_packages_version": {"segmentation-models-pytorch": smp.__version__,
                                      "nibabel": _version("nibabel")},
        "name": f"medseg LGG tumour segmentation ({cfg.model.encoder} UNet)",
        "task": "Segmentation of lower-grade glioma FLAIR abnormality on axial brain MR slices",
        "description": (f"smp Unet with a {cfg.model.encoder} encoder trained by medseg on axial "
                        "slices of three MR sequences; applied slice by slice to a NIfTI volume."),
        "authors": "medseg developers",
        "copyright": "medseg developers",
        "intended_use": INTENDED_USE,
        "data_source": _data_source(loaded),
        "data_type": "nifti",
        "image_classes": "three channels: " + ", ".join(CHANNELS),
        "label_classes": "one channel: tumour (FLAIR abnormality)",
        "pred_classes": f"one channel: tumour where the probability is >= {threshold}",
        "threshold": threshold,
        "eval_metrics": metrics,
        "references": list(REFERENCES),
        "network_data_format": {
            "inputs": {"image": {
                "type": "image", "format": "magnitude", "modality": "MR", "num_channels": 3,
                "spatial_shape": [size, size], "dtype": "float32", "value_range": [0, 255],
                "is_patch_data": False,
                "channel_def": {str(i): name for i, name in enumerate(CHANNELS)},
                "sequence_keys": {str(i): key for i, key in enumerate(SEQUENCES)},
                "standardization": STANDARDIZATION.format(size=size),
            }},
            "outputs": {"pred": {
                "type": "image", "format": "segmentation", "num_channels": 1,
                "spatial_shape": [size, size], "dtype": "float32", "value_range": [0, 1],
                "is_patch_data": False, "channel_def": {"0": "tumour"},
            }},
        },
        "medseg": {"checkpoint": loaded.checkpoint_path.name, "epoch": loaded.epoch,
                   "image_size": size, "parity": parity},
    }


def model_card(meta: dict[str, Any], loaded: LoadedModel) -> str:
    """``docs/README.md``: data, metrics, use and limits."""
    metrics = "\n".join(f"| {SEGMENTATION.label(key)} | {value:.4f} |"
                        for key, value in meta["eval_metrics"].items())
    synthetic = meta["data_source"].startswith("SYNTHETIC")
    return "\n".join([
        f"# {meta['name']}", "",
        f"**{INTENDED_USE}**", "",
        "## Input",
        "A NIfTI volume (`.nii` / `.nii.gz`), 4-D with three channels last, in this order: "
        + ", ".join(CHANNELS) + "; each channel already 0..255 (as the kaggle_3m slices are). "
        "The volume is read in axial slices (inferior to superior, radiological view); "
        + meta["network_data_format"]["inputs"]["image"]["standardization"] + ".", "",
        "## Output",
        f"`<name>_seg.nii.gz`: a uint8 mask on the input's grid, 1 where the tumour probability "
        f"is >= {meta['threshold']}.", "",
        "## Run", "```",
        "python -m monai.bundle run --config_file configs/inference.json "
        "--meta_file configs/metadata.json --bundle_root . --dataset_dir VOLUMES --output_dir OUT",
        "```", "",
        "## Data", meta["data_source"], "",
        f"## Metrics (validation split, epoch {loaded.epoch})", "| metric | value |", "|---|---|",
        metrics or "| (none recorded) | |", "",
        "## Limits",
        "- Trained on 2-D axial slices of one public cohort (lower-grade glioma, TCGA); not "
        "validated on other scanners, other tumours or healthy brains.",
        "- Intensities other than 0..255 per channel must be rescaled first (medseg predict "
        "maps the 0.5th..99.5th percentile to 0..255; this bundle does not).",
        "- One MR sequence repeated into three channels gives less reliable masks.",
        *(["- These weights were trained on medseg's demo data, whose lesions are SYNTHETIC: "
           "the masks say nothing about real tumours."] if synthetic else []), "",
        "## References", *[f"- {ref}" for ref in meta["references"]], "",
    ])


def _data_source(loaded: LoadedModel) -> str:
    root = loaded.config.data.root
    try:
        marker = read_demo_marker(root)
    except MedsegError:
        marker = None
    if marker is not None:
        return (f"SYNTHETIC: medseg demo data ({root}) with synthetic lesions, written by "
                f"{marker.get('written_by')} {marker.get('version')}")
    return f"LGG MRI Segmentation (kaggle_3m, Buda et al. 2019), read from {root}"


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def license_text() -> str:
    return ("The software that produced this bundle (medseg) is licensed under the Apache "
            "License, Version 2.0.\nThe weights were trained on the data named in "
            "docs/README.md and are bound by that data's terms.\n" + INTENDED_USE + "\n")


def write_bundle(loaded: LoadedModel, out: Path, *, threshold: float = DEFAULT_THRESHOLD,
                 parity: dict[str, Any]) -> list[Path]:
    """Write the bundle's files but ``models/model.ts`` under ``out`` (each atomically;
    :func:`medseg.export.run.export_checkpoint` writes the TorchScript file and checks it,
    ``parity``, first); returns them.

    Raises:
        CheckpointError: as :func:`check_bundle_network`.
    """
    check_bundle_network(loaded)
    meta = metadata(loaded, threshold, parity)
    for folder in ("configs", "models", "docs"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    written = []
    with atomic_path(out / WEIGHTS) as tmp:
        torch.save(loaded.model.state_dict(), tmp)
    written.append(out / WEIGHTS)
    for name, text in ((INFERENCE, json.dumps(inference_config(loaded, threshold), indent=2)),
                       (METADATA, json.dumps(meta, indent=2)),
                       (README, model_card(meta, loaded)), (LICENSE, license_text())):
        write_text(out / name, text + ("\n" if not text.endswith("\n") else ""))
        written.append(out / name)
    return written

