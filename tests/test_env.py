"""Tests for dlkit.env: device choice, seeding, profiles, Colab detection, describe()."""

from __future__ import annotations

import dataclasses
import random
import sys
import types
import warnings

import numpy as np
import pytest
import torch

from dlkit import env
from dlkit.env import PROFILES, Profile, describe, in_colab, pick_device, profile, seed_everything


@pytest.fixture(autouse=True)
def _no_profile_env(monkeypatch):
    monkeypatch.delenv("DLKIT_PROFILE", raising=False)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)


def _no_mps(monkeypatch):
    mps = getattr(torch.backends, "mps", None)
    if mps is not None:
        monkeypatch.setattr(mps, "is_available", lambda: False)


# --------------------------------------------------------------------------- #
# pick_device
# --------------------------------------------------------------------------- #
def test_pick_device_is_cpu_without_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _no_mps(monkeypatch)
    dev = pick_device()
    assert isinstance(dev, torch.device)
    assert dev.type == "cpu"


def _has_mps() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def test_pick_device_here_is_an_accelerator_this_machine_has():
    # Whatever this machine is (x86 with or without CUDA, Apple silicon with MPS), the device
    # chosen must be one it has, the fastest of them, and usable.
    dev = pick_device()
    expected = "cuda" if torch.cuda.is_available() else "mps" if _has_mps() else "cpu"
    assert dev.type == expected
    assert torch.ones(2, device=dev).sum().item() == 2.0


def test_apple_silicon_gets_mps_and_the_cpu_profile(monkeypatch):
    # An Apple-silicon machine as PyTorch reports it: no CUDA, MPS available.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device() == torch.device("mps")
    assert profile().name == "cpu"
    assert describe(torch.device("mps")).startswith(f"mps ({torch.get_num_threads()} threads), torch ")


def test_pick_device_prefers_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device() == torch.device("cuda")


def test_pick_device_uses_mps_when_no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends, "mps", types.SimpleNamespace(is_available=lambda: True))
    assert pick_device() == torch.device("mps")


# --------------------------------------------------------------------------- #
# seed_everything
# --------------------------------------------------------------------------- #
def _draw():
    return torch.rand(5), np.random.rand(5), [random.random() for _ in range(5)]


def test_seed_everything_repeats_all_generators():
    assert seed_everything(123) == 123
    t1, n1, r1 = _draw()
    seed_everything(123)
    t2, n2, r2 = _draw()
    assert torch.equal(t1, t2)
    np.testing.assert_array_equal(n1, n2)
    assert r1 == r2
    seed_everything(124)
    t3, n3, r3 = _draw()
    assert not torch.equal(t1, t3)
    assert not np.array_equal(n1, n3)
    assert r1 != r3


