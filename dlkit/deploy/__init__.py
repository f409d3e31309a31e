"""Deployment: export, compress, time, serve and monitor a trained model.

Each concern has its own module; the names used in chapter 09 (deployment) are re-exported here,
so that ``from dlkit.deploy import export_onnx`` works. The HTTP service (FastAPI, uvicorn)
lives in :mod:`dlkit.deploy.serve`, imported on first use of :func:`serve`.
"""

from __future__ import annotations

from dlkit.deploy.export import (
    ExportError,
    Parity,
    export_onnx,
    load_exported,
    onnx_parity,
    ort_session,
    run_onnx,
    save_exported,
)
from dlkit.deploy.latency import (
    Latency,
    as_runner,
    latency_table,
    measure_latency,
    torch_threads,
)
from dlkit.deploy.monitor import (
    FEATURES,
    DriftMonitor,
    DriftReport,
    class_psi,
    image_features,
    psi,
)
from dlkit.deploy.prune import (
    freeze,
    make_permanent,
    prunable,
    prune_filters,
    prune_unstructured,
    remove_zero_filters,
    sparsity,
    to_sequential,
)
from dlkit.deploy.quantize import (
    file_size_mb,
    quantize_dynamic_onnx,
    quantize_static_onnx,
    state_dict_size_mb,
)
from dlkit.deploy.serve import (
    BackgroundServer,
    BadImage,
    decode_image,
    default_max_concurrency,
    load_test,
    serve,
)

__all__ = [
    "FEATURES",
    "BackgroundServer",
    "BadImage",
    "DriftMonitor",
    "DriftReport",
    "ExportError",
    "Latency",
    "Parity",
    "as_runner",
    "class_psi",
    "decode_image",
    "default_max_concurrency",
    "export_onnx",
    "file_size_mb",
    "freeze",
    "image_features",
    "latency_table",
    "load_exported",
    "load_test",
    "make_permanent",
    "measure_latency",
    "onnx_parity",
    "ort_session",
    "prunable",
    "prune_filters",
    "prune_unstructured",
    "psi",
    "quantize_dynamic_onnx",
    "quantize_static_onnx",
    "remove_zero_filters",
    "run_onnx",
    "save_exported",
    "serve",
    "sparsity",
    "state_dict_size_mb",
    "to_sequential",
    "torch_threads",
]
