"""What the hardware can run: mixed-precision dtypes and ``torch.compile`` (chapter 08).

A precision or a compiler the device cannot use falls back with a warning instead of failing,
so one notebook runs on a laptop, on a T4 and on an H100.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["autocast_dtype", "autocast", "needs_grad_scaler", "compile_supported",
           "FirstCallCompiled", "PRECISIONS"]

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``, or ``None`` to run in float32.

    Used in chapter 08 (efficient training). bf16 is used on a CUDA GPU only where the GPU runs
    it natively (compute capability 8.0 and up: A100, H100, RTX 30xx and later); on older GPUs
    such as the T4 bf16 is only emulated, slower than fp32, so ``"bf16"`` falls back to fp16
    (which :func:`dlkit.train.fit` pairs with a gradient scaler) with a warning. A precision the
    device cannot autocast at all falls back to float32 with a warning.

    Args:
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        device: The device the model runs on.

    Returns:
        ``torch.bfloat16``, ``torch.float16`` or ``None`` (plain float32).

    Raises:
        ValueError: If ``precision`` is not one of the three names.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    dtype = PRECISIONS[precision]
    device = torch.device(device)
    if dtype is None:
        return None
    if not torch.amp.is_autocast_available(device.type):
        warnings.warn(f"{precision} autocast is not available on {device}; training in fp32",
                      RuntimeWarning, stacklevel=3)
        return None
    if device.type == "cuda" and dtype is torch.bfloat16 \
            and not torch.cuda.is_bf16_supported(including_emulation=False):
        warnings.warn(f"{device} has no native bf16 (it would be emulated, slower than fp32); "
                      "training in fp16 with a gradient scaler instead", RuntimeWarning,
                      stacklevel=3)
        return torch.float16
    if device.type == "mps" and dtype is torch.bfloat16:
        # Not every macOS version runs bf16 autocast on MPS.
        warnings.warn(f"{precision} autocast is not available on {device}; training in fp32",
                      RuntimeWarning, stacklevel=3)
        return None
    return dtype


def needs_grad_scaler(dtype: torch.dtype | None, device: torch.device) -> bool:
    """fp16 on CUDA needs its loss scaled: small gradients underflow to zero in its range."""
    return dtype is torch.float16 and device.type == "cuda"


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``dtype``, or a no-op context for ``None`` (float32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def compile_supported(device: torch.device) -> bool:
    """Whether ``torch.compile``'s default backend can generate code for ``device``.

    On CUDA, Triton (the code generator behind ``torch.compile``) needs compute capability 7.0
    or newer; older GPUs (P100, GTX 10xx) would fail at the first forward pass.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return tuple(torch.cuda.get_device_capability(device)) >= (7, 0)
    return True


class FirstCallCompiled:
    """``torch.compile(model)`` that falls back to ``model`` if the first call fails.

    ``torch.compile`` only wraps the model; tracing and code generation happen at the first
    forward pass, which is where a missing C++ compiler, an unsupported operator or an old GPU
    shows up. The first call therefore runs under a guard: on failure it warns once and runs
    (and keeps running) the eager model. Later calls go straight to whichever worked.

    Args:
        model: The eager model.
        compiler: ``torch.compile`` or a replacement with its signature.
    """

    def __init__(self, model: nn.Module, compiler: Callable[..., Any] | None = None) -> None:
        self.model = model
        self.fallback_reason: str | None = None
        compiler = compiler if compiler is not None else torch.compile
        try:
            self._compiled: Callable[..., Any] | None = compiler(model)
        except Exception as error:  # noqa: BLE001  (any failure means: run eagerly)
            self._fallback(error)
        self._call: Callable[..., Any] | None = None if self._compiled is not None else model

    def _fallback(self, error: BaseException) -> None:
        self._compiled = None
        self.fallback_reason = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200] if str(error).strip() else ''}"
        warnings.warn(f"torch.compile failed ({self.fallback_reason}); running eagerly",
                      RuntimeWarning, stacklevel=3)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._call is not None:
            return self._call(*args, **kwargs)
        try:
            out = self._compiled(*args, **kwargs)  # type: ignore[misc]
        except Exception as error:  # noqa: BLE001  (compile errors surface here, first call)
            self._fallback(error)
            self._call = self.model
            return self.model(*args, **kwargs)  # a real bug in the model raises again here
        self._call = self._compiled
        return out
