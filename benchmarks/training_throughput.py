"""Training throughput: the article's training loop against dlkit's fastest configuration.

The baseline is the loop of the source article (its bugs fixed, 32×32 inputs): a
torchvision-style Dataset that turns every image into a PIL image and runs per-image transforms,
a DataLoader without workers, fp32. dlkit's configurations keep the data as uint8 tensors on the
device, normalise whole batches there (``fit(train_transform=...)``), and try channels-last,
bf16 autocast and ``torch.compile``. Same model (chapter 04's SmallCNN), same batch size, same
optimizer, same machine, one run; the fastest dlkit configuration is divided by the baseline.

On CUDA it also trains ResNetCIFAR (ResNet-18) in fp32 with TF32 switched off (an honest fp32
baseline), TF32, and bf16, and reports the bf16 speed-up and each configuration's peak memory.
A configuration that fails is reported as an ``error`` entry; the others still run.

    python benchmarks/training_throughput.py --device cpu [--quick]
    python benchmarks/training_throughput.py --device cuda --synthetic      # about 2 minutes

Reads CIFAR-10 (``$DLKIT_DATA_DIR`` or the cache) when it is there and falls back to random
images otherwise (``--synthetic`` asks for them); the ``data`` field says which. Prints one JSON
line.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader

from dlkit.data import channel_stats, load, make_loader
from dlkit.env import describe, seed_everything
from dlkit.models import ResNetCIFAR, SmallCNN
from dlkit.throughput import PILImageDataset, measure, per_image_transform


def get_images(n: int, synthetic: bool) -> tuple[torch.Tensor, torch.Tensor, str]:
    if not synthetic:
        try:
            ds = load("cifar10", split="train")
            pick = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:n]
            return ds.images[pick], ds.labels[pick], "cifar10"
        except FileNotFoundError:
            pass
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
            torch.randint(0, 10, (n,), generator=g), "random uint8 (synthetic)")


def batch_normalizer(mean: torch.Tensor, std: torch.Tensor) -> Callable:
    """uint8 batch on the device -> normalised float32, one vectorised op for the whole batch."""
    scale, shift = None, None

    def transform(X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal scale, shift
        if scale is None or scale.device != X.device:
            scale = (1 / (255 * std)).view(1, -1, 1, 1).to(X.device)
            shift = (mean / std).view(1, -1, 1, 1).to(X.device)
        return X.float().mul_(scale).sub_(shift), y

    return transform


def set_tf32(enabled: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    torch.set_float32_matmul_precision("high" if enabled else "highest")


def run_config(name: str, results: dict[str, Any], fn: Callable[[], dict[str, float]]) -> None:
    start = time.perf_counter()
    try:
        out = fn()
        results[name] = {k: (round(v, 2) if v == v else None) for k, v in out.items()}
    except Exception as error:  # one failing configuration must not lose the others
        results[name] = {"error": f"{type(error).__name__}: {error}".strip()[:500],
                         "where": traceback.format_exc(limit=-2)[-600:]}
    results[name]["wall_s"] = round(time.perf_counter() - start, 1)
    print(f"# {name}: {results[name]}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="fewer steps, no torch.compile")
    parser.add_argument("--synthetic", action="store_true", help="random uint8 images")
    parser.add_argument("--steps", type=int, default=None, help="timed batches per config")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--compile", default="auto", choices=["auto", "on", "off"],
                        help="auto: on for a full CPU run, off on CUDA and with --quick")
    args = parser.parse_args()

    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch.cuda.is_available() is False")
    device = torch.device(args.device)
    steps = args.steps or ((50 if args.quick else 200) if cuda else (8 if args.quick else 30))
    batch_size = args.batch_size or (256 if cuda else 128)
    use_compile = args.compile == "on" or (args.compile == "auto" and not cuda and not args.quick)
    seed_everything(0, deterministic=False)
    if cuda:
        torch.backends.cudnn.benchmark = True

    n = max(batch_size * min(steps, 40), 4096)
    images, labels, source = get_images(n, args.synthetic)
    mean, std = channel_stats(images)
    results: dict[str, Any] = {}
    small = lambda: SmallCNN(num_classes=10)  # noqa: E731

    # The article's pipeline: PIL image + per-image transforms in the main process, fp32.
    pil = PILImageDataset(images, labels, per_image_transform(mean.tolist(), std.tolist()))
    pil_loader = DataLoader(pil, batch_size=batch_size, shuffle=True, num_workers=0)
    if cuda:
        set_tf32(False)
    baseline = lambda: measure(small, pil_loader, steps=steps, device=device)  # noqa: E731
    run_config("article_pil_fp32", results, baseline)

    # dlkit: uint8 tensors already on the device, normalised per batch on the device.
    X_dev, y_dev = images.to(device), labels.to(device)
    fast_loader = make_loader(X_dev, y_dev, batch_size, shuffle=True, seed=0)
    norm = batch_normalizer(mean, std)
    options = {
        "tensors_fp32": {},
        "tensors_fp32_channels_last": {"channels_last": True},
        "tensors_bf16": {"precision": "bf16"},
        "tensors_bf16_channels_last": {"precision": "bf16", "channels_last": True},
    }
    if use_compile:
        options["tensors_fp32_compile"] = {"compile": True}
        options["tensors_bf16_channels_last_compile"] = {"precision": "bf16",
                                                         "channels_last": True, "compile": True}
    for name, opts in options.items():
        run_config(name, results, lambda opts=opts: measure(
            small, fast_loader, steps=steps, device=device, train_transform=norm,
            warmup=5 if opts.get("compile") else 2, **opts))
    # The baseline again: a shared machine's speed drifts, so the ratio uses both runs.
    run_config("article_pil_fp32_again", results, baseline)

    base_runs = [results[k]["images_per_s"] for k in ("article_pil_fp32", "article_pil_fp32_again")
                 if "images_per_s" in results[k]]
    fast = {k: results[k]["images_per_s"] for k in options if "images_per_s" in results[k]}
    summary: dict[str, Any] = {}
    if base_runs and fast:
        best = max(fast, key=fast.get)
        base = statistics.mean(base_runs)
        summary.update(baseline_images_per_s=round(base, 1), fastest_config=best,
                       fastest_images_per_s=fast[best], speedup_vs_article=round(fast[best] / base, 2))
        if "images_per_s" in results.get("tensors_fp32", {}):
            summary["input_pipeline_only_speedup"] = round(results["tensors_fp32"]["images_per_s"]
                                                           / base, 2)

    if cuda:
        # ResNet-18 for CIFAR: where tensor cores pay off. Synthetic or real, the data is on the GPU.
        res_steps = steps
        resnet = lambda: ResNetCIFAR(num_classes=10)  # noqa: E731
        for name, tf32, opts in [("resnet_fp32_no_tf32", False, {}),
                                 ("resnet_tf32", True, {}),
                                 ("resnet_bf16", False, {"precision": "bf16"}),
                                 ("resnet_bf16_channels_last", False,
                                  {"precision": "bf16", "channels_last": True})]:
            def go(tf32: bool = tf32, opts: dict = opts) -> dict[str, float]:
                set_tf32(tf32)
                return measure(resnet, fast_loader, steps=res_steps, warmup=10, device=device,
                               train_transform=norm, **opts)
            run_config(name, results, go)
        set_tf32(False)
        r = {k: results[k].get("images_per_s") for k in results if k.startswith("resnet")}
        if r.get("resnet_fp32_no_tf32"):
            base = r["resnet_fp32_no_tf32"]
            summary["resnet_speedup_vs_fp32"] = {k: round(v / base, 2) for k, v in r.items() if v}
            bf16 = [v for k, v in r.items() if k.startswith("resnet_bf16") and v]
            if bf16:
                summary["resnet_bf16_speedup_vs_fp32"] = round(max(bf16) / base, 2)
        summary["resnet_peak_memory_mb"] = {k: results[k].get("peak_memory_mb") for k in r}

    print(json.dumps({
        "benchmark": "training_throughput",
        "hardware": describe(device),
        "platform": platform.platform(),
        "data": source,
        "model": "SmallCNN(num_classes=10)" + (" and ResNetCIFAR (ResNet-18)" if cuda else ""),
        "batch_size": batch_size,
        "timed_steps_per_config": steps,
        "compile_tried": use_compile,
        "summary": summary,
        "configs": results,
    }))


if __name__ == "__main__":
    main()
