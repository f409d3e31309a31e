"""The built book in a real browser: Chromium driven by Playwright against ``_build/html``.

The site is served on 127.0.0.1 by the test itself and every request to another host is
blocked, so these tests also show that the book works without a network. They need the built
book (``make book``) and a Chromium (Debian's ``chromium``, or ``$CHROMIUM``); without either
they are skipped with a message saying so. ``make test-browser`` builds the book and runs them.

Checked on every page: it loads without console errors or uncaught exceptions; internal links
point at pages and anchors that exist; images load; formulas are typeset (no raw ``\\(`` left in
the visible text); no serious or critical accessibility violation (axe-core). On the chapters:
explorers show their static figures, and the Colab launch button opens the chapter's notebook.
Search finds a chapter by a word from it.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import pytest

pytest.importorskip("playwright", reason="pip install pytest-playwright (requirements.txt)")
pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_build" / "html"
CHAPTERS = sorted(p.stem for p in (ROOT / "chapters").glob("*.ipynb"))
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _pages() -> list[str]:
    if not SITE.is_dir():
        return []
    skip = {"_static", "_sources", "_images"}
    return sorted(str(p.relative_to(SITE)) for p in SITE.rglob("*.html")
                  if not skip & set(p.relative_to(SITE).parts))


def _chromium() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright launches the system's Chromium (Playwright's own download is not used)."""
    if not SITE.joinpath("index.html").is_file():
        pytest.skip(f"no built book at {SITE.relative_to(ROOT)}: run make book first")
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set $CHROMIUM to its path)")
    return {**browser_type_launch_args, "executable_path": exe}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


@pytest.fixture(scope="session")
def site_url():
    """The built book served on 127.0.0.1 on a free port, for the whole session."""
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


class OfflinePage:
    """A page whose requests to hosts other than the test server are blocked and recorded."""

    def __init__(self, context, site_url: str) -> None:
        self.site = site_url
        self.blocked: list[str] = []
        self.errors: list[str] = []
        context.route("**/*", self._route)
        self.page = context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _route(self, route) -> None:
        url = route.request.url
        if url.startswith(self.site) or url.startswith("data:"):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def _console(self, msg) -> None:
        if msg.type == "error":
            self.errors.append(f"console: {msg.text} ({msg.location.get('url', '')})")

    def open(self, path: str) -> None:
        response = self.page.goto(self.site + path, wait_until="load")
        assert response is not None and response.ok, f"{path}: HTTP {response and response.status}"
        file = SITE / path.split("?")[0]
        redirect = re.search(r'http-equiv="Refresh" content="0; url=([^"]+)"',
                             file.read_text() if file.suffix == ".html" else "", re.I)
        if redirect:  # index.html forwards to the first page: test where it lands
            self.page.wait_for_url(f"**/{redirect.group(1)}", wait_until="load")
        self.wait_for_math()

    def wait_for_math(self) -> None:
        # MathJax 3 typesets after load; its startup promise settles once the page is done.
        # A page that redirects (index.html) replaces its context once: wait for the new one.
        for attempt in range(3):
            try:
                self.page.evaluate("""async () => {
                    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
                        await MathJax.startup.promise;
                    }
                }""")
                return
            except Exception as err:  # playwright's Error when a navigation ends the context
                if "context was destroyed" not in str(err) or attempt == 2:
                    raise
                self.page.wait_for_load_state("load")


@pytest.fixture
def offline(context, site_url) -> OfflinePage:
    return OfflinePage(context, site_url)


# --------------------------------------------------------------------------------------------- #
# Every page
# --------------------------------------------------------------------------------------------- #
@pytest.mark.parametrize("path", _pages())
def test_page_loads_offline_without_errors_and_typesets_its_math(offline, path):
    offline.open(path)
    # A request to another host is blocked; one the page needed shows up here as an error.
    assert not offline.errors, f"{path}: console errors: {offline.errors}"
    text = offline.page.inner_text("body")
    raw = [m for m in (r"\(", r"\[", "$$") if m in text]
    assert not raw, f"{path}: formulas left untypeset (raw {raw} in the visible text)"
    source = (SITE / path).read_text()
    if "mathjax" in source.lower() and re.search(r"\\\(|\\\[|class=\"math", source):
        count = offline.page.locator("mjx-container").count()
        assert count > 0, f"{path}: the page has formulas but MathJax typeset none"


