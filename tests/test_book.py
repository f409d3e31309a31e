"""Checks of the book as a whole: configuration, chapter conventions, tools."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [ch["file"] for part in toc["parts"] for ch in part["chapters"]]


def test_every_chapter_is_in_the_toc_and_every_toc_entry_exists():
    listed = _toc_files()
    for nb in CHAPTERS:
        assert f"chapters/{nb.stem}" in listed, f"{nb.name} is missing from _toc.yml"
    for entry in listed:
        assert any((ROOT / f"{entry}{ext}").exists() for ext in (".ipynb", ".md")), entry


def test_book_renders_stored_outputs_only():
    assert _config()["execute"]["execute_notebooks"] == "off"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_conventions(path: Path):
    nb = nbformat.read(path, as_version=4)
    cells = nb.cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# "), "title first"
    code = [c for c in cells if c.cell_type == "code"]
    # First code cell: the Colab-only install, from the repository named in _config.yml.
    url = _config()["repository"]["url"]
    assert 'if "google.colab" in sys.modules' in code[0].source
    assert f"git+{url}" in code[0].source, "install URL differs from _config.yml's repository"
    # Second code cell: seed, profile and device, printed.
    for needle in ("seed_everything(", "profile()", "pick_device()", "print(prof)", "describe("):
        assert needle in code[1].source, f"second code cell lacks {needle}"
    # Executed and committed with outputs; errors only where a cell is tagged for them.
    assert all(c.execution_count is not None for c in code), "not fully executed"
    for c in code:
        errors = [o for o in c.outputs if o.output_type == "error"]
        if errors:
            assert "raises-exception" in c.metadata.get("tags", []), c.source[:80]
        if "raises-exception" in c.metadata.get("tags", []):
            # A cell that fails on purpose shows its error and lets Colab's Run all go on.
            assert "with expect_error(" in c.source, f"use dlkit.notebook.expect_error: {c.source[:80]}"
    assert sum("NBVAL_CHECK_OUTPUT" in c.source for c in code) >= 2
    # Exercises: every check is followed by a folded solution.
    solutions = [c for c in code if c.source.startswith("# Solution")]
    assert solutions, "no exercises"
    assert all("hide-cell" in c.metadata.get("tags", []) for c in solutions)


def test_student_copies_remove_solutions_and_outputs(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "student_copies.py"), *map(str, CHAPTERS),
         "--out", str(tmp_path)],
        capture_output=True, text=True, check=True,
    )
    for path in CHAPTERS:
        original = nbformat.read(path, as_version=4)
        copy = nbformat.read(tmp_path / path.name, as_version=4)
        n_solutions = sum(c.source.startswith("# Solution") for c in original.cells)
        assert n_solutions > 0
        assert len(copy.cells) == len(original.cells) - n_solutions
        assert not any(c.source.startswith("# Solution") for c in copy.cells)
        assert all(not c.outputs for c in copy.cells if c.cell_type == "code")
        assert f"{path.name}: {n_solutions} solution cell(s) removed" in result.stdout


def test_execute_tool_leaves_the_file_alone_when_a_cell_fails(tmp_path: Path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 / 0")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    before = path.read_bytes()
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "execute_notebooks.py"), str(path)],
        capture_output=True, text=True,
    )
    assert result.returncode == 1
    assert "left unchanged" in result.stderr
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["broken.ipynb"]  # no temporary left behind


def test_execute_tool_writes_outputs(tmp_path: Path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "ok.ipynb"
    nbformat.write(nb, path)
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "execute_notebooks.py"), str(path)],
        capture_output=True, text=True, check=True,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1])["notebook"] == str(path)
    out = nbformat.read(path, as_version=4).cells[0].outputs
    assert out[0]["text"].strip() == "42"


def test_readme_commands_match_the_makefile_and_ci():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    for target in ("book", "test", "execute"):
        assert re.search(rf"^{target}:", makefile, re.M), target
        assert f"make {target}" in readme
    assert "make test" in ci and "make book" in ci


# --- Clean pages: scans of the committed outputs ------------------------------------------------
# A page may show numbers, figures and deliberate errors; it must not show a failed check printed
# as text, a path or port of the machine that executed it, stderr noise or IPython's banners.

# `False` reported as the result of a check: after a colon or question mark ("equal: False",
# "< 1e-5: False", "{'weight grad': False}"), after a verb of agreement ("match False"), or
# alone on its line. Not a keyword argument in a repr ("bias=False") nor a word ("False
# positives"), hence the look-behind on "=" and the look-ahead on a following word.
_FALSE_CHECK = re.compile(
    r"(?:^|[:?]|\b(?:match(?:es|ed)?|equals?|equal to|identical|same|close|holds?|agrees?"
    r"|correct|passe[sd]|ok))['\"]?[ \t]*False\b(?![ \t]*[A-Za-z_(=])",
    re.M,
)
_MACHINE_PATH = re.compile(r"(?<![\w.~])(?:/work/|/tmp/|/home/|/root/|/Users/|[A-Za-z]:\\\\?)")
_TEMP_PORT = re.compile(r"\b(?:127\.0\.0\.1|localhost|0\.0\.0\.0):\d{2,5}\b")
_NOISE = re.compile(r"USDT:|gpuGetDeviceCount|SyncActivityProfilerHandler|Exception reporting mode")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def failed_checks(text: str) -> list[str]:
    """Lines of ``text`` that report a check result of ``False``."""
    return [line for line in text.splitlines() if _FALSE_CHECK.search(line)]


def machine_specifics(text: str) -> list[str]:
    """Lines of ``text`` that show an absolute machine path or a temporary port."""
    return [line for line in text.splitlines()
            if _MACHINE_PATH.search(line) or _TEMP_PORT.search(line)]


def _output_texts(cell) -> list[tuple[str, str]]:
    """(kind, text) of every textual output of a code cell; kind is stdout, stderr, text or error."""
    texts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            texts.append((out.name, out.text))
        elif out.output_type in ("execute_result", "display_data"):
            data = out.get("data", {})
            for mime in ("text/plain", "text/html", "text/markdown", "text/latex"):
                if mime in data:
                    texts.append(("text", data[mime]))
        elif out.output_type == "error":
            texts.append(("error", _ANSI.sub("", "\n".join(out.traceback))))
    return texts


def _tags(cell) -> list[str]:
    return cell.metadata.get("tags", [])


def page_problems(nb) -> list[str]:
    """Every clean-page violation in a notebook's committed outputs and metadata.

    Rules: no printed check result of ``False``; no absolute machine path or temporary port;
    no profiler or CUDA-probe noise and no IPython banner anywhere (a banner is allowed only in a
    cell tagged ``remove-output``); no stderr output at all except in cells tagged
    ``raises-exception`` (the book shows deliberate errors, never warnings or logs); no stored
    progress-bar widget state.
    """
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        where = f"cell {i} ({cell.source.splitlines()[0][:50] if cell.source else ''!r})"
        tags = _tags(cell)
        for kind, text in _output_texts(cell):
            if kind != "error":  # a deliberate error's message may contain anything
                problems += [f"{where}: failed check printed: {line!r}"
                             for line in failed_checks(text)]
            problems += [f"{where}: machine path or port: {line!r}"
                         for line in machine_specifics(text)]
            noise = [line for line in text.splitlines() if _NOISE.search(line)]
            if "remove-output" in tags:
                noise = [line for line in noise if "Exception reporting mode" not in line]
            problems += [f"{where}: noise or banner: {line!r}" for line in noise]
            if kind == "stderr" and "raises-exception" not in tags and text.strip():
                problems.append(f"{where}: stderr output: {text.strip().splitlines()[0]!r}")
    problems += [f"notebook metadata: {p}" for p in progress_bar_states(nb)]
    return problems


def progress_bar_states(nb) -> list[str]:
    """Stored widget models that belong to a progress bar (tqdm's HBox of HTML, FloatProgress, HTML)."""
    state = (nb.metadata.get("widgets", {})
             .get("application/vnd.jupyter.widget-state+json", {}).get("state", {}))
    found = []
    for key, model in state.items():
        name = model.get("model_name", "")
        if name in ("FloatProgressModel", "IntProgressModel") or "tqdm" in json.dumps(model):
            found.append(f"{name} {key}")
    return found


@pytest.mark.parametrize("line", [
    "batch 128 vs 4 x 32 accumulated differ by < 1e-5: False",
    "dL/dw matches autograd: False",
    "outputs match False",
    "two-pass variance 3665.06, one-pass 3665.06, equal: False",
    "{'output': True, 'input grad': False}",
    "served = local for 20 test images: False; zero weights: 0%",
    "identical to scikit-learn? False",
    "False",
])
def test_scanner_finds_a_printed_failed_check(line):
    assert failed_checks(line) == [line]


@pytest.mark.parametrize("line", [
    "Conv2d(8, 16, kernel_size=(1, 1), stride=(2, 2), bias=False)",
    "ReLU(inplace=False)",
    "Parameter containing: tensor([1.], requires_grad=False)",
    "False positives: 12, false negatives: 3",
    "dL/dw matches autograd: True",
    "the check is False positive-free",
    "DataLoader(shuffle=False, drop_last=False)",
])
def test_scanner_leaves_ordinary_text_alone(line):
    assert failed_checks(line) == []


@pytest.mark.parametrize("line,bad", [
    ("rank 0 saved the weights to /tmp/tmpe0exugt6/ddp.pt", True),
    ("File /work/main/dlkit/train.py, line 3", True),
    ("data in /home/ada/.cache/dlkit", True),
    ("C:\\Users\\ada\\data", True),
    ("serving on http://127.0.0.1:8731/predict", True),
    ("listening on localhost:5000", True),
    ("bound to 0.0.0.0:8080", True),
    ("rank 0 saved the weights to ddp.pt in the working folder", False),
    ("ratio 2/3 of the data, 10/tmp files", False),
    ("rendezvous at node0:29500", False),
    ("time 12:30:05", False),
])
def test_scanner_finds_machine_paths_and_ports(line, bad):
    assert bool(machine_specifics(line)) is bad


def test_page_scan_flags_stderr_banners_and_progress_bars():
    ok = nbformat.v4.new_code_cell("1 / 0", metadata={"tags": ["raises-exception"]})
    ok.outputs = [nbformat.v4.new_output("stream", name="stderr", text="expected\n")]
    banner_removed = nbformat.v4.new_code_cell("%xmode Minimal", metadata={"tags": ["remove-output"]})
    banner_removed.outputs = [nbformat.v4.new_output("stream", name="stdout",
                                                     text="Exception reporting mode: Minimal\n")]
    clean = nbformat.v4.new_notebook(cells=[ok, banner_removed])
    assert page_problems(clean) == []

    warn = nbformat.v4.new_code_cell("fit(...)")
    warn.outputs = [nbformat.v4.new_output("stream", name="stderr", text="UserWarning: slow\n")]
    banner = nbformat.v4.new_code_cell("%xmode Minimal")
    banner.outputs = [nbformat.v4.new_output("stream", name="stdout",
                                             text="Exception reporting mode: Minimal\n")]
    usdt = nbformat.v4.new_code_cell("profile()")
    usdt.outputs = [nbformat.v4.new_output("stream", name="stdout", text=(
        "USDT:2026-11-27 14:54:52 28910:28910 SyncActivityProfilerHandler.cpp:39] start\n"))]
    dirty = nbformat.v4.new_notebook(cells=[warn, banner, usdt])
    dirty.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {
        "a1": {"model_name": "FloatProgressModel", "state": {"max": 626}},
        "b2": {"model_name": "IntSliderModel", "state": {"value": 3}},
    }}}
    problems = page_problems(dirty)
    assert len(problems) == 4, problems
    assert any("stderr" in p for p in problems) and any("FloatProgressModel" in p for p in problems)
    assert sum("noise or banner" in p for p in problems) == 2


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_committed_outputs_are_clean(path: Path):
    problems = page_problems(nbformat.read(path, as_version=4))
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_glued_numbers_can_be_formatted(path: Path):
    # myst-nb formats {glue:text}`name:.2f` by parsing the stored text/plain as a number; a numpy
    # scalar is stored as "np.float64(...)", which it cannot parse (the book then shows nothing).
    nb = nbformat.read(path, as_version=4)
    bad = [o["data"]["application/papermill.record/text/plain"]
           for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
           if o.get("output_type") == "display_data"
           and str(o.get("data", {}).get("application/papermill.record/text/plain", ""))
           .startswith("np.")]
    assert not bad, f"{path.name}: glue a Python number (float(x), int(x)), not {bad}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_glued_markdown_is_shown_as_markdown(path: Path):
    # A glued IPython Markdown object is stored with a text/markdown record; {glue:text} would
    # print its repr ("<IPython.core.display.Markdown object>") in the book. It needs {glue:md}.
    nb = nbformat.read(path, as_version=4)
    markdown_keys = {o["metadata"].get("scrapbook", {}).get("name")
                     for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                     if o.get("output_type") == "display_data"
                     and "application/papermill.record/text/markdown" in o.get("data", {})}
    text_refs = {m.group(1) for c in nb.cells if c.cell_type == "markdown"
                 for m in re.finditer(r"\{glue:text\}`([^`:]+)", c.source)}
    assert not markdown_keys & text_refs, (
        f"{path.name}: use {{glue:md}} for glued Markdown: {sorted(markdown_keys & text_refs)}")
