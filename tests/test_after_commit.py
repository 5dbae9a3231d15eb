"""``shared.db.after_commit``: work queued for after a commit runs once the transaction commits,
not when a savepoint inside it is released, and is not lost when a savepoint rolls back."""

from __future__ import annotations

from sqlalchemy import text

from shared.db import after_commit


def test_callbacks_wait_for_the_transaction_not_its_savepoints(app):
    ran: list[str] = []
    session = app.extensions["database"].session()
    try:
        session.execute(text("SELECT 1"))
        after_commit(session, lambda: ran.append("before the savepoints"))
        with session.begin_nested():
            after_commit(session, lambda: ran.append("in a savepoint"))
        assert ran == []  # a released savepoint commits nothing
        try:
            with session.begin_nested():
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass
        assert ran == []
        session.commit()
        assert ran == ["before the savepoints", "in a savepoint"]
        session.commit()
        assert len(ran) == 2  # each once
    finally:
        session.close()


def test_callbacks_of_a_rolled_back_transaction_never_run(app):
    ran: list[str] = []
    session = app.extensions["database"].session()
    try:
        session.execute(text("SELECT 1"))
        after_commit(session, lambda: ran.append("never"))
        session.rollback()
        session.commit()
        assert ran == []
    finally:
        session.close()
