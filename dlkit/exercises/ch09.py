"""Exercise checks of chapter 09 (deployment)."""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable

import numpy as np
import torch

from dlkit.exercises.feedback import Feedback, _right, _wrong

__all__ = ["check_psi", "check_quantize"]


def check_quantize(fn: Callable[[torch.Tensor, float, int], torch.Tensor]) -> Feedback:
    """Check ``fn(x, scale, zero_point)``, affine quantization of floats to uint8.

    The reference is ``torch.quantize_per_tensor(x, scale, zero_point, torch.quint8)``:
    ``q = clamp(round(x / scale) + zero_point, 0, 255)``. Used in chapter 09 (deployment).

    Args:
        fn: The learner's function; it returns the integer codes (any integer or float dtype).

    Returns:
        The :class:`Feedback`.
    """
    g = torch.Generator().manual_seed(0)
    cases = [
        (torch.randn(50, generator=g) * 2, 0.02, 128),  # many values fall outside the range
        (torch.rand(40, generator=g) * 6 - 1, 6 / 255, 42),
    ]
    for x, scale, zp in cases:
        with warnings.catch_warnings():
            # Quantized tensor dtypes are deprecated in recent PyTorch; the arithmetic is the
            # reference all the same (ONNX's QuantizeLinear computes the same codes).
            warnings.simplefilter("ignore", UserWarning)
            truth = torch.quantize_per_tensor(x, scale, zp, torch.quint8).int_repr().long()
        try:
            got = fn(x.clone(), scale, zp)
        except Exception as err:  # noqa: BLE001 (the learner's code may raise anything)
            return _wrong(f"it raised {type(err).__name__}: {err}")
        if not isinstance(got, torch.Tensor) or got.shape != x.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            return _wrong(f"expected a tensor of shape {tuple(x.shape)}, got {shape}.")
        if got.is_floating_point() and not torch.equal(got, got.round()):
            return _wrong("the codes are not whole numbers.", "a code is an integer: the nearest one.")
        got = got.long()
        if torch.equal(got, truth):
            continue
        raw = torch.round(x / scale) + zp
        if torch.equal(got, raw.long()):
            return _wrong("values outside the representable range are not clipped.",
                          "which codes can a uint8 hold, and where must a value beyond them go?")
        if torch.equal(got, (torch.floor(x / scale) + zp).clamp(0, 255).long()):
            return _wrong("it truncates instead of rounding.", "a value maps to the nearest code, not the one below.")
        if torch.equal(got, torch.round(x / scale).clamp(0, 255).long()):
            return _wrong("the zero point is missing.", "which code stands for the real value 0.0?")
        if torch.equal(got, (torch.round(x * scale) + zp).clamp(0, 255).long()):
            return _wrong("it multiplies by the scale.", "the scale is the size of one step: how many steps is x?")
        wrong = int((got != truth).sum())
        return _wrong(f"{wrong} of {x.numel()} codes differ from torch.quantize_per_tensor.",
                      "go through the steps for one value: size in steps, nearest code, offset by "
                      "the zero point, kept within the codes uint8 can hold.")
    return _right("your codes equal torch.quantize_per_tensor's, clipping included.")


def check_psi(fn: Callable[[np.ndarray, np.ndarray], float]) -> Feedback:
    """Check ``fn(p, q)``, the population stability index of two histograms given as fractions.

    ``PSI = Σ (q_i − p_i) ln(q_i / p_i)``; all bins are non-empty here. Used in chapter 09.

    Args:
        fn: The learner's function of the reference and current bin fractions.

    Returns:
        The :class:`Feedback`.
    """
    p = np.array([0.1, 0.2, 0.3, 0.25, 0.15])
    q = np.array([0.05, 0.15, 0.3, 0.3, 0.2])
    truth = float(np.sum((q - p) * np.log(q / p)))
    try:
        got = fn(p.copy(), q.copy())
        same = fn(p.copy(), p.copy())
    except Exception as err:  # noqa: BLE001 (the learner's code may raise anything)
        return _wrong(f"it raised {type(err).__name__}: {err}")
    def number(v: object) -> bool:
        if isinstance(v, (torch.Tensor, np.ndarray)):
            return v.ndim == 0 and not isinstance(v, bool)
        return isinstance(v, numbers.Real) and not isinstance(v, bool)

    if not (number(got) and number(same)):
        return _wrong(f"expected a number, got {type(got).__name__}.", "return the sum as a float.")
    got, same = float(got), float(same)
    if abs(same) > 1e-12:
        return _wrong(f"two identical histograms give {same:.4g}; the PSI of no change is 0.")
    if np.isclose(got, truth, rtol=1e-9):
        return _right(f"PSI = {truth:.4f}; it is zero only when the histograms agree and never negative.")
    if np.isclose(got, -truth, rtol=1e-9):
        return _wrong("the sign is flipped.",
                      "each term should be positive: the difference and the log ratio point the same way.")
    if np.isclose(got, float(np.sum(q * np.log(q / p))), rtol=1e-9) or \
            np.isclose(got, float(np.sum(p * np.log(p / q))), rtol=1e-9):
        return _wrong("this is one Kullback–Leibler divergence, not the PSI.",
                      "PSI is symmetric: it counts the divergence in both directions, current from "
                      "reference and reference from current.")
    return _wrong(f"got {got:.4f}, expected {truth:.4f}.",
                  "compare your sum term by term with the definition in the chapter.")
