"""An HTTP inference service for an image classifier, built with FastAPI and run with uvicorn.

``POST /predict`` takes one image as the raw request body (``Content-Type: image/png``,
``image/jpeg``, ...) and returns the class probabilities as JSON; ``GET /health`` says whether
the model is loaded. Every kind of bad input gets a 4xx answer with a JSON body that says what
was wrong, and the server keeps serving. Decoding and validating the image is
:func:`dlkit.images.decode_image` (re-exported here). At most ``max_concurrency`` forward passes
run at once (by default the CPU cores divided by PyTorch's threads): more would only make each
one slower. The OpenAPI description (``/openapi.json``, ``/docs``) lists the request body, the
fields of every answer and every error. Used in chapter 09 (deployment); run it with
``python -m dlkit.deploy --help``.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations at
# run time, and ``Request`` is imported inside serve() to keep ``import dlkit.deploy`` light.
import argparse
import collections
import concurrent.futures
import contextlib
import importlib
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dlkit._util import check_positive_int
from dlkit.images import BadImage, decode_image

__all__ = ["CONTENT_TYPES", "BackgroundServer", "BadImage", "decode_image", "default_max_concurrency",
           "load_test", "serve"]

# Content types accepted by /predict and the Pillow decoder each may use.
CONTENT_TYPES = {
    "image/png": "PNG", "image/jpeg": "JPEG", "image/bmp": "BMP", "image/gif": "GIF",
    "image/webp": "WEBP", "image/tiff": "TIFF",
}
_FORMATS = tuple(sorted(set(CONTENT_TYPES.values())))


def default_max_concurrency(torch_threads: int | None = None) -> int:
    """Forward passes run at once by default: the usable CPU cores divided by PyTorch's threads.

    Each forward already uses ``torch_threads`` cores; running more forwards than the cores can
    hold makes every one of them slower and the latency tail longer. Used in chapter 09.

    Args:
        torch_threads: PyTorch's intra-op threads (default ``torch.get_num_threads()``).

    Returns:
        At least 1.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, torch_threads or torch.get_num_threads()))


def _api_models():
    """The pydantic models that describe the service's answers in its OpenAPI schema."""
    from pydantic import BaseModel, ConfigDict, Field

    class Prediction(BaseModel):
        """The model's answer for one image."""

        model_config = ConfigDict(populate_by_name=True)
        class_: str = Field(alias="class", description="the most probable class name")
        index: int = Field(description="its index in the model's outputs")
        probabilities: dict[str, float] = Field(description="probability of every class, in output order")
        converted_from: str | None = Field(description="the image's original mode when it was converted "
                                                       "to RGB (e.g. 'L', 'RGBA', 'CMYK'); null for RGB")

    class Error(BaseModel):
        """Every 4xx answer: what was wrong with the request."""

        error: str = Field(description="a sentence saying what was wrong and what is accepted")

    class Health(BaseModel):
        """The server is up and the model is loaded."""

        status: str = Field(description="'ok'")
        model: str = Field(description="the model's class name")
        classes: int = Field(description="number of classes")
        served: int = Field(description="predictions answered since start-up")
        rejected: int = Field(description="requests refused since start-up")
        max_body_bytes: int = Field(description="largest request body accepted")

    class Loading(BaseModel):
        """The model is not loaded yet."""

        status: str = Field(description="'loading'")

    class Drift(BaseModel):
        """A drift check of the recently served images against the reference set."""

        n: int = Field(description="images checked")
        drift: bool = Field(description="true when at least one alert was raised")
        alerts: list[str] = Field(description="one sentence per shift found")
        psi: dict[str, float] = Field(description="population stability index of each image feature")
        class_psi: float = Field(description="population stability index of the predicted classes")

    return Prediction, Error, Health, Loading, Drift


def _media_type(header: str | None) -> str:
    return (header or "").split(";")[0].strip().lower()


