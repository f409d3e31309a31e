"""dlkit.data.text: finding Tiny Shakespeare, its checksum, the download path, the contiguous split."""

from __future__ import annotations

import functools
import hashlib

import pytest

import dlkit.data.text as dtext
from dlkit import data
from dlkit.data.text import load_text, split_text

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 20


@pytest.fixture
def small_corpus(monkeypatch, tmp_path):
    """A small stand-in for the corpus: its own checksum, a file:// URL, an empty cache."""
    src = tmp_path / "source" / "input.txt"
    src.parent.mkdir()
    src.write_text(TEXT, encoding="utf-8")
    source = dtext._TextSource("tiny_shakespeare.txt", src.as_uri(),
                               hashlib.sha256(TEXT.encode()).hexdigest(), len(TEXT))
    monkeypatch.setitem(dtext._SOURCES, "tiny_shakespeare", source)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DLKIT_DATA_DIR", raising=False)
    return tmp_path


def test_split_is_contiguous_and_complete():
    train, val = split_text(TEXT, 0.1)
    assert train + val == TEXT
    assert len(train) == int(len(TEXT) * 0.9)
    with pytest.raises(ValueError, match="val_fraction"):
        split_text(TEXT, 1.0)
    with pytest.raises(ValueError, match="too short"):
        split_text("a", 0.1)


def test_found_in_data_dir(small_corpus, monkeypatch):
    folder = small_corpus / "data"
    folder.mkdir()
    (folder / "tiny_shakespeare.txt").write_text(TEXT, encoding="utf-8")
    monkeypatch.setenv("DLKIT_DATA_DIR", str(folder))
    train = load_text(split="train", download=False)
    val = load_text(split="val", download=False)
    assert train.text + val.text == TEXT == load_text(split="all", download=False).text
    assert val.start == len(train.text) and train.split == "train" and len(val) == len(val.text)


def test_wrong_checksum_is_refused(small_corpus):
    (small_corpus / "tiny_shakespeare.txt").write_text(TEXT + "x", encoding="utf-8")
    with pytest.raises(ValueError, match="SHA-256"):
        load_text(root=small_corpus, download=False)


def test_missing_without_download_names_the_places(small_corpus):
    with pytest.raises(FileNotFoundError, match="DLKIT_DATA_DIR") as err:
        load_text(root=small_corpus / "nowhere", download=False)
    assert "nowhere" in str(err.value) and "user cache" in str(err.value)


def test_downloaded_with_the_checksum_into_data_dir(small_corpus, monkeypatch):
    dest = small_corpus / "downloads"
    monkeypatch.setenv("DLKIT_DATA_DIR", str(dest))
    corpus = load_text(split="all")
    assert corpus.text == TEXT and (dest / "tiny_shakespeare.txt").read_text() == TEXT


def test_failed_download_becomes_file_not_found(small_corpus, monkeypatch):
    bad = dtext._TextSource("tiny_shakespeare.txt", (small_corpus / "absent.txt").as_uri(),
                            "0" * 64, 1)
    monkeypatch.setitem(dtext._SOURCES, "tiny_shakespeare", bad)
    # No waiting between the retries of the failing URL.
    monkeypatch.setattr(dtext, "_download_file",
                        functools.partial(dtext._download_file, sleep=lambda seconds: None))
    with pytest.raises(FileNotFoundError, match="download from"):
        load_text()


def test_bad_names_and_registry():
    with pytest.raises(ValueError, match="unknown text corpus"):
        load_text("war_and_peace")
    with pytest.raises(ValueError, match="split must be"):
        load_text(split="test")
    assert "tiny_shakespeare" in data.names(kind="text")
    with pytest.raises(ValueError, match="load_text"):
        data.load("tiny_shakespeare")


def test_the_real_corpus_when_available(monkeypatch):
    corpus = None
    try:
        corpus = load_text(split="all", download=False)
    except FileNotFoundError:
        pytest.skip("tiny_shakespeare.txt is not in DLKIT_DATA_DIR or the cache")
    assert len(corpus.text) == dtext.TINY_SHAKESPEARE.num_chars
    assert len(set(corpus.text)) == 65
