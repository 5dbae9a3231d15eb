"""A filing's writes: sent together, and committed all together or not at all."""

from __future__ import annotations

import re
import tempfile
import uuid

from tests.outcomes.helpers import issued_returns, outcome_body


def test_a_filing_waits_for_the_database_four_times(on_postgres, client, token, pump_events, outcomes_app):
    """libpq's trace of the request's connection: the transaction's start, the locked read of the
    return, then the filing's writes and its audit entry all sent before the first of their
    answers is awaited, then the commit. Each write waited for its own answer before (nine waits
    for a final return)."""
    return_id = issued_returns(client, token, pump_events)["GMP"]
    engine = outcomes_app.extensions["database"].engine
    engine.dispose()  # one connection in the pool: the request below takes it
    with engine.connect() as connection:
        pooled = connection.connection.dbapi_connection
    outcomes_client = outcomes_app.test_client()
    with tempfile.TemporaryFile() as trace:
        pooled.pgconn.trace(trace.fileno())
        try:
            response = outcomes_client.post(
                f"/api/v1/returns/{return_id}/outcomes",
                json=outcome_body(status="final"),
                headers=token("GMP", "recipient"),
            )
        finally:
            pooled.pgconn.untrace()
        trace.seek(0)
        # One message a line, "<time>\t<F or B>\t<length>\t<kind>\t<content>": a statement's text
        # may run over several.
        messages = re.findall(
            r"^\S+ \S+\t([FB])\t\d+\t(\w+)\t?(.*?)(?=^\S+ \S+\t[FB]\t|\Z)", trace.read().decode(), re.M | re.S
        )
    assert response.status_code == 201, response.get_json()
    # Each wait: what the client sent, then the server's answers up to its ReadyForQuery.
    waits: list[list[str]] = []
    sent: list[str] = []
    for direction, kind, content in messages:
        if direction == "F" and kind in ("Query", "Parse"):
            sent.append(re.sub(r"\s+", " ", content.strip()))
        if direction == "B" and kind == "ReadyForQuery":
            waits.append(sent)
            sent = []
    assert len(waits) == 4, waits
    begin, read, writes, commit = waits
    assert begin == ['"BEGIN"'] and commit == ['"COMMIT"']
    assert len(read) == 1 and "FROM expected_returns" in read[0] and "FOR UPDATE" in read[0], read
    tables = [re.match(r'"" "(?:INSERT INTO|UPDATE) (\w+)', statement).group(1) for statement in writes]
    assert tables == [
        "expected_returns",
        "chase_log",
        "outcome_returns",
        "outbox_events",
        "outbox_deliveries",
        "audit_log",
    ]


def test_a_filing_whose_write_fails_leaves_nothing_behind_but_its_audit_entry(
    client, token, pump_events, outcomes_app, outcomes_client
):
    """One of the filing's writes refused by the database (here the version it numbers is taken
    already, as a counter gone wrong would make it): the others, sent with it, go too. The return,
    its chase, the outbox and the audit log are as before, but for the refusal's own entry."""
    from sqlalchemy import func, select

    from services.outcomes.models import AuditEntry, ChaseEntry, ExpectedReturn, OutboxEvent, OutcomeReturn
    from shared.db import utcnow

    return_id = uuid.UUID(issued_returns(client, token, pump_events)["GMP"])
    database = outcomes_app.extensions["database"]
    with database.session() as session:
        expected = session.get(ExpectedReturn, return_id)
        # A step claimed and not yet sent: a final return cancels it.
        session.add(ChaseEntry(return_id=expected.id, step="reminder", notify="recipient", planned_at=utcnow()))
        session.add(
            OutcomeReturn(
                return_id=expected.id,
                version=1,
                status="interim",
                actions=[],
                priority="routine",
                results={},
                strands=[],
                usefulness=3,
                accuracy="accurate",
                timeliness="timely",
                filed_by="someone",
                filed_via="api",
                filed_at=utcnow(),
            )
        )  # the row the filing below would number version 1, the return's counter left at 0
        session.commit()

    def state(session) -> dict:
        return {
            "return": session.execute(
                select(ExpectedReturn.versions, ExpectedReturn.final_returned_at).where(ExpectedReturn.id == return_id)
            ).one(),
            "pending chases": session.scalar(
                select(func.count()).where(ChaseEntry.return_id == return_id, ChaseEntry.result == "pending")
            ),
            "outcomes": session.scalar(select(func.count()).where(OutcomeReturn.return_id == return_id)),
            "events": session.scalar(select(func.count()).select_from(OutboxEvent)),
            "audit": session.scalar(select(func.count()).select_from(AuditEntry)),
        }

    with database.session() as session:
        before = state(session)
    assert before["pending chases"] == 1

    response = outcomes_client.post(
        f"/api/v1/returns/{return_id}/outcomes", json=outcome_body(status="final"), headers=token("GMP", "recipient")
    )

    assert response.status_code == 409, response.get_json()
    with database.session() as session:
        assert state(session) == before | {"audit": before["audit"] + 1}
        entry = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
    assert (entry.method, entry.target_id, entry.status_code) == ("POST", str(return_id), 409)


def test_a_filing_refused_once_its_writes_have_landed_is_taken_back_whole(
    on_postgres, client, token, pump_events, outcomes_app, outcomes_client, monkeypatch
):
    """Every write of the pipeline done, its audit entry among them, and then the return's update
    found to have changed no row (as if the return had gone): the request fails, the transaction
    is rolled back whole, and the audit log holds one entry for it, the failure's."""
    from sqlalchemy import func, select
    from sqlalchemy.orm.exc import StaleDataError

    from services.outcomes.models import AuditEntry, ExpectedReturn, OutboxEvent, OutcomeReturn
    from shared import db

    return_id = uuid.UUID(issued_returns(client, token, pump_events)["GMP"])
    database = outcomes_app.extensions["database"]

    def no_row_changed(table: str, expected: int, found: int) -> None:
        raise StaleDataError(f"{table}: {expected} rows to update, 0 found")

    def counts(session) -> tuple:
        return (
            session.scalar(select(ExpectedReturn.versions).where(ExpectedReturn.id == return_id)),
            session.scalar(select(func.count()).select_from(OutcomeReturn)),
            session.scalar(select(func.count()).select_from(OutboxEvent)),
            session.scalar(select(func.coalesce(func.max(AuditEntry.id), 0))),
        )

    with database.session() as session:
        versions, outcomes, events, last_entry = counts(session)
    monkeypatch.setattr(db, "_check_rowcount", no_row_changed)
    response = outcomes_client.post(
        f"/api/v1/returns/{return_id}/outcomes", json=outcome_body(), headers=token("GMP", "recipient")
    )
    monkeypatch.undo()

    assert response.status_code == 500
    with database.session() as session:
        assert counts(session)[:3] == (versions, outcomes, events)
        entries = session.scalars(select(AuditEntry).where(AuditEntry.id > last_entry)).all()
    assert [(entry.method, entry.target_id, entry.status_code) for entry in entries] == [("POST", str(return_id), 500)]
