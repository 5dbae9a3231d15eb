"""The returns' and packages' states are changed by most events; PostgreSQL writes a changed row
in place (a HOT update, which adds no index entry) only where its page has room for the new
version. Both tables leave a fifth of each page free (migration 0011): a later event's change of
a row in a page filled when the rows were first heard of is still made in place."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from services.metrics import projections, rebuilding

ISSUED = datetime(2026, 10, 1, 9, tzinfo=UTC)
PACKAGES, RETURNS_EACH = 40, 6


@pytest.fixture
def on_postgres(metrics_app):
    if not metrics_app.extensions["settings"].on_postgres:
        pytest.skip("a HOT update is PostgreSQL's")


def message(event_type: str, payload: dict, at: datetime) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "source": "dissemination",
        "position": 1,
        "aggregate_id": payload["package_id"],
        "occurred_at": at.isoformat(),
        "payload": payload,
    }


def issued(package_id: str, return_ids: list[str]) -> dict:
    due = (ISSUED + timedelta(days=28)).isoformat()
    return message(
        "package.issued",
        {
            "package_id": package_id,
            "reference": f"NCLCC-2026-{package_id[:6]}",
            "title": "County lines: deal line supplying Hull",
            "threat_area": "county_lines",
            "classification": "OFFICIAL",
            "source_evaluation": 2,
            "intelligence_assessment": "B",
            "handling_code": "P",
            "issued_at": ISSUED.isoformat(),
            "outcome_due_at": due,
            "disseminations": [
                {"dissemination_id": return_id, "package_id": package_id, "organisation": org, "due_at": due}
                for return_id, org in zip(return_ids, ("GMP", "MPS", "WMP", "KENT", "ESSEX", "TVP"), strict=False)
            ],
        },
        ISSUED,
    )


def test_a_later_event_changes_a_return_and_its_package_in_place(metrics_app, on_postgres):
    database = metrics_app.extensions["database"]
    packages = {str(uuid.uuid4()): [str(uuid.uuid4()) for _ in range(RETURNS_EACH)] for _ in range(PACKAGES)}
    session = database.session()
    try:
        rebuilding.apply_batch(session, [issued(package_id, returns) for package_id, returns in packages.items()])
        pages = session.scalar(text("SELECT pg_relation_size('returns') / current_setting('block_size')::int"))
        assert pages >= 3, "the returns should fill pages for the check to mean anything"
        # A day later one recipient of every eighth package opens it.
        opened = ISSUED + timedelta(days=1)
        acknowledged = [
            message(
                "dissemination.acknowledged",
                {"dissemination_id": returns[0], "package_id": package_id, "acknowledged_at": opened.isoformat()},
                opened,
            )
            for package_id, returns in list(packages.items())[::8]
        ]
        projections.apply_events(session, acknowledged)
        session.flush()
        # This transaction's own counts (pg_stat_xact_*), read before its commit.
        counts = {
            table: (updated, in_place)
            for table, updated, in_place in session.execute(
                text(
                    "SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables "
                    "WHERE relname IN ('returns', 'packages') AND schemaname = current_schema()"
                )
            )
        }
        assert counts == {"returns": (5, 5), "packages": (5, 5)}, "(updated, of which in place)"
        session.rollback()
    finally:
        session.close()
