"""Tiny Shakespeare: finding or downloading the corpus, checking it, and its contiguous split.

The corpus of chapter 10 (sequence models) is Karpathy's "tiny Shakespeare" (char-rnn, 2015):
1,115,394 characters of Shakespeare's plays, public domain. :func:`load_text` looks for
``tiny_shakespeare.txt`` where :func:`dlkit.data.load` looks for image files (``root``,
``$DLKIT_DATA_DIR``, the user cache), verifies its SHA-256 checksum, and otherwise downloads it
from its public URL through :func:`dlkit.download.download` (streamed, verified, renamed
atomically). The split is contiguous: the first 90 % of the characters train, the last 10 %
validate. Shuffling windows across that boundary would put text from the middle of a scene on
both sides, so a validation score would partly measure memorised neighbours.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dlkit.data.registry import Dataset, register
from dlkit.data.sources import data_dirs
from dlkit.download import download as _download_file
from dlkit.download import sha256_file

__all__ = ["TINY_SHAKESPEARE", "TextCorpus", "load_text", "split_text"]


@dataclass(frozen=True)
class _TextSource:
    filename: str
    url: str
    sha256: str
    num_chars: int


#: Where the corpus comes from and how to recognise it.
TINY_SHAKESPEARE = _TextSource(
    filename="tiny_shakespeare.txt",
    url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
    sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    num_chars=1_115_394,
)
_SOURCES = {"tiny_shakespeare": TINY_SHAKESPEARE}
SPLITS = ("train", "val", "all")


@dataclass(frozen=True)
class TextCorpus:
    """A text and where it came from.

    Attributes:
        text: The characters (one split, or the whole corpus).
        name: The registered name, e.g. ``"tiny_shakespeare"``.
        split: ``"train"``, ``"val"`` or ``"all"``.
        start: Index of the split's first character in the whole corpus.
    """

    text: str
    name: str
    split: str
    start: int

    def __len__(self) -> int:
        return len(self.text)

    def __repr__(self) -> str:
        return (f"TextCorpus({self.name!r}, split={self.split!r}, {len(self.text):,} characters "
                f"from {self.start:,})")


def split_text(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """Split ``text`` contiguously: the first ``1 - val_fraction`` trains, the rest validates.

    Used in chapter 10. Never shuffled: neighbouring characters are strongly dependent, so a
    random split would leak the validation text into training through its neighbours.

    Args:
        text: The whole corpus.
        val_fraction: Fraction at the end kept for validation, in (0, 1).

    Returns:
        ``(train, val)`` with ``train + val == text``.

    Raises:
        ValueError: If ``val_fraction`` is not in (0, 1) or a part would be empty.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    cut = int(len(text) * (1 - val_fraction))
    if cut == 0 or cut == len(text):
        raise ValueError(f"a text of {len(text)} characters is too short to split at {val_fraction}")
    return text[:cut], text[cut:]


def _read_checked(path: Path, source: _TextSource) -> str:
    digest = sha256_file(path)
    if digest != source.sha256:
        raise ValueError(
            f"{path.name} in {path.parent.name or '.'} has SHA-256 {digest[:12]}..., expected "
            f"{source.sha256[:12]}...: the file is damaged or a different text; delete it to "
            "download it again")
    return path.read_text(encoding="utf-8")


def load_text(
    name: str = "tiny_shakespeare",
    split: str = "train",
    root: str | os.PathLike | None = None,
    download: bool | None = None,
    *,
    val_fraction: float = 0.1,
) -> TextCorpus:
    """Load a registered text corpus, one contiguous split of it.

    Used in chapter 10 (sequence models). The file is looked for in ``root``,
    ``$DLKIT_DATA_DIR`` and the user cache (``~/.cache/dlkit``), the places
    :func:`dlkit.data.load` searches; a file found is checked against its SHA-256 checksum.
    When none is found, it is downloaded into ``$DLKIT_DATA_DIR`` (or the user cache) with
    :func:`dlkit.download.download`, which verifies the checksum before the file appears.

    Args:
        name: ``"tiny_shakespeare"``.
        split: ``"train"`` (the first 90 %), ``"val"`` (the last 10 %) or ``"all"``.
        root: Folder searched first.
        download: ``None`` or ``True``: download when the file is found nowhere (fails
            within seconds offline); ``False``: never download.
        val_fraction: Fraction of characters at the end that form the validation split.

    Returns:
        The :class:`TextCorpus` of that split.

    Raises:
        ValueError: For an unknown name or split, or a file whose checksum is wrong.
        FileNotFoundError: If the file is found nowhere and cannot be downloaded; the message
            lists the places looked and names ``DLKIT_DATA_DIR``.
    """
    source = _SOURCES.get(name)
    if source is None:
        raise ValueError(f"unknown text corpus {name!r}; known: {', '.join(map(repr, _SOURCES))}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}; got {split!r}")
    folders = data_dirs(name, root)
    text = None
    for folder, _ in folders:
        path = folder / source.filename
        if path.is_file():
            text = _read_checked(path, source)
            break
    if text is None:
        tried = "\n".join(f"  {folder / source.filename}  [{origin}]" for folder, origin in folders)
        if not os.environ.get("DLKIT_DATA_DIR"):
            tried += "\n  ($DLKIT_DATA_DIR is not set.)"
        if download is False:
            raise FileNotFoundError(
                f"Could not find {source.filename}. Looked in:\n{tried}\nDownloading is off "
                "(download=False). Put the file in a folder and set DLKIT_DATA_DIR to it.")
        dest = next((f for f, origin in folders if origin == "$DLKIT_DATA_DIR"), folders[-1][0])
        try:
            path = _download_file(source.url, dest / source.filename, source.sha256, progress=False)
        except OSError as err:
            raise FileNotFoundError(
                f"Could not find {source.filename}. Looked in:\n{tried}\nThe download from "
                f"{source.url} failed ({err}). Put the file in a folder and set DLKIT_DATA_DIR "
                "to it.") from err
        text = _read_checked(path, source)
    if split == "all":
        return TextCorpus(text, name, split, 0)
    train, val = split_text(text, val_fraction)
    return TextCorpus(train, name, "train", 0) if split == "train" else \
        TextCorpus(val, name, "val", len(train))


register(Dataset("tiny_shakespeare", kind="text", loader="dlkit.data.text.load_text"))
