"""Parallel search: worker processes that share one Optuna study through its storage.

Used in chapter 14 (AutoML) and ``benchmarks/search_workers.py``. Each worker is a separate
Python process (``python -m dlkit.search``) that opens the same storage, asks it for
the next trial, trains, and writes the result back; the storage is the only thing workers
share, so the same command runs on many machines once ``--storage`` is a database URL that all
of them reach (``postgresql://user:password@host/db``; here, a SQLite file).

A worker that dies mid-trial would leave its trial ``RUNNING`` for ever. :func:`open_storage`
turns on Optuna's heartbeat: a running trial's process writes a heartbeat every
``heartbeat_interval`` seconds; a trial whose heartbeat is older than ``grace_period`` is
marked failed by the next worker that asks for a trial, and
:class:`optuna.storages.RetryHeartbeatStaleTrialCallback` puts a copy of its parameters back in the
queue, once. :func:`audit` checks the result: no trial lost, none run twice.

Run a worker by hand::

    python -m dlkit.search --storage sqlite:///study.db --study cifar \\
        --n-trials 20 --config '{"epochs": 2}'
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

__all__ = ["open_storage", "start_workers", "stop_workers", "wait_workers", "kill_mid_trial",
           "audit", "Audit", "main"]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def open_storage(url: str, *, heartbeat_interval: int = 1, grace_period: int = 3,
                 max_retry: int = 1) -> optuna.storages.RDBStorage:
    """An RDB storage whose dead trials are found and retried.

    Args:
        url: SQLAlchemy URL: ``sqlite:///path.db`` on one machine, a PostgreSQL or MySQL URL
            across machines.
        heartbeat_interval: Seconds between a running trial's heartbeats.
        grace_period: Seconds without a heartbeat after which a trial counts as dead.
        max_retry: How many times a dead trial's parameters are queued again.

    Returns:
        The storage.
    """
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    with _quiet():  # heartbeats and retries are marked experimental by Optuna
        return optuna.storages.RDBStorage(
            url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
            grace_period=grace_period, heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def start_workers(n: int, storage_url: str, study_name: str, *, n_trials: int,
                  config: Mapping[str, Any], threads: int = 1, seed: int = 0,
                  log_dir: str | os.PathLike | None = None,
                  env: Mapping[str, str] | None = None) -> list[subprocess.Popen]:
    """Start ``n`` worker processes on one study (created here if it does not exist).

    Args:
        n: Number of workers.
        storage_url: The shared storage's URL.
        study_name: The study.
        n_trials: Finished trials (complete or pruned) the study needs in all; each worker
            stops once the storage holds that many.
        config: The objective's settings (see
            :func:`dlkit.search.objective.objective_from_config`).
        threads: PyTorch threads per worker (workers × threads ≤ cores avoids contention).
        seed: Worker ``i`` seeds its TPE sampler with ``seed + i``.
        log_dir: Where each worker's output goes (``worker-i.log``); discarded if ``None``.
        env: Extra environment variables.

    Returns:
        The processes, in worker order.
    """
    optuna.create_study(storage=open_storage(storage_url), study_name=study_name,
                        direction="maximize", load_if_exists=True)
    procs = []
    for i in range(n):
        cmd = [sys.executable, "-m", "dlkit.search", "--storage", storage_url,
               "--study", study_name, "--n-trials", str(n_trials), "--config", json.dumps(config),
               "--threads", str(threads), "--seed", str(seed + i)]
        out = (open(Path(log_dir) / f"worker-{i}.log", "wb") if log_dir is not None
               else subprocess.DEVNULL)
        try:
            procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                          env={**os.environ, **(env or {})}))
        finally:
            if out is not subprocess.DEVNULL:
                out.close()  # the child holds its own copy
    return procs


def wait_workers(procs: Sequence[subprocess.Popen], timeout: float) -> list[int]:
    """Wait for every worker to exit; kill them all and raise if ``timeout`` passes.

    Returns:
        The exit codes (negative: killed by that signal).
    """
    deadline = time.monotonic() + timeout
    try:
        return [p.wait(timeout=max(0.0, deadline - time.monotonic())) for p in procs]
    except subprocess.TimeoutExpired:
        stop_workers(procs)
        raise TimeoutError(f"search workers still running after {timeout:.0f} s; stopped") from None


def stop_workers(procs: Sequence[subprocess.Popen], sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to every worker still running and reap it."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(sig)
    for p in procs:
        p.wait()


def kill_mid_trial(storage_url: str, study_name: str, proc: subprocess.Popen, *,
                   after: int = 0, ready: Callable[[FrozenTrial], bool] | None = None,
                   timeout: float = 300.0) -> int:
    """Kill worker ``proc`` while one of its trials is running, for a fault-injection test.

    A trial seen running may finish before a plain ``SIGKILL`` lands (a short trial often
    does), and then nothing is killed mid-trial. So the worker is first stopped
    (``SIGSTOP``), which freezes it; the trial's state is read again from the storage; if it
    is still running, the frozen worker is killed (``SIGKILL``), otherwise it continues
    (``SIGCONT``) and the search for a victim goes on. POSIX only (Linux, macOS).

    Args:
        storage_url: The shared storage's URL.
        study_name: The study.
        proc: A worker started by :func:`start_workers` (a child of this process).
        after: Kill a trial only once this worker has finished this many trials.
        ready: Which running trials qualify (default: those whose parameters are sampled).
        timeout: Seconds to wait for a trial to kill.

    Returns:
        The number of the trial that was running when its worker was killed.

    Raises:
        RuntimeError: The worker exited first, or no trial qualified within ``timeout``.
    """
    ready = ready or (lambda t: bool(t.params))
    # A storage of its own, whose SQLite reads give up quickly: a frozen worker could hold
    # the file's lock, and then the read is retried after letting the worker continue.
    engine_kwargs = {"connect_args": {"timeout": 1}} if storage_url.startswith("sqlite") else None
    storage = optuna.storages.RDBStorage(storage_url, engine_kwargs=engine_kwargs)
    study_id = storage.get_study_id_from_name(study_name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker {proc.pid} exited (code {proc.returncode}) before "
                               "one of its trials could be killed")
        try:
            mine = [t for t in storage.get_all_trials(study_id, deepcopy=False)
                    if t.user_attrs.get("worker_pid") == proc.pid]
        except sqlalchemy.exc.OperationalError:  # the file is locked for a moment
            continue
        running = [t for t in mine if t.state == TrialState.RUNNING and ready(t)]
        if running and sum(t.state.is_finished() for t in mine) >= after:
            proc.send_signal(signal.SIGSTOP)
            _, status = os.waitpid(proc.pid, os.WUNTRACED)  # returns once it has stopped
            if not os.WIFSTOPPED(status):  # it exited just before: record how, as wait() would
                proc.returncode = os.waitstatus_to_exitcode(status)
                continue
            try:
                still = storage.get_trial(running[0]._trial_id).state == TrialState.RUNNING
            except sqlalchemy.exc.OperationalError:
                still = False
            if still:
                proc.send_signal(signal.SIGKILL)
                return running[0].number
            proc.send_signal(signal.SIGCONT)
        time.sleep(0.01)
    raise RuntimeError(f"no trial of worker {proc.pid} to kill within {timeout:.0f} s")


@dataclasses.dataclass(frozen=True)
class Audit:
    """Bookkeeping of a shared study, from :func:`audit`.

    Attributes:
        finished: Trials complete or pruned.
        failed: Trials marked failed (their worker died).
        retried: ``{failed trial number: number of its retry}``.
        unfinished: Trials still running or waiting (none once every worker is done).
        lost: Failed trials without a finished retry.
        duplicates: Trials whose configuration finished more than once through retries.
    """

    finished: int
    failed: int
    retried: dict[int, int]
    unfinished: list[int]
    lost: list[int]
    duplicates: list[int]

    @property
    def ok(self) -> bool:
        """No trial lost, none run twice, none left hanging."""
        return not (self.lost or self.duplicates or self.unfinished)


def audit(study: optuna.Study) -> Audit:
    """Check that every trial of a shared study ended exactly once.

    A failed trial is fine when :class:`~optuna.storages.RetryHeartbeatStaleTrialCallback`
    queued a retry of it and that retry finished; it is lost otherwise. A configuration is run
    twice when more than one trial of the same retry chain (the original trial and its
    retries) finished.
    """
    trials = study.get_trials(deepcopy=False)
    with _quiet():  # the number of the chain's original trial, or None for an original
        origins = {t.number: RetryHeartbeatStaleTrialCallback.retried_trial_number(t)
                   for t in trials}
    retried = {origin: number for number, origin in origins.items() if origin is not None}

    def root(t: optuna.trial.FrozenTrial) -> int:
        origin = origins[t.number]
        return t.number if origin is None else origin

    finished_per_root: dict[int, int] = {}
    for t in trials:
        if t.state in FINISHED:
            finished_per_root[root(t)] = finished_per_root.get(root(t), 0) + 1
    failed = [t for t in trials if t.state == TrialState.FAIL]
    lost = [t.number for t in failed if finished_per_root.get(root(t), 0) == 0]
    return Audit(finished=sum(t.state in FINISHED for t in trials), failed=len(failed),
                 retried=retried,
                 unfinished=[t.number for t in trials
                             if t.state in (TrialState.RUNNING, TrialState.WAITING)],
                 lost=lost, duplicates=[r for r, k in finished_per_root.items() if k > 1])


def main(argv: Sequence[str] | None = None) -> int:
    """The worker process: load the objective once, then take trials until the study has enough."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True, help="SQLAlchemy URL of the shared storage")
    parser.add_argument("--study", required=True, help="study name")
    parser.add_argument("--n-trials", type=int, required=True,
                        help="finished trials the study needs in all")
    parser.add_argument("--config", default="{}", help="the objective's settings, as JSON")
    parser.add_argument("--threads", type=int, default=1, help="PyTorch threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of this worker's sampler")
    args = parser.parse_args(argv)

    import torch

    from dlkit.search.objective import objective_from_config

    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objective = objective_from_config(json.loads(args.config))
    study = optuna.load_study(study_name=args.study, storage=open_storage(args.storage),
                              sampler=optuna.samplers.TPESampler(seed=args.seed,
                                                                 n_startup_trials=4))
    enough = optuna.study.MaxTrialsCallback(args.n_trials, states=FINISHED)
    if len(study.get_trials(deepcopy=False, states=FINISHED)) < args.n_trials:
        study.optimize(objective, n_trials=args.n_trials, callbacks=[enough])
    _drain(study, objective)
    return 0


