"""The disagreement map of runs on one slice, against hand-made masks."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.app.disagreement import disagreement
from medseg.app.palette import ALL_RUNS_WRONG, SEVERAL_RUNS_RIGHT, rgb, run_colours


def bits(*rows: str) -> np.ndarray:
    return np.array([[c == "1" for c in row] for row in rows])


def test_two_runs_each_right_where_the_other_is_wrong_and_shared_errors_apart():
    reference = bits("1100", "0000")
    a = bits("1010", "0001")
    b = bits("1110", "0000")
    found = disagreement({"a": a, "b": b}, reference, {"a": "run A", "b": "run B"})
    # (0,1): a misses, b finds -> b right; (1,3): a adds, b does not -> b right
    assert found.only_right["b"].astype(int).tolist() == [[0, 1, 0, 0], [0, 0, 0, 1]]
    assert not found.only_right["a"].any()
    assert found.all_wrong.astype(int).tolist() == [[0, 0, 1, 0], [0, 0, 0, 0]]  # both add (0,2)
    assert found.differ.astype(int).tolist() == [[0, 1, 0, 0], [0, 0, 0, 1]]
    assert not found.several_right.any()
    colours = run_colours(["a", "b"])
    assert [(e.label, e.rgb) for e in found.legend()] == [
        ("run A right", rgb(colours["a"])), ("run B right", rgb(colours["b"])),
        ("All wrong", rgb(ALL_RUNS_WRONG))]
    assert [rgb_ for _, rgb_ in found.layers()] == [e.rgb for e in found.legend()]
    assert (found.layers()[1][0] == found.only_right["b"]).all()


def test_three_runs_one_right_several_right_and_agreement_left_alone():
    reference = bits("11000")
    a = bits("10001")  # right at 0, 2, 3
    b = bits("01001")  # right at 1, 2, 3
    c = bits("00101")  # right at 3 only
    found = disagreement({"a": a, "b": b, "c": c}, reference)
    shown = {run: mask.astype(int).tolist() for run, mask in found.only_right.items()}
    assert shown == {"a": [[1, 0, 0, 0, 0]], "b": [[0, 1, 0, 0, 0]], "c": [[0, 0, 0, 0, 0]]}
    assert found.several_right.astype(int).tolist() == [[0, 0, 1, 0, 0]]  # a and b, not c
    assert found.all_wrong.astype(int).tolist() == [[0, 0, 0, 0, 1]]  # all add pixel 4
    # pixel 3: all agree and are right -> unpainted
    painted = np.logical_or.reduce([mask for mask, _ in found.layers()])
    assert painted.astype(int).tolist() == [[1, 1, 1, 0, 1]]
    labels = [e.label for e in found.legend()]
    assert labels == ["a right", "b right", "c right", "Several right", "All wrong"]
    assert found.legend()[3].rgb == rgb(SEVERAL_RUNS_RIGHT)


def test_fewer_than_two_runs_or_other_sizes_are_refused():
    with pytest.raises(ValueError, match="two runs"):
        disagreement({"a": bits("1")}, bits("1"))
    with pytest.raises(ValueError, match="differ in size"):
        disagreement({"a": bits("10"), "b": bits("1")}, bits("10"))


def test_the_disagreement_colours_are_new_and_distinct_from_the_runs():
    colours = {rgb(c) for c in run_colours([str(i) for i in range(10)]).values()}
    assert rgb(ALL_RUNS_WRONG) not in colours and rgb(SEVERAL_RUNS_RIGHT) not in colours
    assert rgb("#cc6677") == (204, 102, 119)
