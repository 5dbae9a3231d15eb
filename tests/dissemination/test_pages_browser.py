"""The recipients' side in a real browser (Debian's headless Chromium through Playwright), as a
force's officer would go through it, by keyboard only: the link in the delivery e-mail, sign-in
at the identity provider (oidc-provider-mock, a real OpenID Connect provider), the package page,
Acknowledge, File the outcome return (an interim one with one round of errors, the check page,
then a final one), and the inbox showing the package acknowledged and its return final.
axe-core checks each of the pages for serious or critical accessibility problems.

Screenshots go to $SCREENSHOTS_DIR when it is set (the README's come from
``SCREENSHOTS_DIR=docs/screenshots make test PYTEST_ARGS=tests/dissemination/test_pages_browser.py``),
else to the test's temporary directory.
"""

from __future__ import annotations

import re

import pytest

from shared.notify import plain_text
from tests.browser import Server, sign_in_with_provider, skip_without_chromium
from tests.dissemination.helpers import issue_package
from tests.oidc_provider import start_provider

skip_without_chromium()

from playwright.sync_api import Page, expect  # noqa: E402

from tests.outcomes.test_form_browser import (  # noqa: E402
    TIMEOUT_MS,
    check_accessibility,
    choose,
    markings,
    press_button,
    tab_to,
    tick,
    type_into,
)

OFFICER = "sam.patel@gmp"


@pytest.fixture(scope="module")
def provider():
    running, stop = start_provider()
    yield running
    stop()


@pytest.fixture(scope="module")
def servers():
    """The dissemination and outcomes services, each on its own loopback port."""
    dissemination, outcomes = Server(), Server()
    yield dissemination, outcomes
    dissemination.stop()
    outcomes.stop()


@pytest.fixture
def recipient_pages(app, outcomes_app, servers, provider):
    """The dissemination service as a recipient meets it: signing in with the provider, sending
    people on to the outcomes service's form on its own server."""
    from services.dissemination import create_app

    dissemination, outcomes = servers
    public = {"dissemination": dissemination.url, "outcomes": outcomes.url, "metrics": "http://127.0.0.1:9"}
    application = create_app({"settings": {"testing": True, "public_urls": public, **provider.settings()}})
    dissemination.app, outcomes.app = application, outcomes_app
    yield application
    application.extensions["database"].engine.dispose()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    # The provider's own page asks for a stylesheet from the internet: not here.
    context.route(re.compile(r"^https://"), lambda route: route.abort())
    opened = context.new_page()
    opened.problems = []
    opened.on("pageerror", lambda error: opened.problems.append(str(error)))
    context.on(
        "response",
        lambda response: "-assets/" in response.url and response.status >= 400 and opened.problems.append(response.url),
    )
    yield opened
    assert opened.problems == []
    context.close()


def dissemination_from_mail(mailbox, organisation_email: str, reference: str) -> str:
    """The package page's address in the delivery e-mail, as the officer would follow it."""
    [message] = [m for m in mailbox() if m["To"] == organisation_email and reference in m["Subject"]]
    found = re.search(r"https?://\S+/disseminations/([0-9a-f-]{36})", plain_text(message))
    assert found, plain_text(message)
    return found[1]


def send_return(page: Page, status: str) -> None:
    """On the outcome form: the answers every return needs, then Continue."""
    choose(page, "status", status)
    tick(page, "Enforcement")
    choose(page, "priority", "not_prioritised")
    type_into(page, page.get_by_label("Arrests"), "2")
    choose(page, "attribution", "direct")
    choose(page, "intelligence_feedback.usefulness", "4")
    choose(page, "intelligence_feedback.accuracy", "confirmed")
    choose(page, "intelligence_feedback.timeliness", "timely")
    type_into(page, page.get_by_label("Your name"), "Sam Patel")
    type_into(page, page.get_by_label("Your role or e-mail"), "DS, Organised Crime Unit")
    press_button(page, page.get_by_role("button", name="Continue"))


