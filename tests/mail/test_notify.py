"""GOV.UK Notify as the e-mail backend: the official client's request (template, address,
personalisation, a token signed with the key), its errors mapped to permanent or retryable,
and the key kept out of logs. Notify is a third party we do not run: ``responses`` answers for
it, and the real ``notifications-python-client`` makes the requests."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable

import jwt
import pytest
import requests
import responses

from services import settings_for
from shared.notify import NotificationError, send_email
from shared.settings import Settings
from tests.dissemination.helpers import issue_package, package_body

NOTIFY_EMAIL_URL = "https://api.notifications.service.gov.uk/v2/notifications/email"
SERVICE_ID = str(uuid.uuid4())
SECRET_ID = str(uuid.uuid4())
API_KEY = f"nclcc_test-{SERVICE_ID}-{SECRET_ID}"
TEMPLATE_ID = str(uuid.uuid4())
TO = "outcomes.gmp@directory.invalid"


def notify_env(monkeypatch) -> None:
    monkeypatch.setenv("EMAIL_BACKEND", "notify")
    monkeypatch.setenv("NOTIFY_API_KEY", API_KEY)
    monkeypatch.setenv("NOTIFY_EMAIL_TEMPLATE_ID", TEMPLATE_ID)


@pytest.fixture
def notify_settings(monkeypatch) -> Callable[[], Settings]:
    def make() -> Settings:
        notify_env(monkeypatch)
        return settings_for("dissemination")

    return make


def accepted(notification_id: str = "740e5834-3a29-46b4-9a6f-16142fde533a") -> dict:
    """Notify's answer when it takes an e-mail (201), as its API documents it."""
    return {
        "id": notification_id,
        "reference": None,
        "content": {"subject": "s", "body": "b", "from_email": "nclcc@notifications.service.gov.uk"},
        "uri": f"https://api.notifications.service.gov.uk/v2/notifications/{notification_id}",
        "template": {"id": TEMPLATE_ID, "version": 1, "uri": "https://api.notifications.service.gov.uk/..."},
    }


@responses.activate
def test_an_email_goes_to_notify_as_its_template_with_the_subject_and_body(notify_settings):
    responses.add(responses.POST, NOTIFY_EMAIL_URL, json=accepted(), status=201)
    settings = notify_settings()
    notification_id = send_email(settings, TO, "Intelligence package NCLCC-2026-000001", "Read it at\nhttps://x")
    assert notification_id == accepted()["id"]
    [call] = responses.calls
    assert json.loads(call.request.body) == {
        "email_address": TO,
        "template_id": TEMPLATE_ID,
        "personalisation": {"subject": "Intelligence package NCLCC-2026-000001", "body": "Read it at\nhttps://x"},
    }
    # The token is signed with the key's secret part and names the service; the key itself
    # never travels.
    token = call.request.headers["Authorization"].removeprefix("Bearer ")
    assert jwt.decode(token, SECRET_ID, algorithms=["HS256"])["iss"] == SERVICE_ID
    assert API_KEY not in str(call.request.headers) and SECRET_ID not in str(call.request.headers)


def notify_error(status: int, error: str, message: str) -> dict:
    return {"status_code": status, "errors": [{"error": error, "message": message}]}


@pytest.mark.parametrize(
    ("status", "error", "message", "permanent"),
    [
        (400, "BadRequestError", "Can't send to this recipient using a team-only API key", True),
        (400, "ValidationError", "email_address Not a valid email address", True),
        (400, "BadRequestError", "Missing personalisation: body", True),
        (403, "AuthError", "Invalid token: API key not found", True),
        (429, "RateLimitError", "Exceeded rate limit for key type LIVE of 3000 requests per 60 seconds", False),
        (500, "Exception", "Internal server error", False),
        (503, "Exception", "Service unavailable", False),
    ],
)
@responses.activate
def test_notify_errors_are_permanent_on_4xx_and_retryable_on_429_and_5xx(
    notify_settings, status, error, message, permanent
):
    responses.add(responses.POST, NOTIFY_EMAIL_URL, json=notify_error(status, error, message), status=status)
    with pytest.raises(NotificationError) as raised:
        send_email(notify_settings(), TO, "Subject", "Text")
    assert raised.value.permanent is permanent
    assert str(raised.value) == f"e-mail not sent: GOV.UK Notify answered HTTP {status} {error}: {message}"


