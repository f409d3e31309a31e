"""An HTTP inference service for an image classifier, built with FastAPI and run with uvicorn.

``POST /predict`` takes one image as the raw request body (``Content-Type: image/png``,
``image/jpeg``, ...) and returns the class probabilities as JSON; ``GET /health`` says whether
the model is loaded. Every kind of bad input gets a 4xx answer with a JSON body that says what
was wrong, and the server keeps serving. Used in chapter 09 (deployment); run it with
``python -m dlkit.deploy --help``.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations at
# run time, and ``Request`` is imported inside serve() to keep ``import dlkit.deploy`` light.
import argparse
import collections
import concurrent.futures
import contextlib
import importlib
import io
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["CONTENT_TYPES", "BackgroundServer", "BadImage", "decode_image", "load_test", "serve"]

# Content types accepted by /predict and the Pillow decoder each may use.
CONTENT_TYPES = {
    "image/png": "PNG", "image/jpeg": "JPEG", "image/bmp": "BMP", "image/gif": "GIF",
    "image/webp": "WEBP", "image/tiff": "TIFF",
}
_HIGH_DEPTH = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}


class BadImage(ValueError):
    """An image the service cannot use; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def decode_image(
    body: bytes,
    *,
    image_size: int = 32,
    min_side: int = 8,
    max_pixels: int = 4096 * 4096,
    convert_modes: bool = True,
) -> tuple[np.ndarray, str | None]:
    """Decode, check and resize one uploaded image to ``image_size``×``image_size`` RGB.

    The header is read first and the pixel count checked *before* any pixel is decoded, so a
    small file that claims to be huge (a decompression bomb) costs nothing. Non-square images
    are centre-cropped to a square, then resized with antialiasing. Used in chapter 09.

    Args:
        body: The file's bytes.
        image_size: Side of the square the model takes.
        min_side: Smallest width or height accepted.
        max_pixels: Largest width × height accepted.
        convert_modes: Convert grayscale, palette, CMYK and alpha images to RGB (alpha is
            composited onto white); when False they are rejected. 16-bit and float images are
            always rejected: how to map them to 8 bits depends on how they were made.

    Returns:
        ``(pixels, converted_from)``: a uint8 array ``image_size``×``image_size``×3 and the
        original mode when it was converted (``None`` for RGB).

    Raises:
        BadImage: With status 400 (empty, undecodable or truncated) or 422 (unusable mode,
            too small, too many pixels).
    """
    from PIL import Image, ImageFile, UnidentifiedImageError

    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated upload is an error, not grey pixels
    if not body:
        raise BadImage(400, "the request body is empty: send the image file's bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(body), formats=sorted(set(CONTENT_TYPES.values())))
    except UnidentifiedImageError:
        raise BadImage(400, "the body is not an image this service can decode "
                            f"(accepted formats: {', '.join(sorted(set(CONTENT_TYPES.values())))})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise BadImage(422, f"the image is too large to decode safely: {err}") from None
    except Exception as err:  # noqa: BLE001 (Pillow's plugins raise many types for malformed headers)
        raise BadImage(400, f"could not read the image header: {err}") from None
    w, h = img.size
    if w * h > max_pixels:
        raise BadImage(422, f"the image is {w}×{h} = {w * h:,} pixels; at most {max_pixels:,} are accepted")
    if min(w, h) < min_side:
        raise BadImage(422, f"the image is {w}×{h} pixels; at least {min_side}×{min_side} are needed")
    mode = img.mode
    if mode in _HIGH_DEPTH:
        raise BadImage(422, f"the image has {'16-bit' if mode.startswith('I;16') else '32-bit'} samples "
                            f"(mode {mode}); send an 8-bit RGB image")
    try:
        img.load()
    except Exception as err:  # noqa: BLE001 (truncated or corrupt pixel data: many types)
        raise BadImage(400, f"the image data is truncated or corrupt: {err}") from None
    converted = None
    if mode != "RGB":
        has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info)
        if not convert_modes:
            what = "an alpha channel" if has_alpha else f"mode {mode}"
            raise BadImage(422, f"the image has {what}; this service takes 8-bit RGB images")
        try:
            if has_alpha:
                rgba = img.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(white, rgba).convert("RGB")
            else:
                img = img.convert("RGB")
        except Exception as err:  # noqa: BLE001 (bad input must never become a 500)
            raise BadImage(422, f"cannot convert an image of mode {mode} to RGB: {err}") from None
        converted = mode
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    img = img.resize((image_size, image_size), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(img, dtype=np.uint8).copy(), converted


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
):
    """Build the FastAPI app that serves ``build_model()`` with the weights in ``weights``.

    The weights are loaded once, when the server starts, with ``torch.load(...,
    weights_only=True)``: a state_dict holds only tensors, so nothing in the file is executed.
    Used in chapter 09.

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

    Returns:
        A ``fastapi.FastAPI`` app; run it with uvicorn (see :class:`BackgroundServer`).

    Raises:
        FileNotFoundError: If ``weights`` does not exist (checked now, not at start-up).
        ValueError: If ``mean``/``std`` do not have 3 values or a limit is not positive.
    """
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"no weights file at {weights}")
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"mean and std need 3 values each (std > 0), got {list(mean)} and {list(std)}")
    if min(max_body_bytes, max_pixels, min_side, image_size) < 1:
        raise ValueError("max_body_bytes, max_pixels, min_side and image_size must be positive")
    classes = list(classes)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    state: dict = {"model": None, "served": 0, "rejected": 0,
                   "recent": collections.deque(maxlen=window)}

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

    @app.get("/health")
    async def health() -> JSONResponse:
        if state["model"] is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ok", "model": type(state["model"]).__name__,
                             "classes": len(classes), "served": state["served"],
                             "rejected": state["rejected"], "max_body_bytes": max_body_bytes})

    @app.post("/predict")
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
                max_pixels=max_pixels, convert_modes=convert_modes)
        except BadImage as bad:
            return error(bad.status, bad.message)
        probs = await run_in_threadpool(predict_pixels, pixels)
        k = int(probs.argmax())
        state["served"] += 1
        state["recent"].append((pixels, k))
        return JSONResponse({"class": classes[k], "index": k,
                             "probabilities": {c: round(float(p), 6) for c, p in zip(classes, probs)},
                             "converted_from": converted})

    if monitor is not None:
        @app.get("/drift")
        async def drift() -> JSONResponse:
            recent = list(state["recent"])
            if len(recent) < 30:
                return error(409, f"only {len(recent)} images served since start-up; the drift check needs 30")
            images = np.stack([p for p, _ in recent]).transpose(0, 3, 1, 2)
            report = monitor.check(images, [k for _, k in recent])
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
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    app = serve(_import(args.model), args.weights, classes=args.classes.split(","),
                mean=[float(v) for v in args.mean.split(",")], std=[float(v) for v in args.std.split(",")],
                max_body_bytes=args.max_body_bytes)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
