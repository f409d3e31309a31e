"""Tests for dlkit.distributed: a real 2-process torchrun run (gloo) against one process."""

from __future__ import annotations

import socket
import sys

import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, TensorDataset

from dlkit import ddp_example
from dlkit.distributed import (
    all_reduce_mean,
    distributed,
    is_main,
    run_torchrun,
    save_on_main,
    setup,
    shard_loader,
    torchrun_command,
    world_size,
)

pytestmark = pytest.mark.usefixtures("one_thread")

_DIST_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def no_dist_env(monkeypatch):
    for name in _DIST_ENV:
        monkeypatch.delenv(name, raising=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- #
# The equivalence, with two real processes
# --------------------------------------------------------------------------- #
def test_ddp_with_two_ranks_of_batch_b_equals_one_process_with_batch_2b(tmp_path, no_dist_env):
    common = ["--data", "shapes", "--train-size", "128", "--image-size", "16", "--epochs", "2",
              "--lr", "0.1", "--device", "cpu"]
    out = tmp_path / "ddp.pt"
    done = run_torchrun(["dlkit.ddp_example", *common, "--batch-size", "16", "--out", str(out)],
                        nproc_per_node=2, module=True, timeout=240)
    assert "world size 2 (gloo, cpu)" in done.stdout
    # Rank 0 alone prints: each line appears once, not once per rank.
    assert done.stdout.count("rank 0 saved the weights") == 1
    ddp = torch.load(out, weights_only=True)

    single = ddp_example.main([*common, "--batch-size", "32"])
    assert ddp.keys() == single.keys()
    for name in single:
        torch.testing.assert_close(ddp[name], single[name], rtol=1e-5, atol=1e-6, msg=name)

    # The comparison can fail: one process with batch B (twice as many steps) ends elsewhere.
    small = ddp_example.main([*common, "--batch-size", "16"])
    assert max((small[k] - ddp[k]).abs().max().item() for k in ddp) > 1e-3
    # And training moved the weights at all.
    seed_state = ddp_example.main([*common, "--batch-size", "32", "--epochs", "1", "--lr", "0"])
    assert max((seed_state[k] - ddp[k]).abs().max().item() for k in ddp) > 1e-3


def test_a_failing_rank_makes_run_torchrun_raise_with_its_output(tmp_path, no_dist_env):
    script = tmp_path / "fail.py"
    script.write_text("import os, sys\n"
                      "print('rank', os.environ['RANK'], 'of', os.environ['WORLD_SIZE'])\n"
                      "sys.exit(3 if os.environ['RANK'] == '1' else 0)\n")
    with pytest.raises(RuntimeError, match="torchrun exited with status"):
        run_torchrun([str(script)], nproc_per_node=2, timeout=120)


# --------------------------------------------------------------------------- #
# Sharding
# --------------------------------------------------------------------------- #
def test_rank_shards_together_make_the_large_batch():
    X = torch.arange(40).float().unsqueeze(1)
    y = torch.arange(40)
    B, W = 4, 2
    ranks = [shard_loader((X, y), B, seed=3, num_replicas=W, rank_=r) for r in range(W)]
    single = shard_loader((X, y), W * B, seed=3, num_replicas=1, rank_=0)
    assert len(single) == len(ranks[0]) == 5
    for _epoch in range(2):
        big = [b[1] for b in single]
        parts = [[b[1] for b in loader] for loader in ranks]
        for k, batch in enumerate(big):
            together = torch.cat([parts[r][k] for r in range(W)])
            assert sorted(together.tolist()) == sorted(batch.tolist())
        # Every example is seen once per epoch, by exactly one rank.
        seen = torch.cat([torch.cat(p) for p in parts])
        assert sorted(seen.tolist()) == list(range(40))
    # Rank r's indices are those of torch's DistributedSampler (the reference).
    reference = DistributedSampler(TensorDataset(X, y), num_replicas=W, rank=1, seed=3)
    reference.set_epoch(0)
    fresh = shard_loader((X, y), 100, seed=3, num_replicas=W, rank_=1)
    assert next(iter(fresh))[1].tolist() == list(reference)


def test_epoch_loader_reshuffles_when_told_the_epoch_and_repeats_with_the_seed():
    X, y = torch.zeros(64, 1), torch.arange(64)
    a = shard_loader((X, y), 64, seed=0, num_replicas=1, rank_=0)
    b = shard_loader((X, y), 64, seed=0, num_replicas=1, rank_=0)
    first = next(iter(a))[1]
    assert torch.equal(first, next(iter(a))[1])  # no hidden counter: same epoch, same order
    a.set_epoch(1)
    second = next(iter(a))[1]
    assert not torch.equal(first, second)  # a new epoch, a new permutation
    assert sorted(second.tolist()) == list(range(64))
    assert torch.equal(first, next(iter(b))[1])  # same seed, same first epoch
    b.set_epoch(1)
    assert torch.equal(second, next(iter(b))[1])  # the permutation depends on seed + epoch only


class _Recorder(torch.nn.Module):
    """A linear classifier that records the example ids (column 0 of X) it is trained on."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(1, 2)
        self.seen: list[list[int]] = []

    def forward(self, x):
        if self.training:
            self.seen.append(x[:, 0].long().tolist())
        return self.fc(x[:, 1:])


def test_resumed_run_sees_the_same_shards_as_an_uninterrupted_one(tmp_path):
    """Regression: EpochLoader counted its own passes, so a resumed run replayed epoch 0."""
    from dlkit.train import fit

    g = torch.Generator().manual_seed(0)
    X = torch.cat([torch.arange(32).float().unsqueeze(1), torch.randn(32, 1, generator=g)], 1)
    y = (X[:, 1] > 0).long()

    def run(epochs, **kwargs):
        model = _Recorder()
        loader = shard_loader((X, y), 8, seed=5, num_replicas=2, rank_=1)  # a new process
        fit(model, loader, epochs=epochs, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            device="cpu", progress=False, verbose=False, **kwargs)
        return model

    whole = run(3)
    run(2, checkpoint=tmp_path / "c.pt")
    resumed = run(3, checkpoint=tmp_path / "c.pt", resume=True)
    per_epoch = len(whole.seen) // 3
    assert resumed.seen == whole.seen[2 * per_epoch:]  # epoch 3's shard, not epoch 1's again
    assert torch.equal(resumed.fc.weight, whole.fc.weight)


def test_shard_loader_rejects_bad_input():
    with pytest.raises(ValueError, match="batch_size"):
        shard_loader((torch.zeros(4, 1), torch.zeros(4)), 0)
    with pytest.raises(ValueError, match="same length"):
        shard_loader((torch.zeros(4, 1), torch.zeros(5)), 2)


# --------------------------------------------------------------------------- #
# Set-up and teardown
# --------------------------------------------------------------------------- #
def test_plain_python_is_a_world_of_one(no_dist_env):
    ctx = setup()
    assert (ctx.rank, ctx.world_size, ctx.backend, ctx.is_main) == (0, 1, None, True)
    assert not dist.is_initialized()
    net = torch.nn.Linear(2, 2)
    assert ctx.wrap(net) is net
    assert world_size() == 1 and is_main()
    assert all_reduce_mean(torch.tensor(2.5)).item() == 2.5


def test_setup_rejects_a_partial_or_inconsistent_environment(monkeypatch, no_dist_env):
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ValueError, match="launch with torchrun"):
        setup()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK < WORLD_SIZE"):
        setup()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="RANK must be an integer"):
        setup()
    with pytest.raises(ValueError, match="backend"):
        monkeypatch.setenv("RANK", "0")
        setup(backend="mpi")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without CUDA")
def test_nccl_without_cuda_is_a_clear_error(no_dist_env):
    with pytest.raises(RuntimeError, match="nccl backend needs CUDA"):
        setup(backend="nccl")


def test_context_manager_leaves_the_group_even_on_error(monkeypatch, no_dist_env):
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(KeyError, match="boom"):
        with distributed(device="cpu") as ctx:
            assert dist.is_initialized() and ctx.backend == "gloo"
            assert dist.get_world_size() == 1
            model = ctx.wrap(torch.nn.Linear(3, 1))
            assert isinstance(model, torch.nn.Linear)  # world of one: nothing to wrap
            raise KeyError("boom")
    assert not dist.is_initialized()


# --------------------------------------------------------------------------- #
# Saving and launching
# --------------------------------------------------------------------------- #
def test_save_on_main_is_atomic_and_loads_with_weights_only(tmp_path, no_dist_env):
    state = {"w": torch.arange(3.0)}
    path = save_on_main(state, tmp_path / "ckpt.pt")
    assert path == tmp_path / "ckpt.pt"
    assert torch.equal(torch.load(path, weights_only=True)["w"], state["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temp file left behind
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_on_main(state, tmp_path / "missing" / "ckpt.pt")


def test_save_on_main_keeps_the_old_file_when_saving_fails(tmp_path, no_dist_env):
    path = tmp_path / "ckpt.pt"
    save_on_main({"w": torch.ones(2)}, path)
    with pytest.raises(Exception):
        save_on_main({"bad": lambda: None}, path)  # a lambda cannot be pickled
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_torchrun_command_for_one_and_several_nodes():
    one = torchrun_command(["train.py", "--epochs", "3"], 4)
    assert one[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--standalone" in one and one[-3:] == ["train.py", "--epochs", "3"]
    assert one[one.index("--nproc-per-node") + 1] == "4"
    many = torchrun_command("dlkit.ddp_example", 8, module=True, nnodes=2,
                            rdzv_endpoint="node0:29500")
    assert "--standalone" not in many
    assert many[many.index("--rdzv-backend") + 1] == "c10d"
    assert many[many.index("--rdzv-endpoint") + 1] == "node0:29500"
    assert many[-2:] == ["-m", "dlkit.ddp_example"]
    with pytest.raises(ValueError, match="rdzv_endpoint"):
        torchrun_command("train.py", 2, nnodes=2)
    with pytest.raises(ValueError, match="nproc_per_node"):
        torchrun_command("train.py", 0)
