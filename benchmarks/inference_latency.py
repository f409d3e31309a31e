"""CPU inference latency of the chapter 09 model: PyTorch fp32 eager vs ONNX Runtime fp32 vs int8.

Trains ``dlkit.models.SmallCNN`` briefly on CIFAR-10, exports it to ONNX, quantizes it (static
int8 with calibration, and dynamic int8), measures test accuracy on the full test set and the
median/p95 latency at batch sizes 1 and 64 with a stated number of threads. Target: static int8
at least 2× faster than fp32 eager at batch 64 with at most 1 point of accuracy lost. Prints one
JSON line.

    DLKIT_DATA_DIR=... python benchmarks/inference_latency.py [--train-size 20000] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch

from dlkit import data, deploy
from dlkit.env import describe, seed_everything
from dlkit.models import SmallCNN
from dlkit.train import fit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-size", type=int, default=20_000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--repeats", type=int, default=50)
    args = p.parse_args()
    seed_everything(0)
    torch.set_num_threads(args.threads)

    train, test = data.load("cifar10", "train"), data.load("cifar10", "test")
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[: args.train_size]
    mean, std = data.channel_stats(train.subset(idx))
    X_train, y_train = data.to_tensors(train.subset(idx), mean, std)
    X_test, y_test = data.to_tensors(test, mean, std)
    model = SmallCNN(num_classes=10)
    fit(model, data.make_loader(X_train, y_train, 128, shuffle=True, seed=0), epochs=args.epochs, lr=2e-3,
        device="cpu", progress=False, verbose=False)
    model.eval()

    with tempfile.TemporaryDirectory() as tmp:
        fp32 = deploy.export_onnx(model, X_test[:2], Path(tmp) / "fp32.onnx")
        static = deploy.quantize_static_onnx(fp32, Path(tmp) / "static.onnx", X_train[:512].split(64))
        dynamic = deploy.quantize_dynamic_onnx(fp32, Path(tmp) / "dynamic.onnx")
        files = {"onnxruntime_fp32": fp32, "onnxruntime_int8_static": static, "onnxruntime_int8_dynamic": dynamic}
        sessions = {k: deploy.ort_session(v, threads=args.threads) for k, v in files.items()}
        parity = deploy.onnx_parity(model, sessions["onnxruntime_fp32"], X_test, batch_sizes=(1, 64, 500))
        with torch.inference_mode():
            acc = {"torch_fp32_eager": float((torch.cat([model(x) for x in X_test.split(500)]).argmax(1)
                                              == y_test).double().mean())}
        size = {"torch_fp32_eager": deploy.state_dict_size_mb(model)}
        for k, s in sessions.items():
            acc[k] = float((deploy.run_onnx(s, X_test, 500).argmax(1) == y_test.numpy()).mean())
            size[k] = deploy.file_size_mb(files[k])
        rows = deploy.latency_table({"torch_fp32_eager": model, **sessions}, X_test[:64], (1, 64),
                                    warmup=10, repeats=args.repeats, threads=args.threads)
    lat = {f"{r.name}@{r.batch_size}": {"median_ms": r.median_ms, "p95_ms": r.p95_ms,
                                        "images_per_s": r.images_per_s} for r in rows}
    eager64 = lat["torch_fp32_eager@64"]["median_ms"]
    speedup = {k: eager64 / lat[f"{k}@64"]["median_ms"] for k in sessions}
    drop_pt = 100 * (acc["torch_fp32_eager"] - acc["onnxruntime_int8_static"])
    print(json.dumps({
        "benchmark": "inference_latency",
        "hardware": describe(torch.device("cpu")),
        "machine": platform.processor() or platform.machine(),
        "threads": {"torch": args.threads, "onnxruntime_intra_op": args.threads},
        "train_size": args.train_size, "epochs": args.epochs, "test_images": len(X_test),
        "onnx_parity_max_abs_diff": parity.max_abs_diff,
        "accuracy": acc, "size_mb": size, "latency": lat,
        "speedup_vs_eager_at_64": speedup,
        "int8_static_vs_onnxruntime_fp32_at_64": lat["onnxruntime_fp32@64"]["median_ms"]
        / lat["onnxruntime_int8_static@64"]["median_ms"],
        "int8_static_accuracy_drop_pt": drop_pt,
        "target_met": bool(speedup["onnxruntime_int8_static"] >= 2 and drop_pt <= 1),
    }, indent=None, default=float))


if __name__ == "__main__":
    main()
