"""Finding of the penetration test: webhooks to forces were signed with the secret that mints
admin tokens. Each organisation now has its own Standard Webhooks secret, shown once, kept
sealed, rotatable; both senders (deliveries and chases) sign with it."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
import responses
from sqlalchemy import inspect, select, text, update
from standardwebhooks import Webhook, WebhookVerificationError

from services.dissemination.models import IdempotencyRecord, Organisation
from services.outcomes import chasing
from shared import signing, webhook_secrets
from tests.dissemination.helpers import issue_package
from tests.outcomes.chase_helpers import issue_return
from tests.outcomes.test_chasing import chase, chases  # noqa: F401 - the chase fixture

GMP_HOOK = "https://hooks.gmp.example/nclcc"
MPS_HOOK = "https://hooks.mps.example/nclcc"


def set_webhook(client, token, code, url) -> str:
    response = client.patch(f"/api/v1/organisations/{code}", json={"webhook_url": url}, headers=token(roles="admin"))
    assert response.status_code == 200, response.get_json()
    secret = response.get_json()["webhook_secret"]
    assert secret.startswith("whsec_")
    return secret


def rotate(client, token, code, **headers):
    return client.post(f"/api/v1/organisations/{code}/webhook-secret", headers={**token(roles="admin"), **headers})


def deliveries_to(url: str) -> list:
    return [call.request for call in responses.calls if call.request.url == url]


@responses.activate
def test_a_force_verifies_a_delivery_with_its_own_secret_and_not_with_anothers(client, token, run_jobs):
    responses.add_passthru("http://127.0.0.1")
    gmp, mps = set_webhook(client, token, "GMP", GMP_HOOK), set_webhook(client, token, "MPS", MPS_HOOK)
    assert gmp != mps
    responses.add(responses.POST, GMP_HOOK, status=200)
    responses.add(responses.POST, MPS_HOOK, status=200)
    package = issue_package(client, token(), recipients=["GMP", "MPS"])
    run_jobs()
    [to_gmp], [to_mps] = deliveries_to(GMP_HOOK), deliveries_to(MPS_HOOK)
    # What a force writes: Webhook(secret).verify(body, headers) gives the payload back.
    payload = Webhook(gmp).verify(to_gmp.body, dict(to_gmp.headers))
    assert payload["organisation"] == "GMP" and payload["reference"] == package["reference"]
    assert Webhook(mps).verify(to_mps.body, dict(to_mps.headers))["organisation"] == "MPS"
    with pytest.raises(WebhookVerificationError):
        Webhook(mps).verify(to_gmp.body, dict(to_gmp.headers))
    # The ids differ per message and are the same on every try of one message.
    assert to_gmp.headers["webhook-id"] != to_mps.headers["webhook-id"]


@responses.activate
def test_rotation_returns_a_new_secret_once_and_the_old_one_stops_verifying(client, token, run_jobs):
    responses.add_passthru("http://127.0.0.1")
    old = set_webhook(client, token, "GMP", GMP_HOOK)
    response = rotate(client, token, "GMP")
    assert response.status_code == 201
    new = response.get_json()["webhook_secret"]
    assert new.startswith("whsec_") and new != old
    assert response.get_json()["code"] == "GMP"
    responses.add(responses.POST, GMP_HOOK, status=200)
    issue_package(client, token(), recipients=["GMP"])
    run_jobs()
    [request] = deliveries_to(GMP_HOOK)
    assert Webhook(new).verify(request.body, dict(request.headers))
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(request.body, dict(request.headers))
    # Never shown again: not by GET, not by a PATCH that leaves the URL as it is.
    assert "webhook_secret" not in client.get("/api/v1/organisations/GMP", headers=token(roles="admin")).get_json()
    same = client.patch(
        "/api/v1/organisations/GMP", json={"webhook_url": GMP_HOOK, "name": "GMP Police"}, headers=token(roles="admin")
    )
    assert same.status_code == 200 and "webhook_secret" not in same.get_json()


def test_rotation_honours_the_idempotency_key_and_is_for_admins_only(client, token, session):
    set_webhook(client, token, "GMP", GMP_HOOK)
    first = rotate(client, token, "GMP", **{"Idempotency-Key": "rotate-gmp-1"})
    again = rotate(client, token, "GMP", **{"Idempotency-Key": "rotate-gmp-1"})
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    secret = first.get_json()["webhook_secret"]
    assert again.get_json()["webhook_secret"] == secret
    # The kept answer holds the secret sealed, never in clear.
    stored = session.scalars(select(IdempotencyRecord.response_body)).all()
    assert stored and not any(secret in body for body in stored)
    assert rotate(client, token, "GMP", **{"Idempotency-Key": "rotate-gmp-2"}).get_json()["webhook_secret"] != secret
    recipient = client.post("/api/v1/organisations/GMP/webhook-secret", headers=token(org="GMP", roles="recipient"))
    assert recipient.status_code == 403
    assert rotate(client, token, "MPS").status_code == 409  # no webhook, no secret
    assert rotate(client, token, "NOPE").status_code == 404


def test_create_with_a_webhook_returns_its_secret_once_and_removing_the_webhook_drops_it(client, token, session):
    admin = token(roles="admin")
    body = {
        "code": "NCA",
        "name": "National Crime Agency",
        "kind": "national",
        "webhook_url": "https://hooks.nca.example/in",
    }
    created = client.post("/api/v1/organisations", json=body, headers=admin)
    assert created.status_code == 201 and created.get_json()["webhook_secret"].startswith("whsec_")
    assert created.get_json()["webhook_secret_created_at"]
    without = client.post(
        "/api/v1/organisations", json={"code": "NCA2", "name": "Another", "kind": "other"}, headers=admin
    )
    assert without.status_code == 201 and "webhook_secret" not in without.get_json()
    cleared = client.patch("/api/v1/organisations/NCA", json={"webhook_url": None}, headers=admin)
    assert cleared.status_code == 200 and cleared.get_json()["webhook_secret_created_at"] is None
    assert session.get(Organisation, "NCA").webhook_secret_sealed is None


def test_the_secret_appears_nowhere_but_in_the_answer_that_made_it(
    client, token, run_jobs, consumer, session, app, caplog
):
    caplog.set_level(logging.DEBUG)
    admin = token(roles="admin")
    secrets = [set_webhook(client, token, "GMP", GMP_HOOK), rotate(client, token, "GMP").get_json()["webhook_secret"]]
    body = {
        "code": "NCA",
        "name": "National Crime Agency",
        "kind": "national",
        "webhook_url": "https://hooks.nca.example/in",
    }
    secrets.append(client.post("/api/v1/organisations", json=body, headers=admin).get_json()["webhook_secret"])
    run_jobs()
    seen = {
        "GET /organisations": client.get("/api/v1/organisations?per_page=100", headers=admin).get_data(as_text=True),
        "GET /organisations/GMP": client.get("/api/v1/organisations/GMP", headers=admin).get_data(as_text=True),
        "the audit log": client.get("/api/v1/audit?per_page=100", headers=admin).get_data(as_text=True),
        "the outbox": client.get("/api/v1/outbox?per_page=100", headers=admin).get_data(as_text=True),
        "events sent to subscribers": json.dumps(consumer.received),
        "the logs": "\n".join(record.getMessage() for record in caplog.records),
        "the organisations table": json.dumps(
            [row._asdict() for row in session.execute(text("SELECT * FROM organisations")).all()], default=str
        ),
    }
    # The event log the metrics service reads (and rebuilds from), signed like events.
    path = "/internal/events/log?after=0&limit=5000"
    log = client.get(path, headers=signing.signed_headers(app.extensions["settings"].event_secret, path.encode()))
    assert log.status_code == 200
    seen["the event log"] = log.get_data(as_text=True)
    updates = [
        e for e in log.get_json()["events"] if e["type"] == "organisation.updated" and e["aggregate_id"] == "GMP"
    ]
    assert updates and updates[-1]["payload"]["webhook_secret_sealed"]  # sealed: useless without the key
    for secret in secrets:
        raw = secret.removeprefix("whsec_")
        for where, content in seen.items():
            assert raw not in content, f"a webhook secret is in {where}"


def test_the_metrics_service_keeps_no_webhook_secret(client, token, metrics_app, pump_events):
    secret = set_webhook(client, token, "GMP", GMP_HOOK)
    pump_events(target=metrics_app)  # organisation.updated, sealed secret and all
    database = metrics_app.extensions["database"]
    schema = metrics_app.extensions["settings"].database_schema
    inspector = inspect(database.engine)
    with database.engine.connect() as connection:
        for table in inspector.get_table_names(schema=schema):
            names = [column["name"] for column in inspector.get_columns(table, schema=schema)]
            assert not [name for name in names if "webhook" in name or "secret" in name], table
            rows = json.dumps(
                [
                    list(row)
                    for row in connection.execute(
                        text(f'SELECT * FROM "{schema}"."{table}"' if schema else f'SELECT * FROM "{table}"')
                    )
                ],
                default=str,
            )
            assert secret.removeprefix("whsec_") not in rows and "gAAAAA" not in rows, table


@responses.activate
def test_a_webhook_from_before_per_organisation_secrets_gets_one_on_first_use(
    client, token, run_jobs, session, consumer, app
):
    responses.add_passthru("http://127.0.0.1")
    session.execute(update(Organisation).where(Organisation.code == "GMP").values(webhook_url=GMP_HOOK))
    session.commit()
    responses.add(responses.POST, GMP_HOOK, status=200)
    issue_package(client, token(), recipients=["GMP"])
    run_jobs()
    [request] = deliveries_to(GMP_HOOK)
    sealed = session.scalar(select(Organisation.webhook_secret_sealed).where(Organisation.code == "GMP"))
    assert sealed
    secret = webhook_secrets.unseal(app.extensions["settings"], sealed)
    assert Webhook(secret).verify(request.body, dict(request.headers))
    announced = [e for e in consumer.of_type("organisation.updated") if e["aggregate_id"] == "GMP"]
    assert announced[-1]["payload"]["webhook_secret_sealed"] == sealed  # so the outcomes service can sign too


@responses.activate
def test_chases_are_signed_with_the_secret_the_dissemination_service_announced(  # noqa: F811 - chase is a fixture
    chase,  # noqa: F811
    client,
    token,
    pump_events,
    outcomes_app,
    outcomes_client,
):
    responses.add_passthru("http://127.0.0.1")
    secret = set_webhook(client, token, "GMP", GMP_HOOK)
    other = set_webhook(client, token, "MPS", MPS_HOOK)
    pump_events()
    responses.add(responses.POST, GMP_HOOK, status=200)
    _, sweep_and_send = chase
    return_id = issue_return(outcomes_app, due_in_seconds=10)
    sweep_and_send(8.5)
    [request] = deliveries_to(GMP_HOOK)
    payload = Webhook(secret).verify(request.body, dict(request.headers))
    assert payload["event"] == "outcome_return.chase" and payload["return_id"] == return_id
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(request.body, dict(request.headers))
    # After a rotation the chaser signs with the new secret only.
    new = rotate(client, token, "GMP").get_json()["webhook_secret"]
    pump_events()
    outcomes_session = outcomes_app.extensions["database"].session()
    entry = chasing.ChaseEntry(
        return_id=uuid.UUID(return_id), step="manual", notify="recipient", planned_at=chasing.utcnow(), result="pending"
    )
    outcomes_session.add(entry)
    outcomes_session.commit()
    assert chasing.send_chase(outcomes_session, outcomes_app.extensions["settings"], entry.id) == "sent"
    outcomes_session.close()
    latest = deliveries_to(GMP_HOOK)[-1]
    assert Webhook(new).verify(latest.body, dict(latest.headers))
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(latest.body, dict(latest.headers))


@responses.activate
def test_the_chaser_never_sends_an_unsigned_webhook(chase, outcomes_app, outcomes_client, token, mailbox):  # noqa: F811
    from tests.outcomes.chase_helpers import seed_organisation

    responses.add_passthru("http://127.0.0.1")
    # A copy of the directory from before per-organisation secrets: a webhook and no secret.
    seed_organisation(outcomes_app, webhook_url=GMP_HOOK, webhook_secret_sealed=None)
    responses.add(responses.POST, GMP_HOOK, status=200)
    _, sweep_and_send = chase
    return_id = issue_return(outcomes_app, due_in_seconds=10)
    sweep_and_send(8.5)
    assert deliveries_to(GMP_HOOK) == []
    [entry] = chases(outcomes_client, token, return_id)
    assert entry["result"] == "sent_fallback" and entry["channel"] == "email"
    assert "no signing secret" in entry["error"]
    assert [m["To"] for m in mailbox()] == ["outcomes.gmp@directory.invalid"]
