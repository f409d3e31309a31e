"""Search strategies compared on a larger budget than chapter 14's CPU profile can afford.

Chapter 14 compares grid, random, TPE and GP search with 10 trials and 3 sampler seeds, which
leaves the strategies within their spread. This script runs the same comparison (the same
objective: chapter 04's recipe on a CIFAR-10 training subset, downsampled by 2 by default,
scored on a validation subset; every trial trained with seed 0) with more trials and more
sampler seeds, and prints one JSON object:

- per strategy: the best validation accuracy after each trial, averaged over seeds, with its
  standard deviation; the final best per seed; mean, std and seconds;
- per model-based strategy (and grid), its paired difference from random search on the same
  sampler seeds (mean and the seeds where it is ahead, behind or tied) and the two-sided
  Wilcoxon signed-rank p-value of those differences (scipy), so that "which wins" rests on a
  test across seeds, not on one run.

    DLKIT_DATA_DIR=../shared/data python benchmarks/search_strategies.py [--trials 20] [--seeds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import optuna
import torch
from scipy import stats

from dlkit._util import atomic_write
from dlkit.env import pick_device
from dlkit.search import (HYPERPARAMETERS, STRATEGIES, best_so_far, grid_points, make_objective,
                          run_study, search_data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="trials per study")
    parser.add_argument("--seeds", type=int, default=10, help="sampler seeds per strategy")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per trial")
    parser.add_argument("--n-train", type=int, default=2_000, help="training subset")
    parser.add_argument("--n-val", type=int, default=1_000, help="validation subset")
    parser.add_argument("--downsample", type=int, default=2, help="image shrink factor")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--out", default=None, help="also write the JSON line to this file")
    args = parser.parse_args()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    device = pick_device()
    data = search_data("cifar10", args.n_train, args.n_val, seed=0, downsample=args.downsample)
    points = grid_points(args.trials)
    curves, seconds = {}, {}
    for strategy in STRATEGIES:
        start = time.perf_counter()
        runs = []
        for seed in range(args.seeds):
            objective = make_objective(data, HYPERPARAMETERS, epochs=args.epochs, seed=0,
                                       device=device, precision=args.precision)
            study = run_study(strategy, objective, n_trials=args.trials, seed=seed,
                              space=HYPERPARAMETERS, grid_points=points)
            runs.append(best_so_far(study))
        curves[strategy] = np.stack(runs)
        seconds[strategy] = time.perf_counter() - start

    final = {k: c[:, -1] for k, c in curves.items()}
    strategies = {}
    for k in STRATEGIES:
        entry = {"final_per_seed": [round(float(v), 4) for v in final[k]],
                 "final_mean": round(float(final[k].mean()), 4),
                 "final_std": round(float(final[k].std(ddof=1)), 4),
                 "curve_mean": [round(float(v), 4) for v in np.nanmean(curves[k], 0)],
                 "curve_std": [round(float(v), 4) for v in np.nanstd(curves[k], 0, ddof=1)],
                 "seconds": round(seconds[k], 1)}
        if k != "random":
            diff = final[k] - final["random"]
            nonzero = diff[diff != 0]
            entry["vs_random"] = {
                "mean_difference": round(float(diff.mean()), 4) + 0.0,  # never -0.0
                "ahead": int((diff > 0).sum()), "behind": int((diff < 0).sum()),
                "tied": int((diff == 0).sum()),
                "wilcoxon_p": (round(float(stats.wilcoxon(nonzero).pvalue), 4)
                               if len(nonzero) >= 2 else None)}
        strategies[k] = entry
    result = {"benchmark": "search_strategies",
              "config": {"trials": args.trials, "seeds": args.seeds, "epochs": args.epochs,
                         "n_train": args.n_train, "n_val": args.n_val,
                         "downsample": args.downsample, "precision": args.precision,
                         "grid": points, "n_startup_trials": 4},
              "strategies": strategies,
              "device": str(device), "cpu_count": os.cpu_count(), "torch": torch.__version__,
              "optuna": optuna.__version__, "machine": platform.machine()}
    line = json.dumps(result)
    print(line)
    if args.out:
        with atomic_write(args.out, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
