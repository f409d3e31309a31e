"""dlkit.search (chapter 14, AutoML): spaces, samplers, the objective, study summaries, workers.

Everything trains on the procedural ``"shapes"`` set (no files), a few hundred images
downsampled to 16×16, so a trial takes a fraction of a second. The bookkeeping functions
(:func:`best_so_far`, :func:`pruning_summary`, :func:`audit`) are checked on studies built
by hand with ``optuna.trial.create_trial``, where the right answer is known. The one test
marked ``slow`` starts two real worker processes on a SQLite study and kills one mid-trial.
"""

from __future__ import annotations

import itertools
import math
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState, create_trial

from dlkit import data as dlkit_data
from dlkit.models import ResNetCIFAR, SmallCNN
from dlkit.search import (ARCHITECTURE, GRID_POINTS, HYPERPARAMETERS, STRATEGIES, Choice,
                          IntRange, LogUniform, audit, best_so_far, build_model, grid,
                          kill_mid_trial, log_uniform, make_objective, make_sampler, open_storage,
                          pruning_summary, search_data, start_workers, stop_workers, suggest,
                          train_config, wait_workers)
from dlkit.search.workers import FINISHED

pytestmark = pytest.mark.usefixtures("one_thread")
optuna.logging.set_verbosity(optuna.logging.WARNING)

TINY = {"width": 8, "stages": 2}  # the fastest network of the families


@pytest.fixture(scope="module")
def tiny():
    # 100 images = one batch per epoch: a 1-epoch trial is one SGD step.
    return search_data("shapes", 100, 40, downsample=2)


# --- parameters ---------------------------------------------------------------------------- #
@pytest.mark.parametrize("low, high, default, match", [
    (0.0, 1.0, 0.5, "0 < low < high"),
    (-1e-3, 1.0, 0.5, "0 < low < high"),
    (1.0, 1e-3, 0.5, "0 < low < high"),
    (1e-3, 1.0, 2.0, "outside"),
    (1e-3, 1.0, 1e-4, "outside"),
])
def test_log_uniform_rejects_non_positive_bounds_and_a_default_outside(low, high, default, match):
    with pytest.raises(ValueError, match=match):
        LogUniform(low, high, default=default)


def test_int_range_and_choice_reject_bad_input():
    with pytest.raises(ValueError, match="low <= high"):
        IntRange(3, 2, default=2)
    with pytest.raises(ValueError, match="step >= 1"):
        IntRange(0, 4, default=2, step=0)
    with pytest.raises(ValueError, match="outside"):
        IntRange(0, 4, default=5)
    with pytest.raises(ValueError, match="not one of"):
        Choice((8, 16, 24), default=32)
    with pytest.raises(ValueError, match="at least one option"):
        Choice((), default=None)
    # Valid edge cases are accepted.
    assert IntRange(2, 2, default=2).default == 2
    assert Choice((None,), default=None).options == (None,)


def test_chapter_spaces_have_valid_defaults_and_grid_points_inside_them():
    for name, values in GRID_POINTS.items():
        param = HYPERPARAMETERS[name]
        assert all(param.low <= v <= param.high for v in values)
    assert list(ARCHITECTURE) == ["stages", "width", "blocks", "residual"]


def test_grid_fills_fixed_parameters_with_their_default():
    g = grid(HYPERPARAMETERS, GRID_POINTS)
    assert list(g) == list(HYPERPARAMETERS)  # every name, in the space's order
    assert g["lr"] == GRID_POINTS["lr"] and g["weight_decay"] == GRID_POINTS["weight_decay"]
    assert g["width"] == [16] and g["padding"] == [4]
    assert grid(HYPERPARAMETERS, {}) == {"lr": [0.2], "weight_decay": [5e-4], "width": [16],
                                         "padding": [4]}


def test_grid_raises_key_error_for_an_unknown_name():
    with pytest.raises(KeyError, match="momentum"):
        grid(HYPERPARAMETERS, {"lr": [0.1], "momentum": [0.9]})


