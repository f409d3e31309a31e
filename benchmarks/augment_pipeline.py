"""Training input pipeline throughput: batched tensor augmentation vs per-image PIL transforms.

Both pipelines produce the same thing, one epoch of shuffled, augmented (4-pixel padded random
crop and horizontal flip) and normalised CIFAR-10 batches on the training device:

* ``per_image_pil``: the usual tutorial pipeline, as in ``torchvision.datasets.CIFAR10``: each
  item becomes a PIL image, goes through ``transforms.v2`` (RandomCrop, RandomHorizontalFlip,
  ToImage, ToDtype, Normalize) one at a time, and a ``DataLoader`` collates batches.
* ``dlkit_batched``: ``uint8`` images in memory, ``dlkit.data.make_loader`` fetching whole
  batches by index, then ``dlkit.augment.batch_policy("standard")`` on the device.

Prints one JSON line: images per second of each (best of ``--repeats`` epochs, same machine,
same run) and their ratio. Run: ``python benchmarks/augment_pipeline.py [--images N]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from dlkit import data
from dlkit.augment import batch_policy
from dlkit.env import pick_device
from dlkit.throughput import PILImageDataset


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _epoch(batches, device: torch.device, transform=None) -> tuple[float, int]:
    """Seconds to deliver every augmented batch on ``device``, and the number of images."""
    n = 0
    _sync(device)
    start = time.perf_counter()
    for X, y in batches:
        X, y = X.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if transform is not None:
            X, y = transform(X, y)
        n += X.shape[0]
    _sync(device)
    return time.perf_counter() - start, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000, help="training images per epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed; the best counts")
    parser.add_argument("--device", default=None, help="default: dlkit.env.pick_device()")
    args = parser.parse_args()

    device = torch.device(args.device) if args.device else pick_device()
    train = data.load("cifar10", "train").subset(slice(0, args.images))
    mean, std = data.channel_stats(train)

    per_image = v2.Compose([
        v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(),
        v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean.tolist(), std.tolist()),
    ])
    baseline = DataLoader(PILImageDataset(train.images, train.labels, per_image),
                          batch_size=args.batch_size, shuffle=True,
                          pin_memory=device.type == "cuda")
    batched = data.make_loader(train.images, train.labels, args.batch_size, shuffle=True, seed=0)
    augment = batch_policy("standard", mean=mean, std=std)

    _epoch([next(iter(baseline))], device)  # warm-up: first CUDA calls, allocator
    _epoch([next(iter(batched))], device, augment)
    times: dict[str, list[float]] = {"per_image_pil": [], "dlkit_batched": []}
    for _ in range(args.repeats):  # interleaved, so a change in machine load hits both
        seconds, n_base = _epoch(baseline, device)
        times["per_image_pil"].append(seconds)
        seconds, n_ours = _epoch(batched, device, augment)
        times["dlkit_batched"].append(seconds)
    assert n_base == n_ours == len(train)
    rate = {k: len(train) / min(v) for k, v in times.items()}
    print(json.dumps({
        "benchmark": "augment_pipeline",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "images": len(train),
        "batch_size": args.batch_size,
        "augmentation": "pad 4 + random crop 32 + horizontal flip + normalise",
        "per_image_pil_images_per_s": round(rate["per_image_pil"], 1),
        "dlkit_batched_images_per_s": round(rate["dlkit_batched"], 1),
        "speedup": round(rate["dlkit_batched"] / rate["per_image_pil"], 2),
        "target_speedup": 5.0,
        "seconds": {k: [round(s, 4) for s in v] for k, v in times.items()},
    }))


if __name__ == "__main__":
    main()
