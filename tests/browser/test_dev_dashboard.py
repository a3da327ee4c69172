"""The dashboard of a real ``wf dev`` in Chromium: what main's pages already do (lists, counts,
the instance page and its forms, filters in the URL, dark mode, phone width)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import OpenPage, Screenshot
from tests.browser.pages import body_colors, row
from tests.browser.project import TALLY_NAME, WORKFLOW_NAME, Instances
from tests.e2e.helpers import DevServer
from wf.engine.model import Status

pytestmark = pytest.mark.slow

PHONE = {"width": 390, "height": 844}


def test_the_workflows_page_lists_each_workflow_with_its_counts(
    page: Page, dev: DevServer, screenshot: Screenshot
) -> None:
    tally = Instances(dev.url, TALLY_NAME)
    for instance_id in ("t-1", "t-2", "t-3"):
        tally.waiting(instance_id)
    tally.approve("t-3")
    tally.wait_for("t-3", "complete")

    page.goto("/")
    expected = {status.value: 0 for status in Status} | {"waiting": 2, "complete": 1}
    line = page.locator(f'[data-testid="workflow-row"][data-workflow="{TALLY_NAME}"]')
    expect(line.get_by_test_id("workflow-total")).to_have_text("3")
    for status, count in expected.items():
        expect(line.get_by_test_id(f"count-{status}")).to_have_text(str(count))
    expect(
        page.locator(f'[data-testid="workflow-row"][data-workflow="{WORKFLOW_NAME}"]')
    ).to_be_visible()
    screenshot(page, "workflows")

    tally.waiting("t-4")  # the page is read anew: a reload shows the new count
    page.reload()
    expect(line.get_by_test_id("count-waiting")).to_have_text("3")
    line.get_by_test_id("count-waiting").click()
    expect(page).to_have_url(f"{dev.url}/w/{TALLY_NAME}?status=waiting")
    expect(page.get_by_test_id("instance-row")).to_have_count(3)


def test_the_instance_page_shows_an_instance_made_through_the_api(
    page: Page, instances: Instances, screenshot: Screenshot
) -> None:
    instances.waiting("shown", {"order": 7})
    page.goto(f"/w/{WORKFLOW_NAME}/i/shown")
    expect(page.get_by_test_id("instance-id")).to_have_text("shown")
    expect(page.get_by_test_id("fact-status")).to_have_text("waiting")
    expect(page.get_by_test_id("instance-params")).to_contain_text('"order": 7')
    expect(page.get_by_test_id("step-name")).to_have_text(
        ["prepare-1", "approval-1"]
    )  # names as stored
    expect(page.get_by_test_id("step-event-type")).to_have_text("approval")
    expect(page.get_by_test_id("event-type")).to_have_value("approval")  # prefilled from the wait
    screenshot(page, "instance")


def test_an_event_sent_from_the_page_ends_the_wait(page: Page, instances: Instances) -> None:
    instances.waiting("evented")
    page.goto(f"/w/{WORKFLOW_NAME}/i/evented")
    page.get_by_test_id("event-payload").fill('{"by": "browser"}')
    page.get_by_test_id("event-send").click()
    expect(page.get_by_test_id("action-done")).to_have_text("event sent")
    expect(page).to_have_url(re.compile(r"/i/evented\?done=event$"))

    instances.wait_for("evented", "complete")
    page.reload()
    expect(page.get_by_test_id("fact-status")).to_have_text("complete")
    expect(page.get_by_test_id("instance-output")).to_contain_text('"by": "browser"')
    wait = page.locator('[data-testid="step"][data-step-type="waitForEvent"]')
    expect(wait.get_by_test_id("step-state")).to_have_text("finished")


def test_a_bad_event_payload_is_refused_on_the_page(page: Page, instances: Instances) -> None:
    instances.waiting("bad-payload")
    page.goto(f"/w/{WORKFLOW_NAME}/i/bad-payload")
    page.get_by_test_id("event-payload").fill("{not json")
    page.get_by_test_id("event-send").click()
    expect(page.get_by_test_id("action-error")).to_contain_text("payload is not valid JSON")
    assert instances.status("bad-payload") == "waiting"


def test_pause_and_resume_from_the_page(page: Page, instances: Instances) -> None:
    instances.waiting("paused")
    page.goto(f"/w/{WORKFLOW_NAME}/i/paused")
    page.get_by_test_id("action-pause").click()
    expect(page.get_by_test_id("action-done")).to_have_text("pause requested")
    instances.wait_for("paused", "paused")
    page.reload()
    expect(page.get_by_test_id("fact-status")).to_have_text("paused")

    page.get_by_test_id("action-resume").click()
    expect(page.get_by_test_id("action-done")).to_have_text("resume requested")
    instances.wait_for("paused", "waiting")
    instances.approve("paused")  # it really goes on: the wait ends and the instance finishes
    instances.wait_for("paused", "complete")


def test_status_filters_and_search_survive_a_reload(
    page: Page, instances: Instances, dev: DevServer, screenshot: Screenshot
) -> None:
    instances.waiting("filter-waits")
    instances.waiting("filter-ends")
    instances.approve("filter-ends")
    instances.wait_for("filter-ends", "complete")

    page.goto(f"/w/{WORKFLOW_NAME}")
    expect(row(page, "filter-waits")).to_have_count(1)
    expect(row(page, "filter-ends")).to_have_count(1)
    screenshot(page, "instances")

    page.get_by_test_id("filter-waiting").click()
    expect(page).to_have_url(f"{dev.url}/w/{WORKFLOW_NAME}?status=waiting")
    for _ in range(2):  # as clicked, then as reloaded from the URL alone
        expect(page.get_by_test_id("filter-waiting")).to_have_attribute("aria-current", "page")
        expect(row(page, "filter-waits")).to_have_count(1)
        expect(row(page, "filter-ends")).to_have_count(0)
        page.reload()
    expect(page).to_have_url(f"{dev.url}/w/{WORKFLOW_NAME}?status=waiting")

    page.get_by_test_id("filter-complete").click()
    page.get_by_test_id("search-input").fill("filter-ends")
    page.get_by_test_id("search-input").press("Enter")
    expect(page).to_have_url(re.compile(r"[?&]q=filter-ends(&|$)"))
    searched = page.url  # the search form may send more (empty) fields: they are kept too
    query = parse_qs(urlsplit(searched).query)
    assert (query["status"], query["q"]) == (["complete"], ["filter-ends"]), searched
    page.reload()
    assert page.url == searched
    expect(page.get_by_test_id("search-input")).to_have_value("filter-ends")
    expect(page.get_by_test_id("instance-row")).to_have_count(1)
    expect(row(page, "filter-ends")).to_have_count(1)


def test_dark_mode_follows_the_system(
    page: Page, instances: Instances, screenshot: Screenshot
) -> None:
    instances.waiting("dark")
    page.emulate_media(color_scheme="light")
    page.goto(f"/w/{WORKFLOW_NAME}/i/dark")
    background, text = body_colors(page)
    assert background > 0.9 and text < 0.2, (background, text)

    page.emulate_media(color_scheme="dark")  # the system switches; the page follows at once
    background, text = body_colors(page)
    assert background < 0.1 and text > 0.8, (background, text)
    screenshot(page, "instance-dark")


def assert_fit_a_phone(page: Page, paths: tuple[str, ...]) -> None:
    for path in paths:
        page.goto(path)
        # A mobile browser widens its layout viewport to fit wide content (then zooms out), so
        # the widths are compared with the phone's own.
        widths = page.evaluate(
            "() => [document.documentElement.scrollWidth, document.body.scrollWidth,"
            " window.innerWidth]"
        )
        assert max(widths) <= PHONE["width"], (path, widths)


def test_every_page_fits_a_phone_without_scrolling_sideways(
    open_page: OpenPage, dev: DevServer, instances: Instances
) -> None:
    instances.waiting("phone", {"note": "a long value " * 20})
    page = open_page(dev.url, viewport=PHONE, is_mobile=True, has_touch=True)
    assert_fit_a_phone(page, ("/", f"/w/{WORKFLOW_NAME}", f"/w/{WORKFLOW_NAME}/i/phone"))


def test_a_long_instance_id_still_fits_a_phone(
    open_page: OpenPage, dev: DevServer, instances: Instances
) -> None:
    long_id = "a-long-instance-id-" + "x" * 80  # ids may have up to 100 characters
    instances.waiting(long_id)
    page = open_page(dev.url, viewport=PHONE, is_mobile=True, has_touch=True)
    assert_fit_a_phone(page, ("/", f"/w/{WORKFLOW_NAME}", f"/w/{WORKFLOW_NAME}/i/{long_id}"))
