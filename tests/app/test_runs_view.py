"""The "Runs side by side" view driven by AppTest: each patient's subset in the runs' splits,
unscored cells, the score button, the slices where runs differ most, and the comparison's own
report only for runs of one comparison folder."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image
from streamlit import dataframe_util

from medseg.app import lgg_page
from medseg.app.runs_compare import LARGEST_DIFFERENCE
from medseg.compare.report import RESULTS_CSV, format_summary, write_results_csv
from medseg.data.splits import read_split_file, save_split
from tests.app.page_driver import perturbed_copy, record_pictures, start

VIEW = "Runs side by side"


def shown_cells(element) -> list[list[str]]:
    """The cells of a dataframe as the page shows them (the styler's display values)."""
    frame = dataframe_util.convert_arrow_bytes_to_pandas_df(element.proto.arrow_data.styler.display_values)
    return frame.astype(str).values.tolist()


def captions(at) -> str:
    return "\n".join(c.value for c in at.caption)


@pytest.fixture
def two_splits(segmentation_run, tmp_path):
    """run_a (the tiny run) and run_b (another model), whose split.json makes run_a's
    validation patient a training patient."""
    models = tmp_path / "models"
    shutil.copytree(segmentation_run, models / "run_a", ignore=shutil.ignore_patterns("app_cache"))
    perturbed_copy(segmentation_run, models / "run_b", 0.5)
    split, seed = read_split_file(models / "run_a" / "split.json")
    moved = split["val"][0]
    save_split({**split, "val": split["val"][1:], "train": sorted([*split["train"], moved])},
               models / "run_b" / "split.json", seed=seed)
    return models, split, moved


def test_the_runs_table_names_subsets_restricts_means_and_drops_the_button(monkeypatch, two_splits, tiny_lgg):
    models, split, moved = two_splits
    monkeypatch.setattr(lgg_page, "AUTO_SCORED", 0)  # every subset but test waits for the button
    at = start(monkeypatch, models, lgg=tiny_lgg, view=VIEW)
    at.multiselect(key="compare_runs").set_value(["run_a", "run_b"]).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    subset = at.radio(key="runs_subset")
    assert subset.options == ["test", "val", "train", "all"] and subset.value == "test"
    table = at.dataframe[1].value
    assert list(table.columns) == ["Patient", "Subset", "run_a", "run_b", "Δ run_b − run_a"]
    assert list(table["Patient"]) == split["test"] and list(table["Subset"]) == ["test"]
    assert "not the seeds or methods of one comparison" in captions(at)
    assert not at.get("container") or all(c.proto.key != "comparison_report" for c in at.get("container"))

    subset.set_value("val").run()  # run_a's validation patient trains run_b: no common one
    assert "No patient of the case folder is a val patient of every chosen run." in [i.value for i in at.info]

    at.radio(key="runs_subset").set_value("train").run()
    table = at.dataframe[1]
    assert list(table.value["Patient"]) == split["train"]  # not the moved one
    assert all(row[2:] == ["—", "—", "—"] for row in shown_cells(table))  # unscored, not "None"
    assert "Means over" not in captions(at)
    at.button(key="runs_score").click().run()
    assert not at.exception
    assert not [b for b in at.button if b.key == "runs_score"]  # the button is gone once scored
    table = at.dataframe[1]
    frame = table.value
    assert frame[["run_a", "run_b"]].notna().all().all()
    cells = shown_cells(table)
    assert [row[2] for row in cells] == [f"{v:.3f}" for v in frame["run_a"]]
    assert [row[4] for row in cells] == [f"{v:+.3f}" for v in frame["Δ run_b − run_a"]]
    means = (f"Means over the train patients ({len(split['train'])}): run\\_a {frame['run_a'].mean():.3f}; "
             f"run\\_b {frame['run_b'].mean():.3f}; Δ run\\_b − run\\_a {frame['Δ run_b − run_a'].mean():+.3f}")
    assert means in captions(at)

    at.radio(key="runs_subset").set_value("all").run()
    subsets = dict(zip(at.dataframe[1].value["Patient"], at.dataframe[1].value["Subset"], strict=True))
    assert subsets[moved] == "run_a: val, run_b: train"
    assert subsets[split["test"][0]] == "test"


def test_panels_disagreement_and_slices_where_runs_differ_most(monkeypatch, two_splits, tiny_lgg):
    models, _, _ = two_splits
    at = start(monkeypatch, models, lgg=tiny_lgg, view=VIEW)
    at.select_slider(key="zoom").set_value(3).run()
    pictures = record_pictures(monkeypatch)
    at.multiselect(key="compare_runs").set_value(["run_a", "run_b"]).run()
    assert not at.exception
    shown = [image.proto.imgs[0] for image in at.image]
    assert len(shown) == 5 and shown[0].caption.endswith("(3×)")  # MRI, reference, 2 runs, map
    sizes = [Image.open(io.BytesIO(data)).size for _, data in pictures[-5:]]
    assert sizes == [(3 * 64, 3 * 64)] * 5  # every panel at the zoom
    assert shown[4].caption.startswith("Where the runs disagree: ")
    differing = int(shown[4].caption.split(": ")[1].split()[0])
    legend = " ".join(m.value for m in at.markdown)
    assert "run_a (adam+znorm) right" in legend and "All wrong" in legend
    slices = at.dataframe[0].value
    assert list(slices.columns) == ["Slice", "run_a", "run_b", LARGEST_DIFFERENCE]
    gaps = list(slices[LARGEST_DIFFERENCE])
    assert gaps == sorted(gaps, reverse=True)
    assert np.allclose(slices[LARGEST_DIFFERENCE], (slices["run_a"] - slices["run_b"]).abs())
    number = next(s for s in at.select_slider if (s.key or "").startswith("slice:")).value
    row = slices[slices["Slice"] == number].iloc[0]
    assert shown[2].caption.startswith(f"run_a (adam+znorm): slice Dice {row['run_a']:.3f}")
    if row["run_a"] != row["run_b"]:  # different slice Dice: the masks differ somewhere
        assert differing > 0


def test_runs_of_one_comparison_show_its_cells_and_paired_tests(monkeypatch, segmentation_run,
                                                                tiny_lgg, tmp_path):
    compare = tmp_path / "cmp"
    shutil.copytree(segmentation_run, compare / "runs" / "adam" / "seed0",
                    ignore=shutil.ignore_patterns("app_cache"))
    perturbed_copy(segmentation_run, compare / "runs" / "sgd" / "seed0", 0.5)
    rows = [{"method": method, "seed": seed, "test_dice": dice, "status": "ok"}
            for method, scores in (("adam", (0.7, 0.74)), ("sgd", (0.5, 0.6)))
            for seed, dice in enumerate(scores)]
    write_results_csv(rows, compare / RESULTS_CSV)
    at = start(monkeypatch, compare / "runs", lgg=tiny_lgg, view=VIEW)  # the app looks 3 levels down
    at.multiselect(key="compare_runs").set_value(["adam/seed0", "sgd/seed0"]).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    report = next(m.value for m in at.markdown if "# Optimizer comparison" in m.value)
    assert format_summary([0.7, 0.74], 4, (0.0, 1.0)) in report  # adam's cell, as compare writes it
    assert format_summary([0.5, 0.6], 4, (0.0, 1.0)) in report
    assert "## Each method against `adam`" in report and "| `sgd` | test Dice | 2 | -0.1700" in report
    assert "not the seeds or methods of one comparison" not in captions(at)
    (compare / RESULTS_CSV).unlink()  # no results.csv: not a comparison folder
    at.run()
    assert not any("# Optimizer comparison" in m.value for m in at.markdown)
    assert "not the seeds or methods of one comparison" in captions(at)
