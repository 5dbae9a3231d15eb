"""``shared.db.insert_rows``: many rows in one statement (on PostgreSQL, one JSON document), read
back exactly as given: ids, aware timestamps in UTC, JSON documents with awkward text, Python
defaults for columns left out; rows already there left as they are; bad rows refused whole."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from services.metrics.models import TimelineEntry
from services.metrics.projections import Projector
from shared.db import in_write_pipeline, insert_rows, pipelined_writes, update_rows


def timeline_row(**changes) -> dict:
    row = {
        "event_id": uuid.uuid4(),
        "package_id": uuid.uuid4(),
        "return_id": None,
        "organisation": "GMP",
        "kind": "returned",
        "occurred_at": datetime(2026, 3, 1, 12, 30, tzinfo=UTC),
        "detail": {"note": 'quotes " commas, braces {} back\\slash, ünïcode, new\nline', "version": 2},
    }
    return row | changes


def test_rows_are_read_back_as_they_were_given(metrics_app):
    session = metrics_app.extensions["database"].session()
    try:
        plus_two = timezone(timedelta(hours=2))
        rows = [
            timeline_row(),
            timeline_row(
                return_id=uuid.uuid4(), organisation=None, occurred_at=datetime(2026, 3, 2, 9, tzinfo=plus_two)
            ),
        ]
        without_detail = {key: value for key, value in timeline_row(kind="withdrawn").items() if key != "detail"}
        insert_rows(session, TimelineEntry, rows)
        insert_rows(session, TimelineEntry, [without_detail])
        session.commit()

        stored = {entry.event_id: entry for entry in session.scalars(select(TimelineEntry))}
        assert set(stored) == {rows[0]["event_id"], rows[1]["event_id"], without_detail["event_id"]}
        for row in rows:
            entry = stored[row["event_id"]]
            assert (entry.package_id, entry.return_id, entry.organisation, entry.kind, entry.detail) == (
                row["package_id"],
                row["return_id"],
                row["organisation"],
                row["kind"],
                row["detail"],
            )
            assert entry.occurred_at == row["occurred_at"]
        assert stored[rows[1]["event_id"]].occurred_at == datetime(2026, 3, 2, 7, tzinfo=UTC)
        assert stored[without_detail["event_id"]].detail == {}  # the column's Python default
    finally:
        session.close()


def test_rows_already_there_are_left_as_they_are(metrics_app):
    session = metrics_app.extensions["database"].session()
    try:
        first = timeline_row()
        insert_rows(session, TimelineEntry, [first], skip_existing=("event_id",))
        again = first | {"kind": "changed", "detail": {}}
        insert_rows(session, TimelineEntry, [again, timeline_row()], skip_existing=("event_id",))
        session.commit()
        kinds = sorted(session.scalars(select(TimelineEntry.kind)))
        assert kinds == ["returned", "returned"]
    finally:
        session.close()


def test_a_naive_timestamp_refuses_the_whole_batch(metrics_app):
    session = metrics_app.extensions["database"].session()
    try:
        with pytest.raises(Exception, match="naive datetime"):
            insert_rows(
                session, TimelineEntry, [timeline_row(), timeline_row(occurred_at=datetime(2026, 3, 1, 12, 30))]
            )
        session.rollback()
        assert session.scalars(select(TimelineEntry)).all() == []
    finally:
        session.close()


def test_update_rows_sets_each_rows_columns_and_nothing_else(metrics_app):
    """``shared.db.update_rows``: each row's columns set on the row with its key (ids, aware
    timestamps, JSON, None), in one statement; other rows change nothing; a key with no row
    (gone since it was read) refuses the statement, as the ORM's flush did."""
    session = metrics_app.extensions["database"].session()
    try:
        first, second, untouched = (timeline_row() for _ in range(3))
        insert_rows(session, TimelineEntry, [first, second, untouched])
        session.commit()
        plus_two = timezone(timedelta(hours=2))
        changes = [
            {
                "event_id": first["event_id"],
                "kind": "amended",
                "organisation": None,
                "occurred_at": datetime(2026, 4, 1, 10, tzinfo=plus_two),
                "detail": {"note": 'a "quoted" {brace}', "n": [1, 2]},
            },
            {
                "event_id": second["event_id"],
                "kind": "chased",
                "organisation": "MPS",
                "occurred_at": datetime(2026, 4, 2, tzinfo=UTC),
                "detail": {},
            },
            {
                "event_id": uuid.uuid4(),  # no such row: refused
                "kind": "ghost",
                "organisation": "X",
                "occurred_at": datetime(2026, 4, 3, tzinfo=UTC),
                "detail": {},
            },
        ]
        with pytest.raises(StaleDataError, match="3 rows to update, 2 found"):  # a row gone is an error
            update_rows(session, TimelineEntry, changes, key="event_id")
        session.rollback()
        update_rows(session, TimelineEntry, changes[:2], key="event_id")
        session.commit()
        stored = {entry.event_id: entry for entry in session.scalars(select(TimelineEntry))}
        assert len(stored) == 3
        one, two, same = stored[first["event_id"]], stored[second["event_id"]], stored[untouched["event_id"]]
        assert (one.kind, one.organisation, one.detail) == (
            "amended",
            None,
            {"note": 'a "quoted" {brace}', "n": [1, 2]},
        )
        assert one.occurred_at == datetime(2026, 4, 1, 8, tzinfo=UTC)
        assert one.package_id == first["package_id"]  # a column the rows do not name is left alone
        assert (two.kind, two.organisation, two.detail) == ("chased", "MPS", {})
        assert (same.kind, same.organisation, same.detail, same.occurred_at) == (
            "returned",
            "GMP",
            untouched["detail"],
            untouched["occurred_at"],
        )
    finally:
        session.close()


