"""Manifest building throughput: parallel worker processes vs one process on the same folder.

Writes a class-per-folder tree of PNG files (CIFAR-10 test images upscaled to --side pixels, or
procedural shapes when CIFAR-10 is not available), then times ``dlkit.collect.collect`` with
``workers=1`` and ``workers=N``, alternating runs so machine noise hits both alike. Prints one
JSON object with images/s of each and their ratio (the speed-up).

    python benchmarks/manifest_throughput.py [--images 2000] [--side 96] [--workers 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

from dlkit import data
from dlkit.collect import FolderSource, collect


def build_folder(root: Path, n: int, side: int) -> list[str]:
    try:
        ds = data.load("cifar10", "test", num_samples=n, download=False)
    except FileNotFoundError:
        ds = data.load("shapes", "test", num_samples=n)
    for i in range(n):
        label = ds.classes[int(ds.labels[i])]
        (root / label).mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(ds.images[i].permute(1, 2, 0).numpy()).resize((side, side), Image.Resampling.BICUBIC)
        img.save(root / label / f"{i:06d}.png")
    return ds.classes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--side", type=int, default=96)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        classes = build_folder(root, args.images, args.side)
        times: dict[int, list[float]] = {1: [], args.workers: []}
        rows = None
        for _ in range(args.repeats):
            for w in (1, args.workers):
                start = time.perf_counter()
                m = collect([FolderSource(root)], classes, workers=w)
                times[w].append(time.perf_counter() - start)
                assert rows is None or m.rows == rows  # same manifest either way
                rows = m.rows
    one, many = statistics.median(times[1]), statistics.median(times[args.workers])
    print(json.dumps({
        "benchmark": "manifest_throughput",
        "images": args.images,
        "image_side": args.side,
        "workers": args.workers,
        "cpu_count": os.cpu_count(),
        "one_process_images_per_s": round(args.images / one, 1),
        "parallel_images_per_s": round(args.images / many, 1),
        "speedup": round(one / many, 3),
        "seconds_one_process": [round(t, 3) for t in times[1]],
        "seconds_parallel": [round(t, 3) for t in times[args.workers]],
        "machine": platform.machine(),
    }))


if __name__ == "__main__":
    main()
