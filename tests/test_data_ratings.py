"""dlkit.data.ratings: reading MovieLens from the zip, the lookup, the checksum and the download."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import pytest
import torch

from dlkit import data
from dlkit.data import ratings as R
from dlkit.download import ChecksumError

RATINGS = """userId,movieId,rating,timestamp
7,10,4.0,100
7,3,3.5,90
2,3,5.0,50
2,42,0.5,60
"""
MOVIES = '''movieId,title,genres
42,"Heat, The (1995)",Action|Crime
3,Toy Story (1995),Adventure|Animation
10,Untitled,(no genres listed)
99,Never Rated (2001),Drama
'''


def _zip(path: Path, ratings: str = RATINGS, movies: str = MOVIES) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("ml-latest-small/ratings.csv", ratings)
        z.writestr("ml-latest-small/movies.csv", movies)
    return path


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("DLKIT_DATA_DIR", raising=False)
    return tmp_path


def test_read_maps_ids_contiguously_and_parses_titles(tmp_path):
    rs = R.read_movielens(_zip(tmp_path / "a.zip"))
    assert rs.num_users == 2 and rs.num_items == 4 and len(rs) == 4
    assert rs.user_ids.tolist() == [2, 7] and rs.item_ids.tolist() == [3, 10, 42, 99]
    # Row order of ratings.csv is kept; ids follow the sorted original ids.
    assert rs.user.tolist() == [1, 1, 0, 0]
    assert rs.item.tolist() == [1, 0, 0, 2]
    assert rs.rating.tolist() == [4.0, 3.5, 5.0, 0.5]
    assert rs.timestamp.tolist() == [100, 90, 50, 60]
    assert rs.titles[2] == "Heat, The (1995)"  # a quoted comma survives
    assert rs.year.tolist() == [1995, -1, 1995, 2001]
    g = {name: j for j, name in enumerate(rs.genre_names)}
    assert rs.genres[2, g["Action"]] == 1 and rs.genres[2, g["Crime"]] == 1
    assert rs.genres[2].sum() == 2 and rs.genres[1, g["(no genres listed)"]] == 1
    assert "4 ratings by 2 users on 4 items" in repr(rs)


def test_read_rejects_unknown_movies_and_wrong_columns(tmp_path):
    bad = _zip(tmp_path / "b.zip", ratings=RATINGS + "2,555,3.0,70\n")
    with pytest.raises(ValueError, match="absent from movies.csv.*555"):
        R.read_movielens(bad)
    cols = _zip(tmp_path / "c.zip", ratings="user,movie,stars,time\n1,3,4.0,1\n")
    with pytest.raises(ValueError, match="expected columns"):
        R.read_movielens(cols)
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as z:
        z.writestr("other/ratings.csv", RATINGS)
    with pytest.raises(ValueError, match="no ml-latest-small/ratings.csv"):
        R.read_movielens(tmp_path / "d.zip")


def test_lookup_checks_the_checksum_and_prefers_root(isolated, monkeypatch):
    archive = _zip(isolated / "ml-latest-small.zip")
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    with pytest.raises(ChecksumError, match="expected"):
        R.find_movielens(root=isolated, download_missing=False)  # not the official archive
    monkeypatch.setattr(R, "MOVIELENS_SHA256", sha)
    env = isolated / "env"
    env.mkdir()
    _zip(env / "ml-latest-small.zip", ratings=RATINGS.replace("4.0", "1.0"))
    monkeypatch.setenv("DLKIT_DATA_DIR", str(env))
    assert R.find_movielens(root=isolated, download_missing=False) == archive


def test_missing_archive_names_every_folder(isolated, monkeypatch):
    monkeypatch.setenv("DLKIT_DATA_DIR", str(isolated / "nowhere"))
    with pytest.raises(FileNotFoundError) as err:
        data.load_ratings(root=isolated / "root", download=False)
    text = str(err.value)
    assert "root argument" in text and "$DLKIT_DATA_DIR" in text and "user cache" in text
    assert "download=False" in text


def test_download_goes_to_data_dir_verified(isolated, monkeypatch):
    source = _zip(isolated / "source.zip")
    monkeypatch.setattr(R, "MOVIELENS_URL", source.as_uri())
    monkeypatch.setattr(R, "MOVIELENS_SHA256", hashlib.sha256(source.read_bytes()).hexdigest())
    dest = isolated / "data"
    monkeypatch.setenv("DLKIT_DATA_DIR", str(dest))
    rs = data.load_ratings()
    assert (dest / "ml-latest-small.zip").is_file() and len(rs) == 4
    # A wrong checksum leaves no file under the final name and says why.
    monkeypatch.setattr(R, "MOVIELENS_SHA256", "0" * 64)
    (dest / "ml-latest-small.zip").unlink()
    with pytest.raises(FileNotFoundError, match="ChecksumError"):
        data.load_ratings()
    assert not (dest / "ml-latest-small.zip").exists()


def test_registry_points_at_the_loader():
    entry = data.registry._REGISTRY["movielens_small"]
    assert entry.kind == "ratings" and entry.loader == "dlkit.data.ratings.load_ratings"
    assert "movielens_small" in data.names("ratings") and "movielens_small" not in data.names()
    with pytest.raises(ValueError, match="load_ratings"):
        data.load("movielens_small")
    with pytest.raises(ValueError, match="unknown ratings dataset"):
        data.load_ratings("netflix")


@pytest.mark.skipif(not (Path(os.environ.get("DLKIT_DATA_DIR", "/nonexistent")) / R.ARCHIVE_NAME).is_file(),
                    reason="the MovieLens archive is not in $DLKIT_DATA_DIR")
def test_the_official_archive_has_the_published_counts():
    rs = data.load_ratings(download=False)
    assert (len(rs), rs.num_users, rs.num_items) == (100_836, 610, 9_742)
    assert torch.unique(rs.item).numel() == 9_724  # 18 movies have no rating
    assert set(rs.rating.unique().tolist()) == {x / 2 for x in range(1, 11)}
