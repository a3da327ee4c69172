"""Small helpers for reading the dashboard's pages in the browser tests."""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect

# How long a feature's entry point (a form, a button) may take to show on a loaded page: the
# pages are rendered on the server, so it is there at once or not at all.
ENTRY_TIMEOUT_MS = 2_000
# How long a live page may take to show a change made elsewhere (the dashboard's contract).
LIVE_TIMEOUT_MS = 15_000


def row(page: Page, instance_id: str) -> Locator:
    """The instance list's row of one instance."""
    return page.locator(f'[data-testid="instance-row"][data-instance="{instance_id}"]')


def present(page: Page, test_id: str) -> Locator:
    """The element with this ``data-testid``, asserted visible within ENTRY_TIMEOUT_MS."""
    found = page.get_by_test_id(test_id)
    expect(found).to_be_visible(timeout=ENTRY_TIMEOUT_MS)
    return found


def luminance(css_color: str) -> float:
    """0 (black) to 1 (white), from a computed ``rgb(...)``/``rgba(...)`` value."""
    red, green, blue = (int(part) for part in re.findall(r"\d+", css_color)[:3])
    return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255


def body_colors(page: Page) -> tuple[float, float]:
    """The luminance of the page body's background and of its text."""
    background, text = page.evaluate(
        "() => { const s = getComputedStyle(document.body); return [s.backgroundColor, s.color] }"
    )
    return luminance(background), luminance(text)