@pytest.mark.parametrize("failure", [requests.ConnectionError("refused"), requests.Timeout("read timed out")])
@responses.activate
def test_notify_out_of_reach_is_retryable(notify_settings, failure):
    responses.add(responses.POST, NOTIFY_EMAIL_URL, body=failure)
    with pytest.raises(NotificationError) as raised:
        send_email(notify_settings(), TO, "Subject", "Text")
    assert not raised.value.permanent and str(raised.value) == "e-mail not sent: GOV.UK Notify unreachable"


@responses.activate
def test_the_api_key_reaches_no_log_no_error_and_no_repr(notify_settings, caplog):
    caplog.set_level(logging.DEBUG)
    responses.add(responses.POST, NOTIFY_EMAIL_URL, json=notify_error(403, "AuthError", "Invalid token"), status=403)
    responses.add(responses.POST, NOTIFY_EMAIL_URL, body=requests.ConnectionError("refused"))
    responses.add(responses.POST, NOTIFY_EMAIL_URL, json=accepted(), status=201)
    settings = notify_settings()
    errors = []
    for _ in range(2):
        with pytest.raises(NotificationError) as raised:
            send_email(settings, TO, "Subject", "Text")
        errors.append(str(raised.value))
    send_email(settings, TO, "Subject", "Text")
    assert "AuthError" in caplog.text  # the client logged the failures: the check reads real logs
    for secret in (API_KEY, SECRET_ID):
        assert secret not in caplog.text and secret not in repr(settings)
        assert all(secret not in error for error in errors)


@responses.activate
def test_a_package_issued_is_notified_through_notify_without_the_intelligence(client, token, run_jobs, monkeypatch):
    from shared.service import set_runtime

    responses.add_passthru("http://127.0.0.1")
    responses.add(responses.POST, NOTIFY_EMAIL_URL, json=accepted(), status=201)
    notify_env(monkeypatch)  # read by the jobs' runtime, built at their first run
    try:
        package = issue_package(client, token(), recipients=["GMP"])
        run_jobs()
    finally:
        set_runtime("dissemination", None)
    [call] = [c for c in responses.calls if c.request.url == NOTIFY_EMAIL_URL]
    sent = json.loads(call.request.body)
    assert sent["email_address"] == TO and sent["template_id"] == TEMPLATE_ID
    assert package["reference"] in sent["personalisation"]["subject"]
    assert package_body()["summary"] not in json.dumps(sent)
    rows = client.get(f"/api/v1/packages/{package['id']}/disseminations", headers=token()).get_json()
    assert [(r["delivery_status"], r["delivery_channel"]) for r in rows] == [("delivered", "email")]


@responses.activate
def test_a_recipient_notify_refuses_is_recorded_failed_at_once_without_retrying(
    client, token, run_jobs, monkeypatch, consumer
):
    from shared.service import set_runtime

    responses.add_passthru("http://127.0.0.1")
    refusal = notify_error(400, "BadRequestError", "Can't send to this recipient using a team-only API key")
    responses.add(responses.POST, NOTIFY_EMAIL_URL, json=refusal, status=400)
    notify_env(monkeypatch)
    try:
        package = issue_package(client, token(), recipients=["GMP"])
        run_jobs()
    finally:
        set_runtime("dissemination", None)
    assert len([c for c in responses.calls if c.request.url == NOTIFY_EMAIL_URL]) == 1
    [row] = client.get(f"/api/v1/packages/{package['id']}/disseminations", headers=token()).get_json()
    assert row["status"] == "delivery_failed" and row["delivery_attempts"] == 1
    assert "team-only API key" in row["delivery_error"]
    assert [e["payload"]["organisation"] for e in consumer.of_type("dissemination.delivery_failed")] == ["GMP"]
