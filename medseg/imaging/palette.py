"""How masks are coloured over slices: the palette and the alpha blend, the one definition
that ``medseg predict``'s overlay pictures and the app's viewer both draw with.

The colours are colour-blind friendlier than red/green: true positives yellow, false
positives magenta, false negatives cyan (they stay apart under deuteranopia and protanopia);
a prediction without a reference to compare with is yellow, as a true positive.

Example:
    >>> import numpy as np
    >>> picture = np.full((1, 2, 3), 100, np.uint8)
    >>> blend(picture, [(np.array([[1, 0]]), FALSE_POSITIVE.rgb)], opacity=0.5).tolist()
    [[[178, 50, 178], [100, 100, 100]]]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

RGB = tuple[int, int, int]
#: A mask (H, W), nonzero inside, and the colour to paint it with.
Layer = tuple[np.ndarray, RGB]


@dataclass(frozen=True)
class LegendEntry:
    """One colour of the overlay and what it means."""

    label: str
    rgb: RGB
    meaning: str

    @property
    def hex(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.rgb)


TRUE_POSITIVE = LegendEntry("True positive", (255, 221, 0), "tumour found by the model")
FALSE_POSITIVE = LegendEntry("False positive", (255, 0, 255), "model marks tumour, the reference does not")
FALSE_NEGATIVE = LegendEntry("False negative", (0, 229, 255), "tumour the model missed")
PREDICTED = LegendEntry("Predicted tumour", (255, 221, 0), "no expert mask to compare with")
REFERENCE = LegendEntry("Reference tumour", (0, 114, 178), "the reference mask (interactive viewer)")
#: each error layer by its short name, in painting order
ERROR_KINDS: dict[str, LegendEntry] = {"tp": TRUE_POSITIVE, "fp": FALSE_POSITIVE, "fn": FALSE_NEGATIVE}
#: the opacity of the predicted mask in ``medseg predict``'s ``*_pred_overlay.png``
PREDICTION_OPACITY = 0.45


def blend(picture_rgb: np.ndarray, layers: Iterable[Layer], *, opacity: float) -> np.ndarray:
    """Paint each layer over a picture, in order (a later layer over an earlier one): inside
    its mask, ``(1 - opacity) * picture + opacity * colour``, computed in float32 and rounded
    to the nearest integer at the end.

    Args:
        picture_rgb: (H, W, 3) picture (any dtype); not modified.
        layers: (mask (H, W), rgb) pairs; the masks' shapes are the caller's to check.
        opacity: 0 (invisible) to 1 (solid).

    Returns:
        (H, W, 3) uint8; pixels outside every mask keep their value.
    """
    painted = np.asarray(picture_rgb).astype(np.float32)
    for mask, rgb in layers:
        where = np.asarray(mask) > 0
        painted[where] = (1 - opacity) * painted[where] + opacity * np.asarray(rgb, np.float32)
    return np.clip(np.rint(painted), 0, 255).astype(np.uint8)
