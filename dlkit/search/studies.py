"""Running and reading Optuna studies: one strategy on one budget, best-so-far curves, summaries.

Used in chapter 14 (AutoML) to compare strategies on the same number of trials and seeds
(:func:`run_study`, :func:`best_so_far`) and to measure what pruning saves
(:func:`pruning_summary`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from dlkit.search.space import Space, make_sampler

__all__ = ["run_study", "best_so_far", "finished_trials", "pruning_summary"]


def run_study(strategy: str, objective: Callable[[optuna.Trial], float], *, n_trials: int,
              seed: int, space: Space | None = None,
              grid_points: Mapping[str, Sequence[Any]] | None = None,
              pruner: optuna.pruners.BasePruner | None = None, storage: Any = None,
              study_name: str | None = None, n_startup_trials: int = 4) -> optuna.Study:
    """Run ``n_trials`` of ``objective`` with one strategy's sampler (maximising).

    Args:
        strategy: A name of :func:`dlkit.search.space.make_sampler`.
        objective: ``objective(trial) -> score``.
        n_trials: The budget, in trials.
        seed: Seed of the sampler.
        space: The space (the grid strategy needs it).
        grid_points: What the grid varies.
        pruner: Optuna pruner (default: none, every trial runs to the end).
        storage: Optuna storage or URL; ``None`` keeps the study in memory.
        study_name: Name in the storage.
        n_startup_trials: Random trials before a model-based sampler models.

    Returns:
        The finished study.
    """
    sampler = make_sampler(strategy, seed, space=space, grid_points=grid_points,
                           n_startup_trials=n_startup_trials)
    study = optuna.create_study(direction="maximize", sampler=sampler,
                                pruner=pruner or optuna.pruners.NopPruner(), storage=storage,
                                study_name=study_name, load_if_exists=study_name is not None)
    study.optimize(objective, n_trials=n_trials)
    return study


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Completed and pruned trials, in the order they were created."""
    states = (TrialState.COMPLETE, TrialState.PRUNED)
    return sorted(study.get_trials(deepcopy=False, states=states), key=lambda t: t.number)


def best_so_far(study: optuna.Study) -> np.ndarray:
    """The best completed score after each trial (pruned trials score nothing).

    Returns:
        A float array with one entry per finished trial; ``nan`` until the first completion.
    """
    best, curve = -math.inf, []
    for t in finished_trials(study):
        if t.state == TrialState.COMPLETE and t.value is not None:
            best = max(best, t.value)
        curve.append(best if best > -math.inf else math.nan)
    return np.asarray(curve, dtype=float)


def pruning_summary(study: optuna.Study, max_epochs: int) -> dict[str, float]:
    """What pruning saved in a study whose trials report one value per epoch.

    Args:
        study: A study run with a pruner and :class:`~dlkit.search.objective.PruningCallback`.
        max_epochs: Epochs of a trial that is not pruned.

    Returns:
        ``trials``, ``pruned``, ``epochs`` (trained in all), ``epochs_without_pruning``
        (``trials * max_epochs``), ``saved`` (the fraction of epochs saved), ``seconds``
        (summed trial time) and ``best`` (best completed score).
    """
    trials = finished_trials(study)
    epochs = sum(int(t.user_attrs.get("epochs", max_epochs)) for t in trials)
    full = len(trials) * max_epochs
    complete = [t.value for t in trials if t.state == TrialState.COMPLETE]
    return {"trials": len(trials),
            "pruned": sum(t.state == TrialState.PRUNED for t in trials),
            "epochs": epochs, "epochs_without_pruning": full,
            "saved": 1 - epochs / full if full else 0.0,
            "seconds": sum(float(t.user_attrs.get("seconds", 0.0)) for t in trials),
            "best": max(complete) if complete else math.nan}
