"""The dashboard of a real ``wf serve`` in Chromium: sign-in with the API token, a session kept
in an HttpOnly, SameSite=Strict cookie, sign-out, and CSRF checks on every form POST."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import OpenPage, Screenshot
from tests.browser.pages import present
from tests.browser.project import WORKFLOW_NAME, write_project
from tests.e2e.helpers import wait_until
from tests.e2e.serve_helpers import Serve, serving

pytestmark = pytest.mark.slow

SIGNIN = re.compile(r"/signin(\?.*)?$")


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    home = tmp_path_factory.mktemp("serve")
    project = write_project(home / "project")
    with serving(home) as server:
        server.deploy(project)
        yield server


def sign_in(page: Page, token: str) -> None:
    page.goto("/signin")
    present(page, "signin-token").fill(token)
    page.get_by_test_id("signin-submit").click()


def test_the_dashboard_asks_for_sign_in_and_refuses_a_wrong_token(
    open_page: OpenPage, serve: Serve, screenshot: Screenshot
) -> None:
    page = open_page(serve.url)
    page.goto("/")
    expect(page).to_have_url(SIGNIN)
    token = present(page, "signin-token")
    expect(token).to_have_attribute("type", "password")
    screenshot(page, "serve-signin")

    token.fill("not-the-token")
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_test_id("signin-error")).to_be_visible()
    expect(page).to_have_url(SIGNIN)
    page.goto(f"/w/{WORKFLOW_NAME}")  # still no session
    expect(page).to_have_url(SIGNIN)


def test_a_session_lasts_until_sign_out(open_page: OpenPage, serve: Serve) -> None:
    page = open_page(serve.url)
    sign_in(page, serve.token)
    expect(page).to_have_url(f"{serve.url}/")
    workflow = page.locator(f'[data-testid="workflow-row"][data-workflow="{WORKFLOW_NAME}"]')
    expect(workflow).to_be_visible()
    assert serve.token not in page.url and serve.token not in page.content()
    cookies = page.context.cookies()
    assert cookies and all(c["value"] != serve.token for c in cookies), cookies
    assert all(c["httpOnly"] and c["sameSite"] == "Strict" for c in cookies), cookies

    page.goto(f"/w/{WORKFLOW_NAME}")  # the session carries over to the next page
    expect(page).to_have_url(f"{serve.url}/w/{WORKFLOW_NAME}")
    page.get_by_test_id("signout").click()
    expect(page).to_have_url(SIGNIN)
    page.goto("/")
    expect(page).to_have_url(SIGNIN)


def test_a_form_post_without_its_csrf_token_is_refused(open_page: OpenPage, serve: Serve) -> None:
    serve.api(f"/api/workflows/{WORKFLOW_NAME}/instances", "POST", {"id": "forged"})
    wait_until(lambda: serve.instance("forged", WORKFLOW_NAME)["status"] == "waiting")
    page = open_page(serve.url)
    sign_in(page, serve.token)
    expect(page).to_have_url(f"{serve.url}/")
    page.goto(f"/w/{WORKFLOW_NAME}/i/forged")

    forms = page.locator('form[method="post"]')
    tokens = page.locator('form[method="post"] input[type="hidden"][name="csrf"]')
    expect(tokens).to_have_count(forms.count())
    assert forms.count() > 0 and tokens.first.get_attribute("value")

    action = f"{serve.url}/w/{WORKFLOW_NAME}/i/forged/terminate"
    for form in ({}, {"csrf": "forged-token"}):  # the session's cookie goes along with each
        forged = page.request.post(
            action, form={**form, "reason": "forged"}, headers={"Origin": serve.url}
        )
        assert forged.status == 403, (form, forged.status)
    assert serve.instance("forged", WORKFLOW_NAME)["status"] == "waiting"

    page.get_by_test_id("action-terminate").click()  # the page's own form, with its token
    expect(page.get_by_test_id("action-done")).to_be_visible()
    wait_until(lambda: serve.instance("forged", WORKFLOW_NAME)["status"] == "terminated")