def _drain(study: optuna.Study, objective: Any, patience: float = 600.0) -> None:
    """Before leaving, finish what others left: wait for running trials, run queued retries.

    A trial whose worker died is only noticed once its heartbeat is older than the grace
    period; a worker that stopped taking trials before then would leave it unfinished. So
    each worker stays until no trial is running or waiting: trials of live workers finish,
    dead ones are marked failed here (which queues their retry) and queued retries are run,
    one at a time (another worker may take a queued retry first).
    """
    interval = study._storage.get_heartbeat_interval() or 1
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            study.optimize(objective, n_trials=1)
            continue
        if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            return
        time.sleep(interval)
        with _quiet():
            optuna.storages.fail_stale_trials(study)
        _fail_silent_trials(study)


def _fail_silent_trials(study: optuna.Study) -> None:
    """Fail (and queue for retry) running trials that never wrote a heartbeat.

    Optuna's stale-trial check skips a trial without any heartbeat; a worker killed between
    creating a trial and its first heartbeat leaves such a trial running for ever. A live
    worker writes its first heartbeat as the trial starts, so a trial older than the grace
    period without one is dead.
    """
    from datetime import datetime, timedelta

    from optuna.storages._rdb import models  # no public call lists trials without heartbeats

    storage = getattr(study._storage, "_backend", study._storage)  # Optuna wraps it in a cache
    if not isinstance(storage, optuna.storages.RDBStorage) or storage.heartbeat_interval is None:
        return
    grace = storage.grace_period or 2 * storage.heartbeat_interval
    cutoff = datetime.now() - timedelta(seconds=grace + storage.heartbeat_interval)
    session = storage.scoped_session()
    try:
        silent = [row.trial_id for row in session.query(models.TrialModel)
                  .filter(models.TrialModel.study_id == study._study_id,
                          models.TrialModel.state == TrialState.RUNNING).all()
                  if not row.heartbeats and row.datetime_start is not None
                  and row.datetime_start < cutoff]
    finally:
        session.close()
    retry = storage.get_heartbeat_stale_trial_callback()
    for trial_id in silent:
        try:
            if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # it finished after all, or another worker failed it first
        if retry is not None:
            with _quiet():
                retry(study, storage.get_trial(trial_id))


if __name__ == "__main__":
    raise SystemExit(main())
