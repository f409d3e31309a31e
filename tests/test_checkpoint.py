"""Tests for checkpoints and exact resumption (dlkit.checkpoint, fit(checkpoint=..., resume=...))."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import dlkit.checkpoint as ckpt
from dlkit.checkpoint import (
    CheckpointError,
    load_checkpoint,
    previous_path,
    save_checkpoint,
)
from dlkit.data import make_loader
from dlkit.train import EarlyStopping, fit

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]

# A training run small enough to repeat three times, with every source of randomness a resume
# must reproduce: a seeded shuffling loader, dropout and a noise augmentation (global torch RNG),
# BatchNorm running statistics, Adam's moments and a per-step learning-rate schedule.
SCRIPT = textwrap.dedent('''
    import sys, time
    import torch
    from torch import nn
    from dlkit.data import make_loader
    from dlkit.train import fit

    epochs, ckpt_path, out_path, pause = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(96, 3, 8, 8, generator=g)
    y = torch.randint(0, 4, (96,), generator=g)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(0.3), nn.Linear(32, 4))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    loader = make_loader(X, y, 16, shuffle=True, seed=5)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=epochs * len(loader))

    def noisy(xb, yb):
        if pause:
            time.sleep(pause)  # slows the run down so that it can be killed mid-way
        return xb + 0.1 * torch.randn_like(xb), yb

    h = fit(net, loader, make_loader(X[:32], y[:32], 16), epochs=epochs, optimizer=opt,
            scheduler=sched, device="cpu", progress=False, verbose=False, train_transform=noisy,
            checkpoint=ckpt_path if ckpt_path != "-" else None, resume=ckpt_path != "-")
    torch.save({"model": net.state_dict(), "train_loss": torch.tensor(h.train_loss, dtype=torch.float64),
                "epochs_run": torch.tensor(h.epoch)}, out_path)
''')


def _run_script(tmp_path: Path, *args: str) -> subprocess.Popen:
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(script), *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err


def test_killed_run_resumes_to_bit_identical_weights(tmp_path):
    epochs = 6
    reference = _run_script(tmp_path, str(epochs), "-", str(tmp_path / "ref.pt"), "0")
    _finish(reference)

    path = tmp_path / "run" / "ckpt.pt"
    victim = _run_script(tmp_path, str(epochs), str(path), str(tmp_path / "never.pt"), "0.15")
    saved_epoch = 0
    deadline = time.monotonic() + 120
    try:
        while saved_epoch < 2:
            assert victim.poll() is None, "the run ended before it could be interrupted"
            assert time.monotonic() < deadline, "no checkpoint of epoch 2 appeared"
            if path.exists():
                saved_epoch = load_checkpoint(path)["epoch"]  # complete files only: os.replace
            time.sleep(0.02)
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    interrupted_at = load_checkpoint(path)["epoch"]
    assert 2 <= interrupted_at < epochs  # killed mid-run, after at least two checkpoints
    assert not (tmp_path / "never.pt").exists()

    resumed = _run_script(tmp_path, str(epochs), str(path), str(tmp_path / "resumed.pt"), "0")
    _finish(resumed)
    ref = torch.load(tmp_path / "ref.pt", weights_only=True)
    got = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert got["epochs_run"].tolist() == list(range(1, epochs + 1))
    assert ref["model"].keys() == got["model"].keys()
    for name, tensor in ref["model"].items():
        assert torch.equal(tensor, got["model"][name]), name
    assert torch.equal(ref["train_loss"], got["train_loss"])
    assert load_checkpoint(path)["epoch"] == epochs


# --------------------------------------------------------------------------- #
# In-process resumption
# --------------------------------------------------------------------------- #
def _data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 4, generator=g)
    y = torch.randint(0, 3, (60,), generator=g)
    return X, y


def _setup(seeded_loader: bool = True, optimizer: str = "sgd"):
    X, y = _data()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    opt = (torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9) if optimizer == "sgd"
           else torch.optim.AdamW(net.parameters(), lr=1e-2))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.8)
    loader = make_loader(X, y, 8, shuffle=True, seed=3 if seeded_loader else None)
    return net, opt, sched, loader, make_loader(X[:20], y[:20], 10)


def _train(epochs, seeded_loader=True, optimizer="sgd", **kwargs):
    net, opt, sched, loader, val = _setup(seeded_loader, optimizer)
    h = fit(net, loader, val, epochs=epochs, optimizer=opt, scheduler=sched, device="cpu",
            progress=False, verbose=False, **kwargs)
    return net, h


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("seeded_loader", [True, False])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_resume_in_process_matches_uninterrupted(tmp_path, seeded_loader, optimizer):
    ref, ref_h = _train(5, seeded_loader, optimizer)
    path = tmp_path / "c.pt"
    _train(2, seeded_loader, optimizer, checkpoint=path)
    torch.manual_seed(999)  # the resumed process's own randomness must not matter
    random.seed(999)
    np.random.seed(999)
    net, h = _train(5, seeded_loader, optimizer, checkpoint=path, resume=True)
    assert h.epoch == [1, 2, 3, 4, 5]
    assert h.train_loss == ref_h.train_loss and h.val_loss == ref_h.val_loss
    assert h.lr == ref_h.lr
    assert _same_weights(net, ref)


def test_resume_without_a_restored_shuffle_would_differ(tmp_path):
    # The control experiment: skipping the loader's generator state breaks exactness.
    ref, _ = _train(4)
    path = tmp_path / "c.pt"
    _train(2, checkpoint=path)
    state = load_checkpoint(path)
    state["loader_generators"] = [torch.Generator().manual_seed(3).get_state()]
    save_checkpoint(state, path)
    net, _ = _train(4, checkpoint=path, resume=True)
    assert not _same_weights(net, ref)


def test_resume_continues_early_stopping(tmp_path):
    def run(epochs, **kwargs):
        return _train(epochs, early_stopping=EarlyStopping(patience=2, min_delta=0.5), **kwargs)

    ref, ref_h = run(8)
    assert len(ref_h) < 8  # min_delta 0.5 is never met after the first epoch: it stops early
    path = tmp_path / "c.pt"
    run(2, checkpoint=path)
    net, h = run(8, checkpoint=path, resume=True)
    assert h.epoch == ref_h.epoch
    assert _same_weights(net, ref)
    again, h2 = run(8, checkpoint=path, resume=True)  # a stopped run stays stopped
    assert h2.epoch == ref_h.epoch and _same_weights(again, ref)


def test_resume_true_without_a_file_starts_afresh(tmp_path):
    ref, _ = _train(3)
    net, h = _train(3, checkpoint=tmp_path / "new.pt", resume=True)
    assert h.epoch == [1, 2, 3] and _same_weights(net, ref)
    assert load_checkpoint(tmp_path / "new.pt")["epoch"] == 3


def test_resume_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="resume=True continues from the checkpoint file"):
        _train(1, resume=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint file there"):
        _train(1, resume=tmp_path / "missing.pt")


def test_resume_from_a_finished_run_trains_no_more(tmp_path):
    path = tmp_path / "c.pt"
    first, _ = _train(3, checkpoint=path)
    net, h = _train(3, checkpoint=path, resume=True)
    assert h.epoch == [1, 2, 3] and _same_weights(net, first)


def test_checkpoint_contents_load_with_weights_only(tmp_path):
    path = tmp_path / "sub" / "c.pt"
    net, h = _train(2, checkpoint=path)
    state = torch.load(path, weights_only=True)
    assert state["format"] == ckpt.FORMAT
    assert state["epoch"] == 2 and state["stopped"] is False
    assert set(state) >= {"model", "optimizer", "scheduler", "scaler", "rng", "history",
                          "loader_generators", "early_stopping"}
    assert state["history"]["train_loss"] == h.train_loss
    assert state["scheduler"]["last_epoch"] == 2 * 8
    assert len(state["loader_generators"]) == 1
    for name, tensor in net.state_dict().items():
        assert torch.equal(state["model"][name], tensor)
    assert load_checkpoint(previous_path(path))["epoch"] == 1
    assert sorted(os.listdir(path.parent)) == ["c.pt", "c.pt.prev"]  # no temp files left


# --------------------------------------------------------------------------- #
# Broken files
# --------------------------------------------------------------------------- #
def test_truncated_checkpoint_names_the_file_and_the_previous_one_still_resumes(tmp_path):
    ref, _ = _train(5)
    path = tmp_path / "c.pt"
    _train(3, checkpoint=path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"c\.pt is corrupt or truncated.*c\.pt\.prev is untouched"):
        _train(5, checkpoint=path, resume=True)
    net, h = _train(5, resume=previous_path(path))  # the epoch-2 checkpoint
    assert h.epoch == [1, 2, 3, 4, 5]
    assert _same_weights(net, ref)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04garbage"])
def test_garbage_checkpoint(tmp_path, content):
    path = tmp_path / "c.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=rf"checkpoint {path} is corrupt or truncated"):
        load_checkpoint(path)


def test_checkpoint_with_arbitrary_objects_is_refused(tmp_path):
    path = tmp_path / "c.pt"
    torch.save({"format": ckpt.FORMAT, "payload": EarlyStopping(3)}, path)  # a pickled object
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_checkpoint(path)


def test_a_plain_state_dict_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(CheckpointError, match="is not a dlkit checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="no checkpoint file at"):
        load_checkpoint(tmp_path / "nope.pt")


def test_checkpoint_of_another_model_is_refused(tmp_path):
    path = tmp_path / "c.pt"
    _train(1, checkpoint=path)
    X, y = _data()
    with pytest.raises(CheckpointError, match="does not match this model"):
        fit(nn.Linear(4, 3), make_loader(X, y, 8), epochs=2, device="cpu", progress=False,
            verbose=False, checkpoint=path, resume=True)


def test_failure_mid_write_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint({"format": ckpt.FORMAT, "epoch": 1, "w": torch.arange(5)}, path)
    save_checkpoint({"format": ckpt.FORMAT, "epoch": 2, "w": torch.arange(6)}, path)
    before, before_prev = path.read_bytes(), previous_path(path).read_bytes()
    real_save = torch.save

    def disk_full(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(100)  # half-written ...
        raise OSError(28, "No space left on device")  # ... then the disk fills up

    monkeypatch.setattr(ckpt.torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint({"format": ckpt.FORMAT, "epoch": 3, "w": torch.arange(7)}, path)
    assert path.read_bytes() == before and previous_path(path).read_bytes() == before_prev
    assert sorted(os.listdir(tmp_path)) == ["c.pt", "c.pt.prev"]
    assert load_checkpoint(path)["epoch"] == 2


def test_failure_during_fit_keeps_the_last_good_epoch(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    real_save = torch.save
    calls = []

    def flaky(obj, f, *args, **kwargs):
        calls.append(obj["epoch"])
        if obj["epoch"] == 3:
            raise OSError(5, "Input/output error")
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "save", flaky)
    with pytest.raises(OSError):
        _train(5, checkpoint=path)
    assert calls == [1, 2, 3]
    monkeypatch.setattr(ckpt.torch, "save", real_save)
    ref, _ = _train(5)
    net, _ = _train(5, checkpoint=path, resume=True)  # from epoch 2
    assert _same_weights(net, ref)


# --------------------------------------------------------------------------- #
# Generator states
# --------------------------------------------------------------------------- #
def test_rng_state_round_trip_through_a_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached Gaussian in NumPy's legacy state
    save_checkpoint({"format": ckpt.FORMAT, "rng": ckpt.rng_state()}, tmp_path / "r.pt")
    first = (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3).tolist())
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    ckpt.set_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])
    again = (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3).tolist())
    assert first == again


def test_loader_generators_are_found():
    X, y = _data()
    assert len(ckpt.loader_generators(make_loader(X, y, 8, shuffle=True, seed=0))) == 1
    assert ckpt.loader_generators(make_loader(X, y, 8)) == []
    g = torch.Generator()
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=8,
                                     shuffle=True, generator=g)
    found = ckpt.loader_generators(dl)
    assert len(found) == 1 and found[0] is g  # the loader's and its sampler's are the same
    assert ckpt.loader_generators([(X, y)]) == []


def test_mismatched_generator_count_warns(tmp_path):
    X, y = _data()
    loader = make_loader(X, y, 8, shuffle=True, seed=0)
    with pytest.warns(RuntimeWarning, match="shuffling order will differ"):
        ckpt.set_generator_states(loader, [])
