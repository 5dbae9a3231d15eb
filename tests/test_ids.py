"""Ids are made in time order (UUID version 7, ``shared.db.new_id``): a row made later sorts
after one made before, so that a new row goes in at the end of each index that holds it rather
than on a random page of it (docs/performance.md, thirteenth round)."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from shared.db import new_id
from tests.dissemination.helpers import issue_package
from tests.outcomes.helpers import issued_returns, outcome_body


def test_ids_made_one_after_another_sort_in_that_order():
    made = [new_id() for _ in range(5000)]  # many within each millisecond
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert {made_id.version for made_id in made} == {7}


def test_packages_returns_outcomes_and_events_sort_in_the_order_they_were_made(
    client, token, pump_events, outcomes_app, outcomes_client
):
    first = issue_package(client, token(), recipients=["GMP"])
    returns = issued_returns(client, token, pump_events, recipients=("GMP", "MPS"))
    package_ids = [uuid.UUID(first["id"])]
    rows = client.get(f"/api/v1/packages/{first['id']}/disseminations", headers=token()).get_json()
    assert uuid.UUID(rows[0]["id"]) < min(uuid.UUID(return_id) for return_id in returns.values())

    outcome_ids = []
    for status in ("interim", "final"):
        filed = outcomes_client.post(
            f"/api/v1/returns/{returns['GMP']}/outcomes",
            json=outcome_body(status=status),
            headers=token("GMP", "recipient"),
        )
        assert filed.status_code == 201, filed.get_json()
        outcome_ids.append(uuid.UUID(filed.get_json()["id"]))
    assert outcome_ids == sorted(outcome_ids)
    assert package_ids[0].version == 7 and {uuid.UUID(r).version for r in returns.values()} == {7}

    for service_app in (client.application, outcomes_app):
        models = service_app.extensions["service"].models
        session = service_app.extensions["database"].session()
        try:
            event_ids = session.scalars(select(models.OutboxEvent.id).order_by(models.OutboxEvent.position)).all()
        finally:
            session.close()
        assert len(event_ids) >= 2
        assert event_ids == sorted(event_ids), service_app.extensions["service"].name