# --- samplers ------------------------------------------------------------------------------ #
@pytest.mark.parametrize("strategy, cls", [
    ("grid", optuna.samplers.GridSampler), ("random", optuna.samplers.RandomSampler),
    ("tpe", optuna.samplers.TPESampler), ("gp", optuna.samplers.GPSampler),
    ("cmaes", optuna.samplers.CmaEsSampler),
])
def test_make_sampler_returns_the_named_optuna_sampler(strategy, cls):
    sampler = make_sampler(strategy, 0, space=HYPERPARAMETERS, grid_points=GRID_POINTS)
    assert type(sampler) is cls


def test_every_strategy_of_the_comparison_has_a_sampler():
    assert STRATEGIES == ("grid", "random", "tpe", "gp")
    for strategy in STRATEGIES:
        assert isinstance(make_sampler(strategy, 0, space=HYPERPARAMETERS,
                                       grid_points=GRID_POINTS), optuna.samplers.BaseSampler)


def test_make_sampler_rejects_an_unknown_name_and_a_grid_without_its_points():
    with pytest.raises(ValueError, match="unknown strategy 'bohb'"):
        make_sampler("bohb", 0)
    with pytest.raises(ValueError, match="space= and grid_points="):
        make_sampler("grid", 0)
    with pytest.raises(ValueError, match="space= and grid_points="):
        make_sampler("grid", 0, space=HYPERPARAMETERS)
    with pytest.raises(ValueError, match="space= and grid_points="):
        make_sampler("grid", 0, grid_points=GRID_POINTS)


def _sampled(strategy, seed, n, space=HYPERPARAMETERS, **kwargs):
    study = optuna.create_study(direction="maximize",
                                sampler=make_sampler(strategy, seed, space=space, **kwargs))
    study.optimize(lambda t: float(len(suggest(t, space))), n_trials=n)
    return [t.params for t in study.trials]


def test_grid_sampler_visits_every_grid_point_once_with_the_rest_at_defaults():
    params = _sampled("grid", 0, 10, grid_points=GRID_POINTS)
    visited = {(p["lr"], p["weight_decay"]) for p in params}
    assert visited == set(itertools.product(GRID_POINTS["lr"], GRID_POINTS["weight_decay"]))
    assert {p["width"] for p in params} == {16} and {p["padding"] for p in params} == {4}
    # The seed sets the order: repeatable for one seed.
    assert _sampled("grid", 0, 10, grid_points=GRID_POINTS) == params


@pytest.mark.parametrize("strategy", ["random", "tpe"])
def test_samplers_are_repeatable_for_a_seed(strategy):
    a, b = _sampled(strategy, 3, 6), _sampled(strategy, 3, 6)
    assert a == b
    assert _sampled(strategy, 4, 6) != a
    for p in a:  # inside the space
        assert 1e-3 <= p["lr"] <= 1.0 and p["width"] in (8, 16, 24) and 0 <= p["padding"] <= 4


# --- log_uniform --------------------------------------------------------------------------- #
def test_log_uniform_hits_both_ends_and_the_geometric_midpoint():
    assert log_uniform(1e-3, 1.0, 0.0) == pytest.approx(1e-3, rel=1e-12)
    assert log_uniform(1e-3, 1.0, 1.0) == pytest.approx(1.0, rel=1e-12)
    assert log_uniform(1e-3, 1.0, 0.5) == pytest.approx(math.sqrt(1e-3), rel=1e-12)
    assert log_uniform(2.0, 8.0, 0.5) == pytest.approx(4.0, rel=1e-12)
    # Equal steps of u are equal ratios: a decade per third here.
    values = [log_uniform(1e-3, 1.0, u) for u in (0.0, 1 / 3, 2 / 3, 1.0)]
    assert np.allclose(np.diff(np.log10(values)), 1.0)


@pytest.mark.parametrize("low, high, u, match", [
    (0.0, 1.0, 0.5, "0 < low < high"), (-1.0, 1.0, 0.5, "0 < low < high"),
    (1.0, 1.0, 0.5, "0 < low < high"), (1e-3, 1.0, -0.1, r"\[0, 1\]"),
    (1e-3, 1.0, 1.5, r"\[0, 1\]"),
])
def test_log_uniform_rejects_bad_input(low, high, u, match):
    with pytest.raises(ValueError, match=match):
        log_uniform(low, high, u)


