"""Training and evaluation loops, checkpoints, distributed launch."""

from machop.runtime.predict import predict
from machop.train.checkpoint import (
                                     Checkpoint,
                                     apply_checkpoint,
                                     load_checkpoint,
                                     read_checkpoint,
                                     save_checkpoint,
)
from machop.train.evaluate import evaluate
from machop.train.fit import EpochEnd, FitResult, fit
from machop.train.settings import TrainSettings

__all__ = ["Checkpoint", "EpochEnd", "FitResult", "TrainSettings", "apply_checkpoint", "evaluate",
           "fit", "load_checkpoint", "predict", "read_checkpoint", "save_checkpoint"]
