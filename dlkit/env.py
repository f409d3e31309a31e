"""Where the code runs and how big the experiments are.

Every chapter starts with::

    from dlkit.env import pick_device, profile, seed_everything
    seed_everything(0)
    device = pick_device()
    print(profile())

so a reader always knows which device and which size of experiment produced the numbers on the
page. Taught in chapter 00 (how to use this book) and used in every chapter after it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import numbers
import os
import platform
import random
import sys
import warnings

import numpy as np
import torch

__all__ = ["Profile", "PROFILES", "pick_device", "seed_everything", "profile", "in_colab", "describe"]


@dataclasses.dataclass(frozen=True)
class Profile:
    """Sizes of the experiments in a chapter.

    Attributes:
        name: ``"smoke"`` (seconds, for tests), ``"cpu"`` (a laptop, a few minutes per chapter) or
            ``"gpu"`` (full data).
        train_size: Number of training images to use; ``None`` means the whole training set.
        val_size: Number of training images held out for validation.
        epochs: Training epochs for a chapter's main model.
        batch_size: Mini-batch size.
    """

    name: str
    train_size: int | None
    val_size: int
    epochs: int
    batch_size: int

    def __str__(self) -> str:
        train = "all" if self.train_size is None else f"{self.train_size:,}"
        return (
            f"profile {self.name!r}: train_size={train}, val_size={self.val_size:,}, "
            f"epochs={self.epochs}, batch_size={self.batch_size}"
        )


PROFILES: dict[str, Profile] = {
    # Enough to prove every cell runs; the numbers mean nothing.
    "smoke": Profile("smoke", train_size=1_000, val_size=500, epochs=1, batch_size=100),
    # Sized so that a chapter executes in about 3 minutes on 2 CPU cores.
    "cpu": Profile("cpu", train_size=40_000, val_size=5_000, epochs=2, batch_size=128),
    # The whole CIFAR-10 training set (45,000 + 5,000 held out) on a GPU.
    "gpu": Profile("gpu", train_size=None, val_size=5_000, epochs=20, batch_size=256),
}


def pick_device() -> torch.device:
    """Return the fastest available device: CUDA, then Apple's MPS, then the CPU.

    Used in every chapter.

    Returns:
        The ``torch.device`` to put models and tensors on.
    """
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# torch's notice for an op without a deterministic kernel under warn_only=True (the same text
# from C++ kernels and from torch._prims_common.alert_not_deterministic).
_NO_DETERMINISTIC_KERNEL = (
    r".* does not have a deterministic implementation, but you set "
    r"'torch\.use_deterministic_algorithms\(True, warn_only=True\)'"
)


def seed_everything(seed: int = 0, deterministic: bool | str = True) -> int:
    """Seed Python, NumPy and PyTorch (all devices) so that a run can be repeated.

    Used in every chapter.

    With ``deterministic=True`` PyTorch picks deterministic kernels wherever it has one
    (cuDNN's deterministic convolutions, a fixed cuBLAS workspace). A few GPU operations have
    none (e.g. the backward pass of adaptive average pooling on CUDA); they run their usual
    kernel, so a GPU run may differ from the next in the last bits. PyTorch reports each such
    call with a ``UserWarning``; that expected notice is filtered out so it does not fill the
    chapters' outputs (every other warning is shown as usual). To find those operations, pass
    ``deterministic="strict"``: they then raise a ``RuntimeError`` naming the operation.

    Args:
        seed: The seed, a non-negative integer below 2**32.
        deterministic: ``True``: deterministic kernels where they exist (see above).
            ``"strict"``: an operation without one raises. ``False``: PyTorch's fastest
            kernels, flags left as they are.

    Returns:
        The seed, so a cell can print it.

    Raises:
        ValueError: If ``seed`` is not an integer in ``[0, 2**32)`` or ``deterministic`` is
            not ``True``, ``False`` or ``"strict"``.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    if not (isinstance(deterministic, bool) or deterministic == "strict"):
        raise ValueError(f"deterministic must be True, False or 'strict', got {deterministic!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds the CPU and every CUDA device
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; harmless on the CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        strict = deterministic == "strict"
        torch.use_deterministic_algorithms(True, warn_only=not strict)
        if not strict:
            # Added once: filterwarnings drops an identical earlier entry before inserting.
            warnings.filterwarnings("ignore", message=_NO_DETERMINISTIC_KERNEL, category=UserWarning)
    return seed


def in_colab() -> bool:
    """Return True when running inside Google Colab.

    Used by the first cell of every chapter, which installs ``dlkit`` only on Colab.
    """
    if "google.colab" in sys.modules:
        return True
    try:
        # find_spec imports the parent package and raises when ``google`` is not installed.
        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):
        return False


def profile(name: str | None = None, device: torch.device | str | None = None) -> Profile:
    """Choose the experiment sizes for this machine.

    The choice, in order: the ``name`` argument, the ``DLKIT_PROFILE`` environment variable, then
    ``"gpu"`` when CUDA is available and ``"cpu"`` otherwise. Apple's MPS gets the CPU profile:
    it is faster than a laptop CPU but far from a data-centre GPU. Used in every chapter.

    Args:
        name: Force a profile: ``"smoke"``, ``"cpu"`` or ``"gpu"``.
        device: The device the chapter trains on; defaults to :func:`pick_device`.

    Returns:
        The frozen :class:`Profile`.

    Raises:
        ValueError: If the name (argument or ``DLKIT_PROFILE``) is not a known profile.
    """
    source = "argument"
    if name is None:
        name = os.environ.get("DLKIT_PROFILE") or None
        source = "DLKIT_PROFILE"
    if name is None:
        dev = torch.device(device) if device is not None else pick_device()
        name = "gpu" if dev.type == "cuda" else "cpu"
    key = name.strip().lower()
    if key not in PROFILES:
        raise ValueError(
            f"unknown profile {name!r} (from the {source}); expected one of {sorted(PROFILES)}"
        )
    return PROFILES[key]


def describe(device: torch.device | None = None) -> str:
    """One line naming the hardware and software that produced a chapter's numbers.

    Used at the top of every chapter, next to the profile.

    Args:
        device: The device in use; defaults to :func:`pick_device`.

    Returns:
        For example ``"cpu (2 threads), torch 2.14.1, Python 3.11.7, Linux"``.
    """
    dev = device if device is not None else pick_device()
    dev = torch.device(dev)
    if dev.type == "cuda":
        hw = f"cuda ({torch.cuda.get_device_name(dev)})"
    else:
        hw = f"{dev.type} ({torch.get_num_threads()} threads)"
    return f"{hw}, torch {torch.__version__}, Python {platform.python_version()}, {platform.system()}"


if __name__ == "__main__":  # python -m dlkit.env: the environment report (dlkit.sysinfo)
    from dlkit.sysinfo import main

    raise SystemExit(main())
