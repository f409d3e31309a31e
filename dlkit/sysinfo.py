"""What this machine runs the course with: an environment report for questions and bug reports.

``python -m dlkit.env`` prints it (chapter 00 shows it, the README asks for it in issue
reports): Python and torch, the accelerators torch sees, every dependency of ``dlkit`` against
the floor the package declares (``[OK]`` or ``[FAIL]``), the data folders searched and what
each holds, and the experiment profile a chapter would choose.

The floors are read from the installed package's metadata, so the report works the same in a
checkout, in a wheel installed on Colab, or anywhere else.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

__all__ = ["Dependency", "dependencies", "unmet_floor", "data_report", "report", "main"]


@dataclass(frozen=True)
class Dependency:
    """One requirement of ``dlkit`` and what is installed.

    Attributes:
        name: The distribution name, e.g. ``"torch"``.
        floor: The version specifier declared by dlkit, e.g. ``">=2.5"``.
        installed: The installed version, or ``None`` when the package is missing.
        problem: Why the requirement is not met, or ``None`` when it is.
    """

    name: str
    floor: str
    installed: str | None
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def unmet_floor(requirement: str, installed: str | None) -> str | None:
    """Why ``installed`` does not satisfy ``requirement``, or ``None`` if it does.

    Args:
        requirement: A requirement string such as ``"torch>=2.5"``.
        installed: The installed version (a local label such as ``+cu128`` is fine), or ``None``.

    Returns:
        ``None`` when the requirement is met; otherwise a message naming the package, the floor
        and the installed version, with the command that fixes it.
    """
    req = Requirement(requirement)
    if installed is None:
        return f"{req.name} is not installed; dlkit needs {req} (pyproject.toml)"
    if not req.specifier.contains(installed, prereleases=True):
        return (f"{req.name} {installed} is installed, but dlkit needs {req} (pyproject.toml): "
                f"upgrade it, e.g. pip install '{req}'")
    return None


def installed_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or ``None`` if it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def dependencies(requirements: list[str] | None = None) -> list[Dependency]:
    """Each dependency of ``dlkit`` with its floor and the installed version.

    Args:
        requirements: Requirement strings to check; defaults to the installed ``dlkit``
            distribution's own (its metadata, not a file of the checkout). Requirements that
            apply only to an extra or another platform are left out.

    Returns:
        One :class:`Dependency` per requirement, in the declared order.

    Raises:
        importlib.metadata.PackageNotFoundError: If ``requirements`` is not given and dlkit is
            not installed (``pip install -e .`` in a checkout).
    """
    if requirements is None:
        requirements = importlib.metadata.requires("dlkit") or []
    out = []
    for line in requirements:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        have = installed_version(req.name)
        out.append(Dependency(req.name, str(req.specifier), have, unmet_floor(line, have)))
    return out


def _accelerators() -> list[str]:
    import torch

    lines = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            major, minor = torch.cuda.get_device_capability(i)
            lines.append(f"cuda:{i} {torch.cuda.get_device_name(i)} (compute capability "
                         f"{major}.{minor}), CUDA {torch.version.cuda}")
    else:
        lines.append(f"CUDA: not available (torch built for CUDA {torch.version.cuda})"
                     if torch.version.cuda else "CUDA: not available (a CPU-only torch build)")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        lines.append("MPS (Apple silicon): available")
    else:
        lines.append("MPS (Apple silicon): not available")
    return lines


def data_report() -> list[str]:
    """The folders the datasets are searched in, in order, and what each holds.

    Nothing is read but file names: a folder is reported with the image sets whose files it
    holds in a form :func:`dlkit.data.load` accepts, and with the text corpus (chapter 10) and
    the ratings archive (chapter 13) whose file it holds (their checksums are verified when
    they are loaded, not here).

    Returns:
        One line per folder, e.g. ``"$DLKIT_DATA_DIR /data: cifar10, tiny_shakespeare"``.
    """
    from dlkit.data.ratings import ARCHIVE_NAME
    from dlkit.data.sources import _forms, data_dirs
    from dlkit.data.text import TINY_SHAKESPEARE

    folders: dict[Path, tuple[str, list[str]]] = {}
    for name in ("cifar10", "fashion_mnist"):
        for folder, origin in data_dirs(name):
            entry = folders.setdefault(folder, (origin, []))
            for kind, path, _ in _forms(name, "train", folder):
                if (path.is_file() if kind == "npz" else path.is_dir()):
                    entry[1].append(name)
                    break
    for name, filename in (("tiny_shakespeare", TINY_SHAKESPEARE.filename),
                           ("movielens_small", ARCHIVE_NAME)):
        for folder, origin in data_dirs(name):
            entry = folders.setdefault(folder, (origin, []))
            if (folder / filename).is_file():
                entry[1].append(name)
    lines = []
    for folder, (origin, found) in folders.items():
        if not folder.exists():
            state = "does not exist"
        else:
            state = ", ".join(found) if found else "no dataset files"
        lines.append(f"{origin} {folder}: {state}")
    return lines


def report() -> tuple[str, bool]:
    """The whole environment report and whether every dependency meets its floor.

    Returns:
        ``(text, ok)``.
    """
    import torch

    from dlkit.env import profile

    lines = [f"dlkit {installed_version('dlkit') or 'not installed'}",
             f"Python {platform.python_version()} ({sys.executable}) on {platform.platform()}",
             f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"]
    lines += _accelerators()
    lines.append("")
    lines.append("Dependencies (installed vs the floor dlkit declares):")
    deps = dependencies()
    width = max((len(d.name) for d in deps), default=0)
    for d in deps:
        tag = "[OK]  " if d.ok else "[FAIL]"
        lines.append(f"  {tag} {d.name:<{width}} {d.installed or 'missing':<14} needs {d.floor}")
    for d in deps:
        if not d.ok:
            lines.append(f"  -> {d.problem}")
    lines.append("")
    lines.append("Data folders searched, in order:")
    lines += [f"  {line}" for line in data_report()]
    lines.append("")
    try:
        chosen = profile()
        origin = "DLKIT_PROFILE" if os.environ.get("DLKIT_PROFILE") else "chosen from the device"
        lines.append(f"Profile: {chosen.name} ({origin})")
    except ValueError as err:
        lines.append(f"Profile: [FAIL] {err}")
    return "\n".join(lines), all(d.ok for d in deps)


def main() -> int:
    """Print the report; the exit status is 1 when a dependency is missing or too old."""
    text, ok = report()
    print(text)
    return 0 if ok else 1
