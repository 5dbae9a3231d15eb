"""snapshot_world (tests/snapshot.py) gives a later test the world the first one built: every row,
Redis key, e-mail and event as they were, whatever a test did to its copy since; and what a test
adds after it is numbered on from the world's rows, as it would be after a build."""

from __future__ import annotations

from sqlalchemy import func, select

from tests import snapshot
from tests.conftest import _TMP
from tests.dissemination.helpers import issue_package


def passed_on(client, token, app, outcomes_app, pump_events, run_jobs) -> dict:
    """A package to GMP, passed on to LANCS: a dissemination that refers to another."""
    from tests.onward.chain import carry, disseminations, file, pass_on

    package = issue_package(client, token(), recipients=["GMP", "MPS"])
    run_jobs()
    carry(pump_events, app, outcomes_app)
    gmp = disseminations(client, token, package["id"])["GMP"]["id"]
    assert file(outcomes_app.test_client(), token, "GMP", gmp, **pass_on("LANCS")).status_code == 201
    carry(pump_events, app, outcomes_app)
    run_jobs()
    return package


def redis_contents(connection) -> dict:
    """Every key's value as read (a key's DUMP need not be the same bytes after a RESTORE)."""
    read = {
        b"string": connection.get,
        b"hash": connection.hgetall,
        b"list": lambda key: connection.lrange(key, 0, -1),
        b"set": connection.smembers,
        b"zset": lambda key: connection.zrange(key, 0, -1, withscores=True),
        b"stream": connection.xrange,  # RQ keeps job results in streams
    }
    return {key: read[connection.type(key)](key) for key in connection.scan_iter()}


def test_a_world_comes_back_as_it_was_after_a_test_changed_it(
    client, token, app, outcomes_app, pump_events, run_jobs, redis_conn, consumer, mailbox
):
    built = passed_on(client, token, app, outcomes_app, pump_events, run_jobs)
    kept = snapshot._take(built, redis_conn, consumer, pump_events, _TMP / "mail")
    before = redis_contents(redis_conn)
    assert any(row["onward_from"] for row in kept.rows["dissemination"]["disseminations"])
    assert kept.redis and kept.mail and kept.received and kept.delivered

    # What a test might do to its copy: another package, its jobs run and its events carried.
    issue_package(client, token(), recipients=["WMP"])
    run_jobs()
    carried = pump_events()
    assert carried > 0 and len(mailbox()) > len(kept.mail)
    snapshot._restore(kept, redis_conn, consumer, pump_events, _TMP / "mail")
    again = snapshot._take(built, redis_conn, consumer, pump_events, _TMP / "mail")
    assert again.rows == kept.rows
    assert redis_contents(redis_conn) == before
    assert (again.mail, again.received, again.delivered) == (kept.mail, kept.received, kept.delivered)

    # The next event is numbered on from the world's last one (PostgreSQL: TRUNCATE reset the
    # sequence to 1, which a restored event already holds).
    models = app.extensions["service"].models
    session = app.extensions["database"].session()
    last = session.scalar(select(func.max(models.OutboxEvent.position)))
    session.close()
    issue_package(client, token(), recipients=["WMP"])
    session = app.extensions["database"].session()
    assert session.scalar(select(func.min(models.OutboxEvent.position)).where(models.OutboxEvent.position > last)) == (
        last + 1
    )
    session.close()
