"""Export a trained PyTorch model to ONNX and to a ``torch.export`` program, and check the copy.

A model leaves the training code as a file that another runtime executes: ONNX Runtime, a
phone, a browser, a server without Python's training stack. The export is only useful if the
copy computes what the original computes, so every export here is followed by a parity check
on real inputs. Used in chapter 09 (deployment).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dlkit._util import atomic_path, eval_mode

__all__ = [
    "ExportError",
    "Parity",
    "export_onnx",
    "load_exported",
    "onnx_parity",
    "ort_session",
    "run_onnx",
    "save_exported",
]

PathLike = str | os.PathLike


class ExportError(RuntimeError):
    """Raised when a model cannot be exported; the message names the layer that fails."""


def _check_example(model: nn.Module, example: torch.Tensor) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(example, torch.Tensor) or example.ndim < 1 or example.shape[0] < 1:
        got = tuple(example.shape) if isinstance(example, torch.Tensor) else type(example).__name__
        raise ValueError(f"example must be a batch tensor with at least one item, got {got}")
    if not example.is_floating_point():
        raise ValueError(f"example must be a float tensor (normalised images), got {example.dtype}")


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's progress lines, warnings and failure dumps (the error says enough)."""
    sink = io.StringIO()
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def _to_onnx(model: nn.Module, args: tuple, dynamic_batch: bool, opset: int | None):
    """One call of the torch.export-based exporter."""
    dims = None
    if dynamic_batch:
        # A named dimension per tensor argument; min=1 so that batch 1 is allowed too.
        batch = torch.export.Dim("batch", min=1, max=2**16)
        dims = tuple({0: batch} if isinstance(a, torch.Tensor) else None for a in args)
    kwargs = {} if opset is None else {"opset_version": opset}
    with _quiet():
        return torch.onnx.export(
            model, args, None, dynamo=True, dynamic_shapes=dims, external_data=False,
            input_names=["images"], output_names=["logits"], **kwargs,
        )


def _reason(err: BaseException) -> str:
    """The root cause of an export failure in one line, with the source line that raised it."""
    root = err
    while root.__cause__ is not None:
        root = root.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(root)).strip()
    first = text.splitlines()[0] if text else ""
    reason = f"{type(root).__name__}: {first[:200]}" if first else type(root).__name__
    calls = re.findall(r'File "([^"]+)", line (\d+), in (\w+)', str(err))
    if calls:
        file, line, func = calls[-1]
        reason += f" (raised in {func}, {Path(file).name}:{line})"
    return reason


def _culprit(model: nn.Module, example: torch.Tensor, dynamic_batch: bool, opset: int | None) -> str:
    """Name the innermost submodule that fails to export on its own, by descending the tree."""
    inputs: dict[str, tuple] = {}
    hooks = []
    for name, module in model.named_modules():
        def hook(mod, args, name=name):
            inputs.setdefault(name, tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args))
        hooks.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(example)
    except Exception:  # noqa: BLE001, S110 (an eager failure still leaves the inputs recorded so far)
        pass
    finally:
        for h in hooks:
            h.remove()
    name, module = "", model
    while True:
        for child_name, child in module.named_children():
            full = f"{name}.{child_name}" if name else child_name
            if full not in inputs:
                continue
            try:
                _to_onnx(child, inputs[full], dynamic_batch, opset)
            except Exception:  # noqa: BLE001 (any exporter failure marks this child as the culprit)
                name, module = full, child
                break
        else:
            return name or "(the top-level module's own forward)"


def export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: PathLike,
    *,
    dynamic_batch: bool = True,
    opset: int | None = None,
) -> Path:
    """Export ``model`` to an ONNX file with ``torch.onnx.export(..., dynamo=True)``.

    The graph is captured with ``torch.export`` (no Python left in it), translated to ONNX
    with a dynamic batch dimension, and written atomically as one self-contained file (weights
    inside). The input is named ``images`` and the output ``logits``. Used in chapter 09.

    Args:
        model: The network; exported in eval mode (its mode is restored afterwards).
        example: An example input batch (float, N×C×H×W); only its shape and dtype matter.
        path: Where to write the ``.onnx`` file.
        dynamic_batch: Let the batch size vary at run time (otherwise it is fixed to N).
        opset: ONNX opset version; the exporter's default when ``None``.

    Returns:
        The path written.

    Raises:
        TypeError: If ``model`` is not an ``nn.Module``.
        ValueError: If ``example`` is not a non-empty float batch.
        ExportError: If the model cannot be exported; the message names the innermost layer
            that fails on its own (e.g. ``"block.2 (Gate)"``) and the exporter's reason.
    """
    _check_example(model, example)
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise FileNotFoundError(f"the folder {path.parent} does not exist")
    with eval_mode(model):
        try:
            program = _to_onnx(model, (example,), dynamic_batch, opset)
        except Exception as err:
            where = _culprit(model, example, dynamic_batch, opset)
            layer = model.get_submodule(where) if not where.startswith("(") else model
            raise ExportError(
                f"could not export {type(model).__name__} to ONNX: layer {where!r} "
                f"({type(layer).__name__}) fails: {_reason(err)}. Typical causes: Python "
                "control flow that depends on tensor values (use torch.where / torch.cond), "
                ".item()/.numpy()/.tolist() inside forward, or an operator with no ONNX "
                "translation (rewrite it with standard ops)."
            ) from err
    with atomic_path(path, suffix=".onnx") as tmp:
        program.save(str(tmp))
    return path


