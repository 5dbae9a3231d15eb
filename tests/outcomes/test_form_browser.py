"""The recipient web form in a real browser (Debian's headless Chromium through Playwright), as
an officer would use it: keyboard only, one round of errors, the check page, an interim return
and then a final one; and the same form with JavaScript off. axe-core checks every page for
serious or critical accessibility problems.

Screenshots of each step go to $SCREENSHOTS_DIR when it is set (the README's come from
``SCREENSHOTS_DIR=docs/screenshots make test PYTEST_ARGS=tests/outcomes/test_form_browser.py``),
else to the test's temporary directory.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.browser import skip_without_chromium
from tests.outcomes.form_helpers import outcomes_of
from tests.outcomes.helpers import issued_returns, outcome_body

skip_without_chromium()

from axe_playwright_python.sync_playwright import Axe  # noqa: E402
from playwright.sync_api import Locator, Page, expect  # noqa: E402

TIMEOUT_MS = 5000
MAX_KEY_PRESSES = 200  # to reach any field of the form by Tab from anywhere on it
AXE = Axe()


def _open_page(browser, javascript: bool):
    context = browser.new_context(viewport={"width": 900, "height": 800}, java_script_enabled=javascript)
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    opened.requests = []
    opened.console_errors = []
    context.on("request", lambda request: opened.requests.append(request.url))
    # Script errors and CSP refusals; a page answered 4xx (errors: 422) is no error of its own,
    # but a stylesheet or script that does not load is.
    opened.on(
        "console",
        lambda message: (
            message.type == "error"
            and not message.text.startswith("Failed to load resource")
            and opened.console_errors.append(message.text)
        ),
    )
    context.on(
        "response",
        lambda response: (
            "/form-assets/" in response.url
            and response.status >= 400
            and opened.console_errors.append(f"{response.status} {response.url}")
        ),
    )
    opened.on("pageerror", lambda error: opened.console_errors.append(str(error)))
    return context, opened


@pytest.fixture
def page(browser, server, outcomes_app):
    server.app = outcomes_app
    context, opened = _open_page(browser, javascript=True)
    yield opened
    assert opened.console_errors == [], "the page's script failed (or the CSP refused something)"
    context.close()


@pytest.fixture
def page_without_js(browser, server, outcomes_app):
    server.app = outcomes_app
    context, opened = _open_page(browser, javascript=False)
    yield opened
    context.close()


@pytest.fixture
def form(client, token, pump_events, outcomes_client, server):
    """A fresh return for GMP; returns (return id, absolute form URL on the test server)."""
    return_id = issued_returns(client, token, pump_events, recipients=("GMP",))["GMP"]
    link = outcomes_client.get(f"/api/v1/returns/{return_id}", headers=token("GMP", "recipient")).get_json()
    return return_id, server.url + urlsplit(link["form_url"]).path


def check_accessibility(page: Page, name: str) -> None:
    """No serious or critical axe-core violation on the page as it is now."""
    results = AXE.run(page)
    grave = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert not grave, f"{name}:\n" + "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']} -> {[n['target'] for n in v['nodes']]}" for v in grave
    )


def check_accessibility_without_js(browser, page: Page, name: str) -> None:
    """axe-core is JavaScript, and never finishes in a page with scripts off: the page as this
    browser shows it (its HTML, the form's script not run) is opened again in a context with
    scripts on, the form's own script refused, and checked there."""
    html = page.content()
    address = page.url.split("#")[0]
    context = browser.new_context(viewport=page.viewport_size)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        checker = context.new_page()
        checker.route("**/form-assets/form.js", lambda route: route.abort())
        checker.route(address, lambda route: route.fulfill(status=200, content_type="text/html", body=html))
        checker.goto(address)
        assert checker.evaluate("document.body.className") == "govuk-template__body"
        check_accessibility(checker, name)
    finally:
        context.close()


def screenshot(page: Page, folder: Path, name: str, full_page: bool = True) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=full_page)


def markings(page: Page) -> list[str]:
    return page.locator(".app-marking").all_inner_texts()


# ---------------------------------------------------------------------------------------------
# The keyboard: Tab to a control, then Space, arrows, typing or Enter. Never a click.


def focused(target: Locator) -> bool:
    return target.evaluate("el => el === document.activeElement")


def tab_to(page: Page, target: Locator) -> None:
    """Tab (or Shift+Tab, if it comes earlier in the page) until ``target`` has the focus."""
    backwards = target.evaluate(
        "el => !!(document.activeElement && document.activeElement !== document.body"
        " && (el.compareDocumentPosition(document.activeElement) & Node.DOCUMENT_POSITION_FOLLOWING))"
    )
    for _ in range(MAX_KEY_PRESSES):
        if focused(target):
            return
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
    raise AssertionError(f"the keyboard never reached {target}")


