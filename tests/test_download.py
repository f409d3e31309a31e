"""dlkit.download against a real HTTP server on 127.0.0.1 that misbehaves on purpose."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dlkit import data
from dlkit.download import ChecksumError, DownloadError, download, sha256_file

PAYLOAD = bytes(range(256)) * 1000  # 256 kB, not a multiple of the chunk size below
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """Behaviour per path; ``server.log`` records (path, Range header) of every request."""

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, body: bytes, status: int = 200, headers: dict | None = None, cut: int | None = None):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body if cut is None else body[:cut])
        self.wfile.flush()
        if cut is not None:
            self.close_connection = True

    def do_GET(self):
        srv = self.server
        path = self.path
        rng = self.headers.get("Range")
        srv.log.append((path, rng))
        count = sum(1 for p, _ in srv.log if p == path)
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        if path == "/ok":
            if rng:
                self._send(PAYLOAD[start:], 206, {"Content-Range": f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}"})
            else:
                self._send(PAYLOAD)
        elif path == "/norange":  # ignores Range: always the whole body with 200
            self._send(PAYLOAD)
        elif path == "/truncated-once":  # first response breaks half-way, then resumable
            if count == 1:
                self._send(PAYLOAD, cut=len(PAYLOAD) // 2)
            elif rng:
                self._send(PAYLOAD[start:], 206, {"Content-Range": f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}"})
            else:
                self._send(PAYLOAD)
        elif path == "/truncated-always":
            body = PAYLOAD[start:]
            self._send(body, 206 if rng else 200, cut=len(body) // 2)
        elif path == "/flaky":  # 500 first, then the file
            if count == 1:
                self._send(b"server error", 500)
            else:
                self._send(PAYLOAD)
        elif path == "/always500":
            self._send(b"server error", 500)
        else:
            self._send(b"not found", 404)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.log = []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def _url(srv, path):
    return f"http://127.0.0.1:{srv.server_address[1]}{path}"


def _no_sleep(seconds):
    _no_sleep.calls.append(seconds)


def _download(srv, path, dest, sha=SHA, **kw):
    _no_sleep.calls = []
    kw.setdefault("retries", 3)
    return download(_url(srv, path), dest, sha, progress=False, sleep=_no_sleep, chunk_size=4096, **kw)


def test_download_writes_verified_file_and_leaves_no_part(server, tmp_path):
    dest = tmp_path / "sub" / "file.bin"
    assert _download(server, "/ok", dest) == dest
    assert dest.read_bytes() == PAYLOAD
    assert sha256_file(dest) == SHA
    assert sorted(p.name for p in dest.parent.iterdir()) == ["file.bin"]
    # Already there and verified: no request at all.
    n = len(server.log)
    _download(server, "/ok", dest)
    assert len(server.log) == n


def test_download_is_reexported_from_data():
    assert data.download is download


def test_truncated_response_is_resumed_with_a_range_request(server, tmp_path):
    dest = tmp_path / "file.bin"
    _download(server, "/truncated-once", dest)
    assert dest.read_bytes() == PAYLOAD
    log = [r for p, r in server.log if p == "/truncated-once"]
    assert log[0] is None and log[1] is not None and log[1].startswith("bytes=")
    resumed_at = int(log[1].split("=")[1].rstrip("-"))
    assert 0 < resumed_at < len(PAYLOAD)  # resumed, not restarted
    assert _no_sleep.calls == [0.5]


def test_always_truncated_raises_and_never_creates_the_final_file(server, tmp_path):
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match="truncated|broke"):
        _download(server, "/truncated-always", dest, retries=2)
    assert not dest.exists()
    assert _no_sleep.calls == [0.5, 1.0]  # exponential backoff
    assert len([p for p, _ in server.log if p == "/truncated-always"]) == 3


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    dest = tmp_path / "file.bin"
    part = tmp_path / "file.bin.part"
    part.write_bytes(b"garbage from an older attempt")
    _download(server, "/norange", dest)
    assert dest.read_bytes() == PAYLOAD
    assert not part.exists()


def test_wrong_checksum_deletes_everything_and_keeps_old_dest(server, tmp_path):
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"previous version")
    wrong = "0" * 64
    with pytest.raises(ChecksumError, match="expected 0000"):
        _download(server, "/ok", dest, sha=wrong)
    assert dest.read_bytes() == b"previous version"
    assert not (tmp_path / "file.bin.part").exists()


def test_500_then_success_is_retried(server, tmp_path):
    dest = tmp_path / "file.bin"
    _download(server, "/flaky", dest)
    assert dest.read_bytes() == PAYLOAD
    assert [p for p, _ in server.log] == ["/flaky", "/flaky"]
    assert _no_sleep.calls == [0.5]


def test_persistent_500_gives_up_with_the_reason(server, tmp_path):
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match="HTTP 500"):
        _download(server, "/always500", dest, retries=1)
    assert not dest.exists()


def test_404_fails_at_once_without_retry(server, tmp_path):
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match="404") as info:
        _download(server, "/missing", dest)
    assert info.value.status == 404
    assert len(server.log) == 1 and _no_sleep.calls == []
    assert list(tmp_path.iterdir()) == []


def test_connection_refused_is_retried_then_reported(tmp_path):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = srv.server_address[1]
    srv.server_close()  # nothing listens on this port any more
    _no_sleep.calls = []
    with pytest.raises(DownloadError, match="cannot connect"):
        download(f"http://127.0.0.1:{port}/ok", tmp_path / "f", SHA, retries=1, progress=False,
                 sleep=_no_sleep, timeout=5)
    assert _no_sleep.calls == [0.5]


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="64 hex"):
        download("http://127.0.0.1:1/x", tmp_path / "f", "abc")
    with pytest.raises(ValueError, match="retries"):
        download("http://127.0.0.1:1/x", tmp_path / "f", SHA, retries=-1)