def test_seed_everything_deterministic_flags():
    seed_everything(0, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic is True
    assert torch.backends.cudnn.benchmark is False
    import os

    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == ":4096:8"


@pytest.fixture
def restore_determinism():
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    with warnings.catch_warnings():  # filters installed by the test go away with it
        yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def _op_without_deterministic_kernel():
    """What a CUDA kernel without a deterministic version does under the flag, on any machine."""
    from torch._prims_common import alert_not_deterministic

    alert_not_deterministic("adaptive_avg_pool2d_backward_cuda")


def test_seed_everything_keeps_the_determinism_notice_out_of_outputs(restore_determinism):
    seed_everything(0)
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    with warnings.catch_warnings(record=True) as caught:
        _op_without_deterministic_kernel()
        warnings.warn("a real problem", UserWarning)
    assert [str(w.message) for w in caught] == ["a real problem"]


def test_seed_everything_strict_raises_for_an_op_without_deterministic_kernel(restore_determinism):
    seed_everything(0, deterministic="strict")
    assert not torch.is_deterministic_algorithms_warn_only_enabled()
    with pytest.raises(RuntimeError, match="adaptive_avg_pool2d_backward_cuda does not have a deterministic"):
        _op_without_deterministic_kernel()


def test_seed_everything_rejects_other_determinism_modes():
    with pytest.raises(ValueError, match=r"deterministic must be True, False or 'strict', got 'warn'"):
        seed_everything(0, deterministic="warn")


def test_seed_everything_accepts_bounds():
    assert seed_everything(0, deterministic=False) == 0
    assert seed_everything(2**32 - 1, deterministic=False) == 2**32 - 1


@pytest.mark.parametrize("bad", [-1, 2**32, 1.0, 1.5, "3", None, True, False, np.float64(2.0)])
def test_seed_everything_rejects_bad_seeds(bad):
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
        seed_everything(bad)


# --------------------------------------------------------------------------- #
# profile
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", ["smoke", "cpu", "gpu"])
def test_profile_by_argument(name):
    p = profile(name)
    assert isinstance(p, Profile)
    assert p.name == name
    assert p is PROFILES[name]


def test_profile_argument_is_case_and_space_insensitive():
    assert profile("  SMOKE ").name == "smoke"


def test_profile_argument_beats_env(monkeypatch):
    monkeypatch.setenv("DLKIT_PROFILE", "gpu")
    assert profile("smoke").name == "smoke"


def test_profile_from_env(monkeypatch):
    monkeypatch.setenv("DLKIT_PROFILE", "smoke")
    assert profile().name == "smoke"
    assert profile(device="cuda").name == "smoke"  # env var wins over the device


def test_profile_empty_env_falls_back_to_device(monkeypatch):
    monkeypatch.setenv("DLKIT_PROFILE", "")
    assert profile(device="cpu").name == "cpu"


def test_profile_by_device(monkeypatch):
    assert profile(device="cuda").name == "gpu"
    assert profile(device=torch.device("cpu")).name == "cpu"
    assert profile(device="mps").name == "cpu"


def test_profile_default_follows_pick_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert profile().name == "gpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _no_mps(monkeypatch)
    assert profile().name == "cpu"


def test_profile_unknown_argument_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown profile 'huge'.*argument.*\['cpu', 'gpu', 'smoke'\]"):
        profile("huge")


def test_profile_unknown_env_names_the_variable(monkeypatch):
    monkeypatch.setenv("DLKIT_PROFILE", "tiny")
    with pytest.raises(ValueError, match=r"unknown profile 'tiny' \(from the DLKIT_PROFILE\)"):
        profile()


def test_profile_is_frozen():
    p = profile("cpu")
    before = p.epochs
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.epochs = before + 100  # type: ignore[misc]
    assert PROFILES["cpu"].epochs == before


def test_profile_str():
    gpu = profile("gpu")
    assert gpu.train_size is None
    assert str(gpu) == (
        f"profile 'gpu': train_size=all, val_size={gpu.val_size:,}, epochs={gpu.epochs}, "
        f"batch_size={gpu.batch_size}"
    )
    cpu = profile("cpu")
    assert f"train_size={cpu.train_size:,}" in str(cpu)


def test_profiles_are_ordered_by_size():
    assert PROFILES["smoke"].train_size < PROFILES["cpu"].train_size
    assert PROFILES["cpu"].epochs <= PROFILES["gpu"].epochs
    assert PROFILES["gpu"].train_size is None


# --------------------------------------------------------------------------- #
# in_colab / describe
# --------------------------------------------------------------------------- #
def test_in_colab_false_here(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert in_colab() is False


def test_in_colab_true_with_fake_module(monkeypatch):
    google = types.ModuleType("google")
    colab = types.ModuleType("google.colab")
    google.colab = colab  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert in_colab() is True


def test_describe_mentions_versions():
    text = describe(torch.device("cpu"))
    assert text.startswith(f"cpu ({torch.get_num_threads()} threads)")
    assert f"torch {torch.__version__}" in text
    assert "Python " in text


def test_describe_cuda_names_the_card(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda dev=None: "Fake GPU 9000")
    assert describe("cuda").startswith("cuda (Fake GPU 9000)")


def test_describe_defaults_to_pick_device(monkeypatch):
    monkeypatch.setattr(env, "pick_device", lambda: torch.device("cpu"))
    assert describe().startswith("cpu (")
