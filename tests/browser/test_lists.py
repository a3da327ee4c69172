"""The instance list's new tools (agent/list) in Chromium on a real ``wf dev``: the trigger form,
bulk actions on selected rows, keyboard shortcuts."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Dialog, Page, expect

from tests.browser.pages import LIVE_TIMEOUT_MS, present, row
from tests.browser.project import WORKFLOW_NAME, Instances
from tests.e2e.helpers import DevServer

pytestmark = pytest.mark.slow

LIST = f"/w/{WORKFLOW_NAME}"


def test_the_trigger_form_starts_an_instance_and_opens_its_page(
    page: Page, instances: Instances, dev: DevServer
) -> None:
    page.goto(LIST)
    form = present(page, "trigger-form")
    form.get_by_test_id("trigger-id").fill("triggered")
    form.get_by_test_id("trigger-params").fill('{"order": 5}')
    form.get_by_test_id("trigger-submit").click()
    expect(page).to_have_url(f"{dev.url}/w/{WORKFLOW_NAME}/i/triggered")
    expect(page.get_by_test_id("instance-params")).to_contain_text('"order": 5')

    instances.wait_for("triggered", "waiting")
    instances.approve("triggered")
    expect(page.get_by_test_id("fact-status")).to_have_text("complete", timeout=LIVE_TIMEOUT_MS)


def test_bad_json_params_are_refused_on_the_page(
    page: Page, instances: Instances, dev: DevServer
) -> None:
    page.goto(LIST)
    form = present(page, "trigger-form")
    form.get_by_test_id("trigger-id").fill("never-made")
    form.get_by_test_id("trigger-params").fill("{not json")
    form.get_by_test_id("trigger-submit").click()
    expect(page.get_by_test_id("trigger-error")).to_be_visible()
    expect(page).to_have_url(f"{dev.url}{LIST}")
    expect(form.get_by_test_id("trigger-params")).to_have_value("{not json")  # kept to fix
    assert not instances.exists("never-made")


def test_bulk_terminate_of_the_selected_rows(page: Page, instances: Instances) -> None:
    chosen = [instances.waiting(f"bulk-{n}") for n in (1, 2, 3)]
    spared = instances.waiting("bulk-spared")
    page.on("dialog", Dialog.accept)  # should the button ask for confirmation
    page.goto(LIST)
    terminate = present(page, "bulk-terminate")
    for instance_id in chosen:
        row(page, instance_id).get_by_test_id("select-row").check()
    terminate.click()

    expect(page.get_by_test_id("bulk-result")).to_be_visible()
    for instance_id in chosen:
        badge = row(page, instance_id).get_by_test_id("status-badge")
        expect(badge).to_have_text("terminated", timeout=LIVE_TIMEOUT_MS)
        assert instances.status(instance_id) == "terminated"
    expect(row(page, spared).get_by_test_id("status-badge")).to_have_text("waiting")
    assert instances.status(spared) == "waiting"


def test_keyboard_shortcuts(page: Page, instances: Instances, dev: DevServer) -> None:
    instances.waiting("keyboard")
    page.goto(LIST)
    page.keyboard.press("?")
    expect(present(page, "shortcuts-help")).to_be_visible()

    page.reload()
    page.keyboard.press("/")
    expect(page.get_by_test_id("search-input")).to_be_focused()

    page.reload()
    first = page.get_by_test_id("instance-row").first.get_attribute("data-instance")
    assert first == "keyboard"  # the newest comes first
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"/w/{WORKFLOW_NAME}/i/{first}$"))


def test_keyboard_focus_survives_the_live_refresh(page: Page, instances: Instances) -> None:
    """The list's live region is replaced every 2 s: a keyboard user on a row's checkbox must
    stay there, not be thrown back to the top of the page."""
    instances.waiting("focus-1")
    page.goto(LIST)
    box = row(page, "focus-1").get_by_test_id("select-row")
    box.focus()
    page.evaluate(
        """() => { window.__swaps = 0;
        document.addEventListener("htmx:afterSwap", () => { window.__swaps += 1 }) }"""
    )
    page.wait_for_function("() => window.__swaps >= 2", timeout=LIVE_TIMEOUT_MS)
    focused = page.evaluate(
        "() => [document.activeElement.dataset.testid, document.activeElement.value]"
    )
    assert focused == ["select-row", "focus-1"]
