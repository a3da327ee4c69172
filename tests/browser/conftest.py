"""The browser suite's fixtures: one Chromium for the package (Debian's, by executable_path),
a fresh context and page per test, and a real ``wf dev`` on a project of its own.

Package scope, not session: Playwright's sync API keeps an event loop running in the main thread
while it is started, and pytest-asyncio refuses to run the async tests collected after this
package under it. So Playwright stops when the last browser test is done.

Playwright's sync API is used directly (no pytest-playwright): a few fixtures are all it needs.
Timeouts are short (a page over loopback answers in milliseconds), so a missing element fails
in seconds rather than Playwright's default 30.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.browser.chromium import HOW_TO, SKIP_REASON, find_chromium, required
from tests.browser.project import Instances, write_project
from tests.e2e.helpers import REPO, DevServer, dev_server
from tests.summary_lines import add_summary_line

TIMEOUT_MS = 5_000
SCREENSHOTS = REPO / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}

expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    executable = find_chromium()
    if executable is None:
        if required():
            pytest.fail(f"{SKIP_REASON} and WF_REQUIRE_BROWSER is set: {HOW_TO}")
        pytest.skip(f"{SKIP_REASON}: {HOW_TO}")
    launched = playwright.chromium.launch(executable_path=executable)
    try:
        yield launched
    finally:
        launched.close()


OpenPage = Callable[..., Page]


@pytest.fixture
def open_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[OpenPage]:
    """``open_page(base_url, **context options)``: a page in a context of its own (its own
    cookies), closed at the end of the test."""
    # What the run's tests ran on, for its closing summary.
    add_summary_line(
        request.node, f"browser tests ran on Chromium {browser.version} ({find_chromium()})"
    )
    contexts = []

    def open_(base_url: str, **options: object) -> Page:
        options.setdefault("viewport", DESKTOP)
        context = browser.new_context(base_url=base_url, **options)  # type: ignore[arg-type]
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    try:
        yield open_
    finally:
        for context in contexts:
            context.close()


@pytest.fixture(scope="package")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """One ``wf dev`` for the package's dev tests; each test makes instances of its own."""
    project = write_project(tmp_path_factory.mktemp("browser") / "project")
    with dev_server(project) as server:
        yield server


@pytest.fixture
def instances(dev: DevServer) -> Instances:
    return Instances(dev.url)


@pytest.fixture
def page(open_page: OpenPage, dev: DevServer) -> Page:
    """A desktop-sized page on the session's ``wf dev``."""
    return open_page(dev.url)


Screenshot = Callable[[Page, str], None]


@pytest.fixture
def screenshot() -> Screenshot:
    """``screenshot(page, name)`` saves docs/screenshots/<name>.png when WF_SCREENSHOTS=1 (so a
    normal run leaves the tree alone); the README shows them."""

    def take(page: Page, name: str) -> None:
        if os.environ.get("WF_SCREENSHOTS", "") in ("", "0"):
            return
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=Path(SCREENSHOTS, f"{name}.png"), full_page=True)

    return take
