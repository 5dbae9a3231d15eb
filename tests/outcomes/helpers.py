"""Building blocks for the outcomes tests."""

from __future__ import annotations

from tests.dissemination.helpers import issue_package


def outcome_body(**changes) -> dict:
    body = {
        "status": "interim",
        "actions": ["enforcement", "safeguarding"],
        "priority": "high",
        "tasking_forum": "GMP Serious Organised Crime tasking",
        "results": {
            "arrests": 3,
            "charges": 2,
            "people_safeguarded": 2,
            "children_safeguarded": 1,
            "drugs_seized_grams": 120.5,
            "cash_seized_gbp": 4500,
        },
        "attribution": "direct",
        "strands": ["pursue", "protect"],
        "intelligence_feedback": {"usefulness": 4, "accuracy": "confirmed", "timeliness": "timely"},
        "comments": "Warrant executed at the trap house on day 3.",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def issued_returns(client, token, pump_events, recipients=("GMP", "MPS"), **package_changes) -> dict[str, str]:
    """Issue a package from the dissemination service and carry its events to the outcomes
    service. Returns {organisation code: return id}."""
    package = issue_package(client, token(), recipients=list(recipients), **package_changes)
    pump_events()
    rows = client.get(f"/api/v1/packages/{package['id']}/disseminations", headers=token()).get_json()
    return {row["organisation"]: row["id"] for row in rows}
