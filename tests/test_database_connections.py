"""How the services' database connections behave when the database goes away without a word."""

from __future__ import annotations

import tempfile

import pytest

from shared.db import TCP_KEEPALIVES


def test_a_connection_to_a_silent_database_is_given_up_within_a_minute(app):
    """A web thread waiting on a database host that vanished (no reset sent) would wait for the
    kernel's two hours: TCP keepalives find it dead within a minute (30 s, then 3 probes 10 s
    apart), and the request gets an error it can answer."""
    if not app.extensions["settings"].on_postgres:
        pytest.skip("TCP keepalives are for PostgreSQL's connections (SQLite is a file)")
    with app.extensions["database"].engine.connect() as connection:
        parameters = connection.connection.dbapi_connection.info.get_parameters()
    assert {name: parameters.get(name) for name in TCP_KEEPALIVES} == {
        "keepalives": "1",
        "keepalives_idle": "30",
        "keepalives_interval": "10",
        "keepalives_count": "3",
    }
    idle, interval, count = (
        int(parameters[name]) for name in ("keepalives_idle", "keepalives_interval", "keepalives_count")
    )
    assert idle + interval * count <= 60


def test_a_read_connection_commits_each_statement_and_leaves_the_session_in_transactions(app):
    """``get_read_connection()``: each statement is committed alone (another connection sees a
    row at once, with no COMMIT sent), on a connection of its own pool that stays in autocommit
    when it is given back and taken again; the request's session, beside it, is in transactions
    as ever (its writes are seen only once it commits); and disposing of the service's engine
    disposes of the read connections' pool too (a test or migration that resets one resets
    both)."""
    from sqlalchemy import text

    from shared.db import get_read_connection, get_session

    database = app.extensions["database"]
    with database.engine.begin() as connection:
        connection.execute(text("CREATE TABLE IF NOT EXISTS autocommit_probe (n integer)"))
        connection.execute(text("DELETE FROM autocommit_probe"))

    def seen() -> list[int]:
        with database.engine.connect() as other:
            return [row[0] for row in other.execute(text("SELECT n FROM autocommit_probe ORDER BY n"))]

    try:
        with app.test_request_context("/"):
            reading = get_read_connection()
            reading.execute(text("INSERT INTO autocommit_probe VALUES (1)"))
            used = reading.connection.dbapi_connection
            assert in_autocommit(used)
            assert seen() == [1]  # committed already, with no COMMIT
            assert get_read_connection() is reading
            session = get_session()
            session.execute(text("INSERT INTO autocommit_probe VALUES (2)"))
            assert seen() == [1]  # the session's write waits for its commit
            assert not in_autocommit(session.connection().connection.dbapi_connection)
            session.commit()
            assert seen() == [1, 2]
        with app.test_request_context("/"):
            again = get_read_connection()
            assert again.connection.dbapi_connection is used and in_autocommit(used)
        assert database.autocommit_engine.pool.checkedin() == 1
        database.engine.dispose()
        assert database.autocommit_engine.pool.checkedin() == 0
    finally:
        with database.engine.begin() as connection:
            connection.execute(text("DROP TABLE autocommit_probe"))


def test_taking_a_pooled_connection_sends_nothing_to_the_database(on_postgres, app):
    """A request's connection comes from the pool without a round trip (no ping): libpq's own
    trace of the connection shows no message sent between the checkout and the first statement."""
    from sqlalchemy import text

    engine = app.extensions["database"].engine
    engine.dispose()  # one connection in the pool: the checkout below gets it again
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
        pooled = connection.connection.dbapi_connection
    with tempfile.TemporaryFile() as trace:
        pooled.pgconn.trace(trace.fileno())
        try:
            with engine.connect() as connection:
                assert connection.connection.dbapi_connection is pooled
                trace.seek(0)
                assert trace.read() == b""
                connection.execute(text("SELECT 1"))
        finally:
            pooled.pgconn.untrace()
        trace.seek(0)
        assert b'Query\t "SELECT 1"' in trace.read()


def test_a_pooled_connection_the_database_closed_is_replaced_before_it_is_used(on_postgres, app, client, token):
    """Connections the server closed while they sat in the pool (a restart, an operator's
    ``pg_terminate_backend``) are thrown away at checkout: the statements and requests after it
    run on new connections, and none of them fails."""
    from sqlalchemy import text

    engine = app.extensions["database"].engine
    engine.dispose()
    before = pooled_backends(engine, 3)
    terminate(engine, before)
    after = pooled_backends(engine, 3)
    assert len(after) == 3 and not set(after) & set(before)
    # One found closed, and every connection the pool made before it goes too: a restart closes
    # them all, and the others' server processes may not have gone yet when they are next taken.
    terminate(engine, after[:1])  # the first to come out of the pool again
    again = pooled_backends(engine, 3)
    assert not set(again) & set(after)
    terminate(engine, pooled_backends(engine, 2))
    assert client.get("/api/v1/packages", headers=token()).status_code == 200
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1


def pooled_backends(engine, count: int) -> list[int]:
    """Hold ``count`` of the pool's connections at once, use each, and put them back in that
    order (the order the pool gives them out again): their server processes' ids."""
    from sqlalchemy import text

    held = [engine.connect() for _ in range(count)]
    try:
        return [connection.execute(text("SELECT pg_backend_pid()")).scalar() for connection in held]
    finally:
        for connection in held:
            connection.close()


def terminate(engine, pids: list[int]) -> None:
    """What an operator's ``pg_terminate_backend`` does, from a connection outside the pool;
    returns once the server processes have gone (PostgreSQL 14's timeout: it waits for them)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    operator = create_engine(engine.url, poolclass=NullPool)
    try:
        with operator.connect() as connection:
            gone = connection.execute(
                text("SELECT bool_and(pg_terminate_backend(pid, 5000)) FROM unnest(:pids) AS pid"), {"pids": pids}
            ).scalar()
        assert gone, f"server processes {pids} still there 5 s after pg_terminate_backend"
    finally:
        operator.dispose()


def in_autocommit(dbapi_connection) -> bool:
    """psycopg's ``autocommit``; for sqlite3, no isolation level is autocommit."""
    if type(dbapi_connection).__module__.startswith("psycopg"):
        return bool(dbapi_connection.autocommit)
    return dbapi_connection.isolation_level is None
