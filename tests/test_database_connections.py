"""How the services' database connections behave when the database goes away without a word."""

from __future__ import annotations

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
