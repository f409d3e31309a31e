"""Load test of the chapter 09 HTTP service: throughput and p50/p99 latency, zero errors expected.

The server (``python -m dlkit.deploy``, uvicorn, one worker) runs in its own process on a
free port of 127.0.0.1 with ``dlkit.models.SmallCNN``; this process sends ``--requests`` PNG
images from ``--concurrency`` parallel keep-alive clients. Throughput depends on the model's
compute, not on its accuracy, so the weights are the untrained initialisation. Bad requests are
mixed in before and after the load to check that the server keeps serving. Prints one JSON object.

The server runs at most ``--max-concurrency`` forward passes at once (default: the CPU cores
divided by ``--server-threads``, the service's own default); ``--max-concurrency 40`` reproduces
the former unbounded behaviour (anyio's default thread pool of 40).

    python benchmarks/serving_load.py [--requests 2000] [--concurrency 16] [--server-threads 1]
                                      [--max-concurrency N]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

from dlkit import deploy
from dlkit.env import describe
from dlkit.models import SmallCNN

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--server-threads", type=int, default=1)
    p.add_argument("--max-concurrency", type=int, default=None,
                   help="forward passes at once in the server (default: cores // --server-threads)")
    args = p.parse_args()
    cap = args.max_concurrency or deploy.default_max_concurrency(args.server_threads)
    torch.manual_seed(0)
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
    body = buf.getvalue()
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "smallcnn.pt"
        torch.save(SmallCNN(num_classes=10).state_dict(), weights)
        port = free_port()
        cmd = [sys.executable, "-m", "dlkit.deploy", "--model", "dlkit.models:SmallCNN",
               "--weights", str(weights), "--classes", ",".join(CLASSES), "--mean", "0.49,0.48,0.45",
               "--std", "0.25,0.24,0.26", "--port", str(port), "--threads", str(args.server_threads),
               "--max-concurrency", str(cap)]
        server = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": str(args.server_threads)})
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the server did not start")
                time.sleep(0.2)
            bad = [httpx.post(url + "/predict", content=b"junk", headers={"content-type": "image/png"}).status_code,
                   httpx.post(url + "/predict", content=body, headers={"content-type": "text/plain"}).status_code]
            deploy.load_test(url + "/predict", body, requests=50, concurrency=args.concurrency)  # warm-up
            report = deploy.load_test(url + "/predict", body, requests=args.requests, concurrency=args.concurrency)
            bad.append(httpx.post(url + "/predict", content=b"", headers={"content-type": "image/png"}).status_code)
            health = httpx.get(url + "/health").json()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(json.dumps({
        "benchmark": "serving_load",
        "hardware": describe(torch.device("cpu")),
        "server": {"process": "separate", "workers": 1, "torch_threads": args.server_threads,
                   "max_concurrency": cap},
        **report,
        "bad_request_statuses": bad,
        "healthy_after": health["status"] == "ok",
    }))


if __name__ == "__main__":
    main()