# --- suggest ------------------------------------------------------------------------------- #
def test_suggest_on_a_fixed_trial_returns_its_values_in_the_space_order():
    values = {"padding": 2, "width": 24, "weight_decay": 1e-4, "lr": 0.05}  # another order
    config = suggest(optuna.trial.FixedTrial(values), HYPERPARAMETERS)
    assert config == values
    assert list(config) == list(HYPERPARAMETERS)
    arch = suggest(optuna.trial.FixedTrial({"stages": 4, "width": 8, "blocks": 2,
                                            "residual": False}), ARCHITECTURE)
    assert arch == {"stages": 4, "width": 8, "blocks": 2, "residual": False}


# --- build_model --------------------------------------------------------------------------- #
def test_build_model_gives_small_cnn_without_blocks():
    model = build_model({"width": 8, "stages": 4, "blocks": 0})
    assert isinstance(model, SmallCNN)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.modules()) == 4
    assert model.features[0][0].out_channels == 8
    assert isinstance(build_model({}), SmallCNN)  # blocks default to 0


@pytest.mark.parametrize("residual", [True, False])
def test_build_model_gives_a_resnet_with_blocks_and_honours_residual(residual):
    model = build_model({"width": 8, "stages": 3, "blocks": 2, "residual": residual})
    assert isinstance(model, ResNetCIFAR)
    assert [len(stage) for stage in model.stages] == [2, 2, 2]
    assert all(block.residual is residual for stage in model.stages for block in stage)
    assert build_model({"blocks": 1}).stages[0][0].residual is True  # the default


@pytest.mark.parametrize("config", [
    {"width": 8, "stages": 3},
    {"width": 8, "stages": 4},
    {"width": 8, "stages": 2, "blocks": 1, "residual": True},
    {"width": 8, "stages": 3, "blocks": 2, "residual": False},
])
@pytest.mark.parametrize("size", [32, 16])
def test_build_model_outputs_ten_scores_for_full_and_downsampled_images(config, size):
    model = build_model(config).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 3, size, size)).shape == (3, 10)
    assert build_model(config, num_classes=4).eval()(torch.randn(2, 3, size, size)).shape == (2, 4)


# --- search_data --------------------------------------------------------------------------- #
def _rows(X):
    return [x.numpy().tobytes() for x in X]


def test_search_data_returns_disjoint_stratified_subsets_of_the_training_split():
    d = search_data("shapes", 200, 100, seed=0)
    full = dlkit_data.load("shapes", "train")
    assert len(full) == 4000
    # Find each image in the whole split normalised alike: that gives the subsets' indices.
    X_full, y_full = dlkit_data.to_tensors(full, d.mean, d.std)
    where = {row: i for i, row in enumerate(_rows(X_full))}
    train = [where[row] for row in _rows(d.X_train)]
    val = [where[row] for row in _rows(d.X_val)]
    assert len(set(train)) == 200 and len(set(val)) == 100 and not set(train) & set(val)
    assert torch.equal(y_full[train], d.y_train) and torch.equal(y_full[val], d.y_val)
    # Four balanced classes: 50 and 25 of each.
    assert torch.bincount(d.y_train, minlength=4).tolist() == [50] * 4
    assert torch.bincount(d.y_val, minlength=4).tolist() == [25] * 4
    assert d.classes == ["circle", "square", "triangle", "cross"] and d.downsample == 1
    # Normalised with the training subset's statistics.
    assert d.X_train.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert torch.allclose(d.X_train.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-2)


def test_search_data_downsample_halves_the_images_by_averaging():
    full, half = search_data("shapes", 200, 100), search_data("shapes", 200, 100, downsample=2)
    assert half.X_train.shape == (200, 3, 16, 16) and half.X_val.shape == (100, 3, 16, 16)
    assert half.downsample == 2
    assert torch.allclose(half.X_train, torch.nn.functional.avg_pool2d(full.X_train, 2))
    assert torch.allclose(half.X_val, torch.nn.functional.avg_pool2d(full.X_val, 2))
    assert torch.equal(half.y_train, full.y_train) and torch.equal(half.mean, full.mean)


