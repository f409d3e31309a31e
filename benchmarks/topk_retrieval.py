"""Top-k retrieval by inner product: exact (matrix product + torch.topk) against faiss IVF.

For catalogues of several sizes, item and user vectors are drawn from a mixture of Gaussians
(learned embeddings are clustered; isotropic noise would be the worst case for an inverted
file). Each method answers the same queries; the approximate ones are scored by their recall of
the exact top-k. Prints one JSON line: queries per second and recall for each catalogue size,
method and ``nprobe``. Used by chapter 13 (recommender systems), which reads the stored result.

    python benchmarks/topk_retrieval.py [--sizes 9742 100000 400000] [--queries 2000]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from dlkit.env import describe, seed_everything
from dlkit.recsys import AnnIndex, exact_topk, recall_of_approximation


def clustered(n: int, dim: int, centres: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    which = torch.randint(0, len(centres), (n,), generator=g)
    return centres[which] + 0.5 * torch.randn(n, dim, generator=g)


def best_of(fn, repeats: int) -> tuple[float, object]:
    """Fastest of ``repeats`` runs (seconds) and the last result."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[9742, 100_000, 400_000])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import faiss

    seed_everything(0, deterministic=False)
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(200, args.dim, generator=g)
    users = clustered(args.queries, args.dim, centres, g)
    rows = []
    for n in args.sizes:
        items = clustered(n, args.dim, centres, g)
        batch = max(16, min(1024, 50_000_000 // n))  # at most 200 MB of scores at a time
        t_exact, exact = best_of(lambda: exact_topk(users, items, args.k, batch), args.repeats)
        rows.append({"items": n, "method": "exact matmul+topk", "nprobe": None,
                     "queries_per_s": round(args.queries / t_exact), "recall": 1.0})
        nlist = max(1, int(4 * n ** 0.5))
        start = time.perf_counter()
        index = AnnIndex(items, nlist=nlist, nprobe=1, seed=0, max_points_per_centroid=64)
        build = time.perf_counter() - start
        for nprobe in args.nprobe:
            if nprobe > nlist:
                continue
            index.nprobe = nprobe
            t, approx = best_of(lambda: index.search(users, args.k), args.repeats)
            rows.append({"items": n, "method": "faiss IVFFlat", "nlist": nlist, "nprobe": nprobe,
                         "build_s": round(build, 2), "queries_per_s": round(args.queries / t),
                         "recall": round(recall_of_approximation(approx, exact), 4)})
    print(json.dumps({
        "benchmark": "topk_retrieval",
        "hardware": describe(torch.device("cpu")),
        "platform": platform.platform(),
        "faiss": faiss.__version__,
        "threads": args.threads, "kmeans_points_per_centroid": 64,
        "queries": args.queries, "dim": args.dim, "k": args.k,
        "results": rows,
    }))


if __name__ == "__main__":
    main()
