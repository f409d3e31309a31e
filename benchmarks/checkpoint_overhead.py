"""Cost of ``fit(..., checkpoint=path)``: an atomic, fsync'ed checkpoint after every epoch.

Trains chapter 04's ``SmallCNN`` with and without checkpointing on the same data, alternating
runs so that machine noise hits both alike, and prints one JSON object with the median time of
each, their ratio (target: at most 1.05 for epochs of a few seconds), and the checkpoint's size
and the median time of one ``save_checkpoint`` call.

    python benchmarks/checkpoint_overhead.py [--images 2048] [--epochs 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dlkit.checkpoint import save_checkpoint
from dlkit.data import make_loader
from dlkit.env import describe, pick_device, seed_everything
from dlkit.models import SmallCNN
from dlkit.train import fit


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def one_run(loader, epochs: int, device: torch.device, checkpoint: Path | None) -> float:
    torch.manual_seed(0)
    model = SmallCNN()
    sync(device)
    start = time.perf_counter()
    fit(model, loader, epochs=epochs, device=device, progress=False, verbose=False,
        checkpoint=checkpoint)
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048, help="training images per epoch")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, alternated")
    args = parser.parse_args()

    seed_everything(0, deterministic=False)
    device = pick_device()
    X = torch.randn(args.images, 3, 32, 32)
    y = torch.randint(0, 10, (args.images,))
    loader = make_loader(X, y, args.batch_size, shuffle=True, seed=0)
    folder = Path(tempfile.mkdtemp(prefix="dlkit_ckpt_bench_"))
    path = folder / "run.pt"
    one_run(loader, 1, device, None)  # warm-up: allocator, kernels, page cache
    plain, with_ckpt = [], []
    for _ in range(args.repeats):
        plain.append(one_run(loader, args.epochs, device, None))
        with_ckpt.append(one_run(loader, args.epochs, device, path))
    state = torch.load(path, weights_only=True)
    saves = []
    for _ in range(5):
        start = time.perf_counter()
        save_checkpoint(state, path)
        saves.append(time.perf_counter() - start)
    print(json.dumps({
        "benchmark": "checkpoint_overhead",
        "device": describe(device),
        "images_per_epoch": args.images,
        "epochs": args.epochs,
        "plain_s": round(statistics.median(plain), 3),
        "checkpoint_s": round(statistics.median(with_ckpt), 3),
        "ratio": round(statistics.median(with_ckpt) / statistics.median(plain), 3),
        "checkpoint_bytes": path.stat().st_size,
        "save_checkpoint_ms": round(1000 * statistics.median(saves), 1),
    }))


if __name__ == "__main__":
    main()
