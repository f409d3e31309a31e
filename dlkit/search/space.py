"""Search spaces and samplers: what a hyperparameter search may try, and who picks the next try.

Used in chapter 14 (AutoML). A space is a plain dict ``{name: parameter}``; each parameter says
how Optuna samples it (:func:`suggest`) and which value it takes when a grid leaves it fixed
(:func:`grid`). :func:`make_sampler` names the strategies the chapter compares.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import optuna

__all__ = ["LogUniform", "Choice", "IntRange", "Space", "suggest", "grid", "make_sampler",
           "STRATEGIES", "log_uniform"]


@dataclasses.dataclass(frozen=True)
class LogUniform:
    """A positive float sampled uniformly on a log scale (learning rates, weight decay).

    Attributes:
        low: Smallest value (> 0).
        high: Largest value (> low).
        default: The value used where a search does not vary it.
    """

    low: float
    high: float
    default: float

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high:
            raise ValueError(f"LogUniform needs 0 < low < high, got low={self.low}, "
                             f"high={self.high}")
        if not self.low <= self.default <= self.high:
            raise ValueError(f"default {self.default} is outside [{self.low}, {self.high}]")

    def suggest(self, trial: optuna.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=True)


@dataclasses.dataclass(frozen=True)
class IntRange:
    """An integer in ``[low, high]`` (steps of ``step``), e.g. a number of stages.

    Attributes:
        low: Smallest value.
        high: Largest value.
        default: The value used where a search does not vary it.
        step: Spacing of the allowed values.
    """

    low: int
    high: int
    default: int
    step: int = 1

    def __post_init__(self) -> None:
        if self.low > self.high or self.step < 1:
            raise ValueError(f"IntRange needs low <= high and step >= 1, got {self}")
        if not self.low <= self.default <= self.high:
            raise ValueError(f"default {self.default} is outside [{self.low}, {self.high}]")

    def suggest(self, trial: optuna.Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step)


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of a few values (a width, an on/off switch).

    Attributes:
        options: The allowed values (``None``, bool, int, float or str).
        default: The value used where a search does not vary it.
        only_if: Name of an earlier parameter of the space: this one is asked for only when
            that one's value is truthy (shortcuts exist only where there are residual blocks).
            A conditional parameter keeps the sampler from spending trials on a setting that
            changes nothing.
    """

    options: tuple[Any, ...]
    default: Any
    only_if: str | None = None

    def __post_init__(self) -> None:
        if not self.options:
            raise ValueError("Choice needs at least one option")
        if self.default not in self.options:
            raise ValueError(f"default {self.default!r} is not one of {self.options}")

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.options))


Space = Mapping[str, "LogUniform | IntRange | Choice"]


def suggest(trial: optuna.Trial, space: Space) -> dict[str, Any]:
    """Ask ``trial`` for one value of every parameter of ``space``.

    Args:
        trial: The Optuna trial (its sampler decides the values).
        space: ``{name: LogUniform | IntRange | Choice}``.

    Returns:
        ``{name: value}``, in the order of ``space``; a parameter whose ``only_if`` condition
        is false is left out.

    Raises:
        KeyError: ``only_if`` names a parameter that does not come earlier in ``space``.
    """
    values: dict[str, Any] = {}
    for name, param in space.items():
        condition = getattr(param, "only_if", None)
        if condition is not None:
            if condition not in values:
                raise KeyError(f"{name} is conditional on {condition!r}, which must be an "
                               f"earlier parameter of the space {list(space)}")
            if not values[condition]:
                continue
        values[name] = param.suggest(trial, name)
    return values


def grid(space: Space, points: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """The search space of Optuna's ``GridSampler``: ``points`` for some names, defaults elsewhere.

    Grid search on a budget varies a few parameters and fixes the rest; the grid sampler still
    needs a list for every parameter the objective asks for, so the fixed ones get
    ``[default]``.

    Args:
        space: The full space.
        points: The values to try for the parameters the grid varies.

    Returns:
        ``{name: list of values}`` for every name of ``space``.

    Raises:
        KeyError: ``points`` names a parameter that is not in ``space``.
    """
    unknown = set(points) - set(space)
    if unknown:
        raise KeyError(f"grid points for unknown parameters {sorted(unknown)}; "
                       f"the space has {list(space)}")
    return {name: list(points.get(name, [param.default])) for name, param in space.items()}


#: The strategies of chapter 14's comparison, in the order its table prints them.
STRATEGIES = ("grid", "random", "tpe", "gp")


def make_sampler(strategy: str, seed: int, *, space: Space | None = None,
                 grid_points: Mapping[str, Sequence[Any]] | None = None,
                 n_startup_trials: int = 4) -> optuna.samplers.BaseSampler:
    """A seeded Optuna sampler by name.

    Args:
        strategy: ``"grid"`` (the grid of :func:`grid`, visited in an order set by ``seed``),
            ``"random"``, ``"tpe"`` (tree-structured Parzen estimator; Bergstra et al., 2011),
            ``"gp"`` (Gaussian-process Bayesian optimisation) or ``"cmaes"`` (CMA-ES; continuous
            parameters only).
        seed: Seed of the sampler's random choices.
        space: Needed by ``"grid"``.
        grid_points: Needed by ``"grid"``: the values of the parameters it varies.
        n_startup_trials: Random trials before a model-based sampler (TPE, GP, CMA-ES) starts
            modelling. Optuna's default is 10, which on a budget of 10 trials would make them
            random search.

    Returns:
        The sampler.
    """
    if strategy == "grid":
        if space is None or grid_points is None:
            raise ValueError("the grid strategy needs space= and grid_points=")
        return optuna.samplers.GridSampler(grid(space, grid_points), seed=seed)
    if strategy == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if strategy == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials)
    if strategy == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup_trials)
    if strategy == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=n_startup_trials)
    raise ValueError(f"unknown strategy {strategy!r}; expected one of "
                     f"{STRATEGIES + ('cmaes',)}")


def log_uniform(low: float, high: float, u: float) -> float:
    """Map ``u`` in [0, 1] to ``[low, high]`` so that equal steps of ``u`` are equal ratios.

    The inverse of the log-uniform distribution's CDF: ``low * (high / low) ** u``. With ``u``
    uniform on [0, 1], a learning rate is as likely to fall in [1e-3, 1e-2] as in [1e-2, 1e-1].
    The reference of chapter 14's exercise.
    """
    if not 0 < low < high:
        raise ValueError(f"log_uniform needs 0 < low < high, got {low}, {high}")
    if not 0.0 <= u <= 1.0:
        raise ValueError(f"u must be in [0, 1], got {u}")
    return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
