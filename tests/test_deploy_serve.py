"""dlkit.deploy.serve against a real uvicorn server on 127.0.0.1 and a real HTTP client (httpx).

Every kind of bad input gets a 4xx JSON error that says what was wrong, and the server keeps
answering correctly afterwards.
"""

from __future__ import annotations

import io
import pickle

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dlkit.deploy import BackgroundServer, decode_image, load_test, serve

CLASSES = ["circle", "square", "triangle", "cross"]
MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


def build() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, len(CLASSES)))


def encode(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def rgb(w: int = 40, h: int = 40, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    net = build().eval()
    path = tmp_path_factory.mktemp("serve") / "weights.pt"
    torch.save(net.state_dict(), path)
    return net, path


@pytest.fixture(scope="module")
def server(weights):
    _, path = weights
    app = serve(build, path, classes=CLASSES, mean=MEAN, std=STD, max_body_bytes=200_000, max_pixels=2000 * 2000)
    with BackgroundServer(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        yield srv, client


def post(client: httpx.Client, body, content_type: str | None = "image/png", **kwargs) -> httpx.Response:
    headers = {} if content_type is None else {"content-type": content_type}
    return client.post("/predict", content=body, headers=headers, **kwargs)


def assert_error(r: httpx.Response, status: int, *words: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    message = r.json()["error"]
    for w in words:
        assert w in message, message


def test_health_and_a_valid_prediction_match_the_model(server, weights):
    _, client = server
    net, _ = weights
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["classes"] == 4
    body = encode(rgb(50, 40))
    r = post(client, body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["converted_from"] is None and list(out["probabilities"]) == CLASSES
    # The same pixels through the model directly give the same probabilities.
    pixels, _ = decode_image(body)
    x = (torch.from_numpy(pixels).permute(2, 0, 1).float() / 255 - torch.tensor(MEAN).view(3, 1, 1)) \
        / torch.tensor(STD).view(3, 1, 1)
    with torch.no_grad():
        expected = net(x[None])[0].softmax(0).numpy()
    np.testing.assert_allclose(list(out["probabilities"].values()), expected, atol=1e-5)
    assert out["index"] == int(expected.argmax()) and out["class"] == CLASSES[out["index"]]


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", "application/octet-stream",
                                          "image/svg+xml", None])
def test_wrong_content_type(server, content_type):
    _, client = server
    assert_error(post(client, encode(rgb()), content_type), 415, "Content-Type", "image/png")


def test_empty_body(server):
    assert_error(post(server[1], b""), 400, "empty")


def test_oversize_body_declared_and_streamed(server):
    _, client = server
    big = b"\x89PNG" + bytes(300_000)
    assert_error(post(client, big), 413, "200,000")

    def chunks():  # no Content-Length: the limit must hold while streaming
        for _ in range(30):
            yield bytes(10_000)

    assert_error(post(client, chunks()), 413, "200,000")


def test_undecodable_and_truncated_images(server):
    _, client = server
    assert_error(post(client, b"this is not an image at all"), 400, "not an image")
    png = encode(rgb(64, 64))
    assert_error(post(client, png[: len(png) // 2]), 400, "truncated")
    jpeg = encode(rgb(64, 64), "JPEG", quality=90)
    assert_error(post(client, jpeg[: len(jpeg) // 2], "image/jpeg"), 400, "truncated")
    assert_error(post(client, b"\x89PNG\r\n\x1a\n" + bytes(40)), 400)


def test_sixteen_bit_image_is_rejected(server):
    img = Image.fromarray(np.full((32, 32), 40_000, dtype=np.uint16))
    assert img.mode.startswith("I;16")
    assert_error(post(server[1], encode(img)), 422, "16-bit", "8-bit RGB")


@pytest.mark.parametrize("mode,fmt", [("L", "PNG"), ("1", "PNG"), ("P", "PNG"), ("RGBA", "PNG"), ("LA", "PNG"),
                                      ("CMYK", "JPEG")])
def test_unusual_modes_are_converted(server, mode, fmt):
    body = encode(rgb(36, 36).convert(mode), fmt)
    r = post(server[1], body, f"image/{fmt.lower()}")
    assert r.status_code == 200, r.text
    assert r.json()["converted_from"] == mode
    assert sum(r.json()["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


def test_alpha_is_composited_onto_white():
    transparent = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    pixels, mode = decode_image(encode(transparent))
    assert mode == "RGBA" and (pixels == 255).all()


def test_unusual_modes_are_rejected_when_conversion_is_off(weights):
    _, path = weights
    app = serve(build, path, classes=CLASSES, mean=MEAN, std=STD, convert_modes=False)
    with BackgroundServer(app) as srv, httpx.Client(base_url=srv.url) as client:
        for mode, fmt, words in [("L", "PNG", "mode L"), ("RGBA", "PNG", "alpha"), ("CMYK", "JPEG", "CMYK")]:
            assert_error(post(client, encode(rgb(20, 20).convert(mode), fmt), f"image/{fmt.lower()}"), 422, *words)
        assert post(client, encode(rgb(20, 20))).status_code == 200


def test_tiny_and_huge_dimensions(server):
    _, client = server
    assert_error(post(client, encode(rgb(2, 50))), 422, "2×50", "8×8")
    # 3000×3000 black pixels compress to a few kilobytes: the header is checked before decoding.
    huge = encode(Image.new("L", (3000, 3000)), optimize=True)
    assert len(huge) < 200_000
    assert_error(post(client, huge), 422, "3000×3000", "4,000,000")


def test_decompression_bomb_is_refused_before_decoding():
    # Larger than Pillow's own limit (2 × MAX_IMAGE_PIXELS) as well as the service's.
    bomb = encode(Image.new("1", (13_000, 13_000)))
    assert len(bomb) < 100_000
    with pytest.raises(ValueError) as err:
        decode_image(bomb)
    assert err.value.status == 422


def test_server_keeps_serving_after_bad_requests(server):
    _, client = server
    for _ in range(3):
        post(client, b"garbage")
        post(client, b"")
        post(client, encode(rgb()), "text/plain")
    r = post(client, encode(rgb(seed=3)))
    assert r.status_code == 200
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["rejected"] >= 9


def test_load_test_has_no_errors(server):
    srv, _ = server
    report = load_test(srv.url + "/predict", encode(rgb()), requests=60, concurrency=6)
    assert report["errors"] == 0 and report["status_counts"] == {"200": 60}
    assert report["p50_ms"] <= report["p99_ms"] and report["throughput_rps"] > 0


def test_weights_are_loaded_safely_and_checked(tmp_path, weights):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"0.weight": Payload()}, protocol=2))
    app = serve(build, evil, classes=CLASSES, mean=MEAN, std=STD)
    with pytest.raises(RuntimeError, match="did not start: UnpicklingError"), BackgroundServer(app):
        pass
    with pytest.raises(FileNotFoundError, match="no weights"):
        serve(build, tmp_path / "missing.pt", classes=CLASSES, mean=MEAN, std=STD)
    # Weights whose output size does not match the class list fail at start-up too.
    app = serve(build, weights[1], classes=CLASSES[:3], mean=MEAN, std=STD)
    with pytest.raises(RuntimeError, match=r"did not start: ValueError.*\(1, 3\) for 3 classes"), \
            BackgroundServer(app):
        pass


def test_drift_endpoint_reports_on_recent_requests(weights):
    from dlkit.deploy import DriftMonitor

    _, path = weights
    rng = np.random.default_rng(0)
    reference = torch.from_numpy(rng.integers(0, 256, (300, 3, 32, 32), dtype=np.uint8))
    monitor = DriftMonitor(reference, rng.integers(0, 4, 300), num_classes=4)
    app = serve(build, path, classes=CLASSES, mean=MEAN, std=STD, monitor=monitor, window=40)
    with BackgroundServer(app) as srv, httpx.Client(base_url=srv.url) as client:
        assert_error(client.get("/drift"), 409, "30")
        dark = Image.fromarray(np.full((32, 32, 3), 10, dtype=np.uint8))
        for _ in range(40):
            assert post(client, encode(dark)).status_code == 200
        report = client.get("/drift").json()
    assert report["n"] == 40 and report["drift"]
    assert any(a.startswith("brightness shifted down") for a in report["alerts"])
