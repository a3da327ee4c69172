"""The live instance page (agent/inst) in Chromium on a real ``wf dev``: it follows the instance
without a reload, shows a timeline, restarts from a step with edited params, and downloads the
history file that ``wf.testing`` replays."""

from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.pages import LIVE_TIMEOUT_MS, present
from tests.browser.project import WORKFLOW_NAME, Instances

pytestmark = pytest.mark.slow


def finished(instances: Instances, instance_id: str, params: object = None) -> str:
    instances.waiting(instance_id, params)
    instances.approve(instance_id, {"ok": True})
    instances.wait_for(instance_id, "complete")
    return instance_id


def test_the_page_follows_the_instance_without_a_reload(page: Page, instances: Instances) -> None:
    instances.waiting("live")
    page.goto(f"/w/{WORKFLOW_NAME}/i/live")
    status = page.get_by_test_id("fact-status")
    expect(status).to_have_text("waiting")
    page.evaluate("() => { window.__notReloaded = true }")  # gone if the page reloads

    instances.approve("live")  # through the API, not the page
    expect(status).to_have_text("complete", timeout=LIVE_TIMEOUT_MS)
    assert page.evaluate("() => window.__notReloaded === true"), "the page was reloaded"


def test_the_timeline_has_a_row_per_step(page: Page, instances: Instances) -> None:
    finished(instances, "timeline")
    page.goto(f"/w/{WORKFLOW_NAME}/i/timeline")
    timeline = present(page, "timeline")
    rows = timeline.get_by_test_id("timeline-row")
    for name in ("prepare", "approval", "settle", "finish"):
        expect(rows.filter(has_text=name)).to_have_count(1)


def test_restart_from_a_step_with_edited_params(page: Page, instances: Instances) -> None:
    finished(instances, "restarted", {"order": 3, "note": "first"})
    page.goto(f"/w/{WORKFLOW_NAME}/i/restarted")
    form = present(page, "restart-from-form")
    choice = form.get_by_test_id("restart-from-step")
    labels = choice.locator("option").all_inner_texts()
    [finish] = [label for label in labels if "finish" in label]
    choice.select_option(label=finish)
    params = form.get_by_test_id("restart-from-params")
    assert json.loads(params.input_value()) == {"order": 3, "note": "first"}  # prefilled
    params.fill(json.dumps({"order": 3, "note": "again"}))
    form.get_by_test_id("restart-from-submit").click()

    # Only "finish" runs again (the steps before it stay cached), with the edited params.
    expect(page.get_by_test_id("fact-status")).to_have_text("complete", timeout=LIVE_TIMEOUT_MS)
    instances.wait_for("restarted", "complete")
    page.reload()
    expect(page.get_by_test_id("instance-output")).to_contain_text('"note": "again"')


def test_download_history_gives_the_replay_file(page: Page, instances: Instances) -> None:
    finished(instances, "downloaded")
    page.goto(f"/w/{WORKFLOW_NAME}/i/downloaded")
    link = present(page, "download-history")
    with page.expect_download() as download:
        link.click()
    history = json.loads(download.value.path().read_text())
    assert history["format"] == "wf-history"
    assert (history["workflow"], history["id"]) == (WORKFLOW_NAME, "downloaded")
    names = [step["name"] for step in history["steps"]]
    assert names == ["prepare", "approval", "settle", "finish"]


def test_what_the_user_opened_stays_open_across_live_refreshes(
    page: Page, instances: Instances
) -> None:
    """The live region is replaced on each event: a step's output the user opened (or a failed
    step's attempts they closed) must stay as they left it."""
    instances.waiting("kept-open")
    page.goto(f"/w/{WORKFLOW_NAME}/i/kept-open")
    output = page.locator('details:has([data-testid="step-output"])').first
    output.locator("summary").click()
    expect(output).to_have_attribute("open", "")
    page.evaluate(
        """() => { window.__swaps = 0;
        document.addEventListener("htmx:afterSwap", () => { window.__swaps += 1 }) }"""
    )
    instances.approve("kept-open")
    expect(page.get_by_test_id("fact-status")).to_have_text("complete", timeout=LIVE_TIMEOUT_MS)
    assert page.evaluate("() => window.__swaps") > 0, "no live refresh happened"
    output = page.locator('details:has([data-testid="step-output"])').first
    expect(output).to_have_attribute("open", "")


def test_events_during_a_slow_refresh_are_not_lost(page: Page, instances: Instances) -> None:
    """A change that comes while a refresh is on its way must bring another refresh after it
    (htmx dropped the one it queued: it was queued on the element the first one replaced)."""
    instances.waiting("slow-refresh")
    delayed: list[str] = []

    def slow_first_refresh(route: Route) -> None:
        if not route.request.headers.get("hx-request") or delayed:
            route.continue_()
            return
        answer = route.fetch()  # rendered now, paused...
        delayed.append(route.request.url)
        instances.status_change("slow-refresh", "resume")  # ... and resumed before it is seen
        time.sleep(1.5)  # the stream's "status" event reaches the page meanwhile
        route.fulfill(response=answer)

    page.route(f"**/w/{WORKFLOW_NAME}/i/slow-refresh", slow_first_refresh)
    page.goto(f"/w/{WORKFLOW_NAME}/i/slow-refresh")
    status = page.get_by_test_id("fact-status")
    expect(status).to_have_text("waiting")
    instances.status_change("slow-refresh", "pause")
    instances.wait_for("slow-refresh", "paused")
    page.wait_for_timeout(2_500)  # Playwright calls the route handler only within a call
    assert delayed, "the page made no live refresh"
    instances.wait_for("slow-refresh", "waiting")
    expect(status).to_have_text("waiting", timeout=LIVE_TIMEOUT_MS)
