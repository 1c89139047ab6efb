"""PatchCamelyon patches for the app: read the first patches of a split and classify them.

Example:
    >>> patches, labels = read_patches("demo_data/pcam", "test", count=64)
    >>> probs = patch_probabilities(loaded.model, patches)
    >>> score_patches(probs, labels, threshold=0.5)["auc"]
"""

from __future__ import annotations

import numpy as np

#: split label shown in the app -> medseg split name
SPLIT_LABELS = {"Test": "test", "Validation": "val", "Train": "train"}


def read_patches(root, split: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` patches of a PCam split and their labels.

    Args:
        root: folder of ``camelyonpatch_level_2_split_*_{x,y}.h5`` files.
        split: "train", "val" or "test".
        count: how many patches at most.

    Returns:
        patches (n, 96, 96, 3) uint8 and labels (n,) uint8 in {0, 1}.

    Raises:
        DataError: when the split's files are missing or malformed.
    """
    from medseg.data.pcam import inspect_pcam_split, open_h5, pcam_files

    x_path, y_path = pcam_files(root, split)
    n = min(count, inspect_pcam_split(x_path, y_path))
    with open_h5(x_path, "x") as x:
        patches = np.asarray(x[:n])
    with open_h5(y_path, "y") as y:
        labels = np.asarray(y[:n]).reshape(-1)
    return patches, labels


def patch_probabilities(model, patches: np.ndarray) -> np.ndarray:
    """Tumour probability of each (96, 96, 3) uint8 patch, with the evaluation transform.

    Returns:
        float32 array (n,).
    """
    import torch
    from monai.transforms import Compose

    from medseg.data.pcam import LoadPCamPatchd
    from medseg.data.transforms import pcam_transforms
    from medseg.engine import predict_probabilities

    # The evaluation pipeline without its HDF5 reader: identical steps, identical settings.
    normalize = Compose(pcam_transforms(LoadPCamPatchd("x.h5", "y.h5"), augment=False).transforms[1:])
    images = torch.from_numpy(np.ascontiguousarray(patches)).permute(0, 3, 1, 2).float()
    batch = torch.stack([normalize({"image": image})["image"] for image in images])
    return predict_probabilities(model, batch)[:, 0].numpy()


def score_patches(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Accuracy, AUC, sensitivity and specificity with :class:`medseg.metrics.ClassificationMeter`."""
    import torch

    from medseg.metrics import ClassificationMeter

    meter = ClassificationMeter(threshold=threshold)
    meter.update(torch.from_numpy(np.asarray(probs, np.float32))[:, None],
                 torch.from_numpy(np.asarray(labels, np.float32))[:, None])
    return meter.compute()
