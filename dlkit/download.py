"""Downloading a file safely: stream, verify, rename atomically, retry, resume.

:func:`download` is what every data pipeline needs before it can trust a file
from the network. It never leaves a partial or unverified file under the final
name: bytes go to ``DEST.part`` first, the length and the SHA-256 checksum are
checked, and only then is the file renamed with :func:`os.replace` (atomic on
one file system). Transient failures (connection errors, timeouts, truncated
bodies, HTTP 5xx, 408 and 429) are retried with exponential backoff; a retry
resumes from the bytes already in ``DEST.part`` when the server honours an HTTP
``Range`` request and restarts from zero when it does not. Permanent failures
(404 and other 4xx, a wrong checksum) raise at once.

Taught in chapter 02 (data collection); re-exported as ``dlkit.data.download``.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Union

from tqdm.auto import tqdm

from dlkit._util import commit_file

__all__ = ["ChecksumError", "DownloadError", "download", "sha256_file"]

PathLike = Union[str, "os.PathLike[str]"]

#: HTTP statuses worth retrying: the server may answer differently next time.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class DownloadError(OSError):
    """A download failed for good (HTTP 4xx, or retries exhausted).

    Attributes:
        url: The URL requested.
        status: The last HTTP status, or ``None`` for a network-level failure.
    """

    def __init__(self, message: str, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class ChecksumError(ValueError):
    """The downloaded bytes do not have the expected SHA-256 checksum."""


def sha256_file(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """Return the hex SHA-256 digest of a file, read in chunks (bounded memory).

    Used in chapter 02 (data collection).

    Args:
        path: The file.
        chunk_size: Bytes read at a time.

    Returns:
        The 64-character lowercase hex digest.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def _check_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    value = sha256.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    return value


class _Transient(Exception):
    """A failure worth retrying; carries a readable reason."""


def _fetch(url: str, part: Path, timeout: float, chunk_size: int, progress: bool) -> None:
    """One attempt: append to ``part`` (resuming) or rewrite it; raise on failure."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "dlkit"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:
            # Range past the end: the partial file cannot be trusted; restart.
            part.unlink()
            raise _Transient(f"HTTP 416 for a resume at byte {have}; restarting from zero") from err
        if err.code in RETRY_STATUSES:
            raise _Transient(f"HTTP {err.code} {err.reason}") from err
        raise DownloadError(f"HTTP {err.code} {err.reason} for {url}", url, err.code) from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise _Transient(f"cannot connect: {reason}") from err

    with response:
        status = response.status
        resumed = have > 0 and status == 206
        if have and not resumed:
            have = 0  # the server ignored the Range header: start over
        length = response.headers.get("Content-Length")
        expected = have + int(length) if length is not None else None
        mode = "ab" if resumed else "wb"
        received = have
        bar = tqdm(total=expected, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=Path(url).name or "download", disable=not progress, leave=False)
        try:
            with open(part, mode) as f:
                while True:
                    try:
                        chunk = response.read(chunk_size)
                    except (http.client.IncompleteRead, OSError) as err:
                        raise _Transient(f"connection broke after {received} bytes: {err!r}") from err
                    if not chunk:
                        break
                    f.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                f.flush()  # fsync happens once, in commit_file, when the file is complete
        finally:
            bar.close()
    if expected is not None and received != expected:
        raise _Transient(f"truncated body: got {received} of {expected} bytes")


def download(
    url: str,
    dest: PathLike,
    sha256: str | None = None,
    *,
    retries: int = 3,
    backoff: float = 0.5,
    timeout: float = 20.0,
    chunk_size: int = 1 << 16,
    progress: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Download ``url`` to ``dest``, verified and atomically, retrying transient failures.

    Bytes are streamed to ``dest + ".part"``; when the body is complete (its
    length matches ``Content-Length``) and its SHA-256 equals ``sha256``, the
    part file is renamed to ``dest`` by :func:`dlkit._util.commit_file` (``fsync``, then
    :func:`os.replace`, then ``fsync`` of the folder: the package's one atomic-write
    policy). So ``dest``
    either does not exist or holds the verified file, even if the process is
    killed half-way. A later call resumes from the part file with an HTTP
    ``Range`` request (or restarts if the server ignores it). If ``dest``
    already exists and matches ``sha256``, nothing is downloaded.

    Used in chapter 02 (data collection).

    Args:
        url: An ``http://``, ``https://`` or ``file://`` URL.
        dest: The final file path; its folder is created if needed.
        sha256: Expected hex SHA-256 of the content; ``None`` skips the check
            (and then an existing ``dest`` is trusted as it is).
        retries: How many times to retry after a transient failure.
        backoff: Seconds before the first retry; doubled before each next one.
        timeout: Seconds a single network operation may block.
        chunk_size: Bytes read per step (the memory used).
        progress: Show a ``tqdm`` progress bar.
        sleep: The function used to wait between retries (tests pass a no-op).

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        DownloadError: On HTTP 404 or another non-retryable status, or when
            all retries failed; the message gives the last reason.
        ChecksumError: If the complete file has another checksum; the part
            file is deleted, ``dest`` is left as it was.
        ValueError: If ``sha256`` is not 64 hex digits or ``retries`` < 0.
    """
    expected = _check_sha256(sha256)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be a non-negative int, got {retries!r}")
    dest = Path(dest)
    if dest.exists() and (expected is None or sha256_file(dest) == expected):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    reasons: list[str] = []
    restarted_after_mismatch = False
    attempt = 0
    while True:
        try:
            _fetch(url, part, timeout, chunk_size, progress)
        except _Transient as err:
            reasons.append(str(err))
            if attempt >= retries:
                raise DownloadError(
                    f"download of {url} failed after {attempt + 1} attempt(s); last error: {reasons[-1]}. "
                    f"The bytes received so far are kept in {part} and a new call resumes from them.",
                    url,
                ) from err
            sleep(backoff * 2**attempt)
            attempt += 1
            continue
        got = sha256_file(part)
        if expected is not None and got != expected:
            part.unlink()
            if attempt > 0 and not restarted_after_mismatch:
                # A resumed file may splice two versions of the content: try once from zero.
                restarted_after_mismatch = True
                continue
            raise ChecksumError(
                f"{url}: SHA-256 of the downloaded file is {got}, expected {expected}; "
                f"the file was deleted and {dest} left untouched. The URL may serve another "
                "version of the file, or the expected checksum is wrong."
            )
        return commit_file(part, dest)
