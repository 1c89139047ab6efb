"""The colours that tell runs apart in the app's charts: one palette, defined here only.

:data:`RUN_COLOURS` is Paul Tol's "muted" qualitative scheme (nine colours made to stay
distinct for the common colour-vision deficiencies and on a white page,
https://personal.sron.nl/~pault/), in his order, with black as the tenth. Simulated
protanopia, deuteranopia and tritanopia (Machado et al. 2009) keep every pair of the ten at
least 15 CIELAB units apart (tests/app/test_curves_chart.py); Tableau 10, by comparison, has
two colours within 2 units under deuteranopia.

Example:
    >>> run_colours(["adam", "adam+znorm"])
    {'adam': '#cc6677', 'adam+znorm': '#332288'}
"""

from __future__ import annotations

from collections.abc import Sequence

#: one colour per run, the first ten runs all different (then the colours repeat)
RUN_COLOURS: tuple[str, ...] = (
    "#cc6677",  # rose
    "#332288",  # indigo
    "#ddcc77",  # sand
    "#117733",  # green
    "#88ccee",  # cyan
    "#882255",  # wine
    "#44aa99",  # teal
    "#999933",  # olive
    "#aa4499",  # purple
    "#000000",  # black
)


def run_colours(labels: Sequence[str]) -> dict[str, str]:
    """Each of ``labels`` (in order) with its colour of :data:`RUN_COLOURS`; past ten labels
    the colours repeat."""
    return {label: RUN_COLOURS[i % len(RUN_COLOURS)] for i, label in enumerate(labels)}


#: the disagreement map's colours besides each run's own (:mod:`medseg.app.disagreement`):
#: white where every run is wrong alike, Tol's pale grey where several runs (not all) are right
ALL_RUNS_WRONG = "#ffffff"
SEVERAL_RUNS_RIGHT = "#bbbbbb"


def rgb(colour: str) -> tuple[int, int, int]:
    """A ``#rrggbb`` colour as an (r, g, b) triple: ``rgb("#cc6677") == (204, 102, 119)``."""
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)
