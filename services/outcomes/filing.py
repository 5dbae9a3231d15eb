"""Filing outcome returns: interim ones, then a final one; every amendment appended."""

from __future__ import annotations

import functools

from sqlalchemy import Update, bindparam, select, update
from sqlalchemy.orm import Session

from services.outcomes.models import ChaseEntry, ExpectedReturn, Organisation, OutcomeReturn, shared_models
from shared.audit import write_with_change
from shared.db import execute_write, insert_rows, new_id, pipelined_writes, table_of, utcnow
from shared.errors import Conflict, Invalid
from shared.outbox import emit
from shared.settings import Settings


class FilingRefused(Conflict):
    """The return cannot take an outcome now (answered 409)."""


def filing_problems(session: Session, settings: Settings, expected: ExpectedReturn, values: dict) -> dict[str, str]:
    """Rules that need the database or the return's history, beyond the schema's (the API and
    the web form both ask here)."""
    problems: dict[str, str] = {}
    passed_to = values.get("passed_to")
    if passed_to and "passed_on" in values.get("actions", []):
        organisation = session.get(Organisation, passed_to)
        if organisation is None or not organisation.active:
            problems["passed_to"] = f"Unknown organisation {passed_to}."
        elif passed_to == expected.organisation:
            problems["passed_to"] = "Pass it to an organisation other than your own."
        else:
            problem = pass_on_problem(session, settings, expected, passed_to)
            if problem:
                problems["passed_to"] = problem
    if expected.final_returned_at and values.get("status") == "interim":
        problems["status"] = "A final return has been filed; an amendment must be final too."
    return problems


def pass_on_problem(session: Session, settings: Settings, expected: ExpectedReturn, passed_to: str) -> str | None:
    """Passing the package on must not make a loop or a chain deeper than ``ONWARD_MAX_DEPTH``:
    it may not go to an organisation that already holds it (the centre, a recipient, one it was
    passed on to, even if that pass-on was withdrawn since), nor from a return that is already
    that deep. Keeping the pass-on this return already made is no new pass-on."""
    held = session.scalars(
        select(ExpectedReturn).where(
            ExpectedReturn.package_id == expected.package_id, ExpectedReturn.organisation == passed_to
        )
    ).first()
    keeps_its_pass_on = held is not None and held.onward_from == expected.id and held.close_reason != "withdrawn"
    if keeps_its_pass_on:
        return None
    if passed_to == settings.centre_org:
        return f"{passed_to} issued this package: it cannot be passed back to it."
    if held is not None:
        if held.close_reason == "withdrawn" and held.onward_from is not None:
            return f"{passed_to} has had this package before (that pass-on was withdrawn): it cannot have it again."
        return f"{passed_to} already holds this package."
    if expected.onward_depth >= settings.onward_max_depth:
        return (
            f"This package has already been passed on {expected.onward_depth} "
            f"time{'' if expected.onward_depth == 1 else 's'}, as far as it may go: it cannot be passed on again."
        )
    return None


def file_outcome(
    session: Session, settings: Settings, expected: ExpectedReturn, values: dict, *, filed_by: str, via: str
) -> OutcomeReturn:
    """File the outcome on ``expected`` (read locked, ``find_return(for_update=True)``): the next
    version, the return's counters, a final return's stop to the chase, the ``outcome.filed``
    event and the request's audit entry. Every check reads first; the writes then go out
    together (``pipelined_writes``: one round trip for all of them on PostgreSQL, where one each
    through the unit of work was most of a filing's time; profiled), as Core statements built
    once. The outcome answered is not tracked by the session: nothing here is changed again."""
    problems = filing_problems(session, settings, expected, values)
    if problems:
        raise Invalid(problems)
    if expected.close_reason == "withdrawn":
        raise FilingRefused(f"Package {expected.reference} was withdrawn; no return is needed.")
    session.flush()  # nothing of the session's may be left to flush inside the pipeline
    feedback = values["intelligence_feedback"]
    row = {
        "id": new_id(),
        "return_id": expected.id,
        "version": expected.versions + 1,
        "status": values["status"],
        "actions": list(values["actions"]),
        "no_action_reason": values.get("no_action_reason") if "no_action" in values["actions"] else None,
        "passed_to": values.get("passed_to") if "passed_on" in values["actions"] else None,
        "priority": values["priority"],
        "tasking_forum": values.get("tasking_forum"),
        "results": dict(values["results"]),
        "attribution": values.get("attribution"),
        "strands": list(values.get("strands") or []),
        "usefulness": feedback["usefulness"],
        "accuracy": feedback["accuracy"],
        "timeliness": feedback["timeliness"],
        "comments": values.get("comments"),
        "filed_by": filed_by,
        "filed_via": via,
        "filed_at": utcnow(),
    }
    outcome = OutcomeReturn(**row)
    counters = {
        "versions": outcome.version,
        "first_returned_at": expected.first_returned_at or outcome.filed_at,
        "final_returned_at": expected.final_returned_at or (outcome.filed_at if outcome.status == "final" else None),
    }
    stops_the_chase = expected.final_returned_at is None and counters["final_returned_at"] is not None
    event = outcome_event(expected, outcome)  # before the pipeline: nothing inside it may read
    with pipelined_writes(session):
        execute_write(session, _counters_update(), {"return_id": expected.id, **counters}, rows_expected=1)
        if stops_the_chase:  # pending steps are not sent (a step the session holds is not told)
            execute_write(session, _chase_stop(), {"the_return": expected.id})
        insert_rows(session, OutcomeReturn, [row])
        emit(session, shared_models, settings, "outcome.filed", expected.id, event)
        write_with_change(session)
    # What the writes changed is read again if asked for (the ORM's own flush would have left it
    # dirty, and so expired by a rollback to a savepoint; its values here would outlive one).
    session.expire(expected, [*counters, "outcomes"])
    return outcome


@functools.cache
def _counters_update() -> Update:
    table = table_of(ExpectedReturn)
    return (
        update(table)
        .where(table.c.id == bindparam("return_id"))
        .values({name: bindparam(name) for name in ("versions", "first_returned_at", "final_returned_at")})
    )


@functools.cache
def _chase_stop() -> Update:
    table = table_of(ChaseEntry)
    return (
        update(table)
        .where(table.c.return_id == bindparam("the_return"), table.c.result == "pending")
        .values(result="cancelled", error="final return filed")
    )


def outcome_event(expected: ExpectedReturn, outcome: OutcomeReturn) -> dict:
    return {
        "return_id": str(expected.id),
        "package_id": str(expected.package_id),
        "reference": expected.reference,
        "organisation": expected.organisation,
        "due_at": expected.due_at.isoformat(),
        "onward_from": str(expected.onward_from) if expected.onward_from else None,
        "version": outcome.version,
        "amendment": outcome.version > 1,
        "status": outcome.status,
        "filed_at": outcome.filed_at.isoformat(),
        "filed_via": outcome.filed_via,
        "filed_by": outcome.filed_by,
        "on_time": outcome.filed_at <= expected.due_at,
        "outcome": {
            "actions": outcome.actions,
            "no_action_reason": outcome.no_action_reason,
            "passed_to": outcome.passed_to,
            "priority": outcome.priority,
            "tasking_forum": outcome.tasking_forum,
            "results": outcome.results,
            "attribution": outcome.attribution,
            "strands": outcome.strands,
            "intelligence_feedback": {
                "usefulness": outcome.usefulness,
                "accuracy": outcome.accuracy,
                "timeliness": outcome.timeliness,
            },
        },
    }
