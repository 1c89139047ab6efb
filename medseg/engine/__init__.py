"""Training, checkpoints, evaluation and prediction.

Example:
    >>> from medseg.config import load_config
    >>> result = train(load_config("configs/demo_lgg.yaml"))
    >>> evaluate(result.run_dir / "best.pt", "demo_data/lgg")["dice"]
"""

from __future__ import annotations

from medseg.engine.callbacks import EpochInfo, StepInfo, TrainCallback
from medseg.engine.checkpoint import LoadedModel, load_checkpoint, load_model, save_checkpoint
from medseg.engine.evaluation import evaluate
from medseg.engine.inference import (
    patch_probabilities,
    predict_probabilities,
    slice_probabilities,
)
from medseg.engine.predict import Prediction, predict_paths
from medseg.engine.trainer import TrainResult, train

__all__ = [
    "EpochInfo",
    "LoadedModel",
    "Prediction",
    "StepInfo",
    "TrainCallback",
    "TrainResult",
    "evaluate",
    "load_checkpoint",
    "load_model",
    "patch_probabilities",
    "predict_paths",
    "predict_probabilities",
    "save_checkpoint",
    "slice_probabilities",
    "train",
]
