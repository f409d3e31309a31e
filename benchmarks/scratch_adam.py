"""Time per ``step()`` of ``dlkit.scratch.optim.Adam`` against ``torch.optim.Adam``.

All three optimizers update copies of the same ~1.07M-parameter MLP (784-1024-256-10) with the
same fixed gradients, in one process, in alternating order (ABC, then CBA) so that machine noise
hits all alike. ``torch_single`` is ``torch.optim.Adam(foreach=False)``, the like-for-like
comparison (one tensor at a time, as the scratch version works); ``torch_default`` is what
``torch.optim.Adam`` picks by itself (foreach on CUDA, single-tensor on CPU). Prints JSON with
the median milliseconds per step of each and the ratios scratch / torch (target: at most 2).

    python benchmarks/scratch_adam.py [--steps 100] [--repeats 10] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from dlkit.env import describe, pick_device, seed_everything
from dlkit.scratch.optim import Adam as ScratchAdam

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "scratch": ScratchAdam,
    "torch_single": lambda params: torch.optim.Adam(params, foreach=False),
    "torch_default": torch.optim.Adam,
}


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 256), nn.ReLU(),
        nn.Linear(256, 10),
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(kind: str, model: nn.Module, grads: list[torch.Tensor], steps: int,
               device: torch.device) -> float:
    """Seconds per ``step()`` of a fresh optimizer, after one untimed step that allocates state."""
    for p, g in zip(model.parameters(), grads, strict=True):
        p.grad = g  # shared and never written: Adam without weight decay only reads p.grad
    optimizer = OPTIMIZERS[kind](model.parameters())
    optimizer.step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    sync(device)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per run")
    parser.add_argument("--repeats", type=int, default=10, help="runs of each, alternated")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 on a busy machine)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    seed_everything(0, deterministic=False)
    device = pick_device()
    reference = mlp().to(device)
    n_params = sum(p.numel() for p in reference.parameters())
    # Gradients of a real loss, so their scale (and the work per element) is realistic.
    X = torch.randn(128, 784, device=device)
    y = torch.randint(0, 10, (128,), device=device)
    loss = nn.functional.cross_entropy(reference(X), y)
    grads = [g.detach() for g in torch.autograd.grad(loss, list(reference.parameters()))]

    # Warm-up (allocator, thread pool, kernel selection), not timed.
    for kind in OPTIMIZERS:
        time_steps(kind, copy.deepcopy(reference), grads, 5, device)
    runs: dict[str, list[float]] = {kind: [] for kind in OPTIMIZERS}
    for i in range(args.repeats):
        order = list(OPTIMIZERS) if i % 2 == 0 else list(reversed(OPTIMIZERS))
        for kind in order:
            model = copy.deepcopy(reference)
            runs[kind].append(time_steps(kind, model, grads, args.steps, device))

    # Same start, same gradients, same number of steps: the weights should agree to the bit.
    ours, theirs = copy.deepcopy(reference), copy.deepcopy(reference)
    time_steps("scratch", ours, grads, 10, device)
    time_steps("torch_single", theirs, grads, 10, device)
    identical = all(torch.equal(p, q) for p, q in zip(ours.parameters(), theirs.parameters()))

    ms = {kind: statistics.median(t) * 1e3 for kind, t in runs.items()}
    print(json.dumps({
        "benchmark": "scratch_adam",
        "device": describe(device),
        "machine": platform.machine(),
        "parameters": n_params,
        "steps": args.steps,
        "repeats": args.repeats,
        "scratch_ms_per_step": round(ms["scratch"], 3),
        "torch_single_ms_per_step": round(ms["torch_single"], 3),
        "torch_default_ms_per_step": round(ms["torch_default"], 3),
        "ratio_vs_torch_single": round(ms["scratch"] / ms["torch_single"], 4),
        "ratio_vs_torch_default": round(ms["scratch"] / ms["torch_default"], 4),
        "target_ratio_max": 2.0,
        "weights_identical_to_torch_single": identical,
        **{f"{kind}_runs_ms": [round(t * 1e3, 3) for t in r] for kind, r in runs.items()},
    }))


if __name__ == "__main__":
    main()
