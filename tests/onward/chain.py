"""A package passed on along a chain, through the real services and their events:

The centre issues a package to ROCU-NW and MPS. ROCU-NW files an interim return (1 arrest,
direct) that passes it on to GMP: GMP gets an onward dissemination (depth 1) and owes a return.
"""

from __future__ import annotations

import json

from sqlalchemy import select

from shared import signing
from tests.dissemination.helpers import issue_package
from tests.outcomes.helpers import outcome_body


def carry(pump_events, app, outcomes_app) -> int:
    """Carry events both ways until neither service has anything new for the other."""
    carried = 0
    while moved := pump_events(source=app, target=outcomes_app) + pump_events(source=outcomes_app, target=app):
        carried += moved
    return carried


def file(outcomes_client, token, org: str, return_id: str, **changes):
    return outcomes_client.post(
        f"/api/v1/returns/{return_id}/outcomes", json=outcome_body(**changes), headers=token(org, "recipient")
    )


def pass_on(to: str, **changes) -> dict:
    """What a return passing the package on says (besides any results)."""
    body = {
        "status": "interim",
        "actions": ["passed_on"],
        "passed_to": to,
        "results": {},
        "attribution": None,
        "strands": [],
    }
    body.update(changes)
    return body


def disseminations(client, token, package_id: str) -> dict[str, dict]:
    rows = client.get(f"/api/v1/packages/{package_id}/disseminations", headers=token()).get_json()
    return {row["organisation"]: row for row in rows}


def returns_of(outcomes_client, token, package_id: str) -> dict[str, dict]:
    rows = outcomes_client.get(f"/api/v1/returns?package={package_id}", headers=token()).get_json()
    return {row["organisation"]: row for row in rows}


def start(client, token, app, outcomes_app, outcomes_client, pump_events, run_jobs) -> dict:
    """Issue to ROCU-NW and MPS, deliver, and have ROCU-NW pass it on to GMP. Returns the
    package and {organisation: dissemination id}."""
    package = issue_package(client, token(), recipients=["ROCU-NW", "MPS"])
    run_jobs()
    carry(pump_events, app, outcomes_app)
    ids = {org: row["id"] for org, row in disseminations(client, token, package["id"]).items()}
    response = file(
        outcomes_client,
        token,
        "ROCU-NW",
        ids["ROCU-NW"],
        **pass_on("GMP", actions=["enforcement", "passed_on"], results={"arrests": 1}, attribution="direct"),
    )
    assert response.status_code == 201, response.get_json()
    carry(pump_events, app, outcomes_app)
    ids = {org: row["id"] for org, row in disseminations(client, token, package["id"]).items()}
    return {"package": package, "ids": ids}


def deepen(client, token, app, outcomes_app, outcomes_client, pump_events, world: dict) -> dict[str, str]:
    """GMP passes it to LANCS and LANCS to CHESHIRE: ROCU-NW (0) -> GMP (1) -> LANCS (2) ->
    CHESHIRE (3). Returns {organisation: dissemination id}."""
    package_id = world["package"]["id"]
    for org, to in (("GMP", "LANCS"), ("LANCS", "CHESHIRE")):
        held = disseminations(client, token, package_id)[org]["id"]
        response = file(outcomes_client, token, org, held, **pass_on(to))
        assert response.status_code == 201, response.get_json()
        carry(pump_events, app, outcomes_app)
    return {org: row["id"] for org, row in disseminations(client, token, package_id).items()}


def outbox_messages(service_app) -> list[dict]:
    """Every event the service has emitted, as its relay sends them, in order."""
    models = service_app.extensions["service"].models
    session = service_app.extensions["database"].session()
    try:
        events = session.scalars(select(models.OutboxEvent).order_by(models.OutboxEvent.position)).all()
        return [e.as_message(service_app.extensions["service"].name) for e in events]
    finally:
        session.close()


def deliver(target, message: dict) -> str:
    """One event to a service's /internal/events, signed; its answer (applied, duplicate, ignored)."""
    body = json.dumps(message).encode()
    secret = target.extensions["settings"].event_secret
    response = target.test_client().post("/internal/events", data=body, headers=signing.signed_headers(secret, body))
    assert response.status_code == 200, response.get_json()
    return response.get_json()["result"]


def deliver_batch(target, messages: list[dict]) -> list[str]:
    """Events to a service's /internal/events/batch in one POST, signed, as the relay sends a
    subscriber's waiting ones; each one's answer."""
    body = json.dumps({"events": messages}).encode()
    secret = target.extensions["settings"].event_secret
    response = target.test_client().post(
        "/internal/events/batch", data=body, headers=signing.signed_headers(secret, body)
    )
    assert response.status_code == 200, response.get_json()
    return [row["result"] for row in response.get_json()["results"]]