def choose(page: Page, name: str, value: str) -> None:
    """A radio: Tab into its group (Tab stops once in a group: on its checked radio, or on its
    first), then the arrow keys to the answer (arrows select), then Space."""
    group = page.locator(f"input[type=radio][name='{name}']")
    checked = group.evaluate_all("radios => radios.findIndex(r => r.checked)")
    tab_to(page, group.nth(max(checked, 0)))
    for _ in range(group.count()):
        if page.evaluate("document.activeElement.value") == value:
            break
        page.keyboard.press("ArrowDown")
    page.keyboard.press("Space")
    expect(page.locator(f"input[type=radio][name='{name}'][value='{value}']")).to_be_checked()


def tick(page: Page, label: str, checked: bool = True) -> None:
    box = page.get_by_label(label, exact=True)
    tab_to(page, box)
    if box.is_checked() != checked:
        page.keyboard.press("Space")
    expect(box).to_be_checked(checked=checked)


def type_into(page: Page, target: Locator, text: str) -> None:
    tab_to(page, target)
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.press("Backspace")
    if text:
        page.keyboard.type(text)
    expect(target).to_have_value(text)


def press_button(page: Page, target: Locator) -> None:
    tab_to(page, target)
    page.keyboard.press("Enter")


# ---------------------------------------------------------------------------------------------


