"""dlkit.results: stored benchmark results ship with the package and load by name."""

from __future__ import annotations

import pytest

from dlkit import results


def test_every_stored_result_loads_and_names_its_hardware():
    stored = results.names()
    assert "training_throughput_h200.json" in stored and "resnet_gpu_h200.jsonl" in stored
    for name in stored:
        value = results.load(name)
        rows = value if isinstance(value, list) else [value]
        assert rows, name
        for row in rows:
            assert any(key in row for key in ("hardware", "device")), f"{name} names no hardware"


def test_patterns_and_unknown_names():
    assert results.names("training_throughput_*.json") == [
        n for n in results.names() if n.startswith("training_throughput_") and n.endswith(".json")]
    with pytest.raises(FileNotFoundError, match="stored: "):
        results.load("nope.json")


def test_the_wheel_declares_the_results_as_package_data():
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    config = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert config["tool"]["setuptools"]["package-data"]["dlkit.results"] == [
        "*.json", "*.jsonl", "README.md"]
