"""Training and evaluation shared by every chapter: the loop, its callbacks, and their record.

Chapter 01 (quickstart) introduces :func:`fit`, :func:`evaluate` and :func:`predict`; later
chapters reuse them instead of writing the loop again. Chapter 07 adds the options that make
runs trustworthy (checkpoints and exact resumption, :class:`EarlyStopping`, TensorBoard,
:func:`cross_validate`); chapter 08 those that make them fast (mixed precision, channels-last,
``torch.compile``, gradient accumulation).

Modules, bottom to top:

- :mod:`dlkit.train.history`: :class:`History` (no torch, no loop: plots import it).
- :mod:`dlkit.train.precision`: :func:`autocast_dtype` and the compile fallback.
- :mod:`dlkit.train.inference`: :func:`evaluate`, :func:`predict`.
- :mod:`dlkit.train.callbacks`: the events, and the callbacks that shape training.
- :mod:`dlkit.train.tracking`: early stopping, checkpoints, TensorBoard.
- :mod:`dlkit.train.loop`: :func:`fit`, the :class:`Loop`, replaceable training steps.
- :mod:`dlkit.train.cv`: :func:`cross_validate`.
"""

from dlkit.train.callbacks import (EVENTS, BatchTransform, Callback, ChannelsLast, Compile,
                                   GradientAccumulation, GradientClipping, MixedPrecision,
                                   ProgressBar, Throughput)
from dlkit.train.cv import CVResult, cross_validate
from dlkit.train.history import History
from dlkit.train.inference import Prediction, evaluate, predict
from dlkit.train.loop import Loop, StepOutput, TrainStep, fit, supervised_step
from dlkit.train.precision import autocast_dtype
from dlkit.train.tracking import Checkpoint, EarlyStopping, TensorBoard

__all__ = ["History", "Prediction", "EarlyStopping", "fit", "evaluate", "predict",
           "autocast_dtype", "cross_validate", "CVResult", "Loop", "StepOutput", "TrainStep",
           "supervised_step", "EVENTS", "Callback", "ProgressBar", "Checkpoint", "TensorBoard",
           "BatchTransform", "GradientClipping", "MixedPrecision", "GradientAccumulation",
           "Throughput", "ChannelsLast", "Compile"]
