"""The recipient web form through Flask's test client: the signed link, CSRF, validation,
filing and amending, and the pages for links that do not work."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from itsdangerous import TimestampSigner

from services.outcomes.schemas import OutcomeInputSchema
from shared import form_links as links
from shared.vocabulary import RESULT_FIELDS
from tests.outcomes.form_helpers import (
    csrf_token_of,
    error_links,
    file_through_form,
    form_data,
    form_path,
    hidden_value,
    is_check_page,
    outcomes_of,
    page_text,
    send,
)
from tests.outcomes.helpers import issued_returns, outcome_body


@pytest.fixture
def gmp_return(client, token, pump_events) -> str:
    return issued_returns(client, token, pump_events, recipients=("GMP", "MPS"))["GMP"]


def test_the_form_shows_the_package_and_asks_every_question(outcomes_client, token, gmp_return):
    response = outcomes_client.get(form_path(outcomes_client, token, gmp_return))
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    text = page_text(response)
    for shown in (
        "NCLCC-",
        "County line 'Dex' supplying Wigan",
        "County lines",
        "OFFICIAL-SENSITIVE",
        "Greater Manchester Police",
        "Return due",
        "Not filed yet",
        "Versions filed",
    ):
        assert shown in text, shown
    assert "amending" not in text
    body = response.get_data(as_text=True)
    names = set(re.findall(r'name="([^"]+)"', body))
    schema = OutcomeInputSchema()
    for name, field in schema.fields.items():
        nested = getattr(field, "schema", None)
        if nested is not None:
            assert {f"{name}.{sub}" for sub in nested.fields} <= names, name
        else:
            assert name in names, name
    assert {f"results.{name}" for name in RESULT_FIELDS} <= names
    assert {"filer_name", "filer_role", "csrf_token"} <= names
    # Passed to: the other active organisations by name, not the recipient's own nor any holder.
    options = re.findall(r'<option value="([A-Z-]*)"', body)
    assert options[0] == "" and "ROCU-NW" in options  # a force or unit that does not hold it
    assert "GMP" not in options and "MPS" not in options and "NCLCC" not in options  # its holders, and the centre
    assert '<meta name="robots" content="noindex">' in body
    # One script, the form's own, from this service (the CSP allows no other); no GOV.UK font.
    assert re.findall(r"<script[^>]*>", body) == ['<script src="/form-assets/form.js">']
    assert "script-src 'self';" in response.headers["Content-Security-Policy"]
    assert "GDS Transport" not in body
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    # The package's protective marking, at the top and at the bottom of the page.
    markings = re.findall(r'<p class="app-marking">(.*?)</p>', body)
    assert len(markings) == 2 and all(m.endswith("OFFICIAL-SENSITIVE") for m in markings), markings
    assert body.index("app-marking") < body.index("<main") < body.rindex("app-marking")
    # The answers asked only with an action are revealed under its box.
    for controller, revealed in (("actions-passed-on", "passed-to"), ("actions-no-action", "no-action-reason")):
        conditional = re.search(rf'<div class="[^"]*" id="conditional-{controller}">.*?</div>\s*</div>', body, re.S)
        assert conditional and f'id="{revealed}"' in conditional.group(0), controller
        assert f'data-aria-controls="conditional-{controller}"' in body


def test_the_form_is_not_in_the_api_document_and_its_css_is_unbranded(outcomes_client):
    paths = outcomes_client.get("/openapi.json").get_json()["paths"]
    assert not [p for p in paths if p.startswith("/form")]
    css = outcomes_client.get("/form-assets/govuk/govuk-frontend.min.css")
    assert css.status_code == 200
    content = css.get_data(as_text=True)
    assert "govuk-error-summary" in content
    assert "GDS Transport" not in content and "@font-face" not in content and "/assets/" not in content
    script = outcomes_client.get("/form-assets/form.js")
    assert script.status_code == 200 and script.mimetype == "text/javascript"
    assert "govuk-frontend-supported" in script.get_data(as_text=True)


def test_opening_the_form_is_audited_against_the_return(outcomes_client, token, gmp_return):
    outcomes_client.get(form_path(outcomes_client, token, gmp_return))
    entries = outcomes_client.get(
        f"/api/v1/audit?target_id={gmp_return}&action=GET%20/form/<token>", headers=token(roles="admin")
    ).get_json()
    assert len(entries) == 1
    assert entries[0]["target_type"] == "return" and entries[0]["outcome"] == "allowed"
    assert entries[0]["detail"] == "web form"
    # The link's token is a credential: the audit log keeps the route, never the token.
    token_in_link = form_path(outcomes_client, token, gmp_return).rsplit("/", 1)[-1]
    assert entries[0]["path"] == "/form/<token>" and token_in_link not in str(entries)


def test_a_tampered_link_is_not_found(outcomes_client, token, gmp_return):
    path = form_path(outcomes_client, token, gmp_return)
    # One character of the signature changed (not the last: its low bits are only padding).
    tampered = path[:-5] + ("A" if path[-5] != "A" else "B") + path[-4:]
    response = outcomes_client.get(tampered)
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    text = page_text(response)
    assert "This link does not work" in text and "ask the NCLCC for a new link" in text
    assert response.headers["Cache-Control"] == "no-store"
    assert outcomes_client.post(tampered, data={}).status_code == 400  # CSRF is checked first


def test_a_link_to_a_return_that_does_not_exist_is_not_found(outcomes_app, outcomes_client):
    settings = outcomes_app.extensions["settings"]
    response = outcomes_client.get(f"/form/{links.form_token(settings, uuid.uuid4())}")
    assert response.status_code == 404
    assert "This link does not work" in page_text(response)


def test_an_expired_link_says_so(outcomes_app, outcomes_client, gmp_return, monkeypatch):
    settings = outcomes_app.extensions["settings"]
    issued_long_ago = int(time.time()) - links.FORM_LINK_SECONDS - 60
    with monkeypatch.context() as patch:
        patch.setattr(TimestampSigner, "get_timestamp", lambda self: issued_long_ago)
        old_token = links.form_token(settings, uuid.UUID(gmp_return))
    response = outcomes_client.get(f"/form/{old_token}")
    assert response.status_code == 410
    text = page_text(response)
    assert "This link has expired" in text and "Ask the NCLCC for a new link" in text


def test_a_post_without_the_csrf_token_files_nothing(outcomes_client, token, gmp_return):
    path = form_path(outcomes_client, token, gmp_return)
    csrf = csrf_token_of(outcomes_client.get(path))
    check_page = outcomes_client.post(path, data=form_data(csrf))
    assert is_check_page(check_page)
    answers = hidden_value(check_page, "answers")
    for step, data in (
        (path, form_data(csrf=...)),
        (path, form_data(csrf="not-the-token")),
        (f"{path}/send", {"answers": answers}),
        (f"{path}/send", {"answers": answers, "csrf_token": "not-the-token"}),
        (f"{path}/change", {"answers": answers}),
    ):
        response = outcomes_client.post(step, data=data)
        assert response.status_code == 400, step
        assert response.mimetype == "text/html"
        assert "Your session expired or the form was sent from elsewhere; reload the page" in page_text(response)
    assert outcomes_of(outcomes_client, token, gmp_return) == []


def test_the_token_authenticated_api_needs_no_csrf_token(outcomes_client, token, gmp_return):
    response = outcomes_client.post(
        f"/api/v1/returns/{gmp_return}/outcomes", json=outcome_body(), headers=token("GMP", "recipient")
    )
    assert response.status_code == 201, response.get_json()


def test_filing_through_the_form_checks_the_answers_first(outcomes_client, token, gmp_return):
    path = form_path(outcomes_client, token, gmp_return)
    csrf = csrf_token_of(outcomes_client.get(path))
    check_page = outcomes_client.post(path, data=form_data(csrf, comments="Warrant executed on day 3.\nTwo held."))
    assert is_check_page(check_page)
    assert check_page.headers["Cache-Control"] == "no-store"
    assert outcomes_of(outcomes_client, token, gmp_return) == [], "nothing is filed before Send return"

    body = check_page.get_data(as_text=True)
    text = page_text(check_page)
    rows = dict(
        (key, page_text_of(value))
        for key, value in re.findall(
            r'<dt class="govuk-summary-list__key">(.*?)</dt>\s*<dd class="govuk-summary-list__value">(.*?)</dd>',
            body,
            re.S,
        )
    )
    assert rows == {
        "Type of return": "Final",
        "What you did": "Enforcement Safeguarding",
        "Priority": "High",
        "Tasking forum": "GMP SOC tasking",
        "Arrests": "3",
        "People safeguarded": "2",
        "Of those, children safeguarded": "1",
        "Drugs seized, in grams": "120.5 g",
        "Cash seized, in pounds": "£4,500",
        "Came from this intelligence": "Directly",
        "The 4 Ps it served": "Pursue Protect",
        "Usefulness": "4 out of 5",
        "Accuracy": "Confirmed",
        "Timeliness": "Late, but still useful",
        "Comments": "Warrant executed on day 3. Two held.",
        "Your name": "Sam Patel",
        "Your role or e-mail": "DS, Organised Crime Unit",
    }
    # Each answer has its Change link back to its field (a button: the answers go with it).
    changes = re.findall(r'formaction="[^"]*/change#([^"]+)"', body)
    assert len(changes) == len(rows) and {"status", "results-arrests", "filer-role", "comments"} <= set(changes)
    assert "Change the 4 Ps it served" in text and "Change your role or e-mail" in text
    assert len(re.findall(r'<p class="app-marking">', body)) == 2
    assert "Send return" in text

    response = send(outcomes_client, path, check_page)
    assert response.status_code == 303
    assert response.headers["Location"] == f"{path}/done"

    done = outcomes_client.get(f"{path}/done")
    assert done.status_code == 200
    text = page_text(done)
    assert "govuk-panel--confirmation" in done.get_data(as_text=True)
    assert "Outcome return filed" in text and "NCLCC-" in text
    assert "Version 1" in text and "Final" in text
    assert f'href="{path}"' in done.get_data(as_text=True)
    assert done.headers["Cache-Control"] == "no-store"
    assert len(re.findall(r'<p class="app-marking">', done.get_data(as_text=True))) == 2

    [outcome] = outcomes_of(outcomes_client, token, gmp_return)
    assert outcome["filed_via"] == "form"
    assert outcome["filed_by"] == "Sam Patel (DS, Organised Crime Unit)"
    assert outcome["status"] == "final"
    assert outcome["actions"] == ["enforcement", "safeguarding"]
    assert outcome["strands"] == ["pursue", "protect"]
    assert outcome["results"]["arrests"] == 3
    assert outcome["results"]["cash_seized_gbp"] == 4500
    assert outcome["results"]["drugs_seized_grams"] == 120.5
    assert outcome["results"]["charges"] == 0
    assert outcome["intelligence_feedback"] == {
        "usefulness": 4,
        "accuracy": "confirmed",
        "timeliness": "late_but_useful",
    }
    assert outcome["comments"] == "Warrant executed on day 3.\nTwo held."

    state = outcomes_client.get(f"/api/v1/returns/{gmp_return}", headers=token("GMP", "recipient")).get_json()
    assert state["status"] == "returned"


def page_text_of(fragment: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment)).strip().replace("&amp;", "&")


def test_change_goes_back_to_the_form_as_it_was_filled_in(outcomes_client, token, gmp_return):
    path = form_path(outcomes_client, token, gmp_return)
    csrf = csrf_token_of(outcomes_client.get(path))
    check_page = outcomes_client.post(path, data=form_data(csrf, **{"results.cash_seized_gbp": "£4,500"}))
    data = {"csrf_token": csrf, "answers": hidden_value(check_page, "answers")}
    form = outcomes_client.post(f"{path}/change", data=data)
    assert form.status_code == 200
    body = form.get_data(as_text=True)
    # As typed, not as read: "£4,500" stays "£4,500".
    assert re.search(r'name="results.cash_seized_gbp" type="text" value="£4,500"', body)
    assert re.search(r'name="actions" type="checkbox" value="safeguarding" checked', body)
    assert re.search(r'name="filer_name" type="text" value="Sam Patel"', body)
    assert 'name="based_on" value="0"' in body
    changed = outcomes_client.post(path, data=form_data(csrf, **{"results.arrests": "5"}))
    assert is_check_page(changed)
    assert send(outcomes_client, path, changed).status_code == 303
    [outcome] = outcomes_of(outcomes_client, token, gmp_return)
    assert outcome["results"]["arrests"] == 5


def test_answers_altered_on_the_way_file_nothing(outcomes_client, token, gmp_return, client, pump_events):
    path = form_path(outcomes_client, token, gmp_return)
    csrf = csrf_token_of(outcomes_client.get(path))
    answers = hidden_value(outcomes_client.post(path, data=form_data(csrf)), "answers")
    other_return = issued_returns(client, token, pump_events, recipients=("GMP",))["GMP"]
    other_path = form_path(outcomes_client, token, other_return)
    for step, sealed in (
        (f"{path}/send", answers[:-3] + ("AAA" if not answers.endswith("AAA") else "BBB")),
        (f"{path}/send", ""),
        (f"{other_path}/send", answers),  # answers for another return
        (f"{other_path}/change", answers),
    ):
        response = outcomes_client.post(step, data={"csrf_token": csrf, "answers": sealed})
        assert response.status_code == 400, step
        assert "Nothing has been filed" in page_text(response)
    assert outcomes_of(outcomes_client, token, gmp_return) == []
    assert outcomes_of(outcomes_client, token, other_return) == []


def test_sending_the_same_answers_twice_files_once(outcomes_client, token, gmp_return):
    """A double click on Send return, or Back from the confirmation and Send again."""
    path = form_path(outcomes_client, token, gmp_return)
    csrf = csrf_token_of(outcomes_client.get(path))
    check_page = outcomes_client.post(path, data=form_data(csrf))
    assert send(outcomes_client, path, check_page).status_code == 303
    again = send(outcomes_client, path, check_page)
    assert again.status_code == 303 and again.headers["Location"].endswith("/done")
    # Back to the form from the old check page, Continue unchanged, Send: still the same return.
    data = {"csrf_token": csrf, "answers": hidden_value(check_page, "answers")}
    form = outcomes_client.post(f"{path}/change", data=data)
    resent = outcomes_client.post(path, data=form_data(csrf, based_on=hidden_value(form, "based_on")))
    assert send(outcomes_client, path, resent).status_code == 303
    assert len(outcomes_of(outcomes_client, token, gmp_return)) == 1
    # The same answers from a form that showed version 1 are a deliberate new version.
    fresh = outcomes_client.get(path)
    assert hidden_value(fresh, "based_on") == "1"
    assert file_through_form(outcomes_client, path, based_on="1").status_code == 303
    assert len(outcomes_of(outcomes_client, token, gmp_return)) == 2


def test_filing_again_amends_and_the_form_is_prefilled(outcomes_client, token, gmp_return):
    filed = outcomes_client.post(
        f"/api/v1/returns/{gmp_return}/outcomes", json=outcome_body(), headers=token("GMP", "recipient")
    )
    assert filed.status_code == 201
    path = form_path(outcomes_client, token, gmp_return)
    page = outcomes_client.get(path)
    body = page.get_data(as_text=True)
    assert "You are amending version 1; the earlier versions are kept" in page_text(page)
    assert re.search(r'id="status" name="status" type="radio" value="interim" checked', body)
    assert re.search(r'name="actions" type="checkbox" value="safeguarding" checked', body)
    assert re.search(r'name="results.arrests" type="text" value="3"', body)
    assert re.search(r'name="results.cash_seized_gbp" type="text" value="4500"', body)
    assert re.search(r'name="results.weapons_seized" type="text" value=""', body)
    assert re.search(r'name="filer_name" type="text" value=""', body)

    check_page = outcomes_client.post(path, data=form_data(csrf_token_of(page), status="interim", based_on="1"))
    assert "This will be version 2 of your return" in page_text(check_page)
    assert send(outcomes_client, path, check_page).status_code == 303
    first, second = outcomes_of(outcomes_client, token, gmp_return)
    assert (first["filed_via"], second["filed_via"], second["version"]) == ("api", "form", 2)
    done = page_text(outcomes_client.get(f"{path}/done"))
    assert "Version 2" in done and "Interim" in done


def test_an_empty_form_lists_every_problem_and_keeps_what_was_typed(outcomes_client, token, gmp_return):
    path = form_path(outcomes_client, token, gmp_return)
    csrf = csrf_token_of(outcomes_client.get(path))
    response = outcomes_client.post(
        path,
        data={
            "csrf_token": csrf,
            "results.arrests": "2",
            "results.weapons_seized": "two",
            "results.charges": "1.5",
            "comments": "Typed <b>this</b>",
            "strands": ["prevent"],
        },
    )
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert re.search(r"<title>\s*Error: ", body)
    assert "There is a problem" in body
    assert error_links(response) == [
        "status",
        "actions",
        "priority",
        "results-charges",
        "results-weapons-seized",
        "attribution",
        "intelligence-feedback-usefulness",
        "intelligence-feedback-accuracy",
        "intelligence-feedback-timeliness",
        "filer-name",
        "filer-role",
    ]
    text = page_text(response)
    assert "Enter weapons seized as a number, like 3" in text
    assert "Charges must be a whole number" in text
    assert "Select whether the results came directly from this intelligence" in text
    assert "Enter your name" in text and "Enter your role or work e-mail address" in text
    for field_id in error_links(response):
        assert f'id="{field_id}"' in body
        assert f'id="{field_id}-error"' in body
        # The field (or its fieldset) is described by its error message.
        described = re.search(rf'aria-describedby="([^"]*\b{field_id}-error\b[^"]*)"', body)
        assert described, field_id
    assert body.count("govuk-form-group--error") == 11
    assert 'value="two"' in body and 'value="2"' in body and 'value="1.5"' in body
    assert "Typed &lt;b&gt;this&lt;/b&gt;" in body
    assert re.search(r'name="strands" type="checkbox" value="prevent" checked', body)
    assert outcomes_of(outcomes_client, token, gmp_return) == []


@pytest.mark.parametrize(
    ("changes", "field_id", "message"),
    [
        (
            {"results.children_safeguarded": "3"},
            "results-children-safeguarded",
            "Children safeguarded cannot be more than people safeguarded",
        ),
        ({"results.arrests": "-1"}, "results-arrests", "Arrests must be between 0 and 100,000"),
        ({"actions": ["passed_on"]}, "passed-to", "Select the organisation you passed it to"),
        ({"actions": ["passed_on"], "passed_to": "GMP"}, "passed-to", "Pass it to an organisation other than your own"),
        (
            {"actions": ["no_action", "enforcement"], "no_action_reason": "None possible."},
            "actions",
            "Select ‘No action’ on its own, or untick it",
        ),
        ({"actions": ["no_action"]}, "no-action-reason", "Enter why no action was taken"),
        ({"tasking_forum": ""}, "tasking-forum", "Enter the tasking forum that set the priority"),
        (
            {"intelligence_feedback.usefulness": "9"},
            "intelligence-feedback-usefulness",
            "Select how useful the intelligence was",
        ),
        ({"filer_role": "x" * 96}, "filer-role", "Your role or e-mail must be 95 characters or fewer"),
    ],
)
def test_each_rule_is_explained_next_to_its_field(outcomes_client, token, gmp_return, changes, field_id, message):
    path = form_path(outcomes_client, token, gmp_return)
    csrf = csrf_token_of(outcomes_client.get(path))
    response = outcomes_client.post(path, data=form_data(csrf, **changes))
    assert response.status_code == 422
    assert error_links(response) == [field_id]
    assert message in page_text(response)
    assert outcomes_of(outcomes_client, token, gmp_return) == []


def test_passing_it_on_names_the_organisation(outcomes_client, token, gmp_return):
    path = form_path(outcomes_client, token, gmp_return)
    response = file_through_form(
        outcomes_client,
        path,
        actions=["passed_on"],
        passed_to="ROCU-NW",  # MPS holds the package already: it could not be passed to MPS
        attribution=...,
        **{f"results.{name}": "" for name in RESULT_FIELDS},
    )
    assert response.status_code == 303
    [outcome] = outcomes_of(outcomes_client, token, gmp_return)
    assert outcome["passed_to"] == "ROCU-NW" and outcome["attribution"] is None
    assert set(outcome["results"].values()) == {0}


def test_an_answer_to_a_question_not_asked_is_left_out(outcomes_client, token, gmp_return):
    """With JavaScript the revealed questions hide again when their box is unticked, but what was
    typed in them is still sent: it is not read (nor refused), as the API does with it."""
    path = form_path(outcomes_client, token, gmp_return)
    response = file_through_form(outcomes_client, path, no_action_reason="x" * 5000, passed_to="NOT-AN-ORG-AT-ALL")
    assert response.status_code == 303
    [outcome] = outcomes_of(outcomes_client, token, gmp_return)
    assert outcome["no_action_reason"] is None and outcome["passed_to"] is None


def test_after_a_final_return_an_amendment_must_be_final(outcomes_client, token, gmp_return):
    path = form_path(outcomes_client, token, gmp_return)
    assert file_through_form(outcomes_client, path).status_code == 303
    page = outcomes_client.get(path)
    assert "a correction must be final too" in page_text(page)
    response = outcomes_client.post(path, data=form_data(csrf_token_of(page), status="interim"))
    assert response.status_code == 422
    assert error_links(response) == ["status"]
    assert len(outcomes_of(outcomes_client, token, gmp_return)) == 1


def test_answers_are_checked_again_when_sent(outcomes_client, token, gmp_return):
    """A final return filed by someone else while this interim one sat on its check page: Send
    return shows the form again with the problem, and files nothing."""
    path = form_path(outcomes_client, token, gmp_return)
    csrf = csrf_token_of(outcomes_client.get(path))
    check_page = outcomes_client.post(path, data=form_data(csrf, status="interim"))
    assert is_check_page(check_page)
    filed = outcomes_client.post(
        f"/api/v1/returns/{gmp_return}/outcomes", json=outcome_body(status="final"), headers=token("GMP", "recipient")
    )
    assert filed.status_code == 201
    response = send(outcomes_client, path, check_page)
    assert response.status_code == 422
    assert error_links(response) == ["status"]
    assert "an amendment must be final too" in page_text(response)
    assert re.search(r'name="filer_name" type="text" value="Sam Patel"', response.get_data(as_text=True))
    assert len(outcomes_of(outcomes_client, token, gmp_return)) == 1


def test_a_withdrawn_package_needs_no_return(client, outcomes_client, token, gmp_return, pump_events):
    path = form_path(outcomes_client, token, gmp_return)
    csrf = csrf_token_of(outcomes_client.get(path))
    check_page = outcomes_client.post(path, data=form_data(csrf))
    package_id = outcomes_client.get(f"/api/v1/returns/{gmp_return}", headers=token("GMP", "recipient")).get_json()[
        "package_id"
    ]
    withdrawn = client.post(
        f"/api/v1/packages/{package_id}/withdraw", json={"reason": "Source compromised."}, headers=token()
    )
    assert withdrawn.status_code == 200
    pump_events()

    for response in (
        outcomes_client.get(path),
        outcomes_client.post(path, data=form_data(csrf)),
        send(outcomes_client, path, check_page),
        outcomes_client.get(f"{path}/done"),
    ):
        assert response.status_code == 409
        text = page_text(response)
        assert "was withdrawn" in text and "no outcome return is needed" in text
    assert outcomes_of(outcomes_client, token, gmp_return) == []


def test_over_https_the_form_works_without_a_referer(outcomes_client, token, gmp_return):
    """The pages send no Referer (Referrer-Policy: no-referrer), so Flask-WTF's HTTPS Referer
    check must be off, or every real submission would be refused."""
    path = form_path(outcomes_client, token, gmp_return)
    base = "https://outcomes.example.invalid"
    csrf = csrf_token_of(outcomes_client.get(path, base_url=base))
    check_page = outcomes_client.post(path, data=form_data(csrf), base_url=base)
    assert is_check_page(check_page)
    assert send(outcomes_client, path, check_page, base_url=base).status_code == 303
    assert len(outcomes_of(outcomes_client, token, gmp_return)) == 1


def test_the_confirmation_page_before_any_filing_goes_to_the_form(outcomes_client, token, gmp_return):
    path = form_path(outcomes_client, token, gmp_return)
    response = outcomes_client.get(f"{path}/done")
    assert response.status_code == 303 and response.headers["Location"] == path


# Combined invalid answers: (changes to a valid return, every field the first answer must name,
# the corrections a person would make to exactly those fields). Once corrected, the return is
# accepted: no second round of problems appears.
ONE_ROUND = [
    (
        {
            "status": ...,
            "actions": ...,
            "priority": ...,
            "tasking_forum": ...,
            "attribution": ...,
            "intelligence_feedback.usefulness": ...,
            "results.arrests": "two",
            "results.charges": "1.5",
            "filer_name": "",
        },
        ["status", "actions", "priority", "results-arrests", "results-charges", "attribution"]
        + ["intelligence-feedback-usefulness", "filer-name"],
        {
            "status": "interim",
            "actions": ["enforcement"],
            "priority": "not_prioritised",
            "attribution": "contributed",
            "intelligence_feedback.usefulness": "3",
            "results.arrests": "2",
            "results.charges": "1",
            "filer_name": "Sam Patel",
        },
    ),
    (
        {
            "results.arrests": "-1",
            "results.people_safeguarded": "2",
            "results.children_safeguarded": "3",
            "attribution": ...,
            "tasking_forum": "",
        },
        ["tasking-forum", "results-arrests", "results-children-safeguarded", "attribution"],
        {
            "tasking_forum": "GMP SOC tasking",
            "results.arrests": "1",
            "results.children_safeguarded": "2",
            "attribution": "direct",
        },
    ),
    (
        {"actions": ["passed_on", "no_action"], "passed_to": "", "no_action_reason": ""},
        ["actions", "passed-to", "no-action-reason"],
        {"actions": ["passed_on"], "passed_to": "ROCU-NW"},
    ),
    (
        {
            "actions": ["passed_on"],
            "passed_to": "GMP",
            "intelligence_feedback.accuracy": "maybe",
            "filer_name": "x" * 101,
            "comments": "x" * 10001,
        },
        ["passed-to", "intelligence-feedback-accuracy", "comments", "filer-name"],
        {
            "passed_to": "ROCU-NW",
            "intelligence_feedback.accuracy": "false",
            "filer_name": "Sam Patel",
            "comments": "Shorter.",
        },
    ),
    (
        {
            "actions": ["no_action"],
            "no_action_reason": "x" * 4001,
            "results.weapons_seized": "a few",
            "attribution": ...,
            "tasking_forum": "x" * 201,
        },
        ["no-action-reason", "tasking-forum", "results-weapons-seized", "attribution"],
        {
            "no_action_reason": "Already in custody.",
            "tasking_forum": "GMP SOC tasking",
            "results.weapons_seized": "",
            "attribution": "direct",
        },
    ),
]


def test_every_problem_is_shown_in_one_round(outcomes_client, token, gmp_return):
    path = form_path(outcomes_client, token, gmp_return)
    csrf = csrf_token_of(outcomes_client.get(path))
    for number, (changes, expected_links, corrections) in enumerate(ONE_ROUND):
        first = outcomes_client.post(path, data=form_data(csrf, **changes))
        assert first.status_code == 422, number
        assert error_links(first) == expected_links, number
        body = first.get_data(as_text=True)
        for link in expected_links:
            # Each problem beside its field too, and read out with it.
            assert f'id="{link}-error"' in body, (number, link)
            assert re.search(rf'aria-describedby="[^"]*\b{link}-error\b', body), (number, link)
        corrected = outcomes_client.post(path, data=form_data(csrf, **{**changes, **corrections}))
        assert is_check_page(corrected), (number, error_links(corrected) if corrected.status_code == 422 else "")
    assert outcomes_of(outcomes_client, token, gmp_return) == []
