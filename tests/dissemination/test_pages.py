"""The recipients' pages: /inbox, /disseminations/<id>, acknowledging, going on to the return form,
the development sign-in, scoping as the API's, and the audit of every page read and refusal."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest

from tests.dissemination.helpers import issue_package
from tests.dissemination.page_helpers import (
    audit_rows,
    csrf_token,
    dissemination_id,
    location,
    raw,
    sign_in,
    text,
)


@pytest.fixture
def sent(client, token):
    """A package issued to GMP and MPS, with handling conditions; GMP's dissemination id."""
    package = issue_package(
        client,
        token(),
        handling_code="C",
        handling_conditions="Not to be shared outside policing without the NCLCC's agreement.",
    )
    return package, dissemination_id(client, token, package["reference"])


def test_without_a_session_a_page_sends_you_to_sign_in_and_back(app, client, token, sent):
    _, gmp = sent
    response = client.get(f"/disseminations/{gmp}")
    assert response.status_code == 303
    assert location(response) == f"/sign-in?next=/disseminations/{gmp}"
    page = text(client.get(location(response)))
    assert "Development sign-in" in page and f'value="/disseminations/{gmp}"' in page
    signed_in = sign_in(client, raw(token("GMP", "recipient")), next_path=f"/disseminations/{gmp}")
    assert signed_in.status_code == 303 and location(signed_in) == f"/disseminations/{gmp}"
    refused = next(r for r in audit_rows(app) if r.action == "GET /disseminations/<uuid:dissemination_id>")
    assert (refused.status_code, refused.outcome, refused.detail) == (303, "refused", "refused: not signed in")


def test_next_goes_only_to_these_pages(app, token):
    for hostile in ("https://evil.example/", "//evil.example", "/\\evil.example", "/api/v1/audit", "javascript:x"):
        response = sign_in(app.test_client(), raw(token("GMP", "recipient")), next_path=hostile)
        assert response.status_code == 303 and location(response) == "/inbox", hostile


def test_the_inbox_lists_the_organisations_packages(client, token, sent):
    package, gmp = sent
    issue_package(client, token(), title="For MPS only", recipients=["MPS"])
    sign_in(client, raw(token("GMP", "recipient")))
    page = text(client.get("/inbox"))
    assert package["reference"] in page and package["title"] in page
    assert "For MPS only" not in page
    assert f'href="/disseminations/{gmp}"' in page
    assert "2BC" in page and "2B: untested source, known indirectly, corroborated" in page
    assert "Not acknowledged" in page and ">None<" in page


