"""The audit log: every API read and write, every web page a person reads or submits (the
recipient form, the leadership dashboard, the recipients' pages, their sign-ins and sign-outs), and every refusal, with
who, when, what and the answer given. Written in its own transaction after the answer is decided, so a refused or
failed request is recorded even though its own changes were rolled back.

Views name what they touched with ``audit_target(type, id)``; the rest is taken from the
request. A page that signs people in with its own session (the dashboard) sets ``g.principal``
to the person it signed in, and may name the outcome with ``audit_outcome`` when the status code
alone does not say it (a redirect to the sign-in page is a refusal).

A form link's token is a credential: requests under ``/form/`` are recorded by their route
pattern, and one that matches no route by a placeholder, never by their URL.
"""

from __future__ import annotations

import logging
from datetime import datetime

from flask import Response, current_app, g, request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import fields, validate
from sqlalchemy import select

from shared.api import BaseSchema, page_of
from shared.auth import current_principal, require
from shared.db import get_db, get_session
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


def _record(response: Response) -> Response:
    if (
        not (audited(request.path) or g.get("audit_page"))
        or request.method in ("OPTIONS", "HEAD")
        or g.get("audit_skip")
    ):
        return response
    try:
        principal = current_principal()
        target_type, target_id = g.get("audit_target", (None, None))
        detail = g.get("audit_detail")
        if response.status_code >= 400 and detail is None and response.is_json:
            detail = (response.get_json(silent=True) or {}).get("message")
        rule = _route()
        model = current_app.extensions["service"].models.AuditEntry
        # The request's own session and connection when it has one: no second checkout. A read
        # that was answered writes its entry in the transaction that read (one commit, as the
        # least an audited read can do); anything else first drops what it left uncommitted, so
        # a refused or failed request changes nothing but the audit log.
        session = g.get("db_session")
        borrowed = session is not None
        if session is None:
            session = get_db().session()
        elif not (request.method == "GET" and response.status_code < 400):
            session.rollback()
        try:
            session.add(
                model(
                    actor=principal.sub if principal else None,
                    actor_org=principal.org if principal else None,
                    actor_roles=",".join(sorted(principal.roles)) if principal else None,
                    method=request.method,
                    path=printable(_recorded_path(rule)),
                    action=f"{request.method} {rule}"[:80],
                    target_type=target_type,
                    target_id=target_id,
                    status_code=response.status_code,
                    outcome=g.get("audit_outcome") or outcome_for(response.status_code),
                    detail=(detail or None) and printable(str(detail))[:2000],
                    remote_addr=request.remote_addr,
                )
            )
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
    @audit_blp.arguments(AuditQueryArgsSchema, location="query")
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
