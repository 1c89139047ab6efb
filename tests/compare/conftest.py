"""A tiny PatchCamelyon-format dataset and config for end-to-end comparison tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import medseg.engine.trainer
import medseg.models
import medseg.tasks
from medseg.compare import run_comparison
from medseg.config import load_config
from tests.support import write_pcam

SPLIT_SIZES = {"train": 32, "val": 16, "test": 16}
METHODS = ["adam", "adam+znorm"]
SEEDS = [0, 1]


def tiny_config(data_root: Path, **train: object) -> dict:
    return {
        "seed": 0,
        "data": {"format": "pcam", "root": str(data_root), "image_size": 96, "augment": True,
                 "num_workers": 0},
        "model": {"arch": "deep_resnet", "depth": 2, "width": 4, "encoder_weights": None},
        "optim": {"name": "adam", "lr": 1e-3},
        "train": {"epochs": 1, "batch_size": 8, "max_steps_per_epoch": 2, "device": "cpu",
                  "scheduler": "none", "log_every": 1, "log_grad_stats": True, **train},
    }


@pytest.fixture(scope="session")
def tiny_pcam(tmp_path_factory) -> Path:
    return write_pcam(tmp_path_factory.mktemp("pcam"), SPLIT_SIZES).root


@pytest.fixture(scope="session")
def tiny_config_file(tiny_pcam, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tiny_pcam)))
    return path


LEARNED_ANYWAY = -1.0


@pytest.fixture(autouse=True)
def every_run_counts_as_learned(monkeypatch):
    """Two optimizer steps on 32 patches learn nothing; these tests check what the comparison
    does with finished runs, so every run counts as learned (tests/compare/test_report.py and
    tests/test_tasks.py check the rule itself)."""
    monkeypatch.setattr(medseg.tasks, "LEARNED_MARGIN", LEARNED_ANYWAY)


@pytest.fixture(scope="session")
def comparison(tiny_config_file, tmp_path_factory):
    """adam and adam+znorm x seeds 0, 1, recording every run's initial weights."""
    initial_weights = []
    build_model = medseg.models.build_model

    def recording_build_model(model_cfg, task):
        model = build_model(model_cfg, task)
        initial_weights.append({k: v.clone() for k, v in model.state_dict().items()})
        return model

    out = tmp_path_factory.mktemp("compare")
    with pytest.MonkeyPatch.context() as patch:
        # where the trainer looks it up (it imports the name)
        patch.setattr(medseg.engine.trainer, "build_model", recording_build_model)
        patch.setattr(medseg.tasks, "LEARNED_MARGIN", LEARNED_ANYWAY)
        rows = run_comparison(load_config(tiny_config_file), METHODS, SEEDS, out)
    return {"rows": rows, "out": out, "initial_weights": initial_weights}