def test_an_officer_files_an_interim_then_a_final_return_by_keyboard(page, form, outcomes_client, token, shots):
    return_id, url = form
    page.goto(url)
    expect(page.locator("h1")).to_contain_text("Outcome return for NCLCC-")
    assert len(markings(page)) == 2 and all(m.endswith("OFFICIAL-SENSITIVE") for m in markings(page))
    expect(page.locator("header .app-marking")).to_be_in_viewport()
    # Only the form's own script and stylesheets, all from this service.
    assert page.requests and all(u.startswith(page.url.split("/form/")[0] + "/") for u in page.requests)
    passed_to, no_action_reason = page.locator("#passed-to"), page.locator("#no-action-reason")
    expect(passed_to).to_be_hidden()
    expect(no_action_reason).to_be_hidden()
    check_accessibility(page, "the empty form")
    screenshot(page, shots, "form-1-start", full_page=False)

    # Part filled in, with problems: Passed on but to nobody, High with no forum, a figure
    # that is not a number, no attribution, no feedback, no name.
    choose(page, "status", "interim")
    tick(page, "Enforcement")
    tick(page, "Passed it to another organisation")
    expect(passed_to).to_be_visible()
    expect(page.get_by_label("Passed it to another organisation")).to_have_attribute("aria-expanded", "true")
    actions_group = page.locator("#actions").locator("xpath=ancestor::div[contains(@class, 'govuk-form-group')][1]")
    actions_group.screenshot(path=str(shots / "form-1b-revealed-question.png"))
    # "No action" stands alone: ticking it unticks the others, and the other way round.
    tick(page, "No action")
    expect(page.get_by_label("Enforcement")).not_to_be_checked()
    expect(passed_to).to_be_hidden()
    expect(no_action_reason).to_be_visible()
    check_accessibility(page, "the form with a question revealed")
    tick(page, "Enforcement")
    expect(page.get_by_label("No action", exact=True)).not_to_be_checked()
    expect(no_action_reason).to_be_hidden()
    tick(page, "Passed it to another organisation")
    choose(page, "priority", "high")
    type_into(page, page.get_by_label("Arrests"), "two")
    type_into(page, page.get_by_label("Charges"), "1")
    type_into(page, page.get_by_label("Your role or e-mail"), "DS, Organised Crime Unit")
    press_button(page, page.get_by_role("button", name="Continue"))

    expect(page).to_have_title(re.compile(r"^Error: Outcome return for NCLCC-"))
    summary = page.locator(".govuk-error-summary")
    expect(summary).to_be_focused()
    hrefs = summary.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert hrefs == [
        "#passed-to",
        "#tasking-forum",
        "#results-arrests",
        "#attribution",
        "#intelligence-feedback-usefulness",
        "#intelligence-feedback-accuracy",
        "#intelligence-feedback-timeliness",
        "#filer-name",
    ]
    for href in hrefs:
        field = page.locator(href)
        group = field.locator("xpath=ancestor::div[contains(@class, 'govuk-form-group')][1]")
        expect(group).to_have_class(re.compile(r"\bgovuk-form-group--error\b"))
        expect(group.locator(".govuk-error-message").first).to_contain_text(
            summary.locator(f"a[href='{href}']").inner_text()
        )
    expect(passed_to).to_be_visible()  # revealed again: its box is still ticked
    expect(page.get_by_label("Arrests")).to_have_value("two")
    check_accessibility(page, "the form with errors")
    screenshot(page, shots, "form-2-errors", full_page=False)

    # From the summary to the first field by keyboard; then fix each problem.
    page.keyboard.press("Tab")
    expect(summary.locator("a").first).to_be_focused()
    page.keyboard.press("Enter")
    expect(passed_to).to_be_focused()
    page.keyboard.type("North West Regional")
    expect(passed_to).to_have_value("ROCU-NW")
    type_into(page, page.get_by_label("Which tasking forum set the priority?"), "GMP SOC tasking")
    type_into(page, page.get_by_label("Arrests"), "2")
    choose(page, "attribution", "direct")
    tick(page, "Pursue")
    choose(page, "intelligence_feedback.usefulness", "4")
    choose(page, "intelligence_feedback.accuracy", "partly_confirmed")
    choose(page, "intelligence_feedback.timeliness", "timely")
    type_into(page, page.get_by_label("Your name"), "Sam Patel")
    press_button(page, page.get_by_role("button", name="Continue"))

    expect(page.locator("h1")).to_have_text("Check your answers before sending your return")
    rows = page.locator(".govuk-summary-list__row")
    expect(rows.filter(has_text="Passed to")).to_contain_text("North West Regional Organised Crime Unit (TITAN)")
    expect(rows.filter(has_text="Arrests")).to_contain_text("2")
    assert markings(page) and len(markings(page)) == 2
    check_accessibility(page, "the check page")
    screenshot(page, shots, "form-3-check-answers")
    assert outcomes_of(outcomes_client, token, return_id) == []

    # Change: back to the field, as filled in.
    press_button(page, page.get_by_role("button", name="Change arrests"))
    expect(page.locator("h1")).to_contain_text("Outcome return for NCLCC-")
    assert page.url.endswith("#results-arrests")
    expect(page.get_by_label("Arrests")).to_have_value("2")
    expect(passed_to).to_have_value("ROCU-NW")
    type_into(page, page.get_by_label("Arrests"), "3")
    page.keyboard.press("Enter")  # from a text box, Enter sends the form (Continue)
    expect(page.locator("h1")).to_have_text("Check your answers before sending your return")
    expect(rows.filter(has_text="Arrests")).to_contain_text("3")

    press_button(page, page.get_by_role("button", name="Send return"))
    page.wait_for_url("**/done")
    expect(page.locator(".govuk-panel--confirmation")).to_contain_text("Outcome return filed")
    expect(page.locator("main")).to_contain_text("use the same link to send the final return")
    check_accessibility(page, "the confirmation (interim)")
    screenshot(page, shots, "form-4-sent-interim", full_page=False)
    [interim] = outcomes_of(outcomes_client, token, return_id)
    assert (interim["status"], interim["passed_to"], interim["results"]["arrests"]) == ("interim", "ROCU-NW", 3)
    assert interim["actions"] == ["enforcement", "passed_on"]

    # Refreshing the confirmation files nothing more (Send return answered with a redirect).
    # Back to the check page would need the browser's "Confirm form resubmission" (the page is
    # not stored); that resend is filed once too (test_form.py sends the same answers again).
    page.reload()
    expect(page.locator(".govuk-panel--confirmation")).to_contain_text("Outcome return filed")
    assert len(outcomes_of(outcomes_client, token, return_id)) == 1

    # Later: the final return, from the same link.
    page.goto(url)
    expect(page.locator("main")).to_contain_text("You are amending version 1")
    expect(passed_to).to_be_visible()
    choose(page, "status", "final")
    type_into(page, page.get_by_label("Charges"), "2")
    type_into(page, page.get_by_label("Cash seized, in pounds"), "4,500")
    type_into(page, page.get_by_label("Your name"), "Sam Patel")
    type_into(page, page.get_by_label("Your role or e-mail"), "sam.patel@gmp.police.invalid")
    press_button(page, page.get_by_role("button", name="Continue"))
    expect(page.locator("h1")).to_have_text("Check your answers before sending your return")
    expect(page.locator("main")).to_contain_text("This will be version 2 of your return")
    expect(rows.filter(has_text="Cash seized")).to_contain_text("£4,500")
    press_button(page, page.get_by_role("button", name="Send return"))
    page.wait_for_url("**/done")
    expect(page.locator("main")).to_contain_text("you will not be sent any more reminders")
    screenshot(page, shots, "form-5-sent-final", full_page=False)

    interim, final = outcomes_of(outcomes_client, token, return_id)
    assert (final["version"], final["status"], final["filed_via"]) == (2, "final", "form")
    assert final["results"] == {**interim["results"], "charges": 2, "cash_seized_gbp": 4500}
    assert final["filed_by"] == "Sam Patel (sam.patel@gmp.police.invalid)"


