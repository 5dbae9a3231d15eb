"""Notifications through a real SMTP server, end to end: issued by the API, sent by the jobs in
the in-process worker with their retries (``NOTIFY_RETRY_INTERVALS=0,0`` in the tests: three
tries), recorded and announced as in production.

A mail server that is down is retried by the job's ladder and the notice goes once it is back;
one down on every try makes the last try use the fallback contact, then records the failure. A
webhook failing on every try falls back to e-mail on the last one; a recipient the server
refuses for good falls back to the next contact at once. Passwords never reach a log."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import responses
from rq import SimpleWorker

from services.outcomes import chasing
from shared.notify import plain_text
from shared.service import set_runtime
from tests.dissemination.helpers import issue_package, package_body
from tests.mail.smtp_server import Certificates, MailServer, make_certificates
from tests.outcomes import chase_helpers
from tests.outcomes.chase_helpers import issue_return, put_policy, seed_organisation

PASSWORD = "s3cret pa55/word"
PASSWORD_IN_URL = "s3cret%20pa55%2Fword"
GMP = "outcomes.gmp@directory.invalid"
HOOK = "https://hooks.gmp.example/nclcc"


@pytest.fixture
def certificates(tmp_path) -> Certificates:
    return make_certificates(tmp_path / "ca")


@pytest.fixture
def mail_env(monkeypatch) -> Iterator[Callable[..., None]]:
    """Point the jobs at an SMTP server. Their runtime reads the environment when it is first
    built (the ``app`` fixtures drop it); it is dropped again after the test."""

    def point(url: str, **env: str) -> None:
        monkeypatch.delenv("EMAIL_BACKEND", raising=False)
        monkeypatch.setenv("SMTP_URL", url)
        for name, value in env.items():
            monkeypatch.setenv(name, value)

    yield point
    set_runtime("dissemination", None)
    set_runtime("outcomes", None)


@pytest.fixture
def stopped_afterwards() -> Iterator[list[MailServer]]:
    servers: list[MailServer] = []
    yield servers
    for server in servers:
        server.stop()


def run_one_try(redis_conn, queue: str) -> None:
    """One job from ``queue``: one try of a notification, leaving its retry queued."""
    SimpleWorker([queue], connection=redis_conn).work(burst=True, with_scheduler=False, max_jobs=1)


def dissemination(client, token, package_id: str, org: str = "GMP") -> dict:
    rows = client.get(f"/api/v1/packages/{package_id}/disseminations", headers=token()).get_json()
    return next(row for row in rows if row["organisation"] == org)


def secret_forms(password: str) -> list[str]:
    """The password as it could leak: plain, percent-encoded, and base64 in AUTH PLAIN."""
    plain_auth = base64.b64encode(f"\0mailer\0{password}".encode()).decode()
    return [password, PASSWORD_IN_URL, plain_auth]


def assert_never_logged(caplog, texts: list[str], *secrets: str) -> None:
    # The test server's own log ("mail.log") is not ours: it is left out.
    ours = [record for record in caplog.records if not record.name.startswith("mail.log")]
    assert ours, "nothing was logged: the check would prove nothing"
    logged = "\n".join(record.getMessage() + "\n" + (record.exc_text or "") for record in ours)
    logged += "\n" + caplog.text
    for secret in secrets:
        assert secret not in logged
        for text in texts:
            assert secret not in text


def test_a_mail_server_down_then_back_gets_the_notice_once_without_the_intelligence(
    client, token, run_jobs, redis_conn, consumer, mail_env, certificates, stopped_afterwards, caplog
):
    caplog.set_level(logging.DEBUG)
    server = MailServer(starttls=certificates.server_context(), password=PASSWORD)  # down: not started
    stopped_afterwards.append(server)
    mail_env(
        server.url(credentials=f"mailer:{PASSWORD_IN_URL}@", query="starttls=1"),
        SMTP_CA_FILE=str(certificates.ca_file),
    )
    package = issue_package(client, token(), recipients=["GMP"])

    run_one_try(redis_conn, "dissemination")
    row = dissemination(client, token, package["id"])
    assert row["delivery_status"] == "pending" and row["delivery_attempts"] == 1
    assert "refused the connection" in row["delivery_error"]
    first_error = row["delivery_error"]

    server.start()
    run_jobs()
    [received] = server.received
    assert received.rcpt_tos == [GMP] and received.over_tls and received.login == "mailer"
    row = dissemination(client, token, package["id"])
    assert row["delivery_status"] == "delivered" and row["delivery_channel"] == "email"
    assert row["delivery_attempts"] == 2 and row["delivery_error"] is None
    assert [e["payload"]["organisation"] for e in consumer.of_type("dissemination.delivered")] == ["GMP"]
    # References and links, never the intelligence itself.
    message = received.message
    text = plain_text(message)
    assert package["reference"] in message["Subject"] and package["reference"] in text
    assert f"/disseminations/{row['id']}" in text and "/api/" not in text
    intelligence = package_body()
    for field in ("title", "summary"):
        assert intelligence[field] not in text and intelligence[field] not in message["Subject"]
    assert "07700 900123" not in message.as_string()

    # The worker logged the failed try with its traceback: the check below reads real failures.
    assert "refused the connection" in caplog.text and "Traceback" in caplog.text
    assert_never_logged(caplog, [first_error], *secret_forms(PASSWORD))


def test_a_mail_server_down_on_every_try_ends_in_a_recorded_and_announced_failure(
    client, token, run_jobs, consumer, mail_env
):
    mail_env(MailServer().url())  # nothing ever listens there
    package = issue_package(client, token(), recipients=["GMP"])
    run_jobs()
    row = dissemination(client, token, package["id"])
    assert row["status"] == "delivery_failed" and row["delivery_attempts"] == 3
    assert "refused the connection" in row["delivery_error"]
    assert [e["payload"]["organisation"] for e in consumer.of_type("dissemination.delivery_failed")] == ["GMP"]


@responses.activate
def test_a_webhook_failing_on_every_try_falls_back_to_the_mail_server_on_the_last(
    client, token, run_jobs, redis_conn, mail_env, stopped_afterwards
):
    responses.add_passthru("http://127.0.0.1")
    patched = client.patch("/api/v1/organisations/GMP", json={"webhook_url": HOOK}, headers=token(roles="admin"))
    assert patched.status_code == 200
    responses.add(responses.POST, HOOK, status=503)
    server = MailServer().start()
    stopped_afterwards.append(server)
    mail_env(server.url())
    package = issue_package(client, token(), recipients=["GMP"])

    run_one_try(redis_conn, "dissemination")
    run_one_try(redis_conn, "dissemination")
    assert server.received == []  # e-mail waits for the webhook's last try
    run_jobs()
    assert [r.rcpt_tos for r in server.received] == [[GMP]]
    assert len([call for call in responses.calls if call.request.url == HOOK]) == 3
    row = dissemination(client, token, package["id"])
    assert row["delivery_status"] == "delivered" and row["delivery_channel"] == "email"
    assert row["delivery_attempts"] == 3


# --- chases: the escalation step tries the escalation contact, then the organisation's -------

ESCALATION = "escalation.gmp@directory.invalid"


@pytest.fixture
def escalation_due(outcomes_app, outcomes_client, token, monkeypatch) -> Callable[[], int]:
    """A return whose only chase step, the escalation, is due: swept, its send enqueued. Gives
    the chase log entry's id."""
    put_policy(outcomes_client, token, [{"name": "escalation", "offset_seconds": 0, "notify": "escalation"}])
    seed_organisation(outcomes_app)
    start = datetime.now(UTC)
    monkeypatch.setattr(chase_helpers, "clock_start", lambda: start)

    def sweep() -> str:
        return_id = issue_return(outcomes_app, due_in_seconds=10)
        session = outcomes_app.extensions["database"].session()
        try:
            counts = chasing.sweep(session, outcomes_app.extensions["settings"], now=start + timedelta(seconds=11))
        finally:
            session.close()
        assert counts, "the sweep claimed nothing"
        return return_id

    return sweep


