"""Lesions as 3-D connected components, and lesion-wise detection of a predicted mask.

- :func:`label_lesions` is medseg's one lesion labelling: 26-connectivity
  (:data:`STRUCTURE`: voxels sharing a face, an edge or a corner are one lesion) in voxel
  index space whatever the spacing, numbered largest first (ties: the lesion starting on the
  earlier slice first). The prediction report (:mod:`medseg.engine.lesions`) and the
  lesion-wise measures below both read it.
- Match rule (the MICCAI WMH challenge's): a reference lesion is *detected* when at least one
  voxel of it is predicted tumour; a predicted lesion is *true* when at least one of its
  voxels is reference tumour, *spurious* otherwise. One predicted lesion may detect several
  reference lesions and the reverse.
- Lesion sensitivity = detected / reference lesions, lesion precision = true / predicted
  lesions, lesion F1 = their harmonic mean. Empty masks: no lesion on either side gives
  sensitivity = precision = F1 = 1; reference lesions but no prediction give sensitivity 0,
  precision undefined (NaN), F1 0; predicted lesions on an empty reference give sensitivity
  undefined (NaN), precision 0, F1 0.

Example:
    >>> detection = lesion_detection(match_lesions(pred_nhw, ref_nhw))
    >>> detection["lesion_sensitivity"], detection["missed_lesions"]
    (0.5, 1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: 26-connectivity: face, edge and corner neighbours
STRUCTURE = ndimage.generate_binary_structure(3, 3)


def label_lesions(mask_nhw: np.ndarray) -> tuple[np.ndarray, int]:
    """The lesions of a (N, H, W) mask as labels 1..n, largest first (module docstring).

    Args:
        mask_nhw: (slices, rows, columns); nonzero is tumour.

    Returns:
        the int32 label array (0 outside every lesion) and the number of lesions.

    Raises:
        ValueError: when the mask is not 3-D.

    Example:
        >>> labels, n = label_lesions(mask)
        >>> int((labels == 1).sum())  # the largest lesion's voxels
    """
    mask = np.asarray(mask_nhw) != 0
    if mask.ndim != 3:
        raise ValueError(f"expected a (slices, rows, columns) mask, got shape {mask.shape}")
    labels, count = ndimage.label(mask, structure=STRUCTURE)
    if count == 0:
        return labels.astype(np.int32), 0
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    first_slices = [box[0].start for box in ndimage.find_objects(labels)]
    order = sorted(range(count), key=lambda i: (-sizes[i], first_slices[i]))
    renumber = np.zeros(count + 1, np.int32)
    renumber[np.asarray(order) + 1] = np.arange(1, count + 1, dtype=np.int32)
    return renumber[labels], count


@dataclass(frozen=True)
class MatchedLesion:
    """One lesion of the reference or of the prediction, and what it overlaps on the other side.

    Attributes:
        label: its number in :func:`label_lesions`' order (1 = the largest).
        voxels: its voxel count.
        slices: first and last slice holding it, numbered from 1 in the stack's order.
        widest_slice: the slice (from 1) holding most of its voxels (the earliest on ties).
        partners: the labels of the other side's lesions it overlaps, ascending.
    """

    label: int
    voxels: int
    slices: tuple[int, int]
    widest_slice: int
    partners: tuple[int, ...]

    @property
    def matched(self) -> bool:
        """Detected (a reference lesion) or true (a predicted lesion): it has a partner."""
        return bool(self.partners)


@dataclass(frozen=True)
class LesionMatching:
    """The reference and predicted lesions of one volume, each with its partners."""

    reference: tuple[MatchedLesion, ...]
    predicted: tuple[MatchedLesion, ...]


def _lesions(labels: np.ndarray, count: int, partners: dict[int, set[int]]) -> tuple[MatchedLesion, ...]:
    found = []
    for label, box in enumerate(ndimage.find_objects(labels, max_label=count), start=1):
        assert box is not None  # label_lesions numbers its lesions 1..count
        per_slice = (labels[box] == label).sum(axis=(1, 2))
        held = np.flatnonzero(per_slice)
        start = box[0].start + 1
        found.append(MatchedLesion(
            label=label, voxels=int(per_slice.sum()),
            slices=(int(held[0]) + start, int(held[-1]) + start),
            widest_slice=int(np.argmax(per_slice)) + start,
            partners=tuple(sorted(partners.get(label, ()))),
        ))
    return tuple(found)


def match_lesions(pred_nhw: np.ndarray, ref_nhw: np.ndarray) -> LesionMatching:
    """Label both masks (:func:`label_lesions`) and pair the lesions that share a voxel.

    Args:
        pred_nhw: predicted (N, H, W) mask; nonzero is tumour.
        ref_nhw: reference mask of the same shape.

    Raises:
        ValueError: when the shapes differ or are not 3-D.
    """
    pred, ref = np.asarray(pred_nhw) != 0, np.asarray(ref_nhw) != 0
    if pred.shape != ref.shape:
        raise ValueError(f"pred and ref must have the same shape, got {pred.shape} and {ref.shape}")
    pred_labels, n_pred = label_lesions(pred)
    ref_labels, n_ref = label_lesions(ref)
    both = pred & ref
    pairs = {(int(r), int(p)) for r, p in zip(ref_labels[both].tolist(), pred_labels[both].tolist(), strict=True)}
    of_ref: dict[int, set[int]] = {}
    of_pred: dict[int, set[int]] = {}
    for r, p in pairs:
        of_ref.setdefault(r, set()).add(p)
        of_pred.setdefault(p, set()).add(r)
    return LesionMatching(_lesions(ref_labels, n_ref, of_ref), _lesions(pred_labels, n_pred, of_pred))


def lesion_detection(matching: LesionMatching) -> dict[str, float | int]:
    """Lesion-wise counts and scores of a matching, with the module's empty-mask rules.

    Returns:
        ``ref_lesions``, ``pred_lesions``, ``detected_lesions`` (reference lesions found),
        ``missed_lesions``, ``spurious_lesions`` (predicted lesions on no reference tumour),
        ``lesion_sensitivity``, ``lesion_precision``, ``lesion_f1`` (NaN where undefined).

    Example:
        >>> lesion_detection(match_lesions(pred, ref))["lesion_f1"]
    """
    n_ref, n_pred = len(matching.reference), len(matching.predicted)
    detected = sum(lesion.matched for lesion in matching.reference)
    true = sum(lesion.matched for lesion in matching.predicted)
    if n_ref == 0 and n_pred == 0:
        sensitivity = precision = f1 = 1.0
    else:
        sensitivity = detected / n_ref if n_ref else math.nan
        precision = true / n_pred if n_pred else math.nan
        # a lesion found on either side makes both scores positive
        f1 = 2 * sensitivity * precision / (sensitivity + precision) if detected else 0.0
    return {
        "ref_lesions": n_ref,
        "pred_lesions": n_pred,
        "detected_lesions": detected,
        "missed_lesions": n_ref - detected,
        "spurious_lesions": n_pred - true,
        "lesion_sensitivity": sensitivity,
        "lesion_precision": precision,
        "lesion_f1": f1,
    }
