"""A world built once per test process, then restored for each test that asks for it.

Some tests read a history made through the real services (tests/metrics/story.py: packages issued,
returns filed, jobs run, events pumped), 5 to 15 seconds each time, and the fixtures that give it
are function-scoped because every test starts on emptied tables and a flushed Redis database
(tests/conftest.py). ``snapshot_world(build)`` (the conftest fixture) runs ``build`` the first time
a test process needs it, exactly as the fixture did, and keeps what it left behind: every row of
every service's tables, every Redis key, the mail sink's messages, the events the stand-in
consumer received and the events ``pump_events`` has carried. Each later test gets that back on
its own emptied tables in a few milliseconds, so a test that changes the world changes only its
own copy, as when it built the world itself.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_KEPT: dict[str, World] = {}  # one per build function, for the life of the test process


@dataclass
class World:
    built: Any
    rows: dict[str, dict[str, list[dict]]] = field(default_factory=dict)  # service: table: rows
    sequences: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # service: (table, column)
    redis: list[tuple[bytes, int, bytes]] = field(default_factory=list)  # key, ms to live (0: no expiry), dump
    mail: dict[str, bytes] = field(default_factory=dict)
    received: list[dict] = field(default_factory=list)
    delivered: set = field(default_factory=set)


def world(build: Callable, request, redis_conn, consumer, pump_events, mail_dir) -> Any:
    """What ``build`` returned, on the world it made: built now if this process has not built it
    yet (its arguments are the fixtures of the same names), else restored from the snapshot."""
    key = f"{build.__module__}.{build.__qualname__}"
    kept = _KEPT.get(key)
    if kept is None:
        built = build(**{name: request.getfixturevalue(name) for name in inspect.signature(build).parameters})
        kept = _KEPT[key] = _take(built, redis_conn, consumer, pump_events, mail_dir)
    else:
        _restore(kept, redis_conn, consumer, pump_events, mail_dir)
    return copy.deepcopy(kept.built)


def _databases():
    from services import SERVICES, settings_for
    from shared.db import Database

    for service in SERVICES:
        database = Database(settings_for(service.name))
        try:
            yield service, database
        finally:
            database.engine.dispose()


def _take(built, redis_conn, consumer, pump_events, mail_dir) -> World:
    from sqlalchemy import Integer, select, text

    kept = World(built=copy.deepcopy(built))
    for service, database in _databases():
        kept.rows[service.name] = {}
        kept.sequences[service.name] = []
        with database.engine.connect() as connection:
            for table in service.metadata.sorted_tables:
                rows = [dict(row._mapping) for row in connection.execute(select(table))]
                kept.rows[service.name][table.name] = _parents_first(table, rows)
                if not database.settings.on_postgres:
                    continue
                for column in table.columns:
                    if isinstance(column.type, Integer):
                        sequence = connection.execute(
                            text("SELECT pg_get_serial_sequence(:table, :column)"),
                            {"table": f'"{database.schema}"."{table.name}"', "column": column.name},
                        ).scalar()
                        if sequence:
                            kept.sequences[service.name].append((table.name, column.name))
    for key in redis_conn.scan_iter(count=1000):
        ttl, value = redis_conn.pttl(key), redis_conn.dump(key)
        if value is not None:  # not expired meanwhile
            kept.redis.append((key, max(ttl, 0), value))
    kept.mail = {path.name: path.read_bytes() for path in mail_dir.glob("*.eml")}
    kept.received = copy.deepcopy(consumer.received)
    kept.delivered = set(pump_events.delivered)
    return kept


def _parents_first(table, rows: list[dict]) -> list[dict]:
    """The rows in an order they can be inserted in: a row that refers to another row of its own
    table (a dissemination passed on from another) after that row."""
    links = [(key.parent.name, key.column.name) for key in table.foreign_keys if key.column.table is table]
    ordered: list[dict] = []
    placed: set = set()
    waiting = rows
    while waiting:
        ready = [
            row
            for row in waiting
            if all(row[child] is None or (parent, row[child]) in placed for child, parent in links)
        ]
        assert ready, f"{table.name}: rows refer to rows that are not there"
        ordered += ready
        placed.update((parent, row[parent]) for row in ready for _, parent in links)
        done = {id(row) for row in ready}
        waiting = [row for row in waiting if id(row) not in done]
    return ordered


def _restore(kept: World, redis_conn, consumer, pump_events, mail_dir) -> None:
    from sqlalchemy import insert, text

    from tests.conftest import _empty_tables

    for service, database in _databases():
        # The app fixture has seeded the directory since clean_db emptied the tables.
        _empty_tables(database, service)
        with database.engine.begin() as connection:
            for table in service.metadata.sorted_tables:
                rows = kept.rows[service.name][table.name]
                if rows:
                    connection.execute(insert(table), rows)
            # TRUNCATE ... RESTART IDENTITY set every sequence back to 1: on to the rows' highest
            # value, so what the test inserts next takes the number it took after the build.
            for table_name, column in kept.sequences[service.name]:
                connection.execute(
                    text(
                        f'SELECT setval(pg_get_serial_sequence(:table, :column), coalesce(max("{column}"), 1), '
                        f'max("{column}") IS NOT NULL) FROM "{database.schema}"."{table_name}"'
                    ),
                    {"table": f'"{database.schema}"."{table_name}"', "column": column},
                )
    redis_conn.flushdb()
    with redis_conn.pipeline(transaction=False) as pipe:
        for key, ttl, value in kept.redis:
            pipe.restore(key, ttl, value, replace=True)
        pipe.execute()
    for path in mail_dir.glob("*.eml"):
        path.unlink()
    mail_dir.mkdir(parents=True, exist_ok=True)
    for name, content in kept.mail.items():
        (mail_dir / name).write_bytes(content)
    consumer.received[:] = copy.deepcopy(kept.received)
    pump_events.delivered.clear()
    pump_events.delivered.update(kept.delivered)
