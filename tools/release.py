"""Pin the release of the course that every chapter's Colab cell installs.

A learner on Colab installs ``dlkit`` from this repository; pinned to a release (a git tag),
a change on ``main`` in the middle of a term cannot break their notebooks. The release is named
once, as ``course_release`` in ``_config.yml``; this tool writes it there, into the package
version (``pyproject.toml``) and into the install line of every chapter. Usage::

    python tools/release.py v0.2.0        # then: git commit -am "Release v0.2.0"; git tag v0.2.0
    python tools/release.py --check       # exit 1 if a chapter or the version disagrees

Only the install cell's source changes; its output is empty everywhere but on Colab, so no
chapter needs re-executing.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # dlkit from this checkout
from dlkit._util import atomic_write  # noqa: E402

TAG = re.compile(r"^v(\d+\.\d+\.\d+)$")
INSTALL = re.compile(r'(%pip install -q "dlkit @ git\+)([^"@]+)(?:@[^"]*)?(")')
VERSION = re.compile(r'^(version = ")([^"]+)(")$', re.M)
CONFIG_KEY = re.compile(r"^(course_release: )(\S+)$", re.M)


def install_line(repository: str, release: str) -> str:
    """The Colab cell's install command for ``release`` of ``repository``."""
    return f'%pip install -q "dlkit @ git+{repository}@{release}"'


def chapters() -> list[Path]:
    return sorted((ROOT / "chapters").glob("*.ipynb"))


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def problems() -> list[str]:
    """Where the pinned release is not what ``_config.yml`` names (empty when consistent)."""
    config = _config()
    release, repo = config.get("course_release"), config["repository"]["url"]
    if not isinstance(release, str) or not TAG.match(release):
        return [f"_config.yml: course_release must be a tag such as v0.2.0, got {release!r}"]
    found = []
    version = VERSION.search((ROOT / "pyproject.toml").read_text())
    if version is None or f"v{version.group(2)}" != release:
        found.append(f"pyproject.toml: version {version and version.group(2)!r} is not "
                     f"{release[1:]!r} (course_release {release})")
    expected = install_line(repo, release)
    for path in chapters():
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        if not code or expected not in code[0].source:
            found.append(f"{path.relative_to(ROOT)}: the first code cell does not run {expected}")
    return found


def set_release(release: str) -> list[Path]:
    """Write ``release`` into ``_config.yml``, ``pyproject.toml`` and every chapter.

    Returns:
        The files that changed.

    Raises:
        ValueError: If ``release`` is not a tag ``vX.Y.Z``, or a chapter's first code cell has
            no install line to rewrite.
    """
    match = TAG.match(release)
    if not match:
        raise ValueError(f"expected a release tag such as v0.2.0, got {release!r}")
    repo = _config()["repository"]["url"]
    changed = []
    cfg = ROOT / "_config.yml"
    text = cfg.read_text()
    if not CONFIG_KEY.search(text):
        raise ValueError("_config.yml has no 'course_release: ...' line to update")
    new = CONFIG_KEY.sub(lambda m: m.group(1) + release, text)
    pyproject = ROOT / "pyproject.toml"
    ptext = pyproject.read_text()
    pnew = VERSION.sub(lambda m: m.group(1) + match.group(1) + m.group(3), ptext, count=1)
    notebooks = []
    for path in chapters():
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        if not code or not INSTALL.search(code[0].source):
            raise ValueError(f"{path.relative_to(ROOT)}: no Colab install line in the first "
                             "code cell")
        source = INSTALL.sub(lambda m: f"{m.group(1)}{repo}@{release}{m.group(3)}",
                             code[0].source)
        if source != code[0].source:
            code[0].source = source
            notebooks.append((path, nb))
    # Everything was checked before anything is written.
    for path, nb in notebooks:
        with atomic_write(path, "w") as f:
            nbformat.write(nb, f)
        changed.append(path)
    for path, old, value in ((cfg, text, new), (pyproject, ptext, pnew)):
        if value != old:
            with atomic_write(path, "w") as f:
                f.write(value)
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("release", nargs="?", help="the new release tag, e.g. v0.2.0")
    parser.add_argument("--check", action="store_true", help="only report disagreements")
    args = parser.parse_args(argv)
    if args.check or args.release is None:
        found = problems()
        for line in found:
            print(line)
        return 1 if found else 0
    try:
        changed = set_release(args.release)
    except ValueError as err:
        print(f"release: {err}", file=sys.stderr)
        return 2
    for path in changed:
        print(f"updated {path.relative_to(ROOT)}")
    print(f"now: git commit -am 'Release {args.release}' && git tag {args.release}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
