"""Overhead of ``dlkit.train.fit`` over a plain hand-written PyTorch training loop.

Both train the same model (same initial weights) on the same batches for the same number of
steps, in one process, alternating runs so that machine noise hits both alike. Prints JSON with
the median time of each and their ratio (target: at most 1.05).

    python benchmarks/fit_overhead.py [--steps 150] [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time

import torch
from torch import nn

from dlkit.data import make_loader
from dlkit.env import describe, pick_device, seed_everything
from dlkit.train import fit


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 8 * 8, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_loop(model: nn.Module, loader, device: torch.device) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.to(device).train()
    sync(device)
    start = time.perf_counter()
    for X, y in loader:
        X, y = X.to(device), y.to(device)
        loss = loss_fn(model(X), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync(device)
    return time.perf_counter() - start


def with_fit(model: nn.Module, loader, device: torch.device) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    sync(device)
    start = time.perf_counter()
    # The progress bar stays on, as in the chapters; it writes to a terminal or a log.
    fit(model, loader, epochs=1, optimizer=optimizer, device=device, verbose=False)
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="training steps per run")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=6, help="runs of each, alternated")
    args = parser.parse_args()

    seed_everything(0, deterministic=False)
    device = pick_device()
    n = args.steps * args.batch_size
    X = torch.randn(n, 3, 32, 32)
    y = torch.randint(0, 10, (n,))
    loader = make_loader(X, y, args.batch_size, shuffle=True, seed=0)
    reference = small_cnn()

    # One warm-up run of each (allocator, kernel selection), not timed.
    plain_loop(copy.deepcopy(reference), loader, device)
    with_fit(copy.deepcopy(reference), loader, device)
    plain, dlkit_fit = [], []
    for i in range(args.repeats):
        # Alternate which goes first (ABBA), so a warm-up or thermal trend favours neither.
        if i % 2 == 0:
            plain.append(plain_loop(copy.deepcopy(reference), loader, device))
            dlkit_fit.append(with_fit(copy.deepcopy(reference), loader, device))
        else:
            dlkit_fit.append(with_fit(copy.deepcopy(reference), loader, device))
            plain.append(plain_loop(copy.deepcopy(reference), loader, device))

    plain_s, fit_s = statistics.median(plain), statistics.median(dlkit_fit)
    print(json.dumps({
        "benchmark": "fit_overhead",
        "device": describe(device),
        "machine": platform.machine(),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "plain_loop_s": round(plain_s, 3),
        "fit_s": round(fit_s, 3),
        "ratio": round(fit_s / plain_s, 4),
        "target_ratio_max": 1.05,
        "plain_loop_runs_s": [round(t, 3) for t in plain],
        "fit_runs_s": [round(t, 3) for t in dlkit_fit],
    }))


if __name__ == "__main__":
    main()