def serve(
    build_model: Callable[[], nn.Module],
    weights: str | os.PathLike,
    *,
    classes: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    image_size: int = 32,
    max_body_bytes: int = 2_000_000,
    max_pixels: int = 4096 * 4096,
    min_side: int = 8,
    convert_modes: bool = True,
    monitor=None,
    window: int = 500,
    max_concurrency: int | None = None,
):
    """Build the FastAPI app that serves ``build_model()`` with the weights in ``weights``.

    The weights are loaded once, when the server starts, with ``torch.load(...,
    weights_only=True)``: a state_dict holds only tensors, so nothing in the file is executed.
    Used in chapter 09.

    Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is set to ``False`` once, here (a truncated
    upload is an error, not grey pixels); requests change no process-wide state.

    Endpoints: ``POST /predict`` (raw image body) → ``{"class", "index", "probabilities",
    "converted_from"}``; ``GET /health`` → ``{"status": "ok", ...}``; with a ``monitor``,
    ``GET /drift`` → the :class:`~dlkit.deploy.monitor.DriftReport` of the last ``window``
    served images.

    Errors, all JSON ``{"error": message}``: 415 wrong content type, 400 empty body, 413 body
    over ``max_body_bytes``, 400 undecodable or truncated image, 422 unusable mode or size.

    Args:
        build_model: Returns the untrained network (e.g. ``dlkit.models.SmallCNN``).
        weights: A file written by ``torch.save(model.state_dict(), path)``.
        classes: Class names, in the order of the model's outputs.
        mean: Per-channel means used to normalise the training images (in [0, 1] units).
        std: Per-channel standard deviations.
        image_size: Side of the square input the model takes.
        max_body_bytes: Largest request body accepted.
        max_pixels: Largest width × height accepted.
        min_side: Smallest width or height accepted.
        convert_modes: Convert grayscale, CMYK and alpha images to RGB instead of rejecting them.
        monitor: An optional :class:`~dlkit.deploy.monitor.DriftMonitor`.
        window: Number of recent images kept for ``/drift``.
        max_concurrency: Forward passes run at once (default :func:`default_max_concurrency`);
            further requests wait their turn, decoded, in a queue.

    Returns:
        A ``fastapi.FastAPI`` app; run it with uvicorn (see :class:`BackgroundServer`).

    Raises:
        FileNotFoundError: If ``weights`` does not exist (checked now, not at start-up).
        ValueError: If ``mean``/``std`` do not have 3 values or a limit is not positive.
    """
    import anyio
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse
    from PIL import ImageFile
    from starlette.exceptions import HTTPException as StarletteHTTPException

    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"no weights file at {weights}")
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"mean and std need 3 values each (std > 0), got {list(mean)} and {list(std)}")
    if min(max_body_bytes, max_pixels, min_side, image_size) < 1:
        raise ValueError("max_body_bytes, max_pixels, min_side and image_size must be positive")
    if max_concurrency is None:
        max_concurrency = default_max_concurrency()
    check_positive_int(max_concurrency, "max_concurrency")
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # once, at creation: Pillow's default, in case it was changed
    classes = list(classes)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    state: dict = {"model": None, "served": 0, "rejected": 0, "limiter": None,
                   "recent": collections.deque(maxlen=window)}
    Prediction, Error, Health, Loading, Drift = _api_models()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        try:
            model = build_model()
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            model.eval()
            with torch.inference_mode():
                out = model(torch.zeros(1, 3, image_size, image_size))
            if out.shape != (1, len(classes)):
                raise ValueError(f"the model returns {tuple(out.shape)} for one image; "
                                 f"expected (1, {len(classes)}) for {len(classes)} classes")
        except Exception as err:
            app.state.startup_error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            raise
        state["model"] = model
        state["limiter"] = anyio.CapacityLimiter(max_concurrency)  # created in the server's event loop
        yield
        state["model"] = None

    app = FastAPI(title="dlkit image classifier", lifespan=lifespan)

    def error(status: int, message: str) -> JSONResponse:
        state["rejected"] += 1
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    def predict_pixels(pixels: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255).sub_(m).div_(s)
        with torch.inference_mode():
            return state["model"](x.unsqueeze(0))[0].float().softmax(0)

    @app.get("/health", response_model=Health,
             responses={503: {"model": Loading, "description": "the model is still loading"}})
    async def health() -> JSONResponse:
        if state["model"] is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ok", "model": type(state["model"]).__name__,
                             "classes": len(classes), "served": state["served"],
                             "rejected": state["rejected"], "max_body_bytes": max_body_bytes})

    image_body = {"schema": {"type": "string", "format": "binary"}}

    @app.post(
        "/predict", response_model=Prediction, summary="Classify one image",
        description="Send the image file's bytes as the request body, with its Content-Type.",
        openapi_extra={"requestBody": {
            "required": True,
            "description": f"one image file, at most {max_body_bytes:,} bytes, "
                           f"at most {max_pixels:,} pixels, at least {min_side}×{min_side}",
            "content": {media: image_body for media in CONTENT_TYPES}}},
        responses={
            400: {"model": Error, "description": "empty body, not an image, or truncated pixel data"},
            413: {"model": Error, "description": f"body over {max_body_bytes:,} bytes"},
            415: {"model": Error, "description": f"Content-Type not one of {', '.join(CONTENT_TYPES)}"},
            422: {"model": Error, "description": "too many pixels, too small, or an unusable mode "
                                                 "(16-bit; with conversion off, anything but RGB)"},
        })
    async def predict(request: Request) -> JSONResponse:
        media = _media_type(request.headers.get("content-type"))
        if media not in CONTENT_TYPES:
            return error(415, f"Content-Type {media or '(none)'!r} is not accepted; send the image "
                              f"bytes with one of {', '.join(CONTENT_TYPES)}")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            return error(413, f"the body is {int(declared):,} bytes; at most {max_body_bytes:,} are accepted")
        chunks, size = [], 0
        async for chunk in request.stream():  # counted as it arrives: Content-Length may lie or be absent
            size += len(chunk)
            if size > max_body_bytes:
                return error(413, f"the body exceeds {max_body_bytes:,} bytes")
            chunks.append(chunk)
        try:
            pixels, converted = await run_in_threadpool(
                decode_image, b"".join(chunks), image_size=image_size, min_side=min_side,
                max_pixels=max_pixels, convert_modes=convert_modes, formats=_FORMATS)
        except BadImage as bad:
            return error(bad.status, bad.message)
        # At most max_concurrency forwards at once; the others wait here without holding a thread.
        probs = await anyio.to_thread.run_sync(predict_pixels, pixels, limiter=state["limiter"])
        k = int(probs.argmax())
        state["served"] += 1
        state["recent"].append((pixels, k))
        return JSONResponse({"class": classes[k], "index": k,
                             "probabilities": {c: round(float(p), 6) for c, p in zip(classes, probs)},
                             "converted_from": converted})

    if monitor is not None:
        def check(recent: list) -> object:
            images = np.stack([p for p, _ in recent]).transpose(0, 3, 1, 2)
            return monitor.check(images, [k for _, k in recent])

        @app.get("/drift", response_model=Drift,
                 responses={409: {"model": Error, "description": "fewer than 30 images served so far"}})
        async def drift() -> JSONResponse:
            recent = list(state["recent"])
            if len(recent) < 30:
                return error(409, f"only {len(recent)} images served since start-up; the drift check needs 30")
            # Seconds of statistics: in a worker thread, so other requests are answered meanwhile.
            report = await run_in_threadpool(check, recent)
            return JSONResponse({"n": report.n, "drift": report.drift, "alerts": list(report.alerts),
                                 "psi": report.psi, "class_psi": report.class_psi})

    return app


