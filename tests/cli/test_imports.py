"""Cold starts: what ``medseg --help`` and ``medseg predict`` import (issue #16, item 2).

Each check runs in a fresh interpreter, so that nothing imported by pytest or by another test
hides an import. ``medseg predict`` runs end to end on one slice with a tiny checkpoint.

Two kinds of assertion:

* ``sys.modules`` after the command: MONAI and the modules of other commands (the trainer,
  the dataset pipelines, the gradient-analysis tools, DICOM SEG writing for a non-DICOM
  input) are absent.
* direct imports by medseg's own modules, recorded by a wrapper around ``builtins.__import__``:
  a library loaded anyway (smp, timm) may load matplotlib or pandas itself, so
  ``"matplotlib" in sys.modules`` cannot tell whether medseg added an ``import matplotlib``;
  the wrapper can, whether or not the module was loaded before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medseg.config import Config
from medseg.engine.checkpoint import save_checkpoint
from medseg.models import build_model

REPO = Path(__file__).resolve().parents[2]

#: packages no medseg module on the predict path may import itself (plotting, logging,
#: the app, HDF5/PCam, DICOM SEG writing, scikit-image, MONAI's apps)
NOT_IMPORTED_BY_MEDSEG = ("matplotlib", "tensorboard", "torch.utils.tensorboard", "tensorboardX",
                          "streamlit", "pandas", "h5py", "highdicom", "skimage", "monai.apps")
#: modules absent from the process after ``medseg predict`` of a slice
NOT_LOADED = ("monai", "medseg.data.transforms", "medseg.engine.lesions", "highdicom", "medseg.imaging.dicom_seg", "medseg.engine.trainer",
              "medseg.engine.evaluation", "medseg.engine.loop", "medseg.engine.callbacks",
              "medseg.data.datasets", "medseg.data.pcam", "medseg.demo.pcam",
              "medseg.data.check", "medseg.analysis", "medseg.optim.factory", "medseg.optim.functional", "medseg.compare",
              "medseg.app", "streamlit")

# Runs ``medseg`` (main) with sys.argv[1:] in this interpreter and prints, as JSON, the
# command's exit code, the loaded modules and the (importer, imported) pairs where a medseg
# module imported one of the watched packages.
PROBE = """
import builtins, json, sys
WATCHED = {watched!r}
direct = []
_import = builtins.__import__

def recording_import(name, globals=None, locals=None, fromlist=(), level=0):
    importer = (globals or {{}}).get("__name__") or ""
    if level == 0 and importer.split(".")[0] == "medseg":
        names = [name] + [name + "." + item for item in (fromlist or ())]
        for full in names:
            if any(full == w or full.startswith(w + ".") for w in WATCHED):
                direct.append([importer, full])
    return _import(name, globals, locals, fromlist, level)

builtins.__import__ = recording_import
from medseg.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print(json.dumps({{"code": code, "modules": sorted(sys.modules), "direct": direct}}))
"""


def probe(*argv: str) -> dict:
    code = PROBE.format(watched=NOT_IMPORTED_BY_MEDSEG)
    result = subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A segmentation checkpoint of an untrained ResNet-18 UNet at 32 x 32 (weights random)."""
    cfg = Config()
    cfg.model.encoder = "resnet18"
    cfg.data.image_size = 32
    torch.manual_seed(0)
    model = build_model(cfg.model, "segmentation")
    payload = {"model": model.state_dict(), "config": cfg.to_dict(), "task": "segmentation",
               "epoch": 1, "metrics": {}, "medseg_version": "0.1.0"}
    return save_checkpoint(payload, tmp_path_factory.mktemp("ckpt") / "best.pt")


@pytest.fixture(scope="module")
def predicted(tiny_checkpoint, tmp_path_factory) -> dict:
    """``medseg predict`` of one RGB slice, end to end, in a fresh interpreter."""
    folder = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / "s_1.png")
    result = probe("predict", str(tiny_checkpoint), str(folder / "s_1.png"),
                   "--out", str(folder / "out"), "--device", "cpu")
    assert result["code"] == 0
    assert sorted(p.name for p in (folder / "out").iterdir()) == ["s_1_pred.png", "s_1_pred_overlay.png"]
    return result


def test_predict_loads_no_module_of_other_commands(predicted):
    loaded = set(predicted["modules"])
    assert "medseg.predict.run" in loaded and "segmentation_models_pytorch" in loaded
    assert sorted(m for m in NOT_LOADED if m in loaded) == []


def test_no_medseg_module_on_the_predict_path_imports_plotting_logging_or_dicom_seg(predicted):
    assert predicted["direct"] == []


def test_help_imports_neither_torch_nor_monai():
    result = probe("--help")
    assert result["code"] == 0
    heavy = ("torch", "monai", "numpy", "segmentation_models_pytorch", "medseg.engine", "medseg.data")
    assert sorted(m for m in result["modules"] if m.split(".")[0] in heavy or m in heavy) == []
    assert result["direct"] == []


def test_lazy_package_exports_resolve():
    """Every name in ``__all__`` of the lazy package resolves (a typo in the name -> module
    table would only show when that name is first used)."""
    module = __import__("medseg.engine", fromlist=["__all__"])
    assert sorted(module._EXPORTS) == sorted(module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    with pytest.raises(AttributeError):
        module.no_such_name  # noqa: B018


def test_the_console_script_exits_with_the_command_s_code_and_whole_files(tiny_checkpoint, tmp_path):
    """``python -m medseg`` ends through ``console_main`` (the garbage collector is frozen
    before exit): the outputs are complete, and a refused second run still exits with 2."""
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "s_1.png")
    argv = [sys.executable, "-m", "medseg", "predict", str(tiny_checkpoint), str(tmp_path / "s_1.png"),
            "--out", str(tmp_path / "out"), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith(f"written to {tmp_path / 'out'}")
    with Image.open(tmp_path / "out" / "s_1_pred.png") as mask:
        assert mask.size == (40, 40) and set(np.unique(np.asarray(mask))) <= {0, 255}
    second = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert second.returncode == 2
    assert second.stderr.startswith("medseg: error: ") and len(second.stderr.strip().splitlines()) == 1
