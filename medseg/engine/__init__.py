"""Training, checkpoints, evaluation and inference (prediction from files: :mod:`medseg.predict`).

The names below are imported on first use (PEP 562), so that a command loads only the
modules it needs: ``medseg predict`` never loads the trainer, the gradient-analysis tools
or the dataset pipelines. ``from medseg.engine import train`` works as before.

Example:
    >>> from medseg.config import load_config
    >>> result = train(load_config("configs/demo_lgg.yaml"))
    >>> evaluate(result.run_dir / "best.pt", "demo_data/lgg")["dice"]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medseg.lazy import lazy_exports

if TYPE_CHECKING:
    from medseg.engine.callbacks import EpochInfo, StepInfo, TrainCallback
    from medseg.engine.checkpoint import LoadedModel, load_checkpoint, load_model, save_checkpoint
    from medseg.engine.ensemble import LoadedEnsemble, load_ensemble
    from medseg.engine.evaluation import evaluate
    from medseg.engine.inference import (
        patch_probabilities,
        predict_probabilities,
        slice_probabilities,
    )
    from medseg.engine.trainer import TrainResult, train

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "EpochInfo": "medseg.engine.callbacks",
    "StepInfo": "medseg.engine.callbacks",
    "TrainCallback": "medseg.engine.callbacks",
    "LoadedModel": "medseg.engine.checkpoint",
    "load_checkpoint": "medseg.engine.checkpoint",
    "load_model": "medseg.engine.checkpoint",
    "save_checkpoint": "medseg.engine.checkpoint",
    "LoadedEnsemble": "medseg.engine.ensemble",
    "load_ensemble": "medseg.engine.ensemble",
    "evaluate": "medseg.engine.evaluation",
    "patch_probabilities": "medseg.engine.inference",
    "predict_probabilities": "medseg.engine.inference",
    "slice_probabilities": "medseg.engine.inference",
    "TrainResult": "medseg.engine.trainer",
    "train": "medseg.engine.trainer",
}

__all__ = [
    "EpochInfo",
    "LoadedEnsemble",
    "LoadedModel",
    "StepInfo",
    "TrainCallback",
    "TrainResult",
    "evaluate",
    "load_checkpoint",
    "load_ensemble",
    "load_model",
    "patch_probabilities",
    "predict_probabilities",
    "save_checkpoint",
    "slice_probabilities",
    "train",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
