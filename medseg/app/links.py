"""Links that reproduce the screen: the page's state as URL query parameters, and back.

A link names the model shown (``run``: its path relative to the models folder, ``kind``: run,
export, onnx or cv), its ``checkpoint``, the ``threshold``, a CV folder's ``tta`` and
postprocessing toggle (``post``), the tab (``view``), the patients' ``subset``, the
``patient``, the ``slice``, the ``runs`` compared and the display settings (``large``: errors
or probability map, ``sequence``,
``overlay``, ``opacity``, ``labels``, ``zoom``, ``window``). A value the page cannot show (a
threshold off the slider, a zoom of 7) is ignored; a run the models folder does not hold is
said in one line (:func:`linked_run`).

Example:
    >>> link_text({"run": ["demo_lgg"], "threshold": ["0.30"], "runs": ["a", "b"]})
    '?run=demo_lgg&threshold=0.30&runs=a&runs=b'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from medseg.app.cohort import THRESHOLDS
from medseg.app.run_cards import RunCard
from medseg.app.viewer import SEQUENCE_CHANNELS
from medseg.engine.probability import TTA_MODES
from medseg.imaging.palette import ERROR_KINDS
from medseg.metrics import DEFAULT_THRESHOLD

#: the large view's zooms (nearest neighbour) and the overlay's styles, as the sidebar offers them
ZOOMS = (1, 2, 3, 4)
OVERLAY_STYLES = ("Outline", "Fill")
#: what the large view shows: the errors against the reference, or the probability map
LARGE_VIEWS = ("errors", "probability")
#: ``labels=none``: every label hidden (an empty list would read as "not in the link")
NO_LABELS = "none"
#: every parameter of a link, in the order a link lists them
LINK_PARAMS = ("run", "kind", "checkpoint", "threshold", "tta", "post", "view", "subset", "patient",
               "slice", "runs", "large", "sequence", "overlay", "opacity", "labels", "zoom", "window")


@dataclass(frozen=True)
class Setting:
    """A widget whose state a link carries: its URL ``param``, its session ``key``, its default
    and how its value is read from (None: not a value the widget offers) and written to the URL."""

    param: str
    key: str
    default: Any
    read: Callable[[list[str]], Any]
    write: Callable[[Any], list[str]]


def _one_of(options: Sequence[str]) -> Callable[[list[str]], str | None]:
    return lambda values: values[0] if len(values) == 1 and values[0] in options else None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _on_grid(grid: Sequence[float]) -> Callable[[list[str]], float | None]:
    """The grid's value a link's number names (``0.3`` or ``0.30``), None when off the grid."""
    def read(values: list[str]) -> float | None:
        number = _number(values[0]) if len(values) == 1 else None
        return next((value for value in grid if number is not None and abs(value - number) < 1e-6), None)
    return read


def _zoom(values: list[str]) -> int | None:
    return int(values[0]) if len(values) == 1 and values[0] in {str(z) for z in ZOOMS} else None


def _labels(values: list[str]) -> list[str] | None:
    if values == [NO_LABELS]:
        return []
    return [key for key in ERROR_KINDS if key in values] if values and set(values) <= set(ERROR_KINDS) else None


def _window(values: list[str]) -> tuple[int, int] | None:
    if len(values) != 2 or not all(value.isdigit() for value in values):
        return None
    low, high = int(values[0]), int(values[1])
    return (low, high) if 0 <= low < high <= 255 else None


def _switch(values: list[str]) -> bool | None:
    return {"on": True, "off": False}.get(values[0]) if len(values) == 1 else None


OPACITIES = tuple(round(step * 0.05, 2) for step in range(21))
#: the model's and the display's settings a link carries (the sidebar's widgets, by session key)
SETTINGS = (
    Setting("threshold", "threshold", DEFAULT_THRESHOLD, _on_grid(THRESHOLDS), lambda v: [f"{v:.2f}"]),
    Setting("tta", "tta", TTA_MODES[0], _one_of(TTA_MODES), lambda v: [v]),
    Setting("post", "postprocess", True, _switch, lambda v: ["on" if v else "off"]),
    Setting("large", "large_view", LARGE_VIEWS[0], _one_of(LARGE_VIEWS), lambda v: [v]),
    Setting("sequence", "sequence", next(iter(SEQUENCE_CHANNELS)), _one_of(list(SEQUENCE_CHANNELS)),
            lambda v: [v]),
    Setting("overlay", "overlay_style", OVERLAY_STYLES[0],
            lambda v: {s.lower(): s for s in OVERLAY_STYLES}.get(v[0]) if len(v) == 1 else None,
            lambda v: [v.lower()]),
    Setting("opacity", "overlay_opacity", 1.0, _on_grid(OPACITIES), lambda v: [f"{v:.2f}"]),
    Setting("labels", "overlay_labels", list(ERROR_KINDS), _labels, lambda v: list(v) or [NO_LABELS]),
    Setting("zoom", "zoom", 2, _zoom, lambda v: [str(v)]),
    Setting("window", "window", (0, 255), _window, lambda v: [str(v[0]), str(v[1])]),
)
SETTING_BY_KEY = {setting.key: setting for setting in SETTINGS}


def default(key: str) -> Any:
    """The default of the setting whose session key is ``key`` (one place for the page)."""
    return SETTING_BY_KEY[key].default


def linked_settings(params: Mapping[str, list[str]]) -> dict[str, Any]:
    """{session key: value} of each setting the link names with a value its widget offers."""
    values = {setting.key: setting.read(params[setting.param]) for setting in SETTINGS
              if params.get(setting.param)}
    return {key: value for key, value in values.items() if value is not None}


def settings_params(state: Mapping[str, Any]) -> dict[str, list[str]]:
    """The URL parameters of the settings present in ``state`` (a session's widget states)."""
    return {setting.param: setting.write(state[setting.key]) for setting in SETTINGS if setting.key in state}


def link_text(params: Mapping[str, list[str]]) -> str:
    """The relative link (``?a=1&b=2``) of the link parameters among ``params``, in
    :data:`LINK_PARAMS` order (other parameters are left out)."""
    pairs = [(name, value) for name in LINK_PARAMS for value in params.get(name, [])]
    return f"?{urlencode(pairs)}"


def linked_run(runs: Sequence[RunCard], params: Mapping[str, list[str]]) -> tuple[RunCard | None, str | None]:
    """The run a link opens, and what is wrong with the link (None: nothing).

    ``run`` (and ``kind``, when given) names it; without ``run``, the first run of ``runs``
    found in the folder (so a comparison's link opens its own task's page, whichever run is
    newest). (None, None) when the link names no run.
    """
    by_name = {run.name: run for run in runs}
    if params.get("run"):
        name, kinds = params["run"][0], params.get("kind", [])
        kind = kinds[0] if kinds else None
        run = by_name.get(name)
        if run is None:
            return None, f"This link names {kind or 'run'} {name}, which is not in the runs folder."
        if kind is not None and kind != run.kind:
            return None, f"This link names {kind} {name}; {name} in the runs folder is a {run.kind}."
        return run, None
    found = [by_name[name] for name in params.get("runs", []) if name in by_name]
    return (found[0] if found else None), None


def missing_runs(names: Sequence[str], usable: Mapping[str, RunCard]) -> str | None:
    """One line naming the runs of ``names`` (a link's ``runs``) the comparison cannot show."""
    missing = [name for name in names if name not in usable]
    if not missing:
        return None
    return (f"This link names {len(missing)} run{'s' if len(missing) > 1 else ''} not in the runs "
            f"folder or of another task: {', '.join(missing)}.")
