"""One ``medseg predict`` per ``--out`` folder: a second one into a folder another medseg
process writes is refused before it writes anything (issue 22: both exited 0 and the second
silently replaced the first one's mask and report)."""

from __future__ import annotations

import socket

import numpy as np
from PIL import Image

from medseg.cli.main import main
from medseg.locks import LOCK_NAME
from tests.locking import held_by_another_process


def _slice(path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    return path


def test_a_second_predict_into_a_locked_out_is_refused(trained_lgg, tmp_path, capsys):
    best = str(trained_lgg.run_dir / "best.pt")
    image = _slice(tmp_path / "x.png")
    out = tmp_path / "out"
    with held_by_another_process(out) as first:
        lock = (out / LOCK_NAME).read_bytes()
        for extra in ([], ["--overwrite"]):
            assert main(["predict", best, str(image), "--out", str(out), *extra]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "Traceback" not in err
            assert (f"medseg: error: {out}: in use by another medseg process (pid {first.pid} on "
                    f"{socket.gethostname()}, since ") in err
        assert [p.name for p in out.iterdir()] == [LOCK_NAME] and (out / LOCK_NAME).read_bytes() == lock
    # the first one was killed: its lock is stale, and the same command now writes
    assert main(["predict", best, str(image), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["x_pred.png", "x_pred_overlay.png"]


def test_a_refused_predict_leaves_no_folder_behind(trained_lgg, tmp_path, capsys):
    best = str(trained_lgg.run_dir / "best.pt")
    out = tmp_path / "new" / "out"
    assert main(["predict", best, str(tmp_path / "missing.png"), "--out", str(out)]) == 2
    assert "missing.png" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
