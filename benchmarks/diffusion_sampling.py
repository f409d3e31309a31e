"""Diffusion sampling on a CPU: images per second and sample quality against the number of steps.

Chapter 11 trains a class-conditional DDPM (``dlkit.generative``: a small U-Net, 1,000
training timesteps, ε-prediction) on Fashion-MNIST and samples it with fewer steps by
respacing the schedule. This script measures what fewer steps cost in quality: it trains the
judge (``FeatureClassifier``, on 55,000 training images, its accuracy reported on the 10,000
test images) and the diffusion model once, then for each number of sampling steps draws the same
number of images per class with classifier-free guidance and records:

- images per second (wall time of ``sample`` alone, bf16 autocast on the CPU);
- class match: the fraction of samples the judge assigns to the class asked for;
- the Fréchet distance, in the judge's feature space, between the samples and real test images
  (not the Inception-based FID: comparable across rows only), next to the same distance for
  as many real *training* images, the floor at that sample size.

Prints one JSON object.

    python benchmarks/diffusion_sampling.py [--steps 1000 250 50 10] [--per-class 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from dlkit._util import atomic_write
from dlkit.data import load, make_loader
from dlkit.env import describe, seed_everything
from dlkit.generative import (DiffusionStep, FeatureClassifier, NoiseSchedule, TinyUNet,
                              class_match, encode_all, frechet_distance_of, sample)
from dlkit.train import evaluate, fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 250, 50, 10],
                        help="sampling steps to compare (each <= the training T)")
    parser.add_argument("--T", type=int, default=1000, help="training timesteps")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of diffusion training")
    parser.add_argument("--width", type=int, default=16, help="U-Net width")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--guidance", type=float, default=3.0, help="guidance scale")
    parser.add_argument("--per-class", type=int, default=20, help="samples per class and row")
    parser.add_argument("--threads", type=int, default=None, help="PyTorch threads")
    parser.add_argument("--out", default=None, help="also write the JSON to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(0)
    device = torch.device("cpu")

    train, test = load("fashion_mnist", "train"), load("fashion_mnist", "test")
    X, y = train.images.float() / 255, train.labels
    X_test, y_test = test.images.float() / 255, test.labels
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
    fit_idx, val_idx = order[:55_000], order[55_000:]

    # The judge: trained on the training split, its accuracy measured once on test.
    start = time.perf_counter()
    judge = FeatureClassifier()
    fit(judge, make_loader(X[fit_idx], y[fit_idx], 128, shuffle=True, seed=0),
        make_loader(X[val_idx], y[val_idx], 512), epochs=1, lr=2e-3, device=device,
        precision="bf16", progress=False, verbose=False)
    judge_s = time.perf_counter() - start
    judge_test = evaluate(judge, make_loader(X_test, y_test, 512), device=device)["accuracy"]

    # The diffusion model, on the whole training split.
    start = time.perf_counter()
    schedule = NoiseSchedule.linear(args.T)
    unet = TinyUNet(width=args.width, num_classes=10)
    history = fit(unet, make_loader(X, y, 128, shuffle=True, seed=0), epochs=args.epochs,
                  optimizer=torch.optim.Adam(unet.parameters(), lr=args.lr), device=device,
                  precision="bf16", progress=False, verbose=False,
                  step=DiffusionStep(schedule, num_classes=10, p_uncond=0.1, seed=0))
    train_s = time.perf_counter() - start

    n = 10 * args.per_class
    labels = torch.arange(10).repeat_interleave(args.per_class)
    # A random 2,000 of the test images: the files are sorted by class.
    pick = torch.randperm(len(X_test), generator=torch.Generator().manual_seed(1))[:2_000]
    real = encode_all(judge, X_test[pick])
    floor = frechet_distance_of(encode_all(judge, X[val_idx[:n]]), real)
    rows = []
    for steps in args.steps:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            images = sample(unet, schedule.respace(steps), (n, 1, 28, 28), labels=labels,
                            guidance=args.guidance, num_classes=10,
                            generator=torch.Generator().manual_seed(1))
        seconds = time.perf_counter() - start
        rows.append({"steps": steps, "seconds": round(seconds, 2),
                     "images_per_s": round(n / seconds, 2),
                     "class_match": round(class_match(judge, images, labels), 4),
                     "frechet": round(frechet_distance_of(encode_all(judge, images), real), 3)})
        print(json.dumps(rows[-1]), flush=True)

    result = {
        "benchmark": "diffusion_sampling",
        "config": {"T": args.T, "schedule": "linear", "epochs": args.epochs, "width": args.width,
                   "lr": args.lr, "guidance": args.guidance, "samples_per_row": n,
                   "parameters": sum(p.numel() for p in unet.parameters()),
                   "precision": "bf16"},
        "judge_test_accuracy": round(judge_test, 4),
        "judge_train_s": round(judge_s, 1),
        "diffusion_train_s": round(train_s, 1),
        "diffusion_train_images_per_s": round(history.images_per_s[-1], 1),
        "frechet_real_floor": round(floor, 3),
        "rows": rows,
        "device": describe(device),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        with atomic_write(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