class BackgroundServer:
    """Run an ASGI app with uvicorn in a background thread, on a free port of 127.0.0.1.

    Use as a context manager; the server is up (start-up done, model loaded) inside the block
    and stopped at its end. Used in chapter 09 and the tests.

    Args:
        app: The app, e.g. from :func:`serve`.
        host: Interface to listen on.
        port: Port; 0 picks a free one (the socket is bound here, so no other program can
            take the port between choosing and listening).
        timeout: Seconds to wait for start-up.
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, timeout: float = 60.0) -> None:
        import uvicorn

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = self._sock.getsockname()[:2]
        config = uvicorn.Config(app, log_level="error", lifespan="on", timeout_graceful_shutdown=5,
                                access_log=False)
        self.server = uvicorn.Server(config)
        self.app = app
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.timeout = timeout

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self._sock])
        except SystemExit:  # uvicorn exits when start-up fails; __enter__ reports why
            pass

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> "BackgroundServer":  # noqa: PYI034 (Self needs Python 3.11+)
        self._thread.start()
        deadline = time.monotonic() + self.timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                why = getattr(getattr(self.app, "state", None), "startup_error", None)
                raise RuntimeError("the server did not start: " + (why or "see the log above (usually the "
                                                                   "model or its weights failed to load)"))
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Ask uvicorn to finish the requests in flight and exit; wait for it."""
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=15)
        self._sock.close()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def load_test(
    url: str,
    body: bytes,
    content_type: str = "image/png",
    *,
    requests: int = 2000,
    concurrency: int = 16,
    timeout: float = 30.0,
) -> dict[str, float | int | dict]:
    """Send ``requests`` POSTs of ``body`` to ``url`` from ``concurrency`` parallel clients.

    Each client is a thread with its own keep-alive connection (``httpx.Client``). Used in
    chapter 09 and ``benchmarks/serving_load.py``.

    Args:
        url: The endpoint, e.g. ``server.url + "/predict"``.
        body: The request body (an encoded image).
        content_type: Its ``Content-Type``.
        requests: Total requests.
        concurrency: Requests in flight at once.
        timeout: Seconds before one request counts as failed.

    Returns:
        ``{"requests", "concurrency", "errors", "status_counts", "seconds", "throughput_rps",
        "p50_ms", "p99_ms"}``; a request is an error when it fails or answers other than 200.
    """
    import httpx

    if requests < 1 or concurrency < 1:
        raise ValueError(f"requests and concurrency must be positive, got {requests} and {concurrency}")
    counter = iter(range(requests))
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: collections.Counter = collections.Counter()

    def worker() -> None:
        with httpx.Client(timeout=timeout) as client:
            while True:
                with lock:
                    if next(counter, None) is None:
                        return
                start = time.perf_counter()
                try:
                    code = client.post(url, content=body, headers={"content-type": content_type}).status_code
                except httpx.HTTPError as err:
                    code = type(err).__name__
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    statuses[code] += 1

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for f in [pool.submit(worker) for _ in range(concurrency)]:
            f.result()
    seconds = time.perf_counter() - start
    lat = np.array(latencies) * 1e3
    return {"requests": requests, "concurrency": concurrency, "errors": requests - statuses.get(200, 0),
            "status_counts": {str(k): v for k, v in statuses.items()}, "seconds": seconds,
            "throughput_rps": requests / seconds, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99))}


