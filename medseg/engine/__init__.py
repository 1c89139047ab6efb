"""Training, checkpoints, evaluation and prediction.

Example:
    >>> from medseg.config import load_config
    >>> result = train(load_config("configs/demo_lgg.yaml"))
    >>> evaluate(result.run_dir / "best.pt", "demo_data/lgg")["dice"]
"""

from __future__ import annotations

from medseg.engine.callbacks import EpochInfo, StepInfo, TrainCallback
from medseg.engine.checkpoint import LoadedModel, load_checkpoint, load_model, save_checkpoint
from medseg.engine.evaluate import evaluate
from medseg.engine.inference import predict_probabilities
from medseg.engine.predict import Prediction, predict_paths
from medseg.engine.trainer import SELECTION_METRIC, TrainResult, train

__all__ = [
    "SELECTION_METRIC",
    "EpochInfo",
    "LoadedModel",
    "Prediction",
    "StepInfo",
    "TrainCallback",
    "TrainResult",
    "evaluate",
    "load_checkpoint",
    "load_model",
    "predict_paths",
    "predict_probabilities",
    "save_checkpoint",
    "train",
]