def test_the_package_page_says_everything_a_recipient_needs(client, token, sent):
    package, gmp = sent
    sign_in(client, raw(token("GMP", "recipient")))
    response = client.get(f"/disseminations/{gmp}")
    assert response.status_code == 200
    page = text(response)
    assert page.count('class="app-marking"') == 2 and "OFFICIAL-SENSITIVE" in page  # banner top and bottom
    assert package["title"] in page and package["summary"] in page
    assert "2B: untested source, known indirectly, corroborated" in page
    assert "C: Lawful sharing permitted subject to conditions" in page
    assert "Not to be shared outside policing" in page
    assert "(UK time)" in page
    assert 'id="acknowledge"' in page and 'id="file-return"' in page
    assert response.headers["Cache-Control"] == "no-store"
    audited = len(audit_rows(client.application))
    for stylesheet in ("/pages-assets/pages/pages.css", "/pages-assets/govuk/govuk-frontend.min.css"):
        assert client.get(stylesheet).status_code == 200
    assert len(audit_rows(client.application)) == audited  # a stylesheet is no read of anything
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_acknowledging_on_the_page_is_the_apis_acknowledgement(app, client, token, sent):
    _, gmp = sent
    sign_in(client, raw(token("GMP", "recipient", sub="duty.officer@gmp")))
    page = client.get(f"/disseminations/{gmp}").get_data(as_text=True)
    without = client.post(f"/disseminations/{gmp}/acknowledge", data={})
    assert without.status_code == 400
    response = client.post(f"/disseminations/{gmp}/acknowledge", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 303 and location(response) == f"/disseminations/{gmp}?acknowledged=1"
    after = text(client.get(location(response)))
    assert "You acknowledged" in after and 'id="acknowledge"' not in after
    item = client.get(f"/api/v1/disseminations/{gmp}", headers=token("GMP", "recipient")).get_json()
    assert item["acknowledged_at"] and item["acknowledged_by"] == "duty.officer@gmp"
    # The same event as the API's.
    models = app.extensions["service"].models
    session = app.extensions["database"].session()
    try:
        from sqlalchemy import select

        types = session.scalars(select(models.OutboxEvent.type)).all()
    finally:
        session.close()
    assert types.count("dissemination.acknowledged") == 1
    again = client.post(f"/disseminations/{gmp}/acknowledge", data={"csrf_token": csrf_token(page)})
    assert again.status_code == 303  # changes nothing
    rows = [r for r in audit_rows(app) if r.action == "POST /disseminations/<uuid:dissemination_id>/acknowledge"]
    assert [(r.status_code, r.outcome, r.target_id) for r in rows] == [
        (400, "invalid", gmp),
        (303, "allowed", gmp),
        (303, "allowed", gmp),
    ]


def test_file_the_outcome_return_goes_to_the_signed_form_for_this_return(app, client, token, sent):
    from shared.form_links import return_id_from

    _, gmp = sent
    sign_in(client, raw(token("GMP", "recipient")))
    response = client.get(f"/disseminations/{gmp}/return")
    assert response.status_code == 303
    settings = app.extensions["settings"]
    link = location(response)
    assert link.startswith(f"{settings.public_urls['outcomes']}/form/")
    assert str(return_id_from(settings, link.rsplit("/", 1)[1])) == gmp
    row = audit_rows(app)[-1]
    assert (row.target_type, row.target_id, row.detail) == ("dissemination", gmp, "form link minted")
    assert "/form/" not in row.path  # the link is a credential


def test_another_organisations_dissemination_is_404_on_every_page(app, client, token, sent):
    _, gmp = sent
    sign_in(client, raw(token("MPS", "recipient")))
    assert client.get(f"/disseminations/{gmp}").status_code == 404
    assert client.get(f"/disseminations/{gmp}/return").status_code == 404
    page = client.get("/inbox").get_data(as_text=True)
    assert client.post(f"/disseminations/{gmp}/acknowledge", data={"csrf_token": csrf_token(page)}).status_code == 404
    assert client.get(f"/disseminations/{uuid.uuid4()}").status_code == 404
    refusals = [r for r in audit_rows(app) if r.status_code == 404 and r.target_id == gmp]
    assert len(refusals) == 3
    assert all(r.outcome == "refused" and "belongs to GMP, caller is MPS" in r.detail for r in refusals)
    assert all(r.actor_org == "MPS" for r in refusals)


def test_above_clearance_is_404_and_not_in_the_inbox(client, token, sent):
    package, gmp = sent  # OFFICIAL-SENSITIVE
    sign_in(client, raw(token("GMP", "recipient", clearance="OFFICIAL")))
    assert client.get(f"/disseminations/{gmp}").status_code == 404
    assert package["reference"] not in text(client.get("/inbox"))


def test_a_withdrawn_package_shows_as_withdrawn_without_buttons(client, token, sent):
    package, gmp = sent
    client.post(f"/api/v1/packages/{package['id']}/withdraw", json={"reason": "Superseded."}, headers=token())
    sign_in(client, raw(token("GMP", "recipient")))
    page = text(client.get(f"/disseminations/{gmp}"))
    assert "This package was withdrawn" in page and "Superseded." in page
    assert 'id="acknowledge"' not in page and 'id="file-return"' not in page
    assert client.get(f"/disseminations/{gmp}/return").status_code == 409
    inbox = client.get("/inbox").get_data(as_text=True)
    assert client.post(f"/disseminations/{gmp}/acknowledge", data={"csrf_token": csrf_token(inbox)}).status_code == 409
    assert "Withdrawn" in text(client.get("/inbox"))


def test_the_centre_reads_but_cannot_acknowledge_for_a_force(client, token, sent):
    _, gmp = sent
    sign_in(client, raw(token("NCLCC", "issuer,recipient")))
    page = client.get(f"/disseminations/{gmp}")
    assert page.status_code == 200 and 'id="acknowledge"' not in page.get_data(as_text=True)
    csrf = csrf_token(page.get_data(as_text=True))
    assert client.post(f"/disseminations/{gmp}/acknowledge", data={"csrf_token": csrf}).status_code == 403
    assert client.get(f"/disseminations/{gmp}/return").status_code == 403


def test_without_the_recipient_role_you_cannot_sign_in(app, client, token):
    response = sign_in(client, raw(token("GMP", "leader", sub="chief@nclcc")))  # no role the pages take
    assert response.status_code == 403
    assert "does not have the recipient role" in text(response)
    row = audit_rows(app)[-1]
    assert (row.action, row.outcome, row.actor, row.detail) == (
        "POST /sign-in",
        "refused",
        "chief@nclcc",
        "refused: no recipient role (token)",
    )
    assert client.get("/inbox").status_code == 303


def test_a_bad_token_is_refused_with_a_clear_message(app, client, token):
    assert sign_in(client, "").status_code == 422
    response = sign_in(client, "not.a.token")
    assert response.status_code == 401 and "token is not valid" in text(response)
    assert audit_rows(app)[-1].detail.startswith("token refused: ")
    csrf = csrf_token(client.get("/sign-in").get_data(as_text=True))
    assert (
        client.post("/sign-in", data={"csrf_token": "x" + csrf, "token": raw(token("GMP", "recipient"))}).status_code
        == 400
    )


def test_signing_out_ends_the_session(app, client, token):
    sign_in(client, raw(token("GMP", "recipient")))
    page = client.get("/inbox")
    assert page.status_code == 200
    response = client.post("/sign-out", data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert response.status_code == 303 and "reason=signed-out" in location(response)
    assert "You have signed out" in text(client.get(location(response)))
    assert client.get("/inbox").status_code == 303
    rows = audit_rows(app)
    signed_in = next(r for r in rows if r.action == "POST /sign-in")
    signed_out = next(r for r in rows if r.action == "POST /sign-out")
    assert signed_in.target_type == "recipient_session" and signed_out.target_id == signed_in.target_id
    assert signed_out.detail == "signed out"


def test_the_session_ends_at_the_tokens_expiry_or_after_eight_hours(app, client, token, monkeypatch):
    from services.dissemination import pages
    from shared.auth import mint_token

    signed_in_at = time.time()
    monkeypatch.setattr(pages, "now", lambda: signed_in_at)
    short = mint_token(
        app.extensions["settings"], sub="a@gmp", org="GMP", roles=["recipient"], ttl=timedelta(minutes=10)
    )
    sign_in(client, short)
    assert client.get("/inbox").status_code == 200
    monkeypatch.setattr(pages, "now", lambda: signed_in_at + 601)
    response = client.get("/inbox")
    assert response.status_code == 303 and "reason=expired" in location(response)

    monkeypatch.setattr(pages, "now", lambda: signed_in_at)
    sign_in(client, raw(token("GMP", "recipient")))  # a 12-hour token
    monkeypatch.setattr(pages, "now", lambda: signed_in_at + timedelta(hours=7, minutes=59).total_seconds())
    assert client.get("/inbox").status_code == 200
    monkeypatch.setattr(pages, "now", lambda: signed_in_at + timedelta(hours=8, minutes=1).total_seconds())
    assert client.get("/inbox").status_code == 303


def test_the_cookie_holds_only_a_session_id(client, token):
    sign_in(client, raw(token("GMP", "recipient")))
    cookie = client.get_cookie("nclcc_recipient")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    with client.session_transaction() as stored:
        assert set(stored) <= {"recipient_session", "csrf_token", "_permanent"}


def test_the_inbox_is_paginated(client, token, monkeypatch):
    from services.dissemination import pages

    monkeypatch.setattr(pages, "PER_PAGE", 2)
    references = [
        issue_package(client, token(), title=f"Package {n}", recipients=["GMP"])["reference"] for n in range(5)
    ]
    sign_in(client, raw(token("GMP", "recipient")))
    first = text(client.get("/inbox"))
    assert references[-1] in first and references[0] not in first and 'aria-current="page"' in first
    last = text(client.get("/inbox?page=3"))
    assert references[0] in last and references[-1] not in last
    for hostile in ("0", "-1", "abc", "99999999999999999999", "3.5"):
        assert client.get(f"/inbox?page={hostile}").status_code == 200


def test_filing_counts_as_acknowledgement_and_sets_the_return_status(
    app, client, token, sent, outcomes_app, outcomes_client, pump_events
):
    from tests.outcomes.helpers import outcome_body

    _, gmp = sent
    pump_events()
    recipient = token("GMP", "recipient", sub="analyst@gmp")
    filed = outcomes_client.post(
        f"/api/v1/returns/{gmp}/outcomes", json=outcome_body(status="interim"), headers=recipient
    )
    assert filed.status_code == 201, filed.get_json()
    pump_events(source=outcomes_app, target=app)
    item = client.get(f"/api/v1/disseminations/{gmp}", headers=recipient).get_json()
    assert item["acknowledged_at"] and item["acknowledged_by"] == "analyst@gmp"
    # Announced like any acknowledgement, so the outcomes and metrics services count it too.
    acknowledged = [e for e in outbox_events(app) if e.type == "dissemination.acknowledged"]
    assert len(acknowledged) == 1 and acknowledged[0].payload["acknowledged_by"] == "analyst@gmp"
    sign_in(client, raw(recipient))
    assert "Interim" in text(client.get("/inbox"))
    final = outcomes_client.post(
        f"/api/v1/returns/{gmp}/outcomes", json=outcome_body(status="final"), headers=recipient
    )
    assert final.status_code == 201, final.get_json()
    pump_events(source=outcomes_app, target=app)
    page = text(client.get("/inbox"))
    assert "Final" in page and "Acknowledged" in page
    assert len([e for e in outbox_events(app) if e.type == "dissemination.acknowledged"]) == 1


def outbox_events(app) -> list:
    from sqlalchemy import select

    models = app.extensions["service"].models
    session = app.extensions["database"].session()
    try:
        return session.scalars(select(models.OutboxEvent).order_by(models.OutboxEvent.position)).all()
    finally:
        session.close()


def test_page_links_are_absolute_addresses_of_the_pages(app, sent):
    from services.dissemination.models import Dissemination
    from services.dissemination.pages import page_links

    _, gmp = sent
    settings = app.extensions["settings"]
    base = settings.public_urls["dissemination"]
    links = page_links(settings, Dissemination(id=uuid.UUID(gmp)))
    assert links == {
        "package_page": f"{base}/disseminations/{gmp}",
        "inbox_page": f"{base}/inbox",
        "sign_in_page": f"{base}/sign-in",
    }


def test_in_production_there_is_no_token_sign_in(monkeypatch):
    from services.dissemination.pages import token_sign_in_exists
    from shared.settings import load_settings

    class Declared:
        name, port, subscribers, signs_webhooks = "dissemination", 5001, (), True

    monkeypatch.setenv("APP_ENV", "development")
    assert token_sign_in_exists(load_settings("dissemination", [Declared()]))
    # Production settings are not built here (they need every secret); the rule reads one flag.
    production = type("S", (), {"production": True})()
    assert not token_sign_in_exists(production)


def test_a_return_past_its_due_date_without_a_final_is_overdue(app, client, token, sent):
    from datetime import UTC, datetime

    package, gmp = sent
    sign_in(client, raw(token("GMP", "recipient")))
    row = f'data-reference="{package["reference"]}"'
    assert ">None<" in text(client.get("/inbox")).split(row)[1].split("</tr>")[0]
    app.extensions["clock"] = lambda: datetime(2099, 1, 1, tzinfo=UTC)
    try:
        inbox = text(client.get("/inbox")).split(row)[1].split("</tr>")[0]
        assert ">Overdue<" in inbox
        assert ">Overdue<" in text(client.get(f"/disseminations/{gmp}"))
    finally:
        del app.extensions["clock"]


def test_a_deadline_extended_by_the_centre_is_the_one_the_recipient_sees(
    app, client, token, sent, outcomes_app, outcomes_client, pump_events
):
    from datetime import datetime

    package, gmp = sent
    pump_events()  # the outcomes service expects GMP's return
    due = datetime.fromisoformat(outcomes_client.get(f"/api/v1/returns/{gmp}", headers=token()).get_json()["due_at"])
    later = due + timedelta(days=9)
    response = outcomes_client.post(
        f"/api/v1/returns/{gmp}/extend",
        json={"due_at": later.isoformat(), "reason": "Operation live."},
        headers=token(),
    )
    assert response.status_code == 200
    pump_events(source=outcomes_app, target=app)
    item = client.get(f"/api/v1/disseminations/{gmp}", headers=token("GMP", "recipient")).get_json()
    assert datetime.fromisoformat(item["due_at"]) == later
    sign_in(client, raw(token("GMP", "recipient")))
    from shared.local_time import date_words

    assert date_words(later) in text(client.get(f"/disseminations/{gmp}"))
    pump_events(source=outcomes_app, target=app)  # the same event again changes nothing
    assert client.get(f"/api/v1/disseminations/{gmp}", headers=token("GMP", "recipient")).get_json() == item