def test_without_javascript_every_question_is_shown_and_the_form_works(
    browser, page_without_js, form, outcomes_client, token, shots
):
    page = page_without_js
    return_id, url = form
    page.goto(url)
    assert page.evaluate("document.body.className") == "govuk-template__body"  # no script ran
    # Nothing is hidden: the questions asked only with an action are shown under it.
    expect(page.get_by_label("Who did you pass it to?")).to_be_visible()
    expect(page.get_by_label("Why was no action taken?")).to_be_visible()
    check_accessibility_without_js(browser, page, "the form without JavaScript")
    actions_group = page.locator("#actions").locator("xpath=ancestor::div[contains(@class, 'govuk-form-group')][1]")
    actions_group.screenshot(path=str(shots / "form-6-without-javascript.png"))

    page.get_by_label("Final", exact=True).check()
    page.get_by_label("No action", exact=True).check()
    page.get_by_label("Enforcement").check()
    page.get_by_label("Who did you pass it to?").select_option("MPS")  # ignored: not passed on
    page.get_by_label("Not prioritised").check()
    page.get_by_label("Arrests").fill("1")
    page.get_by_role("button", name="Continue").click()

    summary = page.locator(".govuk-error-summary")
    hrefs = summary.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert hrefs == [
        "#actions",
        "#no-action-reason",
        "#attribution",
        "#intelligence-feedback-usefulness",
        "#intelligence-feedback-accuracy",
        "#intelligence-feedback-timeliness",
        "#filer-name",
        "#filer-role",
    ]

    page.get_by_label("Enforcement").uncheck()
    page.get_by_label("Why was no action taken?").fill("Subject already remanded for other offences.")
    page.get_by_label("Arrests").fill("")
    page.get_by_label("3", exact=True).check()
    page.get_by_label("Not confirmed", exact=True).check()
    page.get_by_label("Too late to be useful").check()
    page.get_by_label("Your name").fill("Sam Patel")
    page.get_by_label("Your role or e-mail").fill("DS, Organised Crime Unit")
    page.get_by_role("button", name="Continue").click()

    expect(page.locator("h1")).to_have_text("Check your answers before sending your return")
    check_accessibility_without_js(browser, page, "the check page, without JavaScript")
    page.get_by_role("button", name="Change why no action was taken").click()
    assert page.url.endswith("#no-action-reason")
    expect(page.get_by_label("Why was no action taken?")).to_have_value("Subject already remanded for other offences.")
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Send return").click()
    page.wait_for_url("**/done")

    [outcome] = outcomes_of(outcomes_client, token, return_id)
    assert outcome["actions"] == ["no_action"] and outcome["passed_to"] is None
    assert outcome["no_action_reason"] == "Subject already remanded for other offences."


def test_every_field_has_a_label_and_nothing_else_is_loaded(page, form, server):
    _return_id, url = form
    page.goto(url)
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
        .filter(el => el.type !== 'hidden' && el.labels.length === 0)
        .map(el => el.id || el.name)""")
    assert unlabelled == []
    count = page.evaluate("document.querySelectorAll('input:not([type=hidden]), select, textarea').length")
    assert count > 30
    outside_fieldsets = page.evaluate("""() => [...document.querySelectorAll('input[type=radio], input[type=checkbox]')]
        .filter(el => !el.closest('fieldset') || !el.closest('fieldset').querySelector('legend'))
        .map(el => el.id)""")
    assert outside_fieldsets == []
    scripts = page.locator("script").evaluate_all("scripts => scripts.map(s => s.getAttribute('src'))")
    assert scripts == ["/form-assets/form.js"]
    assert page.locator("meta[name=robots]").get_attribute("content") == "noindex"
    assert page.requests and all(u.startswith(server.url + "/") for u in page.requests), page.requests
    assert not any("/assets/" in u for u in page.requests)
    assert page.evaluate("getComputedStyle(document.querySelector('h1')).fontFamily") == "arial, sans-serif"


def test_the_pages_for_links_that_do_not_work_are_accessible(page, form, server, shots):
    _return_id, url = form
    page.goto(url[:-6] + ("A" if url[-6] != "A" else "B") + url[-5:])
    expect(page.locator("h1")).to_have_text("This link does not work")
    assert markings(page) == []  # no package named, so no marking to show
    check_accessibility(page, "the page for a link that does not work")


def test_an_amendment_after_the_api_shows_what_was_filed(page, form, outcomes_client, token):
    return_id, url = form
    filed = outcomes_client.post(
        f"/api/v1/returns/{return_id}/outcomes",
        json=outcome_body(actions=["passed_on"], passed_to="MPS", results={}, attribution=None),
        headers=token("GMP", "recipient"),
    )
    assert filed.status_code == 201, filed.get_json()
    page.goto(url)
    expect(page.get_by_label("Passed it to another organisation")).to_be_checked()
    expect(page.locator("#passed-to")).to_be_visible()
    expect(page.locator("#passed-to")).to_have_value("MPS")
    expect(page.locator("#no-action-reason")).to_be_hidden()
