"""Post-training int8 quantization of an exported ONNX model with ONNX Runtime's tools.

int8 stores each weight in one byte instead of four and lets the CPU use integer
multiply-accumulate instructions. *Dynamic* quantization converts the weights ahead of time and
the activations on the fly, batch by batch; *static* quantization also fixes the activations'
scales ahead of time, from a calibration set run through the model. Used in chapter 09.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from dlkit._util import atomic_path

__all__ = ["file_size_mb", "quantize_dynamic_onnx", "quantize_static_onnx", "state_dict_size_mb"]

PathLike = str | os.PathLike


def _paths(src: PathLike, dst: PathLike) -> tuple[Path, Path]:
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"no ONNX model at {src}")
    if src.resolve() == dst.resolve():
        raise ValueError("dst must differ from src: the float model is the baseline to compare with")
    return src, dst


def _atomic(dst: Path, write) -> Path:
    with atomic_path(dst, suffix=".onnx") as tmp:
        write(str(tmp))
    return dst


def _preprocess(src: Path, out: str) -> None:
    # Shape inference and graph folding first, as ONNX Runtime's documentation recommends:
    # quantization then sees fused Conv+BN nodes with known shapes.
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(src), out, skip_symbolic_shape=False)


def quantize_dynamic_onnx(src: PathLike, dst: PathLike, *, op_types: Iterable[str] | None = None) -> Path:
    """Dynamic int8 quantization: int8 weights, activation scales computed at run time.

    Used in chapter 09.

    Args:
        src: The float ONNX model.
        dst: Where to write the quantized model (written atomically).
        op_types: ONNX operator types to quantize, e.g. ``["MatMul", "Gemm"]`` for the fully
            connected layers only; ``None`` quantizes every supported type (convolutions too).

    Returns:
        ``dst``.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = _paths(src, dst)
    with tempfile.TemporaryDirectory() as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        _preprocess(src, pre)
        kwargs = {} if op_types is None else {"op_types_to_quantize": list(op_types)}
        return _atomic(dst, lambda out: quantize_dynamic(pre, out, weight_type=QuantType.QInt8, **kwargs))


class _Batches:
    """An ONNX Runtime ``CalibrationDataReader``: feeds calibration batches one at a time."""

    def __init__(self, batches: Iterable, input_name: str) -> None:
        self._it: Iterator = iter(batches)
        self._name = input_name
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        if batch is None:
            return None
        if isinstance(batch, (tuple, list)):
            batch = batch[0]  # (X, y) pairs from a loader: labels are not needed
        x = batch.detach().cpu().numpy() if isinstance(batch, torch.Tensor) else np.asarray(batch)
        if x.dtype != np.float32 or x.ndim != 4:
            raise ValueError(f"calibration batches must be float32 N×C×H×W, got {x.dtype} {x.shape}")
        self.count += len(x)
        return {self._name: np.ascontiguousarray(x)}


def quantize_static_onnx(
    src: PathLike,
    dst: PathLike,
    calibration: Iterable,
    *,
    per_channel: bool = True,
    method: str = "minmax",
) -> Path:
    """Static post-training int8 quantization, calibrated on representative inputs.

    The model is written in QDQ form (QuantizeLinear/DequantizeLinear pairs around each
    operator) with uint8 activations and int8 weights, per output channel by default; ONNX
    Runtime fuses the pairs into integer kernels when it loads the file. Used in chapter 09.

    Args:
        src: The float ONNX model.
        dst: Where to write the quantized model (written atomically).
        calibration: Batches of model inputs (tensors or ``(X, y)`` pairs), normalised exactly
            as at inference time; a few hundred images usually suffice.
        per_channel: One scale per output channel of each weight instead of one per tensor.
        method: How activation ranges are set: ``"minmax"``, ``"entropy"`` or ``"percentile"``.

    Returns:
        ``dst``.

    Raises:
        ValueError: If ``calibration`` yields nothing, or ``method`` is unknown.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise ValueError(f"method must be one of {sorted(methods)}, got {method!r}")
    src, dst = _paths(src, dst)
    input_name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    batches = iter(calibration)
    first = next(batches, None)
    if first is None:
        raise ValueError("the calibration data yielded no batches")
    reader = _Batches(itertools.chain([first], batches), input_name)
    reader.get_next()  # checks the first batch's dtype and shape before any work
    reader = _Batches(itertools.chain([first], batches), input_name)
    with tempfile.TemporaryDirectory() as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        _preprocess(src, pre)

        def write(out: str) -> None:
            quantize_static(pre, out, reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=methods[method])

        return _atomic(dst, write)


def file_size_mb(path: PathLike) -> float:
    """Size of a model file in megabytes (10⁶ bytes). Used in chapter 09."""
    return Path(path).stat().st_size / 1e6


def state_dict_size_mb(model: torch.nn.Module) -> float:
    """Size of ``torch.save(model.state_dict())`` in megabytes, measured in memory.

    Used in chapter 09 to compare a PyTorch model with its exported and quantized files.
    """
    import io

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes / 1e6
