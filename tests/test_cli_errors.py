"""The CLI boundary: a MedsegError, even wrapped by MONAI or a DataLoader worker, is one line
on stderr and exit code 2; anything else keeps its traceback; ``--help`` loads no MONAI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import medseg.cli.data
from medseg.cli.main import main
from medseg.data.splits import split_patients
from medseg.errors import CheckpointError, ConfigError, DataError, MedsegError, find_medseg_error
from tests.support import (
    LGG_PATIENTS,
    assert_log_ends_in_one_line_error,
    lgg_settings,
    write_config,
    write_lgg,
)

REPO = Path(__file__).resolve().parents[1]


def run_medseg(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "medseg", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def corrupt_a_training_slice(top: Path) -> Path:
    """Damage slice 1 of the first training patient of :func:`lgg_settings`' split."""
    patient = split_patients(list(LGG_PATIENTS), 0.2, 0.2, seed=0)["train"][0]
    path = top / "kaggle_3m" / patient / f"{patient}_1.tif"
    path.write_bytes(b"II*\x00garbage")
    return path


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("medseg: error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def raising(error: BaseException):
    def run(args):
        raise error

    return run


def monai_style(error: BaseException) -> RuntimeError:
    """``error`` wrapped twice the way MONAI's Compose and apply_transform wrap it."""
    try:
        try:
            try:
                raise error
            except Exception as inner:
                raise RuntimeError("applying transform <LoadLGGSliced>") from inner
        except RuntimeError as middle:
            raise RuntimeError("applying transform <Compose>") from middle
    except RuntimeError as outer:
        return outer


def test_data_check_on_a_corrupt_slice_exits_2_naming_the_file(tmp_path):
    bad = corrupt_a_training_slice(write_lgg(tmp_path / "lgg").top)
    assert_one_line_error(run_medseg("data", "check", str(tmp_path / "lgg")), str(bad), "cannot read TIFF")


def test_train_on_a_corrupt_slice_read_by_dataloader_workers_exits_2_naming_the_file(tmp_path):
    top = write_lgg(tmp_path / "lgg").top
    bad = corrupt_a_training_slice(top)
    settings = lgg_settings(top, tmp_path / "run", epochs=1)
    settings["data"]["num_workers"] = 2
    result = run_medseg("train", str(write_config(settings, tmp_path / "run.yaml")))
    assert result.stderr.startswith("precision: ")  # the training log's first line
    assert result.returncode == 2
    assert_log_ends_in_one_line_error(result.stderr, str(bad), "cannot read TIFF")


def test_help_does_not_import_monai():
    code = ("import sys\nfrom medseg.cli.main import main\ntry:\n    main(['train', '--help'])\n"
            "except SystemExit:\n    pass\nprint('monai' in sys.modules, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.splitlines()[-1] == "False False", result.stderr


@pytest.mark.parametrize("error", [
    DataError("a.tif: cannot read TIFF"),
    monai_style(DataError("a.tif: cannot read TIFF")),
])
def test_main_prints_the_medseg_error_behind_monai_s_wrapping(monkeypatch, capsys, error):
    monkeypatch.setattr(medseg.cli.data, "run", raising(error))
    assert main(["data", "check", "x"]) == 2
    assert capsys.readouterr().err == "medseg: error: a.tif: cannot read TIFF\n"


def test_main_keeps_a_multi_line_message_on_one_line(monkeypatch, capsys):
    monkeypatch.setattr(medseg.cli.data, "run", raising(DataError("a.h5: bad file\n  (details)\n")))
    assert main(["data", "check", "x"]) == 2
    assert capsys.readouterr().err == "medseg: error: a.h5: bad file (details)\n"


@pytest.mark.parametrize("error", [RuntimeError("applying transform"), KeyError("image"),
                                   monai_style(ValueError("a bug"))])
def test_main_lets_other_errors_through_with_their_traceback(monkeypatch, error):
    monkeypatch.setattr(medseg.cli.data, "run", raising(error))
    with pytest.raises(type(error)):
        main(["data", "check", "x"])


def test_find_medseg_error_walks_only_chains_of_runtime_errors():
    error = ConfigError("optim.lr must be > 0")
    assert find_medseg_error(error) is error
    assert find_medseg_error(monai_style(error)) is error
    via_context = RuntimeError("while handling")
    via_context.__context__ = error
    assert find_medseg_error(via_context) is error
    bug = KeyError("image")
    bug.__context__ = error  # a bug while handling a user error stays a bug
    assert find_medseg_error(bug) is None
    assert find_medseg_error(RuntimeError("CUDA out of memory")) is None
    loop_a, loop_b = RuntimeError("a"), RuntimeError("b")
    loop_a.__cause__, loop_b.__cause__ = loop_b, loop_a
    assert find_medseg_error(loop_a) is None


def test_find_medseg_error_rebuilds_the_error_of_a_dataloader_worker():
    text = (
        "Caught RuntimeError in DataLoader worker process 1.\nOriginal Traceback (most recent call"
        " last):\n  File \"lgg.py\", line 139, in _read_tiff\n"
        "medseg.errors.CheckpointError: best.pt: not a readable checkpoint\n\n"
        "The above exception was the direct cause of the following exception:\n\n"
        "Traceback (most recent call last):\nRuntimeError: applying transform <LoadLGGSliced>\n"
    )
    found = find_medseg_error(RuntimeError(text))
    assert type(found) is CheckpointError and str(found) == "best.pt: not a readable checkpoint"
    assert find_medseg_error(RuntimeError(text.replace("medseg.errors.", "other."))) is None
    assert find_medseg_error(RuntimeError(text.replace("Caught", "Got"))) is None
    assert isinstance(find_medseg_error(RuntimeError(text.replace("CheckpointError", "MedsegError"))),
                      MedsegError)