def test_search_data_seed_picks_the_subset():
    a, b = search_data("shapes", 100, 40, seed=0), search_data("shapes", 100, 40, seed=0)
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.X_val, b.X_val)
    c = search_data("shapes", 100, 40, seed=1)
    assert not torch.equal(a.X_val, c.X_val)


def test_search_data_rejects_more_images_than_the_split_has():
    with pytest.raises(ValueError, match="exceeds the 4000 training images of shapes"):
        search_data("shapes", 3500, 501)


# --- the objective ------------------------------------------------------------------------- #
def test_train_config_returns_a_repeatable_accuracy_in_the_unit_interval(tiny):
    acc = train_config(TINY, tiny, epochs=1, device="cpu")
    assert isinstance(acc, float) and 0.0 <= acc <= 1.0
    assert train_config(TINY, tiny, epochs=1, device="cpu") == acc  # same seed, same run


def test_a_diverged_run_is_nan_for_train_config_and_zero_for_the_objective(tiny):
    # A huge learning rate makes the second epoch's training loss nan; fit raises, the
    # objective turns that into the score of a configuration that did not learn.
    assert math.isnan(train_config({**TINY, "lr": 1e30}, tiny, epochs=2, device="cpu"))
    objective = make_objective(tiny, {"width": Choice((8,), default=8)}, epochs=2,
                               device="cpu", fixed={"stages": 2, "lr": 1e30})
    assert objective(optuna.trial.FixedTrial({"width": 8})) == 0.0


def test_objective_records_pid_epochs_and_seconds(tiny):
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    space = {"lr": LogUniform(0.01, 0.1, default=0.05)}
    study.optimize(make_objective(tiny, space, epochs=2, device="cpu", fixed=TINY), n_trials=2)
    for t in study.trials:
        assert t.state == TrialState.COMPLETE and 0.0 <= t.value <= 1.0
        assert t.user_attrs["epochs"] == 2 and t.user_attrs["seconds"] > 0
        assert t.user_attrs["worker_pid"] > 0 and list(t.params) == ["lr"]


@pytest.fixture(scope="module")
def pruned_study(tiny):
    # A pruner that gives up on every trial at its first report (accuracy is never >= 1.01).
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0),
                                pruner=optuna.pruners.ThresholdPruner(lower=1.01))
    space = {"lr": LogUniform(0.01, 0.1, default=0.05)}
    study.optimize(make_objective(tiny, space, epochs=3, device="cpu", fixed=TINY, prune=True),
                   n_trials=3)
    return study


def test_pruning_stops_trials_after_their_first_epoch(pruned_study):
    assert [t.state for t in pruned_study.trials] == [TrialState.PRUNED] * 3
    for t in pruned_study.trials:
        assert t.user_attrs["epochs"] == 1
        assert list(t.intermediate_values) == [1]  # one report, for epoch 1
        assert 0.0 <= t.intermediate_values[1] <= 1.0


def test_pruning_summary_counts_the_epochs_saved(pruned_study):
    s = pruning_summary(pruned_study, max_epochs=3)
    assert s["trials"] == 3 and s["pruned"] == 3
    assert s["epochs"] == 3 and s["epochs_without_pruning"] == 9
    assert s["saved"] == pytest.approx(2 / 3)
    assert s["seconds"] == pytest.approx(sum(t.user_attrs["seconds"]
                                             for t in pruned_study.trials))
    assert math.isnan(s["best"])  # nothing completed


