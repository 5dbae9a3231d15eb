"""Returns with due dates seconds away, made the way the dissemination service would: by a
signed package.issued event (its API will not issue anything due within the hour)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from shared import signing, webhook_secrets

FAST_LADDER = [
    {"name": "reminder", "offset_seconds": -2, "notify": "recipient"},
    {"name": "due_today", "offset_seconds": 0, "notify": "recipient"},
    {"name": "overdue", "offset_seconds": 2, "notify": "recipient"},
    {"name": "escalation", "offset_seconds": 4, "notify": "escalation"},
    {"name": "centre_escalation", "offset_seconds": 6, "notify": "centre"},
]


def send_event(outcomes_app, event_type: str, payload: dict, aggregate_id: str) -> None:
    message = {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "source": "dissemination",
        "aggregate_id": aggregate_id,
        "occurred_at": datetime.now(UTC).isoformat(),
        "payload": payload,
    }
    body = json.dumps(message).encode()
    secret = outcomes_app.extensions["settings"].event_secret
    response = outcomes_app.test_client().post(
        "/internal/events", data=body, headers=signing.signed_headers(secret, body)
    )
    assert response.status_code == 200, response.get_json()


def seed_organisation(outcomes_app, code="GMP", **contacts) -> str | None:
    """Announce an organisation as the dissemination service does; one with a webhook gets a
    sealed signing secret unless the test gives one. Returns the secret in clear."""
    payload = {
        "code": code,
        "name": f"{code} Police",
        "region": "North West",
        "email": f"outcomes.{code.lower()}@directory.invalid",
        "escalation_email": f"escalation.{code.lower()}@directory.invalid",
        "webhook_url": None,
        "active": True,
    }
    payload.update(contacts)
    secret = None
    if payload["webhook_url"] and "webhook_secret_sealed" not in contacts:
        secret = webhook_secrets.generate()
        payload["webhook_secret_sealed"] = webhook_secrets.seal(outcomes_app.extensions["settings"], secret)
    send_event(outcomes_app, "organisation.updated", payload, code)
    return secret


def clock_start() -> datetime:
    """'Now' for issue_return; the chase fixture pins it to the moment its sweeps count from, so
    a slow machine cannot shift a return's due date against the sweeps."""
    return datetime.now(UTC)


def issue_return(outcomes_app, due_in_seconds: float, org="GMP", issued_seconds_ago: float = 60) -> str:
    now = clock_start()
    return_id, package_id = str(uuid.uuid4()), str(uuid.uuid4())
    payload = {
        "package_id": package_id,
        "reference": f"NCLCC-2026-{uuid.uuid4().int % 1000000:06d}",
        "title": "Fast ladder package",
        "threat_area": "county_lines",
        "classification": "OFFICIAL",
        "source_evaluation": 2,
        "intelligence_assessment": "B",
        "handling_code": "P",
        "issued_at": (now - timedelta(seconds=issued_seconds_ago)).isoformat(),
        "issued_by": "issuer@nclcc",
        "outcome_due_at": (now + timedelta(seconds=due_in_seconds)).isoformat(),
        "disseminations": [
            {
                "dissemination_id": return_id,
                "package_id": package_id,
                "organisation": org,
                "due_at": (now + timedelta(seconds=due_in_seconds)).isoformat(),
            }
        ],
    }
    send_event(outcomes_app, "package.issued", payload, package_id)
    return return_id


def put_policy(outcomes_client, token, steps) -> None:
    response = outcomes_client.put("/api/v1/chase-policy", json={"steps": steps}, headers=token(roles="admin"))
    assert response.status_code == 200, response.get_json()