def test_a_recipient_reads_acknowledges_and_returns_by_keyboard(
    recipient_pages, app, outcomes_app, client, token, run_jobs, mailbox, pump_events, provider, servers, page, shots
):
    dissemination_server, outcomes_server = servers
    centre = token()
    older = [
        issue_package(
            client, centre, title=title, recipients=["GMP"], source_evaluation=source, intelligence_assessment=grade
        )
        for title, source, grade in (
            ("Cuckooing of a vulnerable adult's flat in Salford", 1, "A"),
            ("Children carrying drugs by train to Blackpool", 3, "C"),
        )
    ]
    package = issue_package(
        client,
        centre,
        title="County line 'Dex' supplying Wigan",
        recipients=["GMP", "MPS"],
        handling_code="C",
        handling_conditions="Not to be shared outside policing without the NCLCC's agreement.",
    )
    run_jobs()
    pump_events()
    gmp = dissemination_from_mail(mailbox, "outcomes.gmp@directory.invalid", package["reference"])
    provider.set_user(OFFICER, org="GMP", roles=["recipient"], clearance="OFFICIAL-SENSITIVE", name="Sam Patel")

    # The e-mail's link, opened: sign in first, with the organisation's account.
    page.goto(f"{dissemination_server.url}/disseminations/{gmp}")
    expect(page.locator("h1")).to_have_text("Sign in")
    check_accessibility(page, "the sign-in page")
    sign_in_with_provider(page, OFFICER)

    # Back on the package page asked for.
    page.wait_for_url(f"{dissemination_server.url}/disseminations/{gmp}")
    expect(page.locator("h1")).to_have_text(package["title"])
    assert len(markings(page)) == 2 and all(m.endswith("OFFICIAL-SENSITIVE") for m in markings(page))
    expect(page.locator("header .app-marking")).to_be_in_viewport()
    expect(page.locator("#grading")).to_have_text("2B: untested source, known indirectly, corroborated")
    expect(page.locator("#handling")).to_contain_text("Not to be shared outside policing")
    expect(page.locator("header")).to_contain_text(f"Signed in as {OFFICER} (GMP)")
    assert page.locator("script").count() == 0  # works without JavaScript: there is none
    check_accessibility(page, "the package page")
    screenshot_package = shots / "recipients-2-package.png"
    page.screenshot(path=str(screenshot_package), full_page=True)

    press_button(page, page.get_by_role("button", name="Acknowledge"))
    expect(page.locator(".govuk-notification-banner--success")).to_contain_text("You acknowledged")
    expect(page.locator("#acknowledged")).to_contain_text("Acknowledged")
    check_accessibility(page, "the package page, acknowledged")
    item = client.get(f"/api/v1/disseminations/{gmp}", headers=token("GMP", "recipient")).get_json()
    assert item["acknowledged_by"] == OFFICER

    # File the outcome return: the outcomes service's form for this dissemination's return.
    press_button(page, page.get_by_role("button", name="File the outcome return"))
    page.wait_for_url(re.compile(re.escape(outcomes_server.url) + r"/form/"))
    expect(page.locator("h1")).to_contain_text(f"Outcome return for {package['reference']}")
    # One round of errors: Continue with only the status chosen.
    choose(page, "status", "interim")
    press_button(page, page.get_by_role("button", name="Continue"))
    expect(page).to_have_title(re.compile(r"^Error: "))
    expect(page.locator(".govuk-error-summary")).to_be_focused()
    send_return(page, "interim")
    expect(page.locator("h1")).to_have_text("Check your answers before sending your return")
    press_button(page, page.get_by_role("button", name="Send return"))
    page.wait_for_url("**/done")
    pump_events(source=outcomes_app, target=app)

    page.goto(f"{dissemination_server.url}/inbox")
    row = page.locator(f"tr[data-reference='{package['reference']}']")
    expect(row).to_contain_text("Acknowledged")
    expect(row).to_contain_text("Interim")

    # Later, the final return, from the package page again.
    tab_to(page, row.get_by_role("link", name=package["reference"]))
    page.keyboard.press("Enter")
    expect(page.locator("#return-status")).to_contain_text("Interim")
    press_button(page, page.get_by_role("button", name="Amend or add to the outcome return"))
    page.wait_for_url(re.compile(re.escape(outcomes_server.url) + r"/form/"))
    send_return(page, "final")
    press_button(page, page.get_by_role("button", name="Send return"))
    page.wait_for_url("**/done")
    pump_events(source=outcomes_app, target=app)

    page.goto(f"{dissemination_server.url}/inbox")
    row = page.locator(f"tr[data-reference='{package['reference']}']")
    expect(row).to_contain_text("Acknowledged")
    expect(row).to_contain_text("Final")
    for each in older:
        expect(page.locator(f"tr[data-reference='{each['reference']}']")).to_contain_text("Not acknowledged")
    check_accessibility(page, "the inbox")
    page.screenshot(path=str(shots / "recipients-1-inbox.png"), full_page=True)

    # Signing out, by keyboard too.
    press_button(page, page.get_by_role("button", name="Sign out"))
    expect(page.locator("main")).to_contain_text("You have signed out")
    check_accessibility(page, "the signed-out page")
    page.goto(f"{dissemination_server.url}/inbox")
    expect(page.locator("h1")).to_have_text("Sign in")


def test_the_centre_follows_a_package_passed_on_by_keyboard(
    recipient_pages,
    app,
    outcomes_app,
    outcomes_client,
    client,
    token,
    run_jobs,
    pump_events,
    provider,
    servers,
    page,
    shots,
):
    """The centre's view: the packages it issued, and one package's chain, centre -> ROCU-NW ->
    GMP, with each return's status, as the centre's chase e-mails link to it."""
    from tests.onward.chain import start

    dissemination_server, _ = servers
    world = start(client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs)
    run_jobs()  # GMP is told it was passed on
    package, ids = world["package"], world["ids"]
    provider.set_user("jo.kent@nclcc", org="NCLCC", roles=["issuer"], clearance="OFFICIAL-SENSITIVE", name="Jo Kent")

    page.goto(f"{dissemination_server.url}/packages")
    sign_in_with_provider(page, "jo.kent@nclcc")
    expect(page).to_have_url(f"{dissemination_server.url}/packages")
    expect(page.locator("h1")).to_have_text("Packages issued")
    check_accessibility(page, "the centre's packages")

    tab_to(page, page.get_by_role("link", name=package["reference"]))
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{dissemination_server.url}/packages/{package['id']}")
    expect(page.locator("h1")).to_have_text(package["title"])
    assert len(markings(page)) == 2
    gmp = page.locator(f"#return-{ids['GMP']}")
    expect(gmp).to_contain_text("Greater Manchester Police")
    expect(gmp).to_contain_text("Passed on by North West Regional Organised Crime Unit")
    expect(page.locator(f"#return-{ids['ROCU-NW']}")).to_contain_text("Interim")
    expect(gmp).not_to_contain_text("Not yet delivered")
    check_accessibility(page, "the centre's view of a package")
    page.screenshot(path=str(shots / "centre-1-chain.png"), full_page=True)
