"""A comparison's runs all train on one patient split: each run records the split's identity
(SHA-256 of its canonical content) when it starts, and collecting refuses runs that trained on
another version of ``split.json`` instead of reporting them as one comparison."""

from __future__ import annotations

import json
import shlex
import shutil

import pytest

from medseg.cli.main import main
from medseg.compare.execution import split_digest
from tests.support import lgg_settings, write_config

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture
def lgg_compare(tiny_lgg, tmp_path):
    """The tiny LGG config cut to one optimizer step per run, and a `medseg compare` caller."""
    settings = lgg_settings(tiny_lgg, tmp_path / "unused", epochs=1, max_steps_per_epoch=1,
                            warmup_epochs=0, scheduler="none")
    del settings["output"]
    config = write_config(settings, tmp_path / "lgg.yaml")
    out = tmp_path / "grid"

    def compare(*extra):
        return main(["compare", str(config), "--methods", "adam", "--seeds", "2", "--out", str(out),
                     *extra])

    return compare, out


def _run_all(compare, capsys):
    assert compare("--plan") == 0
    commands = [shlex.split(line) for line in capsys.readouterr().out.splitlines()]
    for command in commands:
        assert main(command[1:]) == 0
    capsys.readouterr()


def _moved_patient(split):
    """The split with the first test patient moved to train: other patients tested."""
    return {**split, "train": [*split["train"], split["test"][0]], "test": split["test"][1:]}


def test_collect_refuses_runs_trained_on_another_version_of_the_split(lgg_compare, capsys):
    compare, out = lgg_compare
    _run_all(compare, capsys)
    split_file = out / "split.json"
    records = [json.loads((out / f"runs/adam/seed{k}/compare_run.json").read_text()) for k in (0, 1)]
    assert {record["split_sha256"] for record in records} == {split_digest(split_file)}
    assert compare("--collect") == 0  # unedited: one split for every run
    capsys.readouterr()

    original = split_file.read_text()
    split = json.loads(original)
    # the same split laid out differently, with another recorded seed: the same identity
    split_file.write_text(json.dumps({**split, "seed": 7}, indent=4))
    assert compare("--collect") == 0
    capsys.readouterr()

    split_file.write_text(json.dumps(_moved_patient(split)))  # edited after both runs
    assert compare("--collect") == 2
    err = capsys.readouterr().err
    assert err == (f"medseg: error: {split_file}: 2 of 2 runs trained on another version of this "
                   "split (adam seed 0, adam seed 1), so not every seed was tested on the same "
                   "patients; restore the split they trained on, or remove those run folders and "
                   "train them again\n")

    # edited between shards: seed 1 trains again on the edited split, seed 0 did not
    shutil.rmtree(out / "runs/adam/seed1")
    _run_all(compare, capsys)
    assert compare("--collect") == 2
    assert "1 of 2 runs trained on another version of this split (adam seed 0)" in capsys.readouterr().err
    split_file.write_text(original)
    assert compare("--collect") == 2
    assert "1 of 2 runs trained on another version of this split (adam seed 1)" in capsys.readouterr().err


def test_a_run_is_not_resumed_on_another_split(lgg_compare, capsys):
    compare, out = lgg_compare
    _run_all(compare, capsys)
    run_dir = out / "runs/adam/seed0"
    (run_dir / "metrics.json").unlink()  # as if it stopped after its last epoch's checkpoint
    before = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()}
    split_file = out / "split.json"
    split_file.write_text(json.dumps(_moved_patient(json.loads(split_file.read_text()))))
    assert main(["compare-run", str(run_dir)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"medseg: error: {split_file}: changed since adam seed 0 started ({run_dir}); resuming would "
        "train one run on two splits: restore the file, or remove that run folder to train it anew")
    assert {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()} == before


def test_collect_compares_named_measures_and_reports_runs_without_them(lgg_compare, capsys):
    compare, out = lgg_compare
    _run_all(compare, capsys)
    metrics_file = out / "runs/adam/seed1/metrics.json"
    metrics = json.loads(metrics_file.read_text())
    assert {"dice", "hd95_px", "lesion_f1"} <= set(metrics.pop("measure_summary"))
    metrics_file.write_text(json.dumps(metrics))  # as scored before the measures existed
    assert compare("--collect", "--measures", "dice,lesion_f1") == 0
    report = (out / "results.md").read_text()
    assert "Directions: Dice (3-D): higher is better; Lesion F1: higher is better." in report
    assert "| `adam` | Dice (3-D) | 1 / 2 |" in report
    with (out / "results.csv").open() as handle:
        header = handle.readline().strip().split(",")
    assert header[header.index("measure_dice"):][:4] == [
        "measure_dice", "measure_dice_n_undefined", "measure_lesion_f1", "measure_lesion_f1_n_undefined"]


def test_an_unknown_measure_is_refused_in_one_line(lgg_compare, capsys):
    compare, out = lgg_compare
    assert compare("--collect", "--measures", "dice,hd96_px") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "unknown measure 'hd96_px'; known: dice, iou, hd95_mm" in err
    assert not out.exists()  # refused before anything is created