def test_writes_in_a_pipeline_land_as_they_would_one_by_one(metrics_app):
    """``shared.db.pipelined_writes`` (PostgreSQL's pipeline mode; plain writes on SQLite): the
    block's inserts and updates all land, in the order sent, in the session's transaction."""
    session = metrics_app.extensions["database"].session()
    try:
        first, second = timeline_row(), timeline_row()
        with pipelined_writes(session):
            insert_rows(session, TimelineEntry, [first])
            update_rows(session, TimelineEntry, [{"event_id": first["event_id"], "kind": "amended"}], key="event_id")
            insert_rows(session, TimelineEntry, [second, first], skip_existing=("event_id",))
        assert not in_write_pipeline(session)
        session.commit()
        kinds = {entry.event_id: entry.kind for entry in session.scalars(select(TimelineEntry))}
        assert kinds == {first["event_id"]: "amended", second["event_id"]: "returned"}
    finally:
        session.close()


def test_a_pipelines_errors_are_raised_at_its_end_as_sqlalchemys_and_nothing_is_kept(metrics_app):
    """A row gone since it was read (``StaleDataError``) and a duplicate key (``IntegrityError``,
    the class the inbox's one-at-a-time retry catches) refuse the whole transaction."""
    session = metrics_app.extensions["database"].session()
    try:
        kept = timeline_row()
        insert_rows(session, TimelineEntry, [kept])
        session.commit()
        with pytest.raises(StaleDataError, match="1 rows to update, 0 found"):
            with pipelined_writes(session):
                insert_rows(session, TimelineEntry, [timeline_row()])
                update_rows(session, TimelineEntry, [{"event_id": uuid.uuid4(), "kind": "ghost"}], key="event_id")
        session.rollback()
        with pytest.raises(IntegrityError):
            with pipelined_writes(session):
                insert_rows(session, TimelineEntry, [timeline_row()])
                insert_rows(session, TimelineEntry, [kept | {"kind": "again"}])  # the same event_id
                insert_rows(session, TimelineEntry, [timeline_row()])
        assert not in_write_pipeline(session)
        session.rollback()
        assert [(entry.event_id, entry.kind) for entry in session.scalars(select(TimelineEntry))] == [
            (kept["event_id"], "returned")
        ]
    finally:
        session.close()


def test_the_projector_refuses_to_read_inside_its_write_pipeline(metrics_app):
    """A read inside the pipeline would see no answer yet (an empty result, silently wrong
    figures): the projector refuses it instead."""
    session = metrics_app.extensions["database"].session()
    try:
        projector = Projector(session)
        with pipelined_writes(session):
            if in_write_pipeline(session):  # PostgreSQL only: on SQLite nothing is pipelined
                with pytest.raises(RuntimeError, match="read before"):
                    projector.package(uuid.uuid4())
        assert projector.package(uuid.uuid4()) is None  # outside it, reads as ever
    finally:
        session.rollback()
        session.close()


def test_a_connection_stays_usable_after_failed_pipelines_in_savepoints(metrics_app):
    """The live inbox's pattern: a batch in a savepoint fails, is rolled back to it, and the
    events are tried again on the same connection. psycopg prepares a statement on the server
    the sixth time it is run; a sixth run skipped because an earlier statement of its pipeline
    failed must not leave psycopg believing it prepared (every later batch on that connection
    would fail: "prepared statement does not exist")."""
    session = metrics_app.extensions["database"].session()
    try:
        kept = timeline_row()
        insert_rows(session, TimelineEntry, [kept])
        session.commit()
        no_kind = {"event_id": kept["event_id"], "kind": None}  # the column is NOT NULL
        for _ in range(6):  # batches of their own, each in a transaction of its own, as the inbox's
            with pytest.raises(IntegrityError):
                with session.begin_nested():
                    with pipelined_writes(session):
                        update_rows(session, TimelineEntry, [no_kind], key="event_id")  # refused
                        insert_rows(session, TimelineEntry, [timeline_row()])  # then skipped by the server
            session.commit()
        good = [timeline_row() for _ in range(3)]
        for row in good:
            with session.begin_nested():
                with pipelined_writes(session):
                    insert_rows(session, TimelineEntry, [row])
            session.commit()
        stored = set(session.scalars(select(TimelineEntry.event_id)))
        assert stored == {kept["event_id"], *(row["event_id"] for row in good)}
    finally:
        session.close()


def test_events_emitted_together_keep_their_order_in_the_outbox_and_its_deliveries(app):
    """The relay sends events by their deliveries' ids: many events emitted at once (the chase
    sweep's) take positions and delivery ids in the order they were given, on both databases."""
    from shared.outbox import emit_many

    service = app.extensions["service"]
    settings, models = app.extensions["settings"], service.models
    session = app.extensions["database"].session()
    try:
        aggregates = [f"aggregate-{n:03d}" for n in range(60)]
        ids = emit_many(session, models, settings, "test.ordered", [(a, {"n": n}) for n, a in enumerate(aggregates)])
        session.commit()
        events = session.scalars(
            select(models.OutboxEvent)
            .where(models.OutboxEvent.type == "test.ordered")
            .order_by(models.OutboxEvent.position)
        ).all()
        assert [e.id for e in events] == ids and [e.aggregate_id for e in events] == aggregates
        assert [e.payload for e in events] == [{"n": n} for n in range(60)]
        deliveries = session.scalars(
            select(models.OutboxDelivery)
            .where(models.OutboxDelivery.event_id.in_(ids))
            .order_by(models.OutboxDelivery.id)
        ).all()
        subscribers = list(settings.subscribers)
        assert subscribers
        assert [(d.event_id, d.subscriber) for d in deliveries] == [(i, s) for i in ids for s in subscribers]
    finally:
        session.rollback()
        session.close()
