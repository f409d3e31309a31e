"""Peak memory of a full streaming pass over shards: flat while the data grows tenfold.

Writes two sharded datasets of random uint8 images, one the size of a fixed memory budget and one
ten times larger (written batch by batch, never held in memory), then streams each through
``dlkit.shards.ShardedDataset`` in a fresh process (``DataLoader`` batches plus
``RunningChannelStats``, i.e. one epoch of reading) and records that process's peak resident
memory (``ru_maxrss``). A third fresh process only imports the same modules: the baseline.
Prints one JSON object with both data sizes, the three peaks and the ratio of the two passes'
growth over the baseline (1.0 = memory does not depend on the data size).

    python benchmarks/shard_memory.py [--budget-mib 32] [--factor 10] [--shard-items 1000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from dlkit.shards import write_shards

CHILD = r"""
import json, resource, sys
import torch
from torch.utils.data import DataLoader
from dlkit.data import RunningChannelStats
from dlkit.shards import ShardedDataset
torch.set_num_threads(1)
n = 0
if sys.argv[1] != "baseline":
    ds = ShardedDataset(sys.argv[1], shuffle=True, seed=0)
    stats = RunningChannelStats()
    for X, y in DataLoader(ds, batch_size=256):
        stats.update(X)
        n += len(y)
print(json.dumps({"items": n, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write(root: Path, n_items: int, shard_items: int) -> int:
    rng = np.random.default_rng(0)

    def batches():
        for start in range(0, n_items, 500):
            k = min(500, n_items - start)
            yield rng.integers(0, 256, (k, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, k)

    write_shards(batches(), root, shard_size=shard_items)
    return sum(p.stat().st_size for p in root.glob("shard-*.npz"))


def measure(target: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, target], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget-mib", type=float, default=32)
    ap.add_argument("--factor", type=int, default=10)
    ap.add_argument("--shard-items", type=int, default=1000)
    args = ap.parse_args()
    per_item = 3 * 32 * 32
    small_n = int(args.budget_mib * 2**20 // per_item)
    with tempfile.TemporaryDirectory() as tmp:
        small, large = Path(tmp) / "small", Path(tmp) / "large"
        small_bytes = write(small, small_n, args.shard_items)
        large_bytes = write(large, small_n * args.factor, args.shard_items)
        base = measure("baseline")
        a, b = measure(str(small)), measure(str(large))
    assert a["items"] == small_n and b["items"] == small_n * args.factor
    growth_small = a["peak_rss_mib"] - base["peak_rss_mib"]
    growth_large = b["peak_rss_mib"] - base["peak_rss_mib"]
    print(json.dumps({
        "benchmark": "shard_memory",
        "memory_budget_mib": args.budget_mib,
        "shard_items": args.shard_items,
        "small_data_mib": round(small_bytes / 2**20, 1),
        "large_data_mib": round(large_bytes / 2**20, 1),
        "data_ratio": round(large_bytes / small_bytes, 2),
        "baseline_peak_rss_mib": round(base["peak_rss_mib"], 1),
        "small_pass_peak_rss_mib": round(a["peak_rss_mib"], 1),
        "large_pass_peak_rss_mib": round(b["peak_rss_mib"], 1),
        "growth_over_baseline_mib": [round(growth_small, 1), round(growth_large, 1)],
        "peak_ratio_large_vs_small": round(b["peak_rss_mib"] / a["peak_rss_mib"], 3),
        "large_pass_growth_below_budget": growth_large < args.budget_mib,
    }))


if __name__ == "__main__":
    main()
