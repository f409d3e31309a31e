"""Parallel hyperparameter search on a CPU: one worker with 2 threads vs 2 workers with 1 thread.

Chapter 14 runs a study with worker processes that share it through a storage
(``dlkit.search.workers``). On a small CPU the same cores can go to one worker whose PyTorch
ops use several threads, or to several single-threaded workers that train different trials at
once. Both runs here do the same search: the same objective (chapter 04's recipe on a
CIFAR-10 training subset downsampled by 2, bf16, scored on a validation subset), the same
number of trials asked for, each on a fresh SQLite study in a temporary folder.

Per run it records the wall time from the start (study created, workers launched) until every
worker has exited; the startup (until the first trial starts: interpreter, imports, data);
the trials finished (several workers may finish a few more than asked: trials already running
when the study is full still finish) and the time until the study held the number asked;
trials per minute over the whole wall time and after the startup; and the mean time of one
trial as the workers measured it (longer for a 1-thread worker). Prints one JSON object with
both runs and the ratio of trials per minute, 2 workers over 1 (above 1: the workers win).
``--dataset shapes`` uses the procedural set (no files) for a quick check.

    DLKIT_DATA_DIR=../shared/data python benchmarks/search_workers.py [--trials 16] [--epochs 2]
    python benchmarks/search_workers.py --dataset shapes --trials 6
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from dlkit._util import atomic_write
from dlkit.env import describe
from dlkit.search import audit, open_storage, start_workers, wait_workers
from dlkit.search.workers import FINISHED


def run(workers: int, threads: int, config: dict, n_trials: int, seed: int,
        timeout: float) -> dict:
    """One study run by ``workers`` processes of ``threads`` PyTorch threads each."""
    with tempfile.TemporaryDirectory(prefix="search-workers-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'study.db'}"
        started_at = datetime.datetime.now()  # the storage stamps trials with local time
        start = time.perf_counter()
        procs = start_workers(workers, url, "bench", n_trials=n_trials, config=config,
                              threads=threads, seed=seed, log_dir=tmp)
        codes = wait_workers(procs, timeout=timeout)
        wall = time.perf_counter() - start
        if any(codes):
            logs = {p.name: p.read_text()[-2000:] for p in sorted(Path(tmp).glob("worker-*.log"))}
            raise RuntimeError(f"worker exit codes {codes}; logs: {json.dumps(logs, indent=1)}")
        study = optuna.load_study(study_name="bench", storage=open_storage(url))
        trials = study.get_trials(deepcopy=False)
        finished = [t for t in trials if t.state in FINISHED]
        startup = (min(t.datetime_start for t in trials) - started_at).total_seconds()
        # Workers stop once the study holds n_trials finished ones, but trials already running
        # then still finish: several workers may overshoot. So also: when the n-th finished.
        done = sorted(t.datetime_complete for t in finished)
        to_n = (done[min(n_trials, len(done)) - 1] - started_at).total_seconds()
        seconds = [float(t.user_attrs.get("seconds", "nan")) for t in finished]
        per_worker: dict[int, int] = {}
        for t in finished:
            pid = t.user_attrs.get("worker_pid")
            per_worker[pid] = per_worker.get(pid, 0) + 1
        complete = [t.value for t in finished if t.state == TrialState.COMPLETE]
        report = audit(study)
        return {
            "workers": workers,
            "threads_per_worker": threads,
            "finished_trials": len(finished),
            "wall_s": round(wall, 2),
            "startup_s": round(startup, 2),
            "time_to_n_trials_s": round(to_n, 2),
            "trials_per_min": round(len(finished) / wall * 60, 3),
            "trials_per_min_after_startup": round(len(finished) / (wall - startup) * 60, 3),
            "mean_trial_s": round(statistics.fmean(seconds), 3),
            "trials_per_worker": sorted(per_worker.values(), reverse=True),
            "best_accuracy": round(max(complete), 4) if complete else None,
            "audit_ok": report.ok,
            "exit_codes": codes,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["cifar10", "shapes"], default="cifar10")
    parser.add_argument("--n-train", type=int, default=2_000, help="training subset")
    parser.add_argument("--n-val", type=int, default=1_000, help="validation subset")
    parser.add_argument("--downsample", type=int, default=2, help="image shrink factor")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per trial")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--space", choices=["hyperparameters", "architecture"],
                        default="hyperparameters")
    parser.add_argument("--trials", type=int, default=16, help="finished trials per run")
    parser.add_argument("--cores", type=int, default=2,
                        help="threads of the single worker = number of single-thread workers")
    parser.add_argument("--seed", type=int, default=0, help="seed of the workers' samplers")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per run at most")
    parser.add_argument("--out", default=None, help="also write the JSON line to this file")
    args = parser.parse_args()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = {"dataset": args.dataset, "n_train": args.n_train, "n_val": args.n_val,
              "downsample": args.downsample, "epochs": args.epochs, "precision": args.precision,
              "space": args.space, "device": "cpu", "seed": 0, "data_seed": 0}
    # One worker first, then the workers; each on a fresh study (no trial carried over).
    one = run(1, args.cores, config, args.trials, args.seed, args.timeout)
    many = run(args.cores, 1, config, args.trials, args.seed, args.timeout)
    result = {
        "benchmark": "search_workers",
        "config": config,
        "trials": args.trials,
        "one_worker": one,
        "workers": many,
        "ratio_trials_per_min": round(many["trials_per_min"] / one["trials_per_min"], 3),
        "ratio_trials_per_min_after_startup": round(
            many["trials_per_min_after_startup"] / one["trials_per_min_after_startup"], 3),
        "device": describe(torch.device("cpu")),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": torch.__version__,
        "optuna": optuna.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or None,
    }
    line = json.dumps(result)
    print(line)
    if args.out:
        with atomic_write(args.out, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
