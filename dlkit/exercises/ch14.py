"""Exercise checks of chapter 14 (AutoML)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

from dlkit.exercises.feedback import Feedback, _right, _wrong

__all__ = ["LEAKY_SEARCH", "check_log_uniform", "check_search_space", "check_search_leak"]

# The listing of the "spot the leak" exercise; line numbers as printed by the chapter.
LEAKY_SEARCH = """\
1  data = search_data("cifar10", n_train=2_000, n_val=1_000)
2  objective = make_objective(data, HYPERPARAMETERS, epochs=2)
3  study = run_study("tpe", objective, n_trials=30, seed=0)
4  finalists = sorted(study.get_trials(states=[COMPLETE]), key=lambda t: t.value)[-3:]
5  best = max(finalists, key=lambda t: test_accuracy(t.params))
6  print(best.params, test_accuracy(best.params))"""


def check_log_uniform(fn: Callable[[float, float, float], object]) -> Feedback:
    """Check ``fn(low, high, u)``: maps ``u`` in [0, 1] onto [low, high] on a log scale.

    Equal steps of ``u`` must multiply the value by equal factors, so that a uniform ``u``
    gives a log-uniform value. Used in chapter 14.

    Args:
        fn: The learner's function.

    Returns:
        The :class:`Feedback`.
    """
    low, high = 1e-4, 1e-1
    cases = [(0.0, low), (1.0, high), (0.5, math.sqrt(low * high)), (1 / 3, 1e-3),
             (2 / 3, 1e-2)]
    got = {}
    for u, want in cases:
        try:
            value = fn(low, high, u)
        except Exception as err:  # noqa: BLE001 (the learner's code may fail in any way)
            return _wrong(f"fn({low}, {high}, {u:.3f}) raised {type(err).__name__}: {err}")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return _wrong(f"fn({low}, {high}, {u:.3f}) returned {value!r}; expected a number.")
        got[u] = float(value)
    if not (math.isclose(got[0.0], low, rel_tol=1e-9) and math.isclose(got[1.0], high, rel_tol=1e-9)):
        return _wrong(f"u = 0 and u = 1 should give the ends {low} and {high}; got {got[0.0]:.3g} "
                      f"and {got[1.0]:.3g}.", "u = 0 is the smallest value, u = 1 the largest.")
    for u, want in cases[2:]:
        if not math.isclose(got[u], want, rel_tol=1e-6):
            linear = low + u * (high - low)
            hint = ("that is a straight line between the ends: equal steps of u add equal "
                    "amounts, so 90% of the samples land above 0.01. Interpolate the exponent "
                    "instead of the value." if math.isclose(got[u], linear, rel_tol=1e-6)
                    else "equal steps of u should multiply the value by equal factors: the value "
                         "at u = 1/3 is ten times the value at u = 0 here.")
            return _wrong(f"fn({low}, {high}, {u:.3f}) = {got[u]:.4g}, expected {want:.4g}.", hint)
    return _right("each third of u covers one decade (1e-4 → 1e-3 → 1e-2 → 1e-1), so a search "
                  "spends as many trials between 0.001 and 0.01 as between 0.01 and 0.1.")


def check_search_space(fn: Callable[[object], object]) -> Feedback:
    """Check ``fn(trial)``: asks an Optuna trial for the chapter's four-parameter space.

    Expected: ``lr`` log-uniform on [1e-4, 1e-1], ``weight_decay`` log-uniform on
    [1e-6, 1e-2], ``width`` one of 16, 32, 64, ``stages`` an integer from 2 to 4. Used in
    chapter 14.

    Args:
        fn: The learner's function; it calls ``trial.suggest_*`` and returns the values.

    Returns:
        The :class:`Feedback`.
    """
    import optuna
    from optuna.distributions import (CategoricalDistribution, FloatDistribution,
                                      IntDistribution)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    try:
        values = fn(trial)
    except Exception as err:  # noqa: BLE001 (the learner's code may fail in any way)
        return _wrong(f"fn(trial) raised {type(err).__name__}: {err}")
    dist = trial.distributions
    missing = [n for n in ("lr", "weight_decay", "width", "stages") if n not in dist]
    if missing:
        said = ", ".join(n.replace("_", " ") for n in missing)
        return _wrong(f"the trial was asked for {len(dist)} parameter(s) and never for: {said}.",
                      "each parameter needs a suggest call of its own on the trial, under the "
                      "name the task gives it.")
    for name, (low, high) in {"lr": (1e-4, 1e-1), "weight_decay": (1e-6, 1e-2)}.items():
        d = dist[name]
        if not isinstance(d, FloatDistribution):
            return _wrong(f"{name} was sampled as {type(d).__name__}; a rate is a float.")
        if (d.low, d.high) != (low, high):
            return _wrong(f"{name} ranges over [{d.low}, {d.high}], expected [{low}, {high}].")
        if not d.log:
            return _wrong(f"{name} is sampled uniformly on a linear scale.",
                          "a rate that matters by its order of magnitude needs the log scale "
                          "option of suggest_float.")
    if not isinstance(dist["width"], CategoricalDistribution) or \
            sorted(dist["width"].choices) != [16, 32, 64]:
        return _wrong(f"width is {dist['width']}; expected a choice among 16, 32 and 64.",
                      "a few unrelated values are categories, not a range.")
    d = dist["stages"]
    if not isinstance(d, IntDistribution) or (d.low, d.high, d.step, d.log) != (2, 4, 1, False):
        return _wrong(f"stages is {d}; expected every integer from 2 to 4.")
    if not isinstance(values, dict) or set(values) != {"lr", "weight_decay", "width", "stages"}:
        return _wrong(f"fn should return the four values as a dict keyed by name; got {values!r}.")
    if any(values[n] != trial.params[n] for n in values):
        return _wrong("the returned values differ from what the trial sampled.")
    return _right("this space is what a sampler sees: two log-scale floats, a category and an "
                  "integer range. The same function works with every Optuna sampler.")


def check_search_leak(answer: object) -> Feedback:
    """Check the line of :data:`LEAKY_SEARCH` where the test set chooses the model.

    Used in chapter 14.

    Args:
        answer: The learner's line number (an int).

    Returns:
        The :class:`Feedback`.
    """
    if isinstance(answer, bool) or not isinstance(answer, numbers.Integral):
        return _wrong(f"expected a line number, got {answer!r}.")
    line = int(answer)
    if line == 5:
        return _right("the finalists are ranked by their test accuracy, so the test set picks the "
                      "model and the printed score is the best of three draws: optimistic. Rank "
                      "them on validation and open the test set once, for the winner.")
    if line == 6:
        return _wrong("line 6 reports a test score: that alone is the one allowed use.",
                      "which line lets the test score decide between models?")
    if 1 <= line <= 4:
        return _wrong(f"line {line} uses the training and validation subsets only.",
                      "look for a comparison between configurations made on held-out data.")
    return _wrong(f"the listing has lines 1 to 6, got {line}.")
