"""The outbox and inbox: nothing is lost when a subscriber is down, a lost Redis only delays,
dead letters are visible and can be redelivered, and a redelivered event changes nothing."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from shared import signing
from tests.dissemination.helpers import issue_package


def deliveries(client, token, **filters) -> list[dict]:
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    return client.get(f"/api/v1/outbox?per_page=100&{query}", headers=token(roles="admin")).get_json()


def test_the_event_commits_with_the_change(client, token, session):
    from services.dissemination.models import OutboxDelivery, OutboxEvent, Package

    issue_package(client, token())
    package = session.query(Package).one()
    event = session.query(OutboxEvent).filter_by(type="package.issued").one()
    assert event.aggregate_id == str(package.id)
    assert [d.subscriber for d in session.query(OutboxDelivery).filter_by(event_id=event.id)] == ["outcomes"]


def test_a_refused_change_emits_nothing(client, token, session):
    from services.dissemination.models import OutboxEvent

    response = client.post("/api/v1/packages", json={"title": "x"}, headers=token())
    assert response.status_code == 422
    assert session.query(OutboxEvent).filter(OutboxEvent.type.like("package.%")).count() == 0


def test_events_wait_while_the_subscriber_is_down_and_arrive_when_it_is_back(client, token, run_jobs, consumer):
    consumer.stop()
    package = issue_package(client, token())
    run_jobs()  # every try fails: the subscriber is down
    dead = deliveries(client, token, status="dead")
    issued = [d for d in dead if d["event_type"] == "package.issued"]
    assert len(issued) == 1
    assert issued[0]["attempts"] == 4  # the first try and three retries
    assert "ConnectionError" in issued[0]["last_error"]
    assert consumer.received == []

    consumer.start()
    for delivery in dead:
        response = client.post(f"/api/v1/outbox/{delivery['id']}/redeliver", headers=token(roles="admin"))
        assert response.status_code == 200
    run_jobs()
    received = consumer.of_type("package.issued")
    assert [e["payload"]["package_id"] for e in received] == [package["id"]]
    assert deliveries(client, token, status="dead") == []
    assert all(d["status"] == "delivered" for d in deliveries(client, token))


def test_a_delivered_event_cannot_be_redelivered(client, token, run_jobs):
    issue_package(client, token())
    run_jobs()
    delivered = deliveries(client, token, status="delivered")[0]
    response = client.post(f"/api/v1/outbox/{delivered['id']}/redeliver", headers=token(roles="admin"))
    assert response.status_code == 409


def test_the_outbox_is_for_admins_only(client, token):
    assert client.get("/api/v1/outbox", headers=token()).status_code == 403


def test_a_redis_flush_loses_no_event(client, token, run_jobs, consumer, redis_conn, monkeypatch):
    issue_package(client, token())
    redis_conn.flushdb()  # the relay and notification jobs are gone
    run_jobs()
    assert consumer.received == []
    from shared import outbox

    # The sweep leaves events younger than a few seconds to their own job; pretend time passed.
    real_utcnow = outbox.utcnow
    monkeypatch.setattr(outbox, "utcnow", lambda: real_utcnow() + __import__("datetime").timedelta(minutes=1))
    assert outbox.sweep_outbox("dissemination") >= 1
    run_jobs()
    assert len(consumer.of_type("package.issued")) == 1


def test_lost_notification_jobs_are_found_by_the_sweep(client, token, run_jobs, redis_conn, mailbox):
    from services.dissemination import jobs

    issue_package(client, token())
    redis_conn.flushdb()
    run_jobs()
    assert mailbox() == []
    assert jobs.sweep_notifications(settle_seconds=0) == 2
    run_jobs()
    assert len(mailbox()) == 2
    assert jobs.sweep_notifications(settle_seconds=0) == 0


def signed_post(client, secret, message: dict, **overrides):
    body = json.dumps(message).encode()
    headers = signing.signed_headers(secret, body)
    headers.update(overrides)
    return client.post("/internal/events", data=body, headers=headers)


def outcome_event(dissemination_id: str, status: str = "final") -> dict:
    return {
        "id": str(uuid.uuid4()),
        "type": "outcome.filed",
        "source": "outcomes",
        "aggregate_id": dissemination_id,
        "occurred_at": "2026-11-20T10:00:00+00:00",
        "payload": {"return_id": dissemination_id, "status": status, "filed_at": "2026-11-20T10:00:00+00:00"},
    }


def test_an_event_is_applied_once_however_often_it_arrives(client, token, app):
    issue_package(client, token(), recipients=["GMP"])
    item = client.get("/api/v1/inbox", headers=token("GMP", "recipient")).get_json()[0]
    secret = app.extensions["settings"].event_secret
    message = outcome_event(item["id"])
    first = signed_post(client, secret, message)
    assert first.get_json()["result"] == "applied"
    again = signed_post(client, secret, message)
    assert again.status_code == 200 and again.get_json()["result"] == "duplicate"
    item = client.get(f"/api/v1/disseminations/{item['id']}", headers=token("GMP", "recipient")).get_json()
    assert item["status"] == "returned"
    assert item["returned_at"] == "2026-11-20T10:00:00+00:00"
    # A later final return does not move the date of the first.
    later = outcome_event(item["id"])
    later["payload"]["filed_at"] = "2026-11-22T10:00:00+00:00"
    signed_post(client, secret, later)
    item = client.get(f"/api/v1/disseminations/{item['id']}", headers=token("GMP", "recipient")).get_json()
    assert item["returned_at"] == "2026-11-20T10:00:00+00:00"


def test_an_interim_return_does_not_mark_the_dissemination_returned(client, token, app):
    issue_package(client, token(), recipients=["GMP"])
    item = client.get("/api/v1/inbox", headers=token("GMP", "recipient")).get_json()[0]
    signed_post(client, app.extensions["settings"].event_secret, outcome_event(item["id"], "interim"))
    item = client.get(f"/api/v1/disseminations/{item['id']}", headers=token("GMP", "recipient")).get_json()
    assert item["returned_at"] is None


def test_unsigned_badly_signed_and_stale_events_are_refused(client, app):
    secret = app.extensions["settings"].event_secret
    message = outcome_event(str(uuid.uuid4()))
    body = json.dumps(message).encode()
    assert client.post("/internal/events", data=body, headers={"Content-Type": "application/json"}).status_code == 401
    assert signed_post(client, "wrong-secret", message).status_code == 401
    stale = signing.signed_headers(secret, body, now=time.time() - 3600)
    assert client.post("/internal/events", data=body, headers=stale).status_code == 401


def test_a_malformed_event_is_422(client, app):
    response = signed_post(client, app.extensions["settings"].event_secret, {"id": "not-a-uuid", "type": "x"})
    assert response.status_code == 422
    assert "id" in response.get_json()["errors"]["json"]


def test_relay_and_sweep_jobs_queued_before_the_outbox_moved_still_run():
    """Jobs already in Redis name ``shared.events``; new ones name ``shared.outbox``."""
    from rq.utils import import_attribute

    from shared import outbox

    assert import_attribute("shared.events.relay_event") is outbox.relay_event
    assert import_attribute("shared.events.sweep_outbox") is outbox.sweep_outbox


def test_a_notice_whose_row_is_busy_waits_for_it_instead_of_skipping(app, client, token, mailbox):
    """Seen in the end-to-end test on PostgreSQL: the notification job skipped a dissemination
    row another transaction held (``SKIP LOCKED``) and answered "nothing to do", so the notice
    waited minutes for the sweep. It now waits for the row and sends once."""
    import threading

    from sqlalchemy import select

    from services.dissemination import jobs
    from services.dissemination.models import Dissemination

    if not app.extensions["settings"].on_postgres:
        pytest.skip("row locks need PostgreSQL (SQLite locks the whole file)")
    package = issue_package(client, token(), recipients=["MPS"])
    holder = app.extensions["database"].session()
    row = holder.scalars(select(Dissemination).where(Dissemination.package_id == package["id"]).with_for_update()).one()
    result = {}
    job = threading.Thread(target=lambda: result.update(answer=jobs.notify_recipient("deliver", str(row.id))))
    job.start()
    job.join(timeout=1.0)
    assert job.is_alive(), "the job waits while another transaction holds the row"
    holder.commit()
    holder.close()
    job.join(timeout=30)
    assert result["answer"] == "sent by email"
    assert len(mailbox()) == 1
    assert jobs.notify_recipient("deliver", str(row.id)) == "already delivered"


def signed_batch(client, secret, messages: list[dict]):
    body = json.dumps({"events": messages}).encode()
    return client.post("/internal/events/batch", data=body, headers=signing.signed_headers(secret, body))


def test_a_batch_applies_each_event_once_and_answers_for_each(client, token, app):
    from sqlalchemy import select

    issue_package(client, token(), recipients=["GMP"])
    item = client.get("/api/v1/inbox", headers=token("GMP", "recipient")).get_json()[0]
    secret = app.extensions["settings"].event_secret
    good = outcome_event(item["id"])
    broken = outcome_event(item["id"])
    broken["payload"] = {"status": "final"}  # no return: the handler cannot apply it
    ping = {**outcome_event(item["id"]), "type": "drill.ping", "payload": {}}
    answer = signed_batch(client, secret, [good, good, broken, ping])
    assert answer.status_code == 200
    assert [row["result"] for row in answer.get_json()["results"]] == ["applied", "duplicate", "failed", "ignored"]
    item = client.get(f"/api/v1/disseminations/{item['id']}", headers=token("GMP", "recipient")).get_json()
    assert item["status"] == "returned"
    models = app.extensions["service"].models
    session = app.extensions["database"].session()
    try:
        recorded = set(session.scalars(select(models.InboxEvent.event_id)))
    finally:
        session.close()
    # The one that failed is not recorded, so it can be sent again and applied then.
    assert uuid.UUID(good["id"]) in recorded and uuid.UUID(ping["id"]) in recorded
    assert uuid.UUID(broken["id"]) not in recorded
    again = signed_batch(client, secret, [good])
    assert again.get_json()["results"] == [{"id": good["id"], "result": "duplicate"}]


def test_a_batch_must_be_signed_and_within_its_size(client, app):
    from shared.inbox import MAX_BATCH

    secret = app.extensions["settings"].event_secret
    message = outcome_event(str(uuid.uuid4()))
    body = json.dumps({"events": [message]}).encode()
    unsigned = client.post("/internal/events/batch", data=body, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    too_many = signed_batch(client, secret, [outcome_event(str(uuid.uuid4())) for _ in range(MAX_BATCH + 1)])
    assert too_many.status_code == 422 and "events" in too_many.get_json()["errors"]["json"]
    empty = signed_batch(client, secret, [])
    assert empty.status_code == 422 and "events" in empty.get_json()["errors"]["json"]
    malformed = signed_batch(client, secret, [{"id": "not-a-uuid"}])
    assert malformed.status_code == 422 and "events" in malformed.get_json()["errors"]["json"]


def test_a_batch_reads_its_disseminations_at_once(client, token, app):
    """A batch of outcome.filed events reads the disseminations it names, with their packages,
    and which of them were passed on, in one go: a batch of 6 costs the reads a batch of 2 does
    (each event used to read its dissemination again with its lock, and look for onward ones)."""
    from sqlalchemy import event

    forces = ["GMP", "MPS", "WMP", "MERSEY", "LANCS", "CHESHIRE", "KENT", "ESSEX"]
    for force in forces:
        issue_package(client, token(), recipients=[force])
    secret = app.extensions["settings"].event_secret
    engine = app.extensions["database"].engine
    reads: list[str] = []

    def keep(_conn, _cursor, statement, *_args):
        if statement.lstrip().upper().startswith("SELECT"):
            reads.append(statement)

    costs = {}
    for forces_in_batch in (forces[:2], forces[2:]):
        ids = [
            client.get("/api/v1/inbox", headers=token(force, "recipient")).get_json()[0]["id"]
            for force in forces_in_batch
        ]
        reads.clear()
        event.listen(engine, "before_cursor_execute", keep)
        try:
            answer = signed_batch(client, secret, [outcome_event(i) for i in ids])
        finally:
            event.remove(engine, "before_cursor_execute", keep)
        assert [row["result"] for row in answer.get_json()["results"]] == ["applied"] * len(ids)
        costs[len(ids)] = len(reads)
        for force, dissemination in zip(forces_in_batch, ids, strict=True):
            item = client.get(f"/api/v1/disseminations/{dissemination}", headers=token(force, "recipient")).get_json()
            assert item["status"] == "returned"
    assert costs[6] == costs[2], costs


def test_an_event_whose_handler_breaks_a_constraint_is_failed_not_taken_for_a_duplicate(app):
    """Applied alone after its batch failed, an event whose handler breaks a constraint other
    than the inbox's is answered ``failed`` (its sender tries it again) and left unrecorded; only
    an event the inbox already holds is a ``duplicate``."""
    from sqlalchemy import select

    from services.dissemination.models import Organisation
    from shared.inbox import apply_events_once

    models = app.extensions["service"].models

    def clashing(session, message):
        session.add(Organisation(code="GMP", name="A second GMP", kind="force"))  # GMP exists
        session.flush()

    handlers = {"test.clash": clashing, "test.fine": lambda session, message: None}
    clash = {**outcome_event(str(uuid.uuid4())), "type": "test.clash"}
    fine = {**outcome_event(str(uuid.uuid4())), "type": "test.fine"}
    session = app.extensions["database"].session()
    try:
        assert apply_events_once(session, models, handlers, [fine, clash]) == ["applied", "failed"]
        recorded = set(session.scalars(select(models.InboxEvent.event_id)))
        assert uuid.UUID(fine["id"]) in recorded and uuid.UUID(clash["id"]) not in recorded
        assert apply_events_once(session, models, handlers, [fine]) == ["duplicate"]
    finally:
        session.close()
