"""Issuing a package: disseminations, events through the outbox, notifications to recipients."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
import requests
import responses
from standardwebhooks import Webhook, WebhookVerificationError

from shared.notify import html_part, plain_text
from tests.dissemination.helpers import create_package, in_days, issue_package, package_body

HOOK = "https://hooks.gmp.example/nclcc"


def set_webhook(client, token, code, url) -> str:
    """Set the webhook; returns its signing secret (shown in this answer only)."""
    response = client.patch(f"/api/v1/organisations/{code}", json={"webhook_url": url}, headers=token(roles="admin"))
    assert response.status_code == 200
    return response.get_json()["webhook_secret"]


def disseminations(client, token, package_id) -> dict[str, dict]:
    rows = client.get(f"/api/v1/packages/{package_id}/disseminations", headers=token()).get_json()
    return {row["organisation"]: row for row in rows}


def test_issuing_creates_one_dissemination_per_recipient_due_in_28_days(client, token):
    package = issue_package(client, token())
    assert package["status"] == "issued"
    issued_at = datetime.fromisoformat(package["issued_at"])
    due = datetime.fromisoformat(package["outcome_due_at"])
    assert due - issued_at == timedelta(days=28)
    rows = disseminations(client, token, package["id"])
    assert set(rows) == {"GMP", "MPS"}
    assert all(
        row["status"] == "pending_delivery" and row["due_at"] == package["outcome_due_at"] for row in rows.values()
    )


def test_an_explicit_due_date_is_kept(client, token):
    due = in_days(10)
    package = issue_package(client, token(), outcome_due_at=due)
    assert datetime.fromisoformat(package["outcome_due_at"]) == datetime.fromisoformat(due)


def test_issuing_twice_is_409_and_creates_nothing_more(client, token, session):
    package = issue_package(client, token())
    response = client.post(f"/api/v1/packages/{package['id']}/issue", headers=token())
    assert response.status_code == 409
    assert len(disseminations(client, token, package["id"])) == 2
    from services.dissemination.models import OutboxEvent

    assert session.query(OutboxEvent).filter_by(type="package.issued").count() == 1


def test_issuing_emits_package_issued_to_subscribers(client, token, run_jobs, consumer):
    package = issue_package(client, token())
    run_jobs()
    events = consumer.of_type("package.issued")
    assert len(events) == 1
    payload = events[0]["payload"]
    assert payload["reference"] == package["reference"]
    assert payload["source_evaluation"] == 2 and payload["intelligence_assessment"] == "B"
    ids = {d["organisation"]: d["dissemination_id"] for d in payload["disseminations"]}
    rows = disseminations(client, token, package["id"])
    assert ids == {code: row["id"] for code, row in rows.items()}


def test_recipients_without_webhook_are_emailed_without_the_intelligence(client, token, run_jobs, mailbox):
    package = issue_package(client, token())
    run_jobs()
    mails = {m["To"]: m for m in mailbox()}
    assert set(mails) == {"outcomes.gmp@directory.invalid", "outcomes.mps@directory.invalid"}
    mail = mails["outcomes.gmp@directory.invalid"]
    text, html = plain_text(mail), html_part(mail)
    assert package["reference"] in text and "/disseminations/" in text and "/api/" not in text
    # Names, not codes; UK local time; the same words and links as HTML.
    assert mail["Subject"].endswith("for Greater Manchester Police")
    assert "The National County Lines Coordination Centre has sent intelligence package" in text
    assert " UTC" not in text and (" GMT" in text or " BST" in text)
    page = next(word for word in text.split() if "/disseminations/" in word)
    assert f'href="{page}"' in html and "Greater Manchester Police" in html
    assert "07700 900123" not in text  # the summary never goes by e-mail
    rows = disseminations(client, token, package["id"])
    assert rows["GMP"]["status"] == "delivered" and rows["GMP"]["delivery_channel"] == "email"
    assert rows["GMP"]["delivered_at"]


@responses.activate
def test_webhook_is_signed_by_standard_webhooks_with_the_organisations_secret(client, token, run_jobs):
    responses.add_passthru("http://127.0.0.1")
    secret = set_webhook(client, token, "GMP", HOOK)
    other = set_webhook(client, token, "MPS", "https://hooks.mps.example/in")
    responses.add(responses.POST, HOOK, status=204)
    package = issue_package(client, token(), recipients=["GMP"])
    run_jobs()
    calls = [c for c in responses.calls if c.request.url == HOOK]
    assert len(calls) == 1
    request = calls[0].request
    headers = dict(request.headers)
    assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= {name.lower() for name in headers}
    assert Webhook(secret).verify(request.body, headers)["reference"] == package["reference"]
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(request.body, headers)
    body = json.loads(request.body)
    assert body["reference"] == package["reference"] and body["organisation"] == "GMP"
    assert "summary" not in body
    row = disseminations(client, token, package["id"])["GMP"]
    assert row["delivery_channel"] == "webhook" and row["status"] == "delivered"


@responses.activate
def test_a_failing_webhook_is_retried_until_it_answers(client, token, run_jobs):
    responses.add_passthru("http://127.0.0.1")
    set_webhook(client, token, "GMP", HOOK)
    responses.add(responses.POST, HOOK, status=503)
    responses.add(responses.POST, HOOK, status=503)
    responses.add(responses.POST, HOOK, status=200)
    package = issue_package(client, token(), recipients=["GMP"])
    run_jobs()
    assert len([c for c in responses.calls if c.request.url == HOOK]) == 3
    row = disseminations(client, token, package["id"])["GMP"]
    assert row["status"] == "delivered" and row["delivery_attempts"] == 3 and row["delivery_channel"] == "webhook"


@responses.activate
def test_a_webhook_gone_for_good_falls_back_to_email(client, token, run_jobs, mailbox):
    responses.add_passthru("http://127.0.0.1")
    set_webhook(client, token, "GMP", HOOK)
    responses.add(responses.POST, HOOK, status=410)
    package = issue_package(client, token(), recipients=["GMP"])
    run_jobs()
    row = disseminations(client, token, package["id"])["GMP"]
    assert row["delivery_channel"] == "email" and row["status"] == "delivered"
    assert [m["To"] for m in mailbox()] == ["outcomes.gmp@directory.invalid"]


@responses.activate
def test_when_every_channel_fails_the_failure_is_recorded_and_emitted(client, token, run_jobs, consumer):
    responses.add_passthru("http://127.0.0.1")
    admin = token(roles="admin")
    client.patch("/api/v1/organisations/GMP", json={"webhook_url": HOOK, "email": None}, headers=admin)
    responses.add(responses.POST, HOOK, body=requests.ConnectionError("refused"))
    package = issue_package(client, token(), recipients=["GMP"])
    run_jobs()
    row = disseminations(client, token, package["id"])["GMP"]
    assert row["status"] == "delivery_failed"
    assert row["delivery_attempts"] == 3  # the first try and two retries
    assert "webhook unreachable" in row["delivery_error"]
    failed = consumer.of_type("dissemination.delivery_failed")
    assert [e["payload"]["organisation"] for e in failed] == ["GMP"]


def test_delivery_emits_dissemination_delivered(client, token, run_jobs, consumer):
    issue_package(client, token())
    run_jobs()
    delivered = consumer.of_type("dissemination.delivered")
    assert sorted(e["payload"]["organisation"] for e in delivered) == ["GMP", "MPS"]
    assert all(e["payload"]["channel"] == "email" for e in delivered)


def test_withdrawal_notifies_recipients_and_emits_an_event(client, token, run_jobs, consumer, mailbox):
    package = issue_package(client, token())
    run_jobs()
    response = client.post(
        f"/api/v1/packages/{package['id']}/withdraw", json={"reason": "Source compromised."}, headers=token()
    )
    assert response.status_code == 200
    assert response.get_json()["status"] == "withdrawn"
    run_jobs()
    withdrawn = consumer.of_type("package.withdrawn")
    assert len(withdrawn) == 1 and withdrawn[0]["payload"]["reason"] == "Source compromised."
    assert len(withdrawn[0]["payload"]["dissemination_ids"]) == 2
    subjects = [m["Subject"] for m in mailbox()]
    assert sum("WITHDRAWN" in s for s in subjects) == 2
    rows = disseminations(client, token, package["id"])
    assert {row["status"] for row in rows.values()} == {"withdrawn"}


def test_withdrawal_needs_a_reason_and_happens_once(client, token):
    package = issue_package(client, token())
    url = f"/api/v1/packages/{package['id']}/withdraw"
    response = client.post(url, json={}, headers=token())
    assert response.status_code == 422 and "reason" in response.get_json()["errors"]["json"]
    assert client.post(url, json={"reason": "Superseded."}, headers=token()).status_code == 200
    assert client.post(url, json={"reason": "Again."}, headers=token()).status_code == 409


def test_a_withdrawn_draft_cannot_be_issued(client, token):
    package = create_package(client, token())
    client.post(f"/api/v1/packages/{package['id']}/withdraw", json={"reason": "Not needed."}, headers=token())
    assert client.post(f"/api/v1/packages/{package['id']}/issue", headers=token()).status_code == 409


@pytest.mark.parametrize("role", ["recipient", "leader"])
def test_only_issuers_issue(client, token, role):
    package = create_package(client, token())
    response = client.post(f"/api/v1/packages/{package['id']}/issue", headers=token(roles=role))
    assert response.status_code == 403


def test_due_in_working_days_follows_each_recipients_bank_holidays(client, token):
    from shared.calendar import add_working_days

    package = issue_package(client, token(), recipients=["GMP", "PSCOT"], outcome_due_working_days=10)
    issued_at = datetime.fromisoformat(package["issued_at"])
    rows = disseminations(client, token, package["id"])
    assert datetime.fromisoformat(rows["GMP"]["due_at"]) == add_working_days(issued_at, 10, "North West")
    assert datetime.fromisoformat(rows["PSCOT"]["due_at"]) == add_working_days(issued_at, 10, "Scotland")
    assert (datetime.fromisoformat(rows["GMP"]["due_at"]) - issued_at).days >= 14  # two weekends at least


def test_a_due_date_and_working_days_together_are_refused(client, token):
    body = package_body(outcome_due_at=in_days(10), outcome_due_working_days=5)
    response = client.post("/api/v1/packages", json=body, headers=token())
    assert response.status_code == 422
    assert "outcome_due_working_days" in response.get_json()["errors"]["json"]
