"""Shared test setup: a non-interactive matplotlib backend and no figures leaking between tests."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before any pyplot import (dlkit.plot imports pyplot)

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(autouse=True)
def _restore_torch_determinism():
    # seed_everything() switches on deterministic algorithms globally; keep tests independent.
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


@pytest.fixture
def one_thread():
    """Run torch on one thread: on a shared 2-core machine, 2 OpenMP threads can be 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
