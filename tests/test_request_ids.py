"""The request id: taken from a sane X-Request-ID or made, returned in the answer, stored with each
event and sent with it, put in each job's meta, and bound again by the worker and by each
consumer, so that one outcome can be followed through the JSON logs of the three services and
the worker (docs/observability.md)."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from rq import Queue
from rq.job import Job
from sqlalchemy import select

from shared.auth import mint_token
from shared.service import Runtime, set_runtime
from tests.browser import Server
from tests.dissemination.helpers import issue_package
from tests.outcomes.helpers import outcome_body

MADE = re.compile(r"[0-9a-f]{32}")


def test_a_sane_request_id_comes_back_in_the_answer(client, token):
    for given in ("abc", "req-2026-11-30T10:00:00Z/42", "x" * 128):
        response = client.get("/api/v1/organisations", headers={**token(), "X-Request-ID": given})
        assert response.status_code == 200
        assert response.headers["X-Request-ID"] == given


@pytest.mark.parametrize(
    "given",
    ["", "x" * 129, "two words", "line\nbreak", "tab\there", "caf\u00e9", "\x7f"],
    ids=["empty", "too long", "space", "newline", "tab", "not ascii", "delete"],
)
def test_an_insane_request_id_is_replaced_by_a_made_one(client, token, given):
    headers, environ = token(), {}
    if "\n" in given:  # the test client refuses such a header; a raw server may pass it on
        environ["HTTP_X_REQUEST_ID"] = given
    else:
        headers["X-Request-ID"] = given
    response = client.get("/api/v1/organisations", headers=headers, environ_overrides=environ)
    assert response.status_code == 200
    assert MADE.fullmatch(response.headers["X-Request-ID"]), response.headers["X-Request-ID"]


def test_a_request_without_one_gets_a_new_one_each_time_even_when_refused(client):
    first = client.get("/api/v1/organisations")
    second = client.get("/api/v1/organisations")
    assert first.status_code == second.status_code == 401
    assert MADE.fullmatch(first.headers["X-Request-ID"]) and MADE.fullmatch(second.headers["X-Request-ID"])
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


def test_the_event_is_stored_and_delivered_with_its_request_id_and_jobs_carry_it(
    client, token, session, app, consumer, run_jobs, redis_conn
):
    redis_conn.flushdb()  # the seeded directory's relays: no request caused them
    package = issue_package(client, {**token(), "X-Request-ID": "issue-trace-1"}, recipients=["GMP"])
    models = app.extensions["service"].models
    event = session.scalars(select(models.OutboxEvent).where(models.OutboxEvent.type == "package.issued")).one()
    assert event.request_id == "issue-trace-1"
    # Every job the request enqueued (the relay, GMP's notification) carries it for the worker.
    queued = [
        Job.fetch(job_id, connection=redis_conn)
        for name in ("dissemination", "events")
        for job_id in Queue(name, connection=redis_conn).get_job_ids()
    ]
    assert queued and {job.meta.get("request_id") for job in queued} == {"issue-trace-1"}
    run_jobs()
    delivered = consumer.of_type("package.issued")
    assert [(message["aggregate_id"], message["request_id"]) for message in delivered] == [
        (package["id"], "issue-trace-1")
    ]


def test_events_a_consumer_emits_while_applying_one_carry_its_request_id(outcomes_app, monkeypatch):
    """What a handler emits is caused by the same request as the event it applies."""
    from services.outcomes.models import shared_models
    from shared import signing
    from shared.outbox import emit

    service = outcomes_app.extensions["service"]
    settings = outcomes_app.extensions["settings"]

    def answer(session, message):
        emit(session, shared_models, settings, "test.answered", message["aggregate_id"], {})

    monkeypatch.setitem(service.event_handlers, "test.asked", answer)
    message = {
        "id": "6f1f7d1e-8a4b-4a8e-9d51-1c2f4b8f0a11",
        "type": "test.asked",
        "source": "dissemination",
        "aggregate_id": "A1",
        "occurred_at": "2026-11-30T10:00:00+00:00",
        "payload": {},
        "request_id": "asked-in-request-7",
    }
    body = json.dumps(message).encode()
    response = outcomes_app.test_client().post(
        "/internal/events", data=body, headers=signing.signed_headers(settings.event_secret, body)
    )
    assert response.status_code == 200 and response.get_json()["result"] == "applied"
    assert response.headers["X-Request-ID"] == "asked-in-request-7"
    session = outcomes_app.extensions["database"].session()
    try:
        answered = session.scalars(
            select(shared_models.OutboxEvent).where(shared_models.OutboxEvent.type == "test.answered")
        ).one()
    finally:
        session.close()
    assert answered.request_id == "asked-in-request-7"


@pytest.fixture
def three_services(clean_db, redis_conn, consumer):
    """The three services on loopback ports, each sending its events to the others for real (by
    the relay, run in-process by ``run_jobs``), as in production."""
    from services.dissemination import create_app as dissemination_app
    from services.metrics import create_app as metrics_app
    from services.outcomes import create_app as outcomes_app

    servers = {name: Server() for name in ("dissemination", "outcomes", "metrics")}
    urls = {name: server.url for name, server in servers.items()}
    subscribers = {"dissemination": ["outcomes", "metrics"], "outcomes": ["dissemination", "metrics"], "metrics": []}
    factories = {"dissemination": dissemination_app, "outcomes": outcomes_app, "metrics": metrics_app}
    apps = {
        name: factory({"settings": {"testing": True, "service_urls": urls, "subscribers": subscribers[name]}})
        for name, factory in factories.items()
    }
    for name, application in apps.items():
        servers[name].app = application
        settings = dataclasses.replace(application.extensions["settings"])
        set_runtime(name, Runtime(application.extensions["service"], settings, application.extensions["database"]))
    with apps["dissemination"].app_context():
        from services.dissemination.directory import seed_directory
        from shared.db import get_session

        seed_directory(get_session(), apps["dissemination"].extensions["settings"])
    yield apps
    for name, application in apps.items():
        set_runtime(name, None)
        servers[name].stop()
        application.extensions["database"].engine.dispose()


def test_one_outcome_is_followed_by_its_request_id_through_every_service_and_the_worker(
    three_services, run_jobs, log_lines
):
    apps = three_services
    settings = apps["dissemination"].extensions["settings"]

    def headers(org: str, role: str, request_id: str | None = None) -> dict:
        value = mint_token(settings, sub=f"{role}@{org.lower()}", org=org, roles=[role])
        return {"Authorization": f"Bearer {value}", **({"X-Request-ID": request_id} if request_id else {})}

    package = issue_package(apps["dissemination"].test_client(), headers("NCLCC", "issuer"), recipients=["GMP"])
    run_jobs("dissemination", "outcomes", "metrics")
    outcomes = apps["outcomes"].test_client()
    returns = outcomes.get(f"/api/v1/returns?package={package['id']}", headers=headers("GMP", "recipient"))
    [expected] = returns.get_json()
    filed = outcomes.post(
        f"/api/v1/returns/{expected['id']}/outcomes",
        json=outcome_body(status="final"),
        headers=headers("GMP", "recipient", request_id="abc"),
    )
    assert filed.status_code == 201, filed.get_json()
    assert filed.headers["X-Request-ID"] == "abc"
    run_jobs("dissemination", "outcomes", "metrics")

    # The event as stored by the outcomes service, and as applied by the other two.
    models = apps["outcomes"].extensions["service"].models
    session = apps["outcomes"].extensions["database"].session()
    try:
        stored = session.scalars(select(models.OutboxEvent).where(models.OutboxEvent.type == "outcome.filed")).one()
        assert stored.request_id == "abc"
        assert stored.as_message("outcomes")["request_id"] == "abc"
        assert {d.subscriber: d.status for d in stored.deliveries} == {
            "dissemination": "delivered",
            "metrics": "delivered",
        }
    finally:
        session.close()
    returned = (
        apps["dissemination"]
        .test_client()
        .get(f"/api/v1/packages/{package['id']}/disseminations", headers=headers("NCLCC", "issuer"))
    )
    assert [row["returned_at"] is not None for row in returned.get_json()] == [True]

    followed = [line for line in log_lines() if line.get("request_id") == "abc"]
    # The producing service, while the request ran.
    assert {"service": "outcomes", "event": "event emitted", "type": "outcome.filed"}.items() <= _first(
        followed, event="event emitted"
    ).items()
    # The worker: each relay job, bound to the request id from its meta, with its own job id.
    relays = [line for line in followed if line["event"] == "event relayed" and line["event_id"] == str(stored.id)]
    assert sorted(line["subscriber"] for line in relays) == ["dissemination", "metrics"]
    assert all(line["job_id"].startswith("relay-outcomes-") and line["queue"] == "events" for line in relays)
    # Each consumer: one INFO line when it applies the event.
    applied = [
        (line["service"], line["type"], line["source"], line["level"])
        for line in followed
        if line["event"] == "event applied"
    ]
    # Filing counted as the acknowledgement the recipient had not given: the dissemination
    # service announced it while applying the event, under the same request id.
    assert sorted(applied) == [
        ("dissemination", "outcome.filed", "outcomes", "info"),
        ("metrics", "dissemination.acknowledged", "dissemination", "info"),
        ("metrics", "outcome.filed", "outcomes", "info"),
        ("outcomes", "dissemination.acknowledged", "dissemination", "info"),
    ]
    assert all(
        line["event_id"] == str(stored.id)
        for line in followed
        if line["event"] == "event applied" and line["type"] == "outcome.filed"
    )
    # Every line of the run is one JSON object with the fields an operator filters on.
    for line in log_lines():
        assert {"timestamp", "level", "logger", "process", "event"} <= line.keys(), line


def _first(lines: list[dict], **match) -> dict:
    return next(line for line in lines if all(line.get(key) == value for key, value in match.items()))


def test_a_relayed_event_makes_one_info_line_at_most(three_services, run_jobs, log_lines):
    """Running was chatty (about five INFO lines per relayed event): now the consumer's "event
    applied" is the only one of ours; the relay and the access log keep theirs at DEBUG."""
    apps = three_services
    run_jobs("dissemination", "outcomes", "metrics")  # the directory's events, seeded above
    # Relayed alone ("event relayed") or several in one POST ("events relayed in a batch").
    relayed = [line for line in log_lines() if line["event"] == "event relayed"] + [
        line for line in log_lines() if line["event"] == "events relayed in a batch" for _ in range(line["taken"])
    ]
    assert relayed, "the seeded directory's events were relayed"
    ours = [
        line
        for line in log_lines()
        if line["level"] != "debug" and line["logger"].startswith(("shared.", "services.", "gunicorn.access"))
    ]
    assert ours and {line["event"] for line in ours} == {"event applied"}
    assert len(ours) <= len(relayed)
    assert apps
