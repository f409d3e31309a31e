"""The record of a training run: one row per epoch.

Kept apart from the loop so that :mod:`dlkit.plot` (learning curves, chapter 01) and anything
else that reads a run can import :class:`History` without importing the training loop. This
module imports nothing from ``dlkit`` and nothing from torch.
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["History"]

_COLUMNS = {"train_loss", "train_acc", "val_loss", "val_acc"}


@dataclasses.dataclass
class History:
    """Per-epoch record of a training run, returned by :func:`dlkit.train.fit`.

    Accuracies are fractions in ``[0, 1]``. Validation entries are ``nan`` when ``fit`` had no
    validation loader, and ``train_acc`` is ``nan`` when the training step returns no class
    scores (a GAN, a VAE). ``time`` is the wall-clock seconds of each epoch (training plus
    validation), ``images_per_s`` the examples trained per second, and ``lr`` the learning rate
    at the end of the epoch. ``metrics`` holds any further per-epoch values by name: the named
    terms of a loss returned as a dict (``"train/kl"``), or what a callback logs; a value not
    logged in some epoch is ``nan`` there. Used from chapter 01 on.
    """

    epoch: list[int] = dataclasses.field(default_factory=list)
    train_loss: list[float] = dataclasses.field(default_factory=list)
    train_acc: list[float] = dataclasses.field(default_factory=list)
    val_loss: list[float] = dataclasses.field(default_factory=list)
    val_acc: list[float] = dataclasses.field(default_factory=list)
    lr: list[float] = dataclasses.field(default_factory=list)
    time: list[float] = dataclasses.field(default_factory=list)
    images_per_s: list[float] = dataclasses.field(default_factory=list)
    metrics: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.epoch)

    def as_dict(self) -> dict[str, list[float]]:
        """The columns as a dict of equal-length lists (e.g. for ``pandas.DataFrame``).

        Each entry of ``metrics`` becomes a column of its own, padded with ``nan``.
        """
        out = {f.name: list(getattr(self, f.name)) for f in dataclasses.fields(self)
               if f.name != "metrics"}
        for name, column in self.metrics.items():
            out[name] = list(column) + [math.nan] * (len(self.epoch) - len(column))
        return out

    @classmethod
    def from_dict(cls, columns: dict[str, list[float]]) -> History:
        """Rebuild a history from :meth:`as_dict` (e.g. out of a checkpoint)."""
        known = {f.name for f in dataclasses.fields(cls)} - {"metrics"}
        history = cls(**{k: list(v) for k, v in columns.items() if k in known})
        history.metrics = {k: list(v) for k, v in columns.items() if k not in known}
        return history

    def record(self, name: str, value: float, row: int | None = None) -> None:
        """Set ``metrics[name]`` at ``row`` (default: the last epoch recorded).

        Rows without a value are ``nan``, so every metric lines up with ``epoch``.

        Args:
            name: The metric's name, e.g. ``"train/kl"``.
            value: Its value.
            row: The 0-based row; ``len(self)`` is the epoch about to be recorded.
        """
        row = len(self.epoch) - 1 if row is None else row
        if row < 0:
            raise ValueError(f"row must be >= 0, got {row}")
        column = self.metrics.setdefault(name, [])
        while len(column) <= row:
            column.append(math.nan)  # epochs in which the metric was not logged
        column[row] = float(value)

    def best_epoch(self, metric: str = "val_loss") -> int:
        """Return the epoch number (1-based) with the best value of ``metric``.

        Losses are minimised, accuracies maximised.

        Args:
            metric: ``"train_loss"``, ``"train_acc"``, ``"val_loss"`` or ``"val_acc"``.

        Returns:
            The epoch number.

        Raises:
            ValueError: If the history is empty or ``metric`` is not a column with values.
        """
        values = getattr(self, metric, None)
        if metric not in _COLUMNS or not values:
            raise ValueError(f"metric must be a recorded loss or accuracy column, got {metric!r}")
        finite = [(v, i) for i, v in enumerate(values) if not math.isnan(v)]
        if not finite:
            raise ValueError(f"{metric} has no recorded values (was a val_loader given?)")
        pick = min if metric.endswith("loss") else max
        return self.epoch[pick(finite)[1]]

    def __str__(self) -> str:
        lines = ["epoch  train_loss  train_acc  val_loss  val_acc  seconds"]
        for i in range(len(self)):
            lines.append(
                f"{self.epoch[i]:5d}  {self.train_loss[i]:10.4f}  {self.train_acc[i]:9.2%}  "
                f"{self.val_loss[i]:8.4f}  {self.val_acc[i]:7.2%}  {self.time[i]:7.1f}"
            )
        return "\n".join(lines)