def test_pruning_summary_with_a_completed_trial_and_a_failed_one():
    study = optuna.create_study(direction="maximize")
    study.add_trial(create_trial(state=TrialState.PRUNED, user_attrs={"epochs": 1}))
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.6,
                                 user_attrs={"epochs": 4, "seconds": 2.0}))
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"epochs": 2}))  # not counted
    study.add_trial(create_trial(state=TrialState.PRUNED, user_attrs={"epochs": 2,
                                                                      "seconds": 0.5}))
    s = pruning_summary(study, max_epochs=4)
    assert s == {"trials": 3, "pruned": 2, "epochs": 7, "epochs_without_pruning": 12,
                 "saved": pytest.approx(5 / 12), "seconds": 2.5, "best": 0.6}
    assert pruning_summary(optuna.create_study(), max_epochs=4)["saved"] == 0.0  # no trials


def test_best_so_far_skips_failures_and_carries_the_best_through_pruned_trials():
    study = optuna.create_study(direction="maximize")
    for state, value in [(TrialState.PRUNED, None), (TrialState.FAIL, None),
                         (TrialState.COMPLETE, 0.5), (TrialState.PRUNED, None),
                         (TrialState.COMPLETE, 0.3), (TrialState.COMPLETE, 0.7),
                         (TrialState.COMPLETE, 0.6)]:
        study.add_trial(create_trial(state=state, value=value))
    curve = best_so_far(study)
    assert curve.dtype == float and len(curve) == 6  # the failed trial has no entry
    assert math.isnan(curve[0])
    assert curve[1:].tolist() == [0.5, 0.5, 0.5, 0.7, 0.7]


# --- audit --------------------------------------------------------------------------------- #
def _study(*trials):
    study = optuna.create_study(direction="maximize")
    for state, system_attrs in trials:
        study.add_trial(create_trial(state=state, value=0.5 if state == TrialState.COMPLETE
                                     else None, system_attrs=system_attrs or {}))
    return study


def _retry_of(number):  # what RetryHeartbeatStaleTrialCallback writes on the copy it queues
    return {"failed_trial": number, "retry_history": [number]}


def test_audit_of_a_study_where_every_trial_finished_is_ok():
    a = audit(_study((TrialState.COMPLETE, None), (TrialState.PRUNED, None),
                     (TrialState.COMPLETE, None)))
    assert a.ok and a.finished == 3 and a.failed == 0
    assert a.retried == {} and a.lost == [] and a.duplicates == [] and a.unfinished == []


def test_audit_reports_a_failed_trial_without_a_retry_as_lost():
    a = audit(_study((TrialState.COMPLETE, None), (TrialState.FAIL, None),
                     (TrialState.COMPLETE, None)))
    assert not a.ok and a.lost == [1] and a.failed == 1 and a.finished == 2


def test_audit_accepts_a_failed_trial_whose_retry_finished():
    a = audit(_study((TrialState.FAIL, None), (TrialState.COMPLETE, None),
                     (TrialState.COMPLETE, _retry_of(0))))
    assert a.ok and a.retried == {0: 2} and a.failed == 1 and a.lost == []
    # A retry that was pruned counts as finished too.
    assert audit(_study((TrialState.FAIL, None), (TrialState.PRUNED, _retry_of(0)))).ok


def test_audit_reports_a_retry_that_failed_again_or_never_ran():
    failed_again = audit(_study((TrialState.FAIL, None), (TrialState.FAIL, _retry_of(0))))
    assert not failed_again.ok and failed_again.lost == [0, 1] and failed_again.failed == 2
    queued = audit(_study((TrialState.FAIL, None), (TrialState.WAITING, _retry_of(0))))
    assert not queued.ok and queued.unfinished == [1] and queued.lost == [0]
    running = audit(_study((TrialState.COMPLETE, None), (TrialState.RUNNING, None)))
    assert not running.ok and running.unfinished == [1] and running.lost == []


def test_audit_reports_two_finished_trials_of_one_chain_as_duplicates():
    a = audit(_study((TrialState.COMPLETE, None), (TrialState.COMPLETE, _retry_of(0))))
    assert not a.ok and a.duplicates == [0] and a.lost == []
    b = audit(_study((TrialState.FAIL, None), (TrialState.COMPLETE, _retry_of(0)),
                     (TrialState.PRUNED, _retry_of(0))))
    assert not b.ok and b.duplicates == [0]


