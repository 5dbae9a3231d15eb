"""A message sent is recorded as sent even when the database connection is cut between the send
and the commit (a database restart, ``pg_terminate_backend``): the record is written again on a
new connection, and the job's retry does not send the message a second time.

Found by the database drill (drills/, ``make drill``): an e-mail went twice. PostgreSQL only:
SQLite has no connection to cut.
"""

from __future__ import annotations

from sqlalchemy import text

from services.dissemination import delivery
from services.outcomes import chasing
from shared.notify import plain_text
from tests.dissemination.helpers import issue_package
from tests.outcomes.chase_helpers import FAST_LADDER, issue_return, put_policy, seed_organisation


def cut_the_job_connection(database) -> int:
    """Terminate the connection of the transaction that is waiting on a send (the job's: it holds
    the row lock, idle in transaction while the message goes)."""
    with database.engine.connect() as connection:
        return connection.execute(
            text(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                # this test process's own connections only (PGAPPNAME), never another test worker's
                "AND application_name = current_setting('application_name') "
                "AND state = 'idle in transaction'"
            )
        ).scalar()


def cut_after_sending(monkeypatch, module, database) -> list[int]:
    """Make ``module``'s send cut the job's connection once, after the message has gone."""
    real = module.send_with_fallback
    cuts: list[int] = []

    def send_then_cut(*args, **kwargs):
        sending = real(*args, **kwargs)
        if not cuts:
            cuts.append(cut_the_job_connection(database))
        return sending

    monkeypatch.setattr(module, "send_with_fallback", send_then_cut)
    return cuts


def test_a_delivery_notice_is_sent_once_when_the_connection_is_cut_after_sending(
    on_postgres, app, client, token, run_jobs, mailbox, monkeypatch
):
    from services.dissemination.models import Dissemination, OutboxEvent

    cuts = cut_after_sending(monkeypatch, delivery, app.extensions["database"])
    package = issue_package(client, token(), recipients=["GMP"])
    run_jobs()
    run_jobs()  # a retry, had the job failed, would run here
    assert cuts == [1]
    notices = [m for m in mailbox() if package["reference"] in m["Subject"]]
    assert len(notices) == 1
    session = app.extensions["database"].session()
    try:
        dissemination = session.query(Dissemination).filter_by(package_id=package["id"]).one()
        assert (dissemination.delivery_status, dissemination.delivery_attempts) == ("delivered", 1)
        delivered = session.query(OutboxEvent).filter_by(type="dissemination.delivered").all()
        assert [event.aggregate_id for event in delivered] == [str(dissemination.id)]
    finally:
        session.close()


def test_a_chase_step_is_sent_once_when_the_connection_is_cut_after_sending(
    on_postgres, outcomes_app, outcomes_client, token, run_jobs, mailbox, monkeypatch
):
    from datetime import timedelta

    from services.outcomes.models import ChaseEntry, OutboxEvent
    from tests.outcomes import chase_helpers

    put_policy(outcomes_client, token, FAST_LADDER)
    seed_organisation(outcomes_app)
    database = outcomes_app.extensions["database"]
    return_id = issue_return(outcomes_app, due_in_seconds=10)
    cuts = cut_after_sending(monkeypatch, chasing, database)
    session = database.session()
    try:
        # The reminder falls due 2 s before the return does.
        chasing.sweep(
            session, outcomes_app.extensions["settings"], now=chase_helpers.clock_start() + timedelta(seconds=8.5)
        )
    finally:
        session.close()
    run_jobs("outcomes")
    run_jobs("outcomes")
    assert cuts == [1]
    assert len([m for m in mailbox() if "Chase step: reminder" in plain_text(m)]) == 1
    session = database.session()
    try:
        entry = session.query(ChaseEntry).filter_by(step="reminder").one()
        assert (str(entry.return_id), entry.result, entry.attempts) == (return_id, "sent", 1)
        assert session.query(OutboxEvent).filter_by(type="chase.sent").count() == 1
    finally:
        session.close()
