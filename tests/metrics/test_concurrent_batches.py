"""Two batches about the same return at once (the two source services relay to the metrics
service side by side): each reads the return before it writes it, so without a lock the second
would write back what it read before the first committed, undoing the first's change, and the
facts would count both differences. The projection takes one batch at a time (PostgreSQL's
advisory lock; SQLite has one writer anyway), and this shows it holds under a real race."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from services.metrics import projections, rebuilding
from services.metrics.models import Fact, HoursToReturn, InboxEvent, PackageState, ReturnState
from services.metrics.projections import HOURS_SCOPE
from shared.inbox import record_received

ISSUED = datetime(2026, 10, 1, 9, tzinfo=UTC)


def message(event_type: str, source: str, payload: dict, at: datetime) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "source": source,
        "position": 1,
        "aggregate_id": payload.get("package_id", ""),
        "occurred_at": at.isoformat(),
        "payload": payload,
    }


@pytest.fixture
def on_postgres(metrics_app):
    if not metrics_app.extensions["settings"].on_postgres:
        pytest.skip("SQLite lets one writer in at a time: the race needs PostgreSQL")


def facts(session) -> Counter:
    """Every fact, and every count of the hours histograms (as the projection files them)."""
    found = Counter({(f.scope, f.key, f.metric, f.classification): f.value for f in session.scalars(select(Fact))})
    for h in session.scalars(select(HoursToReturn)):
        found[(HOURS_SCOPE, h.organisation, str(h.hours), h.classification)] = h.value
    return found


def test_two_batches_about_one_return_at_once_both_count_once(metrics_app, on_postgres):
    database = metrics_app.extensions["database"]
    package_id, return_id = str(uuid.uuid4()), str(uuid.uuid4())
    due = ISSUED + timedelta(days=28)
    issued = message(
        "package.issued",
        "dissemination",
        {
            "package_id": package_id,
            "reference": "NCLCC-2026-000001",
            "title": "County lines: deal line supplying Hull",
            "threat_area": "county_lines",
            "classification": "OFFICIAL",
            "source_evaluation": 2,
            "intelligence_assessment": "B",
            "handling_code": "P",
            "issued_at": ISSUED.isoformat(),
            "outcome_due_at": due.isoformat(),
            "disseminations": [
                {
                    "dissemination_id": return_id,
                    "package_id": package_id,
                    "organisation": "GMP",
                    "due_at": due.isoformat(),
                }
            ],
        },
        ISSUED,
    )
    delivered_at = ISSUED + timedelta(minutes=2)
    delivered = message(
        "dissemination.delivered",
        "dissemination",
        {"dissemination_id": return_id, "package_id": package_id, "delivered_at": delivered_at.isoformat()},
        delivered_at,
    )
    filed_at = ISSUED + timedelta(days=3)
    filed = message(
        "outcome.filed",
        "outcomes",
        {
            "return_id": return_id,
            "package_id": package_id,
            "organisation": "GMP",
            "version": 1,
            "status": "final",
            "on_time": True,
            "filed_at": filed_at.isoformat(),
            "outcome": {"actions": ["enforcement"], "priority": "high", "strands": [], "results": {"arrests": 2}},
        },
        filed_at,
    )
    setup = database.session()
    rebuilding.apply_batch(setup, [issued])
    setup.close()

    # The dissemination service's batch, applied and left uncommitted...
    first = database.session()
    projections.lock_projection(first)  # as the inbox does, before its rows
    record_received(first, InboxEvent, [delivered], [uuid.UUID(delivered["id"])])
    projections.apply_events(first, [delivered])
    first.flush()

    # ...while the outcomes service's batch about the same return comes in.
    failures: list[BaseException] = []

    def second_batch() -> None:
        session = database.session()
        try:
            rebuilding.apply_batch(session, [filed])
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            failures.append(error)
        finally:
            session.close()

    other = threading.Thread(target=second_batch)
    other.start()
    waiting = False
    watcher = database.session()
    for _ in range(100):  # up to 10 s for the second batch to be held up by the first
        waiting = bool(
            watcher.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        )
        watcher.rollback()
        if waiting:
            break
        time.sleep(0.1)
    watcher.close()
    first.commit()
    first.close()
    other.join(timeout=30)
    assert waiting, "the second batch never waited for the first"
    assert not other.is_alive() and not failures, failures

    check = database.session()
    try:
        ret = check.get(ReturnState, uuid.UUID(return_id))
        assert ret.delivered_at == delivered_at, "the delivery was undone by the batch that ran beside it"
        assert (ret.version, ret.outcome_status, ret.final_on_time) == (1, "final", True)
        package = check.get(PackageState, uuid.UUID(package_id))
        assert (package.figures["delivered"], package.figures["final"], package.figures["recipients"]) == (1, 1, 1)
        assert (package.final_returns, package.arrests, package.verdict) == (1, 2, "actioned")
        live = facts(check)
        org = {m: v for (scope, key, m, _), v in live.items() if scope == "org" and key == "GMP"}
        assert (org["delivered"], org["final"], org["result:arrests"]) == (1, 1, 2)
        assert sum(v for (scope, key, *_), v in live.items() if scope == HOURS_SCOPE and key == "GMP") == 1
        projections.facts_from_state(check)  # what the returns and packages add up to, recomputed
        assert +facts(check) == +live
        check.rollback()
    finally:
        check.close()


@pytest.mark.parametrize("path", ["/internal/events", "/internal/events/batch"])
def test_the_lock_comes_before_the_inbox(metrics_app, on_postgres, path):
    """Taken after the inbox's rows, the lock could deadlock: a batch holding it waits for another
    transaction's uncommitted inbox row of the same event while that one waits for the lock."""
    import json

    from sqlalchemy import event

    from shared import signing

    return_id = str(uuid.uuid4())
    delivered = message(
        "dissemination.delivered",
        "dissemination",
        {"dissemination_id": return_id, "package_id": str(uuid.uuid4()), "delivered_at": ISSUED.isoformat()},
        ISSUED,
    )
    body = json.dumps({"events": [delivered]} if path.endswith("batch") else delivered).encode()
    secret = metrics_app.extensions["settings"].event_secret
    statements: list[str] = []

    def keep(_conn, _cursor, statement, *_args):
        statements.append(statement)

    engine = metrics_app.extensions["database"].engine
    event.listen(engine, "before_cursor_execute", keep)
    try:
        response = metrics_app.test_client().post(path, data=body, headers=signing.signed_headers(secret, body))
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    assert response.status_code == 200, response.get_json()
    inbox = [i for i, statement in enumerate(statements) if "inbox_events" in statement]
    lock = [i for i, statement in enumerate(statements) if "pg_advisory_xact_lock" in statement]
    assert inbox and lock and lock[0] < inbox[0], statements
