"""Hyperparameter and architecture search with Optuna (chapter 14, AutoML).

Modules, bottom to top:

- :mod:`dlkit.search.space`: parameters (:class:`LogUniform`, :class:`IntRange`,
  :class:`Choice`), :func:`suggest`, :func:`grid` and the strategies' samplers
  (:func:`make_sampler`).
- :mod:`dlkit.search.spaces`: the chapter's two spaces, recipe and architecture, by name.
- :mod:`dlkit.search.objective`: the data of a search, :func:`fit_config` and :func:`train_config` (chapter
  04's recipe on one configuration), :class:`PruningCallback` and :func:`make_objective`.
- :mod:`dlkit.search.studies`: :func:`run_study`, :func:`best_so_far`, :func:`pruning_summary`.
- :mod:`dlkit.search.workers`: worker processes sharing a study through its storage, with
  heartbeats, retries of dead trials, :func:`kill_mid_trial` to test them and an :func:`audit`
  of the result.
"""

from dlkit.search.objective import (PruningCallback, SearchData, build_model, fit_config,
                                    make_objective, search_data, train_config)
from dlkit.search.space import (STRATEGIES, Choice, IntRange, LogUniform, grid, log_uniform,
                                make_sampler, suggest)
from dlkit.search.spaces import ARCHITECTURE, GRID_POINTS, HYPERPARAMETERS, SPACES, grid_points
from dlkit.search.studies import best_so_far, finished_trials, pruning_summary, run_study
from dlkit.search.workers import (Audit, audit, kill_mid_trial, open_storage, start_workers,
                                  stop_workers, wait_workers)

__all__ = ["LogUniform", "IntRange", "Choice", "suggest", "grid", "make_sampler", "STRATEGIES",
           "log_uniform", "HYPERPARAMETERS", "ARCHITECTURE", "GRID_POINTS", "SPACES", "grid_points",
           "SearchData", "search_data", "build_model", "PruningCallback", "fit_config", "train_config",
           "make_objective", "run_study", "best_so_far", "finished_trials", "pruning_summary",
           "open_storage", "start_workers", "stop_workers", "wait_workers", "kill_mid_trial", "audit",
           "Audit"]