@pytest.mark.parametrize("path", _pages())
def test_internal_links_and_images_resolve(offline, site_url, path):
    offline.open(path)
    page = offline.page
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    broken = []
    for href in hrefs:
        if not href.startswith(site_url):
            continue  # external links (launch buttons, citations) are not followed offline
        target, fragment = urldefrag(href)
        rel = urlparse(target).path.lstrip("/") or "index.html"
        if rel.endswith("/"):
            rel += "index.html"
        file = SITE / rel
        if not file.is_file():
            broken.append(f"{href} (no file {rel})")
        elif fragment and file.suffix == ".html":
            html = file.read_text()
            if f'id="{fragment}"' not in html and f'name="{fragment}"' not in html:
                broken.append(f"{href} (no anchor #{fragment} in {rel})")
    assert not broken, f"{path}: broken internal links: {sorted(set(broken))}"
    images = page.eval_on_selector_all(
        "img", "els => els.map(e => [e.currentSrc || e.src, e.complete && e.naturalWidth > 0])")
    missing = [src for src, ok in images if not ok]
    assert not missing, f"{path}: images that did not load: {missing}"


@pytest.mark.parametrize("path", _pages())
def test_no_serious_or_critical_accessibility_violation(offline, path):
    from axe_playwright_python.sync_playwright import Axe

    offline.open(path)
    results = Axe().run(offline.page)
    bad = [f"{v['id']} ({v['impact']}): {v['help']} at "
           f"{[n['target'] for n in v['nodes']][:3]}"
           for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, f"{path}: accessibility violations:\n" + "\n".join(bad)


# --------------------------------------------------------------------------------------------- #
# Chapters
# --------------------------------------------------------------------------------------------- #
def _static_explorer_figures(name: str) -> int:
    nb = json.loads((ROOT / "chapters" / f"{name}.ipynb").read_text())
    return sum(1 for cell in nb["cells"] if cell["cell_type"] == "code"
               for out in cell.get("outputs", [])
               if WIDGET_VIEW in out.get("data", {}) and "image/png" in out["data"])


@pytest.mark.parametrize("name", CHAPTERS)
def test_explorers_show_their_static_figures(offline, name):
    expected = _static_explorer_figures(name)
    if expected == 0:
        pytest.skip(f"{name} has no explorer")
    offline.open(f"chapters/{name}.html")
    page = offline.page
    # A page embeds no widget state or manager: nothing there could render a live widget.
    assert page.locator('script[type="application/vnd.jupyter.widget-state+json"]').count() == 0
    assert page.locator(".jupyter-widgets").count() == 0
    loaded = page.eval_on_selector_all(
        ".cell_output img", "els => els.filter(e => e.complete && e.naturalWidth > 0).length")
    assert loaded >= expected, f"{name}: {loaded} output images loaded, {expected} explorers"


@pytest.mark.parametrize("name", CHAPTERS)
def test_the_colab_launch_button_opens_this_chapters_notebook(offline, name):
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = urlparse(config["repository"]["url"]).path.strip("/")
    branch = config["repository"].get("branch", "main")
    offline.open(f"chapters/{name}.html")
    hrefs = offline.page.eval_on_selector_all("a[href*='colab.research.google.com']",
                                              "els => els.map(e => e.href)")
    expected = f"https://colab.research.google.com/github/{repo}/blob/{branch}/chapters/{name}.ipynb"
    assert expected in hrefs, f"{name}: Colab links {hrefs}, expected {expected}"


def test_search_finds_a_chapter_by_a_word_from_it(offline):
    # "quantization" is taught in the deployment chapter; search runs in the page (searchindex.js).
    offline.open("search.html?q=quantization")
    page = offline.page
    page.wait_for_selector("#search-results li a", timeout=15_000)
    found = page.eval_on_selector_all("#search-results li a", "els => els.map(e => e.href)")
    assert any("09_deployment.html" in href for href in found), found
    assert not offline.errors, offline.errors
