"""The leadership dashboard in a real browser (headless Chromium through Playwright): signing in with
the keyboard, the charts and tables as a reader meets them, keyboard order and labels, and what fits
on a 1280x800 screen. Screenshots go to /tmp/dashboard-*.png."""

from __future__ import annotations

import re

import pytest

from tests.browser import raw_token, sign_in_to_dashboard, skip_without_chromium
from tests.metrics import scenario

skip_without_chromium()

from playwright.sync_api import Page, expect  # noqa: E402

TIMEOUT_MS = 5000
VIEWPORT = {"width": 1280, "height": 800}


@pytest.fixture
def history(snapshot_world):
    return snapshot_world(scenario.history)


@pytest.fixture
def page(browser, server, metrics_app):
    server.app = metrics_app
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    opened = context.new_page()
    opened.requests = requests
    opened.console = []
    opened.on("console", lambda message: opened.console.append(message.text))
    yield opened
    context.close()


def focused(page: Page) -> str:
    """What has the keyboard focus: its id, else its text."""
    return page.evaluate("() => document.activeElement.id || document.activeElement.textContent.trim()")


UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
    .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                  && !el.getAttribute('aria-labelledby') && !(el.tagName === 'BUTTON' && el.textContent.trim()))
    .map(el => el.outerHTML)"""


def test_a_leader_signs_in_with_the_keyboard_and_reads_the_dashboard(page, server, history, token):
    page.goto(server.url + "/dashboard/sign-in")
    page.screenshot(path="/tmp/dashboard-sign-in.png")
    assert page.evaluate(UNLABELLED) == []
    sign_in_to_dashboard(page, server, raw_token(token("NCLCC", "leader", sub="chief@nclcc")))
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    expect(page.get_by_role("banner")).to_contain_text("NCLCC outcomes dashboard")
    expect(page.get_by_role("banner")).to_contain_text("Signed in as chief@nclcc (NCLCC)")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Package outcomes:")
    page.screenshot(path="/tmp/dashboard-top.png")
    page.screenshot(path="/tmp/dashboard-full.png", full_page=True)

    # The headline cards and the funnel fit on a 1280x800 screen without scrolling.
    cards = page.locator(".cards")
    funnel = page.get_by_role("img", name="From sending to action")
    expect(cards).to_be_visible()
    expect(funnel).to_be_visible()
    for element in (cards, funnel):
        box = element.bounding_box()
        assert box["y"] + box["height"] <= VIEWPORT["height"], box
    expect(page.locator("#card-arrests")).to_have_text(
        re.compile(r"^\s*Arrests\s+5\s+and 2 charges\s+Up 5 from 0\s+How it is counted")
    )
    expect(page.locator("#card-return-rate")).to_contain_text("75%")

    expect(funnel).to_contain_text("Final return filed")
    expect(funnel).to_contain_text("3 (75%)")
    compliance = page.get_by_role("img", name="Return compliance by organisation, lowest return rate first")
    expect(compliance).to_be_visible()
    expect(compliance).to_contain_text("WMP")
    expect(page.get_by_role("img", name="Month by month")).to_be_visible()
    calibration = page.get_by_role("table", name=re.compile("^Share of returns finding the intelligence confirmed"))
    expect(calibration).to_be_visible()
    two_b = calibration.get_by_role("row", name=re.compile(r"^2 Untested")).get_by_role("cell").nth(1)
    expect(two_b).to_have_text(re.compile(r"67%\s+2 of 3 judged"))
    recent = page.get_by_role("table").filter(has_text="Verdict")
    expect(recent.get_by_role("row")).to_have_count(4)  # the heading and the three packages
    for package in ("a", "b", "c"):
        expect(recent).to_contain_text(history[package]["reference"])
    expect(recent).to_contain_text("Withdrawn by the centre.")

    # The session cookie is out of reach of scripts and of other sites; nothing is fetched elsewhere.
    cookie = next(c for c in page.context.cookies() if c["name"] == "nclcc_dashboard")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.locator("script").count() == 0
    assert all(url.startswith(server.url) or url.startswith("data:") for url in page.requests), page.requests
    assert page.console == []  # e.g. nothing refused by the Content-Security-Policy


def test_keyboard_order_labels_and_the_skip_link(page, server, history, token):
    sign_in_to_dashboard(page, server, raw_token(token("NCLCC", "leader")))
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    assert page.evaluate(UNLABELLED) == []

    page.keyboard.press("Tab")
    assert focused(page) == "Skip to main content"
    skip = page.get_by_role("link", name="Skip to main content")
    expect(skip).to_be_in_viewport()
    page.screenshot(path="/tmp/dashboard-skip-link.png", clip={"x": 0, "y": 0, "width": 1280, "height": 200})
    order = [focused(page)]
    for _ in range(14):
        page.keyboard.press("Tab")
        if focused(page) != order[-1]:  # Chromium's month fields take a Tab for the month and one for the year
            order.append(focused(page))
    assert order[:9] == [
        "Skip to main content",
        "Sign out",
        "from",
        "to",
        "threat_area",
        "organisation",
        "Show figures",
        "This year, all areas",
        "csv-button",
    ], order

    # The skip link moves the keyboard past the header, to the filters.
    page.goto(server.url + "/dashboard")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert focused(page) == "from"

    # Choosing a threat area with the keyboard alone.
    page.get_by_label("Threat area").focus()
    page.get_by_label("Threat area").select_option("firearms")
    page.keyboard.press("Tab")
    assert focused(page) == "organisation"  # left at all organisations
    page.keyboard.press("Tab")
    assert focused(page) == "Show figures"
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"threat_area=firearms"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("firearms")

    # Signing out with the keyboard.
    page.get_by_role("button", name="Sign out").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/dashboard/sign-in\?reason=signed-out$"))
    expect(page.get_by_role("status")).to_have_text("You have signed out.")
    page.goto(server.url + "/dashboard")
    expect(page).to_have_url(re.compile(r"/dashboard/sign-in$"))


def test_refusals_and_bad_filters_read_clearly(page, server, history, token):
    sign_in_to_dashboard(page, server, "not-a-token")
    expect(page.get_by_role("alert")).to_contain_text("could not be verified")
    expect(page.get_by_label("Access token")).to_have_attribute("aria-invalid", "true")
    page.screenshot(path="/tmp/dashboard-sign-in-error.png")

    sign_in_to_dashboard(page, server, raw_token(token("GMP", "recipient")))
    expect(page.get_by_role("heading", level=1)).to_have_text("This dashboard is for leadership")
    expect(page.locator("main")).to_contain_text("/api/v1/metrics/organisations/GMP")
    page.screenshot(path="/tmp/dashboard-refused.png")

    sign_in_to_dashboard(page, server, raw_token(token("NCLCC", "leader")))
    page.goto(server.url + "/dashboard?from=2026-13&threat_area=burglary")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("“From” must be a month written as YYYY-MM")
    expect(alert).to_contain_text("There is no such threat area.")
    expect(page.get_by_label("From month")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#card-arrests")).to_contain_text("5")
    page.screenshot(path="/tmp/dashboard-bad-filter.png")


def test_many_organisations_fold_away(page, server, metrics_app, token):
    """Sixty organisations, returns spread over the year: fifteen rows shown, the rest in a <details>."""
    from services.metrics.models import Fact, Organisation
    from services.metrics.projections import write_facts

    session = metrics_app.extensions["database"].session()
    deltas = {}
    for number in range(60):
        code = f"ORG{number:02d}"
        session.add(
            Organisation(
                code=code,
                name=f"Yorkshire and the Humber Regional Organised Crime Unit {number}",
                kind="rocu",
                region="Somewhere",
            )
        )
        deltas[("org", code, "recipients", "OFFICIAL")] = 20
        deltas[("org", code, "final", "OFFICIAL")] = number % 21
        deltas[("org", code, "on_time", "OFFICIAL")] = number % 21 // 2
        deltas[("org", code, "overdue", "OFFICIAL")] = 20 - number % 21
    for month in range(1, 13):
        key = f"2025-{month:02d}|*|*"
        for metric, value in (
            ("packages", 30),
            ("recipients", 80 + month * 40),
            ("final", 60 + month * 30),
            ("actioned", 20 + month * 9),
        ):
            deltas[("month", key, metric, "OFFICIAL")] = value
    write_facts(session, deltas)
    session.commit()
    assert session.query(Fact).count() > 240
    session.close()

    sign_in_to_dashboard(page, server, raw_token(token("NCLCC", "leader")))
    page.goto(server.url + "/dashboard?from=2025-01&to=2025-12")
    compliance = page.locator("svg[aria-labelledby^=compliance]")
    expect(compliance).to_have_count(2)
    expect(compliance.first.locator("text.chart__strong")).to_have_count(15)
    details = page.locator("details.more")
    expect(details.locator("summary")).to_have_text("Show the other 45 organisations")
    expect(compliance.nth(1)).to_be_hidden()
    details.locator("summary").focus()
    page.keyboard.press("Enter")
    expect(compliance.nth(1)).to_be_visible()
    expect(page.locator("#card-return-rate")).to_contain_text("75%")
    page.screenshot(path="/tmp/dashboard-many.png", full_page=True)
    page.locator("section").filter(has=compliance.first).screenshot(path="/tmp/dashboard-many-compliance.png")
    page.get_by_role("img", name="Month by month").screenshot(path="/tmp/dashboard-many-trend.png")


@pytest.fixture
def mixed_history(snapshot_world):
    return snapshot_world(scenario.mixed_history)


def test_an_official_leader_reads_only_official_packages(page, server, mixed_history, token):
    sign_in_to_dashboard(page, server, raw_token(token("NCLCC", "leader", clearance="OFFICIAL", sub="deputy@nclcc")))
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    expect(page.locator("#clearance")).to_have_text("Counting only packages marked OFFICIAL, as your clearance allows.")
    page.screenshot(path="/tmp/dashboard-official.png", full_page=True)
    expect(page.locator("#card-packages")).to_contain_text("1")
    expect(page.locator("#card-arrests")).to_have_text(
        re.compile(r"^\s*Arrests\s+7\s+and 0 charges\s+Up 7 from 0\s+How it is counted")
    )
    recent = page.get_by_role("table").filter(has_text="Verdict")
    expect(recent.get_by_role("row")).to_have_count(2)  # the heading and package E
    expect(recent).to_contain_text(scenario.OFFICIAL_TITLE)
    for name in ("a", "b", "c"):
        expect(page.locator("main")).not_to_contain_text(mixed_history[name]["reference"])
    box = page.get_by_role("img", name="From sending to action").bounding_box()
    assert box["y"] + box["height"] <= VIEWPORT["height"], box
