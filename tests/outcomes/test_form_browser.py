"""The recipient web form in a real browser (headless Chromium through Playwright), with no
JavaScript of its own: errors, filing, amending, labels. Screenshots go to /tmp/form-*.png."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from tests.browser import skip_without_chromium
from tests.outcomes.helpers import issued_returns, outcome_body

skip_without_chromium()

from playwright.sync_api import Page, expect  # noqa: E402

TIMEOUT_MS = 5000


@pytest.fixture
def page(browser, server, outcomes_app):
    server.app = outcomes_app
    context = browser.new_context(viewport={"width": 1024, "height": 900}, java_script_enabled=True)
    context.set_default_timeout(TIMEOUT_MS)
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    opened = context.new_page()
    opened.requests = requests
    yield opened
    context.close()


@pytest.fixture
def form(client, token, pump_events, outcomes_client, server):
    """A fresh return for GMP; returns (return id, absolute form URL on the test server)."""
    return_id = issued_returns(client, token, pump_events, recipients=("GMP",))["GMP"]
    link = outcomes_client.get(f"/api/v1/returns/{return_id}", headers=token("GMP", "recipient")).get_json()
    return return_id, server.url + urlsplit(link["form_url"]).path


def outcomes_of(outcomes_client, token, return_id) -> list[dict]:
    response = outcomes_client.get(f"/api/v1/returns/{return_id}/outcomes", headers=token("GMP", "recipient"))
    assert response.status_code == 200
    return response.get_json()


def send(page: Page) -> None:
    page.locator("#outcome-form button[type=submit]").click()


def test_empty_form_shows_every_problem_first_and_keeps_what_was_typed(page, form, outcomes_client, token):
    return_id, url = form
    page.goto(url)
    expect(page.locator("h1")).to_contain_text("Outcome return for NCLCC-")
    page.screenshot(path="/tmp/form-empty.png", full_page=True)

    page.get_by_label("Which tasking forum set the priority?").fill("Force tasking meeting")
    page.get_by_label("Arrests").fill("2")
    page.get_by_label("Cash seized, in pounds").fill("1,250.50")
    page.get_by_label("Weapons seized").fill("two")
    page.get_by_label("Anything else").fill("Line still running.")
    page.get_by_label("Your name").fill("Sam Patel")
    page.get_by_label("Pursue").check()
    send(page)

    expect(page).to_have_title(re.compile(r"^Error: Outcome return for NCLCC-"))
    summary = page.locator(".govuk-error-summary")
    expect(summary).to_be_visible()
    expect(summary).to_contain_text("There is a problem")
    # The summary comes before everything else in the page's content, and has the focus.
    first = page.locator("main .govuk-grid-column-two-thirds > *").first
    assert first.evaluate("el => el.classList.contains('govuk-error-summary')")
    assert page.evaluate("document.activeElement.classList.contains('govuk-error-summary')")

    links = summary.locator("a")
    hrefs = links.evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert hrefs[:4] == ["#status", "#actions", "#priority", "#results-weapons-seized"]
    for expected_id in (
        "#attribution",
        "#intelligence-feedback-usefulness",
        "#intelligence-feedback-accuracy",
        "#intelligence-feedback-timeliness",
        "#filer-role",
    ):
        assert expected_id in hrefs
    assert "#filer-name" not in hrefs and "#tasking-forum" not in hrefs
    for href in hrefs:
        target = page.locator(href)
        assert target.evaluate("el => ['INPUT', 'SELECT', 'TEXTAREA'].includes(el.tagName)"), href
        # The same message is shown beside the field, in its group marked as having an error.
        group = target.locator("xpath=ancestor::div[contains(@class, 'govuk-form-group')][1]")
        expect(group).to_have_class(re.compile(r"\bgovuk-form-group--error\b"))
        message = summary.locator(f"a[href='{href}']").inner_text()
        expect(group.locator(".govuk-error-message")).to_contain_text(message)
    expect(summary.locator("a[href='#results-weapons-seized']")).to_have_text(
        "Enter weapons seized as a number, like 3"
    )

    page.screenshot(path="/tmp/form-errors.png", full_page=True)

    links.last.click()
    assert page.url.endswith("#filer-role")
    expect(page.locator("#filer-role")).to_be_in_viewport()

    expect(page.get_by_label("Which tasking forum set the priority?")).to_have_value("Force tasking meeting")
    expect(page.get_by_label("Arrests")).to_have_value("2")
    expect(page.get_by_label("Cash seized, in pounds")).to_have_value("1,250.50")
    expect(page.get_by_label("Weapons seized")).to_have_value("two")
    expect(page.get_by_label("Anything else")).to_have_value("Line still running.")
    expect(page.get_by_label("Your name")).to_have_value("Sam Patel")
    expect(page.get_by_label("Pursue")).to_be_checked()
    assert outcomes_of(outcomes_client, token, return_id) == []


def fill_in_final_return(page: Page) -> None:
    page.get_by_label("Final", exact=True).check()
    page.get_by_label("Enforcement").check()
    page.get_by_label("High", exact=True).check()
    page.get_by_label("Which tasking forum set the priority?").fill("GMP SOC tasking")
    page.get_by_label("Arrests").fill("3")
    page.get_by_label("Charges").fill("2")
    page.get_by_label("Drugs seized, in grams").fill("120.5")
    page.get_by_label("Cash seized, in pounds").fill("4,500")
    page.get_by_label("Directly").check()
    page.get_by_label("Pursue").check()
    page.get_by_label("4", exact=True).check()
    page.get_by_label("Confirmed", exact=True).check()
    page.get_by_label("In time to act on").check()
    page.get_by_label("Your name").fill("Sam Patel")
    page.get_by_label("Your role or e-mail").fill("DS, Organised Crime Unit")


def test_filling_it_in_files_a_final_return(page, form, outcomes_client, token):
    return_id, url = form
    page.goto(url)
    fill_in_final_return(page)
    send(page)

    page.wait_for_url("**/done")
    panel = page.locator(".govuk-panel--confirmation")
    expect(panel).to_contain_text("Outcome return filed")
    expect(panel).to_contain_text("NCLCC-")
    expect(page.locator("main")).to_contain_text("Final")
    page.screenshot(path="/tmp/form-done.png", full_page=True)

    [outcome] = outcomes_of(outcomes_client, token, return_id)
    assert outcome["filed_via"] == "form"
    assert outcome["status"] == "final"
    assert outcome["actions"] == ["enforcement"]
    assert outcome["filed_by"] == "Sam Patel (DS, Organised Crime Unit)"
    assert outcome["results"]["arrests"] == 3
    assert outcome["results"]["charges"] == 2
    assert outcome["results"]["drugs_seized_grams"] == 120.5
    assert outcome["results"]["cash_seized_gbp"] == 4500
    assert outcome["results"]["weapons_seized"] == 0
    assert outcome["intelligence_feedback"] == {"usefulness": 4, "accuracy": "confirmed", "timeliness": "timely"}


def test_the_same_link_amends_the_return(page, form, outcomes_client, token):
    return_id, url = form
    filed = outcomes_client.post(
        f"/api/v1/returns/{return_id}/outcomes", json=outcome_body(), headers=token("GMP", "recipient")
    )
    assert filed.status_code == 201, filed.get_json()

    page.goto(url)
    expect(page.locator("main")).to_contain_text("You are amending version 1; the earlier versions are kept")
    expect(page.get_by_label("Interim", exact=True)).to_be_checked()
    expect(page.get_by_label("Enforcement")).to_be_checked()
    expect(page.get_by_label("Safeguarding", exact=True)).to_be_checked()
    expect(page.get_by_label("Recorded it only")).not_to_be_checked()
    expect(page.get_by_label("High", exact=True)).to_be_checked()
    expect(page.get_by_label("Which tasking forum set the priority?")).to_have_value(
        "GMP Serious Organised Crime tasking"
    )
    expect(page.get_by_label("Arrests")).to_have_value("3")
    expect(page.get_by_label("Weapons seized")).to_have_value("")
    expect(page.get_by_label("Drugs seized, in grams")).to_have_value("120.5")
    expect(page.get_by_label("Cash seized, in pounds")).to_have_value("4500")
    expect(page.get_by_label("Directly")).to_be_checked()
    expect(page.get_by_label("Protect", exact=True)).to_be_checked()
    expect(page.get_by_label("4", exact=True)).to_be_checked()
    expect(page.get_by_label("Anything else")).to_have_value("Warrant executed at the trap house on day 3.")
    expect(page.get_by_label("Your name")).to_have_value("")

    page.get_by_label("Final", exact=True).check()
    page.get_by_label("Arrests").fill("4")
    page.get_by_label("Your name").fill("Sam Patel")
    page.get_by_label("Your role or e-mail").fill("sam.patel@gmp.police.invalid")
    send(page)
    page.wait_for_url("**/done")
    expect(page.locator("main")).to_contain_text("2")

    first, second = outcomes_of(outcomes_client, token, return_id)
    assert (first["version"], first["filed_via"], first["status"]) == (1, "api", "interim")
    assert (second["version"], second["filed_via"], second["status"]) == (2, "form", "final")
    assert second["results"] == {**first["results"], "arrests": 4}
    assert second["actions"] == first["actions"] and second["strands"] == first["strands"]
    assert second["filed_by"] == "Sam Patel (sam.patel@gmp.police.invalid)"

    page.goto(url)
    expect(page.locator("main")).to_contain_text("You are amending version 2")


def test_every_field_has_a_label_and_nothing_else_is_loaded(page, form, server):
    _return_id, url = form
    page.goto(url)
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
        .filter(el => el.type !== 'hidden' && el.offsetParent !== null && el.labels.length === 0)
        .map(el => el.id || el.name)""")
    assert unlabelled == []
    count = page.evaluate("document.querySelectorAll('input:not([type=hidden]), select, textarea').length")
    assert count > 30
    outside_fieldsets = page.evaluate("""() => [...document.querySelectorAll('input[type=radio], input[type=checkbox]')]
        .filter(el => !el.closest('fieldset') || !el.closest('fieldset').querySelector('legend'))
        .map(el => el.id)""")
    assert outside_fieldsets == []
    assert page.locator("script").count() == 0
    assert page.locator("meta[name=robots]").get_attribute("content") == "noindex"
    assert page.requests and all(u.startswith(server.url + "/") for u in page.requests), page.requests
    assert not any("/assets/" in u for u in page.requests)
    assert page.evaluate("getComputedStyle(document.querySelector('h1')).fontFamily") == "arial, sans-serif"
