"""dlkit.shards: writing shards atomically and reading each item exactly once across workers and ranks."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dlkit.shards import INDEX_NAME, ShardedDataset, shard_assignment, write_shards


def _data(n=103, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 3, 4, 4), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.int64)
    return x, y


def test_roundtrip_in_order(tmp_path):
    x, y = _data()
    index = write_shards((x, y), tmp_path, shard_size=10, classes=list("abcdefghij"))
    meta = json.loads(index.read_text())
    assert [s["count"] for s in meta["shards"]] == [10] * 10 + [3]
    assert meta["count"] == 103 and meta["shape"] == [3, 4, 4]
    ds = ShardedDataset(tmp_path, with_ids=True)
    items = list(ds)
    assert [i for _, _, i in items] == list(range(103))
    assert torch.equal(torch.stack([img for img, _, _ in items]), torch.from_numpy(x))
    assert [lab for _, lab, _ in items] == y.tolist()
    assert ds.classes == list("abcdefghij")
    # No temporary files are left next to the shards.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([INDEX_NAME] + [s["file"] for s in meta["shards"]])


def test_batches_iterable_gives_same_shards_as_arrays(tmp_path):
    x, y = _data()
    write_shards((x, y), tmp_path / "a", shard_size=16)
    batches = ((x[i : i + 7], y[i : i + 7]) for i in range(0, len(y), 7))
    write_shards(batches, tmp_path / "b", shard_size=16)
    a = json.loads((tmp_path / "a" / INDEX_NAME).read_text())
    b = json.loads((tmp_path / "b" / INDEX_NAME).read_text())
    assert [s["sha256"] for s in a["shards"]] == [s["sha256"] for s in b["shards"]]


def test_shard_assignment_partitions_positions():
    got = []
    for rank in range(3):
        for worker in range(2):
            got += shard_assignment(17, rank, 3, worker, 2)
    assert sorted(got) == list(range(17))
    with pytest.raises(ValueError, match="rank"):
        shard_assignment(5, 2, 2, 0, 1)


@pytest.mark.parametrize("shuffle", [False, True])
def test_every_item_exactly_once_across_two_workers_and_two_ranks(tmp_path, shuffle, one_thread):
    x, y = _data(n=97)
    write_shards((x, y), tmp_path, shard_size=8)  # 13 shards for 4 readers: uneven on purpose
    per_epoch = []
    for epoch in range(2):
        seen: Counter = Counter()
        orders = []
        for rank in (0, 1):
            ds = ShardedDataset(tmp_path, shuffle=shuffle, seed=3, rank=rank, world_size=2, with_ids=True)
            ds.set_epoch(epoch)
            loader = DataLoader(ds, batch_size=5, num_workers=2)
            ids = []
            for images, labels, batch_ids in loader:
                assert torch.equal(images, torch.from_numpy(x[batch_ids.numpy()]))
                assert torch.equal(labels, torch.from_numpy(y[batch_ids.numpy()]))
                ids += batch_ids.tolist()
            seen.update(ids)
            orders.append(ids)
        assert sorted(seen) == list(range(97)) and set(seen.values()) == {1}
        per_epoch.append(orders)
    if shuffle:
        assert per_epoch[0] != per_epoch[1]  # a new order each epoch
        assert per_epoch[0][0] != sorted(per_epoch[0][0])
    else:
        assert per_epoch[0] == per_epoch[1]


def test_shuffle_is_deterministic_for_a_seed(tmp_path):
    x, y = _data()
    write_shards((x, y), tmp_path, shard_size=10)
    a = [i for *_, i in ShardedDataset(tmp_path, shuffle=True, seed=1, with_ids=True)]
    b = [i for *_, i in ShardedDataset(tmp_path, shuffle=True, seed=1, with_ids=True)]
    c = [i for *_, i in ShardedDataset(tmp_path, shuffle=True, seed=2, with_ids=True)]
    assert a == b and a != c and sorted(a) == list(range(103))


def test_rank_defaults_to_a_single_process(tmp_path):
    write_shards(_data(), tmp_path, shard_size=50)
    ds = ShardedDataset(tmp_path)
    assert (ds.rank, ds.world_size) == (0, 1)
    with pytest.raises(ValueError, match="rank"):
        ShardedDataset(tmp_path, rank=2, world_size=2)


def test_refuses_to_overwrite_and_rejects_bad_input(tmp_path):
    x, y = _data()
    write_shards((x, y), tmp_path, shard_size=50)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_shards((x, y), tmp_path)
    write_shards((x[:20], y[:20]), tmp_path, shard_size=50, overwrite=True)
    assert len(list(ShardedDataset(tmp_path))) == 20
    assert len(list(tmp_path.glob("shard-*.npz"))) == 1  # old shards removed
    with pytest.raises(ValueError, match="uint8"):
        write_shards((x.astype(np.float32), y), tmp_path / "f")
    with pytest.raises(ValueError, match="labels"):
        write_shards((x, y[:5]), tmp_path / "g")
    with pytest.raises(FileNotFoundError, match="index.json"):
        ShardedDataset(tmp_path / "nothing")


def test_verify_detects_a_corrupt_shard(tmp_path):
    write_shards(_data(), tmp_path, shard_size=50)
    shard = tmp_path / "shard-00001.npz"
    raw = bytearray(shard.read_bytes())
    raw[-200] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt"):
        list(ShardedDataset(tmp_path, verify=True))