def _import(spec: str) -> Callable[[], nn.Module]:
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"--model must look like 'package.module:Callable', got {spec!r}")
    return getattr(importlib.import_module(module), name)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m dlkit.deploy --model dlkit.models:SmallCNN --weights w.pt ...``."""
    import uvicorn

    p = argparse.ArgumentParser(description="Serve an image classifier over HTTP.")
    p.add_argument("--model", required=True, help="constructor, as package.module:Callable")
    p.add_argument("--weights", required=True, help="state_dict file (torch.save(model.state_dict()))")
    p.add_argument("--classes", required=True, help="comma-separated class names, in output order")
    p.add_argument("--mean", required=True, help="comma-separated per-channel means in [0, 1]")
    p.add_argument("--std", required=True, help="comma-separated per-channel stds")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--threads", type=int, default=1, help="PyTorch intra-op threads")
    p.add_argument("--max-body-bytes", type=int, default=2_000_000)
    p.add_argument("--max-concurrency", type=int, default=None,
                   help="forward passes at once (default: CPU cores // --threads)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    app = serve(_import(args.model), args.weights, classes=args.classes.split(","),
                mean=[float(v) for v in args.mean.split(",")], std=[float(v) for v in args.std.split(",")],
                max_body_bytes=args.max_body_bytes, max_concurrency=args.max_concurrency)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
