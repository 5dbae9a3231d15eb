"""A small, hand-checked history, made through the real dissemination and outcomes services:

Package A (county lines, graded 2B) to GMP, MPS and WMP:
  GMP acknowledges, files an interim return (enforcement, 3 arrests, direct), then a final one,
  then amends the final to 5 arrests and 2 charges (direct) -> only the amendment counts.
  MPS files a final return: no action (usefulness 2, not confirmed).
  WMP stays silent and goes overdue.
Package B (firearms, graded 1A) to GMP only: withdrawn.
Package C (county lines, graded 2B) to MPS: MPS files final, safeguarding, 1 person safeguarded
  (a child), contributed, partly confirmed.
All three are OFFICIAL-SENSITIVE. ``add_official_package`` adds, for the clearance tests:
Package E (firearms, graded 3C, OFFICIAL) to GMP: GMP files final, enforcement, 7 arrests, direct,
  the intelligence judged false.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from services.outcomes import chasing
from shared.db import utcnow
from tests.dissemination.helpers import issue_package
from tests.outcomes.helpers import outcome_body


def file(outcomes_client, token, org, return_id, **changes):
    response = outcomes_client.post(
        f"/api/v1/returns/{return_id}/outcomes", json=outcome_body(**changes), headers=token(org, "recipient")
    )
    assert response.status_code == 201, response.get_json()


def build(client, token, outcomes_app, outcomes_client, pump_events, metrics_app, run_jobs) -> dict:
    a = issue_package(
        client,
        token(),
        recipients=["GMP", "MPS", "WMP"],
        threat_area="county_lines",
        source_evaluation=2,
        intelligence_assessment="B",
    )
    b = issue_package(
        client, token(), recipients=["GMP"], threat_area="firearms", source_evaluation=1, intelligence_assessment="A"
    )
    c = issue_package(
        client,
        token(),
        recipients=["MPS"],
        threat_area="county_lines",
        source_evaluation=2,
        intelligence_assessment="B",
    )
    run_jobs()  # delivery notifications: every recipient is e-mailed
    pump_events()
    returns = {}
    for package, name in ((a, "a"), (b, "b"), (c, "c")):
        rows = client.get(f"/api/v1/packages/{package['id']}/disseminations", headers=token()).get_json()
        returns[name] = {row["organisation"]: row["id"] for row in rows}
    client.post(f"/api/v1/disseminations/{returns['a']['GMP']}/acknowledge", headers=token("GMP", "recipient"))
    client.post(f"/api/v1/packages/{b['id']}/withdraw", json={"reason": "Superseded."}, headers=token())
    pump_events()

    gmp_a = returns["a"]["GMP"]
    file(
        outcomes_client,
        token,
        "GMP",
        gmp_a,
        status="interim",
        actions=["enforcement"],
        results={"arrests": 3},
        attribution="direct",
    )
    file(
        outcomes_client,
        token,
        "GMP",
        gmp_a,
        status="final",
        actions=["enforcement"],
        results={"arrests": 4},
        attribution="direct",
    )
    file(
        outcomes_client,
        token,
        "GMP",
        gmp_a,
        status="final",
        actions=["enforcement"],
        results={"arrests": 5, "charges": 2},
        attribution="direct",
        strands=["pursue"],
        intelligence_feedback={"usefulness": 4, "accuracy": "confirmed", "timeliness": "timely"},
    )
    file(
        outcomes_client,
        token,
        "MPS",
        returns["a"]["MPS"],
        status="final",
        actions=["no_action"],
        no_action_reason="Subjects already charged.",
        priority="not_prioritised",
        tasking_forum=None,
        results={},
        attribution=None,
        strands=[],
        intelligence_feedback={"usefulness": 2, "accuracy": "not_confirmed", "timeliness": "too_late"},
    )
    file(
        outcomes_client,
        token,
        "MPS",
        returns["c"]["MPS"],
        status="final",
        actions=["safeguarding"],
        priority="medium",
        tasking_forum="MPS tasking",
        results={"people_safeguarded": 1, "children_safeguarded": 1, "safeguarding_referrals": 1},
        attribution="contributed",
        strands=["protect"],
        intelligence_feedback={"usefulness": 5, "accuracy": "partly_confirmed", "timeliness": "timely"},
    )

    # WMP's return goes overdue: the chase sweep, run as if 29 days had passed.
    session = outcomes_app.extensions["database"].session()
    chasing.sweep(session, outcomes_app.extensions["settings"], now=utcnow() + timedelta(days=29))
    session.close()
    return {"a": a, "b": b, "c": c, "returns": returns}


def pump_to_metrics(pump_events, app, outcomes_app, metrics_app) -> None:
    pump_events(source=app, target=metrics_app)
    pump_events(source=outcomes_app, target=metrics_app)


def history(client, token, app, outcomes_app, outcomes_client, pump_events, metrics_app, run_jobs) -> dict:
    """``build``'s history (A, B, C), carried to the metrics service."""
    built = build(client, token, outcomes_app, outcomes_client, pump_events, metrics_app, run_jobs)
    pump_to_metrics(pump_events, app, outcomes_app, metrics_app)
    return built


def mixed_history(client, token, app, outcomes_app, outcomes_client, pump_events, metrics_app, run_jobs) -> dict:
    """``build``'s history (A, B, C: OFFICIAL-SENSITIVE) and E (``add_official_package``: OFFICIAL,
    to GMP, graded 3C, a final return reporting enforcement, 7 arrests, the intelligence judged
    false), carried to the metrics service."""
    built = build(client, token, outcomes_app, outcomes_client, pump_events, metrics_app, run_jobs)
    e = add_official_package(client, token, outcomes_client, pump_events, run_jobs)
    pump_to_metrics(pump_events, app, outcomes_app, metrics_app)
    return {**built, "e": e}


OFFICIAL_TITLE = "Firearm kept at a Salford lock-up"


def add_official_package(client, token, outcomes_client, pump_events, run_jobs) -> dict:
    e = issue_package(
        client,
        token(),
        recipients=["GMP"],
        threat_area="firearms",
        title=OFFICIAL_TITLE,
        classification="OFFICIAL",
        source_evaluation=3,
        intelligence_assessment="C",
    )
    run_jobs()
    pump_events()
    rows = client.get(f"/api/v1/packages/{e['id']}/disseminations", headers=token()).get_json()
    file(
        outcomes_client,
        token,
        "GMP",
        rows[0]["id"],
        status="final",
        actions=["enforcement"],
        results={"arrests": 7},
        attribution="direct",
        intelligence_feedback={"usefulness": 1, "accuracy": "false", "timeliness": "timely"},
    )
    return e


@contextmanager
def migrated_down_to(metrics_app, revision: str) -> Iterator:
    """The metrics schema downgraded to ``revision`` for the block (which gets its engine, to look
    at the tables as they were), then upgraded to head again."""
    from alembic import command

    from services.metrics import SERVICE
    from shared.db import Database
    from shared.migrate import alembic_config

    metrics_app.extensions["database"].engine.dispose()
    database = Database(metrics_app.extensions["settings"], for_worker=True)
    try:
        config = alembic_config(SERVICE, database)
        command.downgrade(config, revision)
        yield database.engine
        command.upgrade(config, "head")
    finally:
        database.engine.dispose()
