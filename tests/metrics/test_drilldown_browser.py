"""The drill-down pages in Chromium: from the dashboard's headline to one package's whole story
and on to a recipient's page, by keyboard alone (Tab and Enter), each page clean under axe-core.

Screenshots go to $SCREENSHOTS_DIR when it is set (the README's come from
``SCREENSHOTS_DIR=docs/screenshots make test PYTEST_ARGS=tests/metrics/test_drilldown_browser.py``),
else to the test's temporary directory."""

from __future__ import annotations

import re

import pytest

from tests.browser import raw_token, sign_in_to_dashboard, skip_without_chromium
from tests.metrics import story

skip_without_chromium()

from playwright.sync_api import Page, expect  # noqa: E402

from tests.metrics.test_dashboard_browser import VIEWPORT  # noqa: E402
from tests.outcomes.test_form_browser import TIMEOUT_MS, check_accessibility  # noqa: E402

MAX_TABS = 300


@pytest.fixture
def page(browser, server, metrics_app):
    server.app = metrics_app
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    opened.console = []
    opened.on("console", lambda message: opened.console.append(message.text))
    yield opened
    context.close()


def tab_to_link(page: Page, href: str) -> None:
    """Press Tab until the keyboard focus is on a link to ``href`` (a fragment of its address)."""
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        if href in (page.evaluate("() => document.activeElement.getAttribute('href')") or ""):
            return
    raise AssertionError(f"no link to {href} within {MAX_TABS} presses of Tab")


def test_from_the_headline_to_a_package_and_a_recipient_by_keyboard(page, server, shots, token, snapshot_world):
    told = snapshot_world(story.build)  # built already if test_drilldown.py ran first in this process
    sign_in_to_dashboard(page, server, raw_token(token("NCLCC", "leader", sub="chief@nclcc")))
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    page.goto(server.url + "/dashboard?threat_area=drugs_supply")
    expect(page.locator("#card-return-rate")).to_contain_text("75%")
    check_accessibility(page, "dashboard")

    # One: the package's row, reached by Tab and opened by Enter.
    tab_to_link(page, f"/dashboard/packages/{told['t']['id']}")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"/dashboard/packages/{told['t']['id']}\?.*threat_area=drugs_supply"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(told["t"]["reference"])
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("Final return filed, after an interim one (version 2, on time)")
    expect(timeline).to_contain_text("Final return amended (version 2, on time)")
    expect(timeline).to_contain_text("Chased: escalation")
    expect(page.locator("#chain")).to_contain_text("ROCU-NW passed it to LANCS")
    check_accessibility(page, "package page")
    page.screenshot(path=str(shots / "leaders-2-package.png"), full_page=True)

    # Two: the recipient it was passed on to, again by keyboard.
    tab_to_link(page, "/dashboard/organisations/LANCS")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/dashboard/organisations/LANCS\?.*threat_area=drugs_supply"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Lancashire Constabulary (LANCS)")
    expect(page.locator("#card-return-rate")).to_contain_text("25 points above the national 75%")
    expect(page.locator("#packages")).to_contain_text(told["t"]["reference"])
    check_accessibility(page, "organisation page")
    page.screenshot(path=str(shots / "leaders-3-organisation.png"), full_page=True)

    # Back to the dashboard, its filters kept; the CSV button is reachable too.
    tab_to_link(page, "/dashboard?")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/dashboard\?.*threat_area=drugs_supply"))
    expect(page.get_by_label("Threat area")).to_have_value("drugs_supply")
    tab_to_link(page, "/dashboard/export.csv")
    with page.expect_download() as download:
        page.keyboard.press("Enter")
    assert download.value.suggested_filename.startswith("nclcc-package-outcomes-")
    assert page.console == []  # nothing refused by the Content-Security-Policy