def ort_session(path: PathLike, threads: int | None = None):
    """Open an ONNX file with ONNX Runtime on the CPU.

    Used in chapter 09.

    Args:
        path: The ``.onnx`` file.
        threads: Intra-op threads (``None``: ONNX Runtime's default, one per core). Inter-op
            parallelism is kept at 1 thread, so ``threads`` is the whole budget.

    Returns:
        An ``onnxruntime.InferenceSession``.

    Raises:
        FileNotFoundError: If the file does not exist.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX file at {path}")
    options = ort.SessionOptions()
    options.inter_op_num_threads = 1
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        options.intra_op_num_threads = int(threads)
    options.log_severity_level = 3  # errors only: the per-node warnings are noise here
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session, X: torch.Tensor | np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits of an ONNX Runtime session for a batch of inputs, computed in chunks.

    Used in chapter 09 to evaluate exported and quantized models.

    Args:
        session: An ``onnxruntime.InferenceSession`` (see :func:`ort_session`).
        X: Inputs N×C×H×W (float32).
        batch_size: Images per call.

    Returns:
        A float32 array N×K.
    """
    x = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X)
    x = np.ascontiguousarray(x, dtype=np.float32)
    name = session.get_inputs()[0].name
    outs = [session.run(None, {name: x[i : i + batch_size]})[0] for i in range(0, len(x), batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0, 0), dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class Parity:
    """How closely an exported model reproduces PyTorch, from :func:`onnx_parity`."""

    max_abs_diff: float
    same_argmax: float
    batch_sizes: tuple[int, ...]
    atol: float

    @property
    def ok(self) -> bool:
        """True when every logit is within ``atol`` and every predicted class agrees."""
        return self.max_abs_diff <= self.atol and self.same_argmax == 1.0

    def __str__(self) -> str:
        verdict = "OK" if self.ok else "MISMATCH"
        return (f"{verdict}: max |onnx - torch| = {self.max_abs_diff:.2e} (bound {self.atol:g}), "
                f"same class for {self.same_argmax:.2%} of inputs, batch sizes {list(self.batch_sizes)}")


def onnx_parity(
    model: nn.Module,
    path_or_session,
    X: torch.Tensor,
    batch_sizes: Sequence[int] = (1, 7, 64),
    atol: float = 1e-4,
) -> Parity:
    """Compare an ONNX model with the PyTorch model on the same inputs at several batch sizes.

    Several batch sizes prove the batch dimension really is dynamic. Used in chapter 09.

    Args:
        model: The PyTorch reference, evaluated in eval mode on the CPU; it is left on its
            device and in its mode (each submodule's flag as it was).
        path_or_session: The ``.onnx`` file or an open session.
        X: Inputs; batches are cut from its first rows (fewer when ``X`` is shorter).
        batch_sizes: Batch sizes to try.
        atol: Largest absolute logit difference accepted by :attr:`Parity.ok`.

    Returns:
        A :class:`Parity` report.
    """
    session = path_or_session
    if isinstance(path_or_session, (str, os.PathLike)):
        session = ort_session(path_or_session)
    reference = _on_cpu(model)
    worst, agree, total = 0.0, 0, 0
    with eval_mode(model):
        for b in batch_sizes:
            x = X[:b].detach().cpu().float()
            with torch.inference_mode():
                ref = reference(x).numpy()
            got = run_onnx(session, x)
            if got.shape != ref.shape:
                raise ValueError(f"batch {b}: ONNX output shape {got.shape} differs from PyTorch {ref.shape}")
            worst = max(worst, float(np.abs(got - ref).max()))
            agree += int((got.argmax(1) == ref.argmax(1)).sum())
            total += len(x)
    return Parity(worst, agree / total, tuple(int(b) for b in batch_sizes), atol)


def _on_cpu(model: nn.Module):
    """A function computing ``model(x)`` on the CPU without moving the caller's model.

    A model already on the CPU is called as it is. Otherwise its forward runs through
    :func:`torch.func.functional_call` with CPU copies of its parameters and buffers: the
    caller's model (and the optimizer holding its parameters) stays on its device.
    """
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    if all(t.device.type == "cpu" for t in tensors.values()):
        return model
    on_cpu = {name: t.detach().cpu() for name, t in tensors.items()}
    return lambda x: torch.func.functional_call(model, on_cpu, (x,))


def save_exported(model: nn.Module, example: torch.Tensor, path: PathLike, *, dynamic_batch: bool = True) -> Path:
    """Capture ``model`` with ``torch.export.export`` and save the program (``.pt2``) atomically.

    The saved program runs without the model's Python class. Used in chapter 09.

    Args:
        model: The network (captured in eval mode).
        example: An example input batch.
        path: Where to write the ``.pt2`` archive.
        dynamic_batch: Let the batch size vary.

    Returns:
        The path written.
    """
    _check_example(model, example)
    path = Path(path)
    dims = ({0: torch.export.Dim("batch", min=1, max=2**16)},) if dynamic_batch else None
    with eval_mode(model):
        try:
            with _quiet():
                program = torch.export.export(model, (example,), dynamic_shapes=dims)
        except Exception as err:
            raise ExportError(f"torch.export could not capture {type(model).__name__}: {_reason(err)}") from err
    with atomic_path(path, suffix=".pt2") as tmp:
        torch.export.save(program, str(tmp))
    return path


def load_exported(path: PathLike) -> nn.Module:
    """Load a program saved by :func:`save_exported` as a callable module.

    Load only archives you created: like any model file, it is code to run. Used in chapter 09.

    Args:
        path: The ``.pt2`` archive.

    Returns:
        A module computing the exported forward pass.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no exported program at {path}")
    return torch.export.load(path).module()
