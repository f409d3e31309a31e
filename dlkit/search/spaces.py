"""The two search spaces of chapter 14, by name (worker processes receive the name as JSON).

- ``"hyperparameters"``: the training recipe of a fixed chapter 04 network (``SmallCNN``,
  3 stages): learning rate, weight decay, width, and the augmentation's strength.
- ``"architecture"``: a small architecture search over chapter 04's families: stages, width,
  residual blocks per stage (0 = the plain conv-pool stages of ``SmallCNN``) and, where there
  are blocks, whether they have shortcuts; the recipe is fixed at chapter 04's default.
"""

from __future__ import annotations

from dlkit.search.space import Choice, IntRange, LogUniform, Space

__all__ = ["HYPERPARAMETERS", "ARCHITECTURE", "GRID_POINTS", "SPACES", "grid_points"]

#: The recipe: chapter 04's defaults are lr 0.2, weight decay 5e-4, padding 4.
HYPERPARAMETERS: Space = {
    "lr": LogUniform(1e-3, 1.0, default=0.2),
    "weight_decay": LogUniform(1e-5, 1e-2, default=5e-4),
    "width": Choice((8, 16, 24), default=16),
    "padding": IntRange(0, 4, default=4),
}

#: What grid search varies on a budget of 10 trials: the two parameters that usually matter
#: most, five learning rates by two weight decays; the others stay at their defaults.
GRID_POINTS = {"lr": [0.01, 0.03, 0.1, 0.3, 1.0], "weight_decay": [5e-5, 5e-4]}


def grid_points(n_trials: int) -> dict[str, list[float]]:
    """The grid for a budget of ``n_trials``: :data:`GRID_POINTS` (10 points) up to 10 trials,
    five learning rates by four weight decays (20 points) beyond.

    A grid larger than the budget is visited in part; a smaller one ends the study early, so
    the comparison of strategies keeps the grid at least as large as the budget (up to 20).
    """
    if n_trials <= 10:
        return {k: list(v) for k, v in GRID_POINTS.items()}
    return {"lr": [0.01, 0.03, 0.1, 0.3, 1.0], "weight_decay": [5e-5, 2e-4, 5e-4, 2e-3]}

#: Chapter 04's families; the recipe is fixed (its defaults).
ARCHITECTURE: Space = {
    "stages": IntRange(2, 4, default=3),
    "width": Choice((8, 16, 24), default=16),
    "blocks": IntRange(0, 2, default=0),
    "residual": Choice((True, False), default=True, only_if="blocks"),
}

SPACES = {"hyperparameters": HYPERPARAMETERS, "architecture": ARCHITECTURE}
