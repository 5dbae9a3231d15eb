"""The audit log: every API read and write, every web page a person reads or submits (the
recipient form, the leadership dashboard, the recipients' pages, their sign-ins and sign-outs), and every refusal, with
who, when, what and the answer given. A write's entry commits with the change it records (with the
answer its view declares for success, corrected afterwards if the answer was another); a read may
write its entry in its own statement the same way (``foreseen_entry``, ``entry_insert_where``,
``entry_written``: a package's metrics read on PostgreSQL); anything else is written after the
answer is decided, once what the request left uncommitted is rolled back, so a refused or
failed request is recorded though its own changes are not.

Views name what they touched with ``audit_target(type, id)``; the rest is taken from the
request. A page that signs people in with its own session (the dashboard) sets ``g.principal``
to the person it signed in, and may name the outcome with ``audit_outcome`` when the status code
alone does not say it (a redirect to the sign-in page is a refusal).

A form link's token is a credential: requests under ``/form/`` are recorded by their route
pattern, and one that matches no route by a placeholder, never by their URL.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import datetime

from flask import Response, current_app, g, has_request_context, request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import fields, validate
from sqlalchemy import Connection, Insert, Table, bindparam, event, insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from shared.api import BaseSchema, page_of
from shared.auth import current_principal, require
from shared.db import execute_write, get_db, get_session, table_of, utcnow
from shared.guard import printable

log = logging.getLogger(__name__)

OUTCOMES = ("allowed", "refused", "invalid", "error")
AUDITED_PREFIXES = ("/api/", "/form/", "/dashboard/")
# /metrics: only refused scrapes are recorded (the view calls ``skip_audit`` on the others).
AUDITED_PATHS = ("/dashboard", "/metrics")
# Stylesheets and images: not reads of anything.
UNAUDITED_PREFIXES = ("/dashboard/static/",)
# What a /form/ request that matches no route is recorded as (its path carries the token).
UNMATCHED_FORM_ROUTE = "/form/<unmatched>"


def audit_target(target_type: str, target_id: object, detail: str | None = None) -> None:
    g.audit_target = (target_type, str(target_id))
    if detail:
        g.audit_detail = detail


def audit_detail(detail: str) -> None:
    g.audit_detail = detail


def audit_outcome(outcome: str, detail: str | None = None) -> None:
    """Record this outcome whatever the status code (e.g. a redirect that refuses)."""
    assert outcome in OUTCOMES
    g.audit_outcome = outcome
    if detail:
        g.audit_detail = detail


def audit_page() -> None:
    """Record this request though its path is outside the audited prefixes: a page a person
    signs in to (the recipients' pages call it for every request of their blueprint)."""
    g.audit_page = True


def audit_route_only() -> None:
    """Record this request by its route, not its URL, whose query carries a credential (an
    identity provider's authorization code and state)."""
    g.audit_route_only = True


def skip_audit() -> None:
    """Leave this request out of the audit log: only for reads that record nobody's action
    and come too often to keep (a Prometheus scrape every 15 s)."""
    g.audit_skip = True


def audited(path: str) -> bool:
    return (path.startswith(AUDITED_PREFIXES) or path in AUDITED_PATHS) and not path.startswith(UNAUDITED_PREFIXES)


def outcome_for(status: int) -> str:
    if status < 400:
        return "allowed"
    if status in (401, 403, 404, 409):
        return "refused"
    if status < 500:
        return "invalid"
    return "error"


def _is_audited() -> bool:
    return (
        (audited(request.path) or bool(g.get("audit_page")))
        and request.method not in ("OPTIONS", "HEAD")
        and not g.get("audit_skip")
    )


def _entry(status_code: int, detail: str | None) -> dict:
    """The audit row for this request, as the audit table's column values."""
    principal = current_principal()
    target_type, target_id = g.get("audit_target", (None, None))
    rule = _route()
    return {
        "at": utcnow(),
        "actor": principal.sub if principal else None,
        "actor_org": principal.org if principal else None,
        "actor_roles": ",".join(sorted(principal.roles)) if principal else None,
        "method": request.method,
        "path": printable(_recorded_path(rule)),
        "action": f"{request.method} {rule}"[:80],
        "target_type": target_type,
        "target_id": target_id,
        **dict(zip(ANSWER_COLUMNS, _answer_given(status_code, detail), strict=True)),
        "remote_addr": request.remote_addr,
    }


# What an entry says of the answer: the one written with a change is corrected in these alone.
ANSWER_COLUMNS = ("status_code", "outcome", "detail")


def _answer(entry: dict) -> tuple:
    return tuple(entry[name] for name in ANSWER_COLUMNS)


def _answer_given(status_code: int, detail: str | None) -> tuple:
    """``_answer`` of the entry ``_entry(status_code, detail)`` would make, without the rest."""
    return (
        status_code,
        g.get("audit_outcome") or outcome_for(status_code),
        (detail or None) and printable(str(detail))[:2000],
    )


def audit_table() -> Table:
    return table_of(current_app.extensions["service"].models.AuditEntry)


@functools.cache
def _insert(table: Table, returning_id: bool) -> Insert:
    """An entry's ``INSERT``, ``_entry``'s columns bound by name: a statement the write pipeline
    can send as it is (``write_with_change``)."""
    statement = insert(table).values({name: bindparam(name, type_=table.c[name].type) for name in ENTRY_COLUMNS})
    return statement.returning(table.c.id) if returning_id else statement


def _write(session: Session, entry: dict) -> int:
    """Insert the entry in the session's transaction; its id. A Core ``INSERT ... RETURNING``
    built once per table: every audited request writes one, and the unit of work's flush of an
    object (its state tracking, its mapper's walk) cost a read as much as its query."""
    return session.execute(_insert(audit_table(), True), entry).scalar_one()


def _write_answer(target: Session | Connection, entry: dict, written: tuple | None) -> None:
    """The request's entry as it was answered: the one written with the change or the read,
    corrected (``written``: its id and foreseen answer), or a new one."""
    if written is not None:
        # The answer was not the one the entry committed with the change foresaw.
        table = audit_table()
        target.execute(
            update(table).where(table.c.id == written[0]).values({name: entry[name] for name in ANSWER_COLUMNS})
        )
    else:
        _write_final(target, entry)


def _write_final(session: Session | Connection, entry: dict) -> None:
    """Insert an entry nothing will correct: no ``RETURNING`` (a result's description and rows
    to build, on every audited read)."""
    session.execute(_insert(audit_table(), False), entry)


# The columns ``_entry`` gives, in its order: the ones a read's own statement binds (the table's
# others, its id among them, take their defaults, as they do for ``_write``).
ENTRY_COLUMNS = (
    "at",
    "actor",
    "actor_org",
    "actor_roles",
    "method",
    "path",
    "action",
    "target_type",
    "target_id",
    "status_code",
    "outcome",
    "detail",
    "remote_addr",
)


def entry_insert_where(table: Table, condition) -> Insert:
    """An ``INSERT`` of this request's entry where ``condition`` holds, returning its id: for a
    read that sends its entry in its own statement (a CTE), so the entry is written, and
    committed, only if the read finds what it may answer. Its values are bound as
    ``entry_<column>`` (``foreseen_entry``). Build it once per table and cache it."""
    values = select(*(bindparam(f"entry_{name}", type_=table.c[name].type) for name in ENTRY_COLUMNS)).where(condition)
    return insert(table).from_select(list(ENTRY_COLUMNS), values).returning(table.c.id)


def foreseen_entry() -> dict | None:
    """This request's entry as it will be if the view answers as it declares for success; None
    for a request the log leaves out (a ``HEAD``, say), or one whose entry is written already.
    A write's entry is this one, written with its change; a read may write it in its own
    statement (``entry_insert_where``, bound with ``entry_params``)."""
    if not _is_audited() or g.get("audit_written") is not None:
        return None
    return _entry(_success_status(), g.get("audit_detail"))


def entry_params(entry: dict) -> dict:
    """The entry's values, bound as ``entry_insert_where`` names them."""
    return {f"entry_{name}": entry[name] for name in ENTRY_COLUMNS}


def entry_written(entry_id: int, entry: dict) -> None:
    """The request's entry is written (``foreseen_entry``, by the view's own statement): the
    answer corrects it only if it turns out otherwise, as a write's entry is."""
    g.audit_written = (entry_id, *_answer(entry))


def _success_status() -> int:
    """The status the view answers when all goes well, as its ``@blp.response`` declares it."""
    view = current_app.view_functions.get(request.endpoint or "")
    return _declared_success_status(getattr(getattr(view, "view_class", None), request.method.lower(), view))


# Keyed on the view function itself, not the endpoint's name: the services' apps (several in one
# test process) may share a name. A view's ``@blp.response`` is fixed once it is defined, so
# reading it once per view spares every audited write the walk through flask-smorest's doc.
@functools.cache
def _declared_success_status(handler: Callable | None) -> int:
    declared = getattr(handler, "_apidoc", {}).get("response", {}).get("responses", {})
    return next((int(code) for code in declared if 200 <= int(code) < 300), 200)


@event.listens_for(Session, "before_commit")
def _audit_with_the_change(session: Session) -> None:
    """A write's audit entry commits in the same transaction as the change it records (one
    commit, not two), with the answer the view declares for success; ``_record`` corrects it in
    the rare case the answer turns out otherwise, and writes it alone when nothing committed."""
    # Not a savepoint's release (the event fires for those too), only the transaction's commit.
    if not _the_requests_transaction(session) or session.info.get("defer_commit"):
        return
    entry = foreseen_entry()
    if entry is not None and "audit_entry" not in session.info:
        session.info["audit_entry"] = (_write(session, entry), *_answer(entry))


def write_with_change(session: Session) -> None:
    """Write this request's entry now, in the transaction of the change it records, rather than
    as it commits: inside ``shared.db.pipelined_writes`` it goes out with the change's own
    writes, one round trip for them all (a filing). The commit then writes no second; a
    rollback takes it away with the change, and the answer is then recorded as any other."""
    if not _the_requests_transaction(session) or "audit_entry" in session.info:
        return
    entry = foreseen_entry()
    if entry is None:
        return
    answer = _answer(entry)

    def written(row) -> None:
        session.info["audit_entry"] = (row[0], *answer)

    execute_write(session, _insert(audit_table(), True), entry, answered=written)


def _the_requests_transaction(session: Session) -> bool:
    """``session`` is this request's, in its transaction (not a savepoint of it)."""
    return has_request_context() and g.get("db_session") is session and not session.in_nested_transaction()


@event.listens_for(Session, "after_commit")
def _audit_committed(session: Session) -> None:
    written = session.info.pop("audit_entry", None)
    if written is not None and has_request_context():
        g.audit_written = written


@event.listens_for(Session, "after_rollback")
def _audit_rolled_back(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop("audit_entry", None)


def _record(response: Response) -> Response:
    if not _is_audited():
        return response
    try:
        detail = g.get("audit_detail")
        if response.status_code >= 400 and detail is None and response.is_json:
            detail = (response.get_json(silent=True) or {}).get("message")
        written = g.get("audit_written") or None
        if written is not None and written[1:] == _answer_given(response.status_code, detail):
            return response  # committed with the change (or the read), as it turned out
        entry = _entry(response.status_code, detail)
        session = g.get("db_session")
        reading = g.get("db_read_connection")
        if session is None and reading is not None and not reading.invalidated:
            # A read on the request's connection in autocommit (``get_read_connection``) and
            # nothing else: the entry goes on that connection, and commits as it is written.
            g.audit_written = False  # no second entry from a session's commit after this
            try:
                _write_answer(reading, entry, written)
                return response
            except DBAPIError as error:
                # Its type alone: the error's text carries the entry's values.
                log.warning(
                    "audit entry not written on the read's connection (%s): writing it on another%s",
                    type(error.orig).__name__,
                    " (it may have been written before the connection was lost)"
                    if error.connection_invalidated and written is None
                    else "",
                )
        # The request's own session and connection when it has one: no second checkout. A read
        # that was answered writes its entry in the transaction that read (one commit, as the
        # least an audited read can do); anything else first drops what it left uncommitted, so
        # a refused or failed request changes nothing but the audit log.
        borrowed = session is not None
        if session is None:
            session = get_db().session()
        elif not (request.method == "GET" and response.status_code < 400):
            session.rollback()
        g.audit_written = False  # no second entry from this session's commit
        try:
            _write_answer(session, entry, written)
            session.commit()
        except Exception:
            session.rollback()
            raise
        finally:
            if not borrowed:
                session.close()
    except Exception:  # noqa: BLE001 - never turn an answer into a 500 because auditing failed
        log.exception("could not write audit entry")
    return response


def _route() -> str:
    """The route pattern the request matched; else its path, except under /form/."""
    if request.url_rule is not None:
        return request.url_rule.rule
    if request.path.startswith("/form/"):
        return UNMATCHED_FORM_ROUTE
    return request.path


def _recorded_path(rule: str) -> str:
    """The path as the audit log keeps it. A form link's token is a credential (it lets anyone
    file for that return), so form requests are recorded by their route, never their URL."""
    if request.path.startswith("/form/") or g.get("audit_route_only"):
        return rule[:500]
    return request.full_path.rstrip("?")[:500]


class AuditEntrySchema(BaseSchema):
    id = fields.Integer()
    at = fields.AwareDateTime()
    actor = fields.String(allow_none=True)
    actor_org = fields.String(allow_none=True)
    actor_roles = fields.String(allow_none=True)
    method = fields.String()
    path = fields.String()
    action = fields.String()
    target_type = fields.String(allow_none=True)
    target_id = fields.String(allow_none=True)
    status_code = fields.Integer()
    outcome = fields.String()
    detail = fields.String(allow_none=True)
    remote_addr = fields.String(allow_none=True)


class AuditQueryArgsSchema(BaseSchema):
    actor = fields.String()
    actor_org = fields.String(metadata={"description": "organisation code of the caller"})
    action = fields.String(metadata={"description": "e.g. 'GET /api/v1/packages/<uuid:package_id>'"})
    target_type = fields.String()
    target_id = fields.String()
    outcome = fields.String(validate=validate.OneOf(OUTCOMES))
    since = fields.AwareDateTime()
    until = fields.AwareDateTime()


audit_blp = Blueprint("audit", __name__, url_prefix="/api/v1/audit", description="The audit log (admin).")


@audit_blp.route("")
class AuditLog(MethodView):
    @require("admin")
    @audit_blp.arguments(AuditQueryArgsSchema(), location="query")
    @audit_blp.response(200, AuditEntrySchema(many=True))
    @audit_blp.paginate()
    def get(self, args, pagination_parameters):
        """Audit entries, newest first, filtered by caller, action, target, outcome and time."""
        model = current_app.extensions["service"].models.AuditEntry
        query = select(model)
        for name in ("actor", "actor_org", "action", "target_type", "target_id", "outcome"):
            if name in args:
                query = query.where(getattr(model, name) == args[name])
        since: datetime | None = args.get("since")
        until: datetime | None = args.get("until")
        if since:
            query = query.where(model.at >= since)
        if until:
            query = query.where(model.at < until)
        return page_of(get_session(), query, pagination_parameters, order_by=(model.id.desc(),))


def init_app(app) -> None:
    app.after_request(_record)


def register_api(api) -> None:
    api.register_blueprint(audit_blp)
