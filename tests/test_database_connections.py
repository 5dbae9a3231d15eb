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


def test_an_autocommit_session_commits_each_statement_and_pools_its_connection_back_as_it_was(app):
    """``get_session(autocommit=True)``: each statement is committed alone (another connection
    sees a row at once, with no COMMIT sent); the very connection it used goes back to the pool
    in transactions again, so the next request that gets it is atomic as before; asking for
    autocommit again in the same request gives the same session; and asking for it once the
    request has a session with transactions is refused, not ignored (its writes would be lost
    with that session's rollback)."""
    from sqlalchemy import text

    from shared.db import get_session

    database = app.extensions["database"]
    with database.engine.begin() as connection:
        connection.execute(text("CREATE TABLE IF NOT EXISTS autocommit_probe (n integer)"))
        connection.execute(text("DELETE FROM autocommit_probe"))

    def seen() -> list[int]:
        with database.engine.connect() as other:
            return [row[0] for row in other.execute(text("SELECT n FROM autocommit_probe ORDER BY n"))]

    try:
        with app.test_request_context("/"):
            session = get_session(autocommit=True)
            session.execute(text("INSERT INTO autocommit_probe VALUES (1)"))
            used = session.connection().connection.dbapi_connection
            assert in_autocommit(used)
            assert seen() == [1]  # committed already, before the session's commit
            session.rollback()
            assert get_session(autocommit=True) is session and get_session() is session
        assert seen() == [1]
        assert not in_autocommit(used)  # back in the pool, transactional again
        with app.test_request_context("/"):
            session = get_session()
            session.commit()  # not in a transaction now, and still not an autocommit session
            session.execute(text("INSERT INTO autocommit_probe VALUES (2)"))
            assert seen() == [1]  # not visible: in a transaction, as every other session is
            with pytest.raises(RuntimeError, match="session with transactions"):
                get_session(autocommit=True)
            session.rollback()
        assert seen() == [1]
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