# --- worker processes ---------------------------------------------------------------------- #
# About 0.1-0.3 s per trial: short enough that a trial seen running often finishes before a
# plain SIGKILL lands, which kill_mid_trial must not be fooled by.
WORKER_CONFIG = {"dataset": "shapes", "n_train": 200, "n_val": 100, "downsample": 2,
                 "epochs": 2, "device": "cpu", "space": "hyperparameters"}


@pytest.mark.slow
@pytest.mark.parametrize("after", [0, 2])
def test_a_worker_killed_mid_trial_has_its_trial_retried_once_and_nothing_is_lost(tmp_path,
                                                                                  after):
    db, n_trials = tmp_path / "study.db", 8
    url = f"sqlite:///{db}"
    procs = start_workers(2, url, "killed", n_trials=n_trials, config=WORKER_CONFIG,
                          log_dir=tmp_path)
    try:
        victim = kill_mid_trial(url, "killed", procs[0], after=after, timeout=60,
                                ready=lambda t: len(t.params) == len(HYPERPARAMETERS))
        codes = wait_workers(procs, timeout=60)
    finally:
        stop_workers(procs)

    assert codes[0] == -signal.SIGKILL, (tmp_path / "worker-0.log").read_text()
    assert codes[1] == 0, (tmp_path / "worker-1.log").read_text()
    study = optuna.load_study(study_name="killed", storage=open_storage(url))
    trials = study.get_trials(deepcopy=False)
    killed = trials[victim]
    assert killed.state == TrialState.FAIL and killed.user_attrs["worker_pid"] == procs[0].pid
    assert sum(t.user_attrs.get("worker_pid") == procs[0].pid and t.state in FINISHED
               for t in trials) >= after
    report = audit(study)
    assert report.ok, report
    assert report.failed == 1 and list(report.retried) == [victim]
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == victim]
    assert len(retries) == 1
    retry = retries[0]
    # The same configuration, run to the end by the survivor.
    assert retry.state in FINISHED and retry.params == killed.params
    assert retry.user_attrs["worker_pid"] == procs[1].pid  # the survivor ran it
    assert report.finished >= n_trials
    assert sum(t.state in FINISHED for t in trials) == report.finished
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_kill_mid_trial_says_when_the_worker_exits_first(tmp_path):
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.create_study(storage=url, study_name="empty")
    with pytest.raises(RuntimeError, match="exited .* before one of its trials"):
        kill_mid_trial(url, "empty", done, timeout=5)


def test_a_running_trial_that_never_wrote_a_heartbeat_is_failed_and_queued_again(tmp_path):
    # A worker killed between creating a trial and its first heartbeat: Optuna's own stale
    # check skips such a trial, so the workers' drain loop fails it once the grace has passed.
    from dlkit.search.workers import _fail_silent_trials

    url = f"sqlite:///{tmp_path / 'silent.db'}"
    study = optuna.create_study(storage=open_storage(url, heartbeat_interval=1, grace_period=1),
                                direction="maximize")
    orphan = study.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 1.0, log=True)})
    _fail_silent_trials(study)
    assert study.trials[orphan.number].state == TrialState.RUNNING  # still within the grace
    time.sleep(2.2)
    _fail_silent_trials(study)
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.WAITING], states
    assert study.trials[1].params == study.trials[0].params


def test_a_conditional_parameter_is_asked_for_only_when_its_condition_holds():
    plain = suggest(optuna.trial.FixedTrial({"stages": 3, "width": 8, "blocks": 0}), ARCHITECTURE)
    assert plain == {"stages": 3, "width": 8, "blocks": 0}  # no shortcuts without blocks
    res = suggest(optuna.trial.FixedTrial({"stages": 3, "width": 8, "blocks": 1,
                                           "residual": False}), ARCHITECTURE)
    assert res["residual"] is False
    with pytest.raises(KeyError, match="earlier parameter"):
        suggest(optuna.trial.FixedTrial({"a": 1}), {"a": Choice((0, 1), 0, only_if="b"),
                                                    "b": Choice((0, 1), 0)})