def chase_entry(outcomes_client, token, return_id: str) -> dict:
    [entry] = outcomes_client.get(f"/api/v1/returns/{return_id}/chases", headers=token()).get_json()
    return entry


def test_a_recipient_the_mail_server_refuses_for_good_falls_back_to_the_next_contact_at_once(
    escalation_due, outcomes_client, token, redis_conn, mail_env, stopped_afterwards
):
    server = MailServer(refuse={ESCALATION: "550 5.1.1 No such mailbox"}).start()
    stopped_afterwards.append(server)
    mail_env(server.url())
    return_id = escalation_due()
    run_one_try(redis_conn, "outcomes")
    entry = chase_entry(outcomes_client, token, return_id)
    assert entry["result"] == "sent_fallback" and entry["attempts"] == 1
    assert entry["address"] == GMP and f"{ESCALATION}: e-mail refused for {ESCALATION}: SMTP 550" in entry["error"]
    assert [r.rcpt_tos for r in server.received] == [[GMP]]


def test_a_mail_server_down_on_every_try_gets_the_fallback_contact_tried_on_the_last(
    escalation_due, outcomes_client, token, redis_conn, run_jobs, mail_env
):
    mail_env(MailServer().url())
    return_id = escalation_due()
    run_one_try(redis_conn, "outcomes")
    entry = chase_entry(outcomes_client, token, return_id)
    # A failure that may pass: the same contact again on the next try, not the fallback yet.
    assert entry["result"] == "pending" and ESCALATION in entry["error"] and GMP not in entry["error"]
    run_jobs("outcomes")
    entry = chase_entry(outcomes_client, token, return_id)
    assert entry["result"] == "failed" and entry["attempts"] == 3
    assert f"{ESCALATION}: e-mail not sent" in entry["error"] and f"{GMP}: e-mail not sent" in entry["error"]


def test_a_step_whose_every_contact_is_refused_for_good_fails_at_once_without_retrying(
    escalation_due, outcomes_client, token, redis_conn, run_jobs, mail_env, stopped_afterwards
):
    refused = "550 5.1.1 No such mailbox"
    server = MailServer(refuse={ESCALATION: refused, GMP: refused}).start()
    stopped_afterwards.append(server)
    mail_env(server.url())
    return_id = escalation_due()
    run_jobs("outcomes")
    entry = chase_entry(outcomes_client, token, return_id)
    assert entry["result"] == "failed" and entry["attempts"] == 1
    assert entry["error"].count("SMTP 550") == 2 and server.received == []
