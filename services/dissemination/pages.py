"""The recipients' pages: a force's or ROCU's people read their organisation's packages,
acknowledge them and go on to the outcome return form. Plain HTML (GOV.UK Design System markup,
no JavaScript), not part of the JSON API or its OpenAPI document.

- ``/sign-in``: with the organisation's identity provider (``shared.oidc``: OpenID Connect,
  PKCE) when ``OIDC_ISSUER`` is set; in development and test also by pasting a token from
  ``make token`` (that form does not exist in production). Only people whose claims carry the
  ``recipient`` role enter. The session is ``shared.web_sessions``, as the dashboard's.
- ``/inbox``: the organisation's packages, newest first, 25 a page.
- ``/disseminations/<id>``: one package as sent to the organisation: marking, grading in words,
  handling, due date; Acknowledge (as ``POST /api/v1/disseminations/{id}/acknowledge``) and File
  the outcome return (``/disseminations/<id>/return`` mints the outcomes form's signed link for
  this dissemination, whose expected return has the same id, and sends the browser there).

Scoping is the API's own (``access``): another organisation's dissemination, or one above the
reader's clearance, answers 404. Every request is audited, refusals with their reason.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from datetime import datetime

from flask import Blueprint, Flask, abort, current_app, g, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect
from redis.exceptions import RedisError
from sqlalchemy import func, select
from werkzeug.exceptions import HTTPException

from services.dissemination import issuing
from services.dissemination.access import (
    INBOX_ORDER,
    find_dissemination,
    find_dissemination_to_acknowledge,
    inbox_query,
)
from services.dissemination.delivery import page_links  # noqa: F401 - the pages' addresses, said once
from services.dissemination.models import Dissemination
from shared import govuk
from shared.audit import audit_detail, audit_outcome, audit_page, audit_target
from shared.auth import Principal
from shared.clock import now as clock_now
from shared.db import commit, get_session
from shared.errors import Conflict
from shared.form_links import form_url
from shared.local_time import date_time_words, date_words
from shared.oidc import OidcSignIn, oidc_configured
from shared.settings import Settings
from shared.vocabulary import HANDLING_CODE_LABELS, grading_words
from shared.web_sessions import SignInRefused, WebSessions, configure_cookie, verify_pasted_token

SERVICE_NAME = "NCLCC intelligence packages"
PER_PAGE = 25
# Where a sign-in may send the browser on to: these pages only.
NEXT_PATH = re.compile(
    r"^/(inbox|disseminations/[0-9a-fA-F-]{36}|packages|packages/[0-9a-fA-F-]{36})(\?page=[0-9]{1,6})?$"
)

bp = Blueprint(
    "pages", __name__, template_folder="templates", static_folder="static/pages", static_url_path="/pages-assets/pages"
)
csrf = CSRFProtect()
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
NOTICES = {
    "expired": "Your 8-hour session has ended, so you have been signed out. Sign in again to carry on.",
    "invalid": "Your session is no longer valid. Sign in again.",
    "unavailable": "The service cannot reach its session store just now. Try again in a minute.",
    "signed-out": "You have signed out.",
}
REFUSALS: dict[str, str | None] = {
    "expired": "Your sign-in had expired by the time it reached us. Sign in again.",
    "no_org": "Your account does not say which organisation you belong to, so we cannot show you its packages.",
    "centre_role": None,  # the refusal's own words name the role and the organisation
    "no_role": "Your account does not have the recipient role, which reading your organisation’s packages needs "
    "(or a centre role, for the centre's view of its packages).",
    "state": "This sign-in was started in another window, or too long ago. Sign in again.",
    "denied": "You chose not to sign in.",
    "provider": "Signing in with your organisation’s account did not work. Try again in a minute.",
}


def now() -> float:
    """The clock sessions are judged by (tests move it)."""
    return time.time()


def may_enter(principal: Principal) -> bool:
    """A recipient, for its organisation's pages; the centre's staff, for the centre's pages."""
    return "recipient" in principal.roles or principal.is_centre


sessions = WebSessions("recipient", may_enter=may_enter, clock=lambda: now())


def init_app(app: Flask) -> None:
    """Registered by create_app: the pages, their session cookie, CSRF and sign-in."""
    settings: Settings = app.extensions["settings"]
    # Lax, not Strict: the identity provider's redirect back, and a link opened from the delivery
    # e-mail, are navigations from another site that must carry the session. Every POST carries a
    # CSRF token too.
    configure_cookie(
        app,
        name="nclcc_recipient",
        path="/",
        public_url=settings.public_urls.get("dissemination", ""),
        same_site="Lax",
    )
    # Behind https Flask-WTF wants a same-origin Referer on POSTs; the pages send one (same-origin policy).
    csrf.init_app(app)
    if oidc_configured(settings):
        app.extensions["recipient_oidc"] = OidcSignIn(app, "recipient")
    app.jinja_env.globals["pages_service_name"] = SERVICE_NAME
    govuk.init_app(app, "/pages-assets")
    from services.dissemination import centre_pages  # noqa: F401 - the centre's pages, on this blueprint

    app.register_blueprint(bp)


def token_sign_in_exists(settings: Settings) -> bool:
    """Pasting a token from ``make token``: development and test only, never production."""
    return not settings.production


# -- every request -------------------------------------------------------------------------------


@bp.before_request
def _every_request():
    if request.endpoint != "pages.static":  # a stylesheet is no read of anything
        audit_page()
    # The pages never take a bearer header: the audit log and the access rules see whoever the
    # session says (set by each view once checked).
    g.principal = None


@bp.after_request
def _headers(response):
    if request.endpoint != "pages.static":
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        # Same-origin referrers keep Flask-WTF's https referrer check working; none leaves the site.
        response.headers["Referrer-Policy"] = "same-origin"
    return response


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException):
    code = error.code or 500
    return render_template("pages/problem.html", code=code, principal=g.get("principal")), code


@bp.errorhandler(Conflict)
def _conflict(error: Conflict):
    get_session().rollback()
    return render_template("pages/problem.html", code=409, message=str(error), principal=g.get("principal")), 409


@bp.errorhandler(Exception)
def _unexpected(error: Exception):
    current_app.logger.error("recipient page failed", exc_info=error)
    get_session().rollback()
    return render_template("pages/problem.html", code=500, principal=g.get("principal")), 500


def _signed_in() -> Principal | None:
    """The session's principal, set for the access rules and the audit log; None (and the
    refusal audited) when there is none."""
    principal, reason = sessions.current()
    if principal is None:
        if reason and reason != "unavailable":
            sessions.end_current()
        audit_outcome("refused", f"refused: recipient session {reason}" if reason else "refused: not signed in")
        g.sign_in_reason = reason
        return None
    g.principal = principal
    return principal


def _to_sign_in():
    wanted = request.full_path.rstrip("?") if request.method == "GET" else None
    arguments = {"reason": g.get("sign_in_reason")} if g.get("sign_in_reason") else {}
    if wanted and NEXT_PATH.match(wanted):
        arguments["next"] = wanted
    return redirect(url_for(".sign_in", **arguments), 303)


def _check_csrf() -> str | None:
    try:
        csrf.protect()
    except CSRFError as problem:
        audit_detail(f"invalid: CSRF: {problem.description}")
        return problem.description
    return None


# -- signing in and out --------------------------------------------------------------------------


def _oidc() -> OidcSignIn | None:
    return current_app.extensions.get("recipient_oidc")


def _next_path(value: str | None) -> str:
    if value and NEXT_PATH.match(value):
        return value
    # The centre's staff start from the packages it sent; a recipient from its inbox.
    principal = g.get("principal")
    return url_for(".packages") if principal is not None and principal.is_centre else url_for(".inbox")


def _sign_in_page(error: str | None = None, notice: str | None = None, status: int = 200):
    settings = current_app.extensions["settings"]
    return render_template(
        "pages/sign_in.html",
        error=error,
        notice=notice,
        oidc=_oidc() is not None,
        token_page=token_sign_in_exists(settings),
        next_path=_next_path(request.values.get("next")),
    ), status


@bp.get("/sign-in")
def sign_in():
    principal, _ = sessions.current()
    if principal is not None:
        g.principal = principal
        return redirect(_next_path(request.args.get("next")), 303)
    return _sign_in_page(notice=NOTICES.get(request.args.get("reason", "")))


@bp.post("/sign-in")
def sign_in_with_token():
    """Development and test only: a token from ``make token``, pasted."""
    if not token_sign_in_exists(current_app.extensions["settings"]):
        abort(404)
    if _check_csrf():
        return _sign_in_page(error="This sign-in form had expired. Paste your token again.", status=400)
    try:
        principal, expires_at = verify_pasted_token(current_app.extensions["settings"], request.form.get("token", ""))
    except SignInRefused as refused:
        audit_detail(refused.reason)
        status = 422 if refused.kind == "empty" else 401
        return _sign_in_page(error=str(refused), status=status)
    return _enter(principal, expires_at, "token", request.form.get("next"))


@bp.get("/sign-in/oidc")
def sign_in_oidc():
    """To the identity provider; it sends the person back to the callback."""
    oidc = _oidc()
    if oidc is None:
        abort(404)
    session["sign_in_next"] = _next_path(request.args.get("next"))
    try:
        return oidc.redirect(url_for(".sign_in_callback"))
    except SignInRefused as refused:
        audit_outcome("error", refused.reason)
        return _refused_page(refused.kind, REFUSALS["provider"], refused.status)


@bp.get("/sign-in/callback")
def sign_in_callback():
    oidc = _oidc()
    if oidc is None:
        abort(404)
    try:
        principal = oidc.finish()
    except SignInRefused as refused:
        audit_outcome("refused", refused.reason)
        return _refused_page(refused.kind, REFUSALS.get(refused.kind) or str(refused), refused.status)
    return _enter(principal, None, "oidc", session.pop("sign_in_next", None))


def _refused_page(kind: str, message: str | None, status: int, principal: Principal | None = None):
    return render_template("pages/refused.html", kind=kind, message=message, principal=principal), status


def _enter(principal: Principal, expires_at: float | None, via: str, next_path: str | None):
    g.principal = principal
    if not may_enter(principal):
        audit_outcome("refused", f"refused: no recipient role ({via})")
        return _refused_page("no_role", REFUSALS["no_role"], 403, principal)
    try:
        sessions.begin(principal, expires_at, via)
    except RedisError:
        audit_outcome("error", "session store unavailable")
        return _sign_in_page(error=NOTICES["unavailable"], status=503)
    return redirect(_next_path(next_path), 303)


@bp.post("/sign-out")
def sign_out():
    principal, _ = sessions.current()
    g.principal = principal
    if _check_csrf():
        return render_template("pages/problem.html", code=400, principal=principal), 400
    sessions.end_current(audit=True)
    session.clear()
    return redirect(url_for(".sign_in", reason="signed-out"), 303)


# -- the pages -----------------------------------------------------------------------------------


def return_status(dissemination: Dissemination, at: datetime) -> str:
    """What the inbox says of the return: ``final``, ``overdue`` (due passed, no final),
    ``interim`` or ``none``."""
    latest = dissemination.latest_return
    if latest == "final":
        return "final"
    if dissemination.due_at < at:
        return "overdue"
    return latest or "none"


def withdrawn(dissemination: Dissemination) -> bool:
    return dissemination.package.status == "withdrawn" or dissemination.withdrawn_at is not None


def _row(dissemination: Dissemination, at: datetime) -> dict:
    package = dissemination.package
    return {
        "id": dissemination.id,
        "reference": package.reference,
        "title": package.title,
        "grading": f"{package.source_evaluation}{package.intelligence_assessment}{package.handling_code}",
        "grading_words": grading_words(package.source_evaluation, package.intelligence_assessment),
        "classification": package.classification,
        "issued": date_words(package.issued_at),
        "due": date_words(dissemination.due_at),
        "acknowledged": dissemination.acknowledged_at is not None,
        "return_status": return_status(dissemination, at),
        "withdrawn": withdrawn(dissemination),
    }


def _page_number(value: str | None) -> int:
    try:
        number = int(value or "1")
    except ValueError:
        return 1
    return number if 1 <= number <= 100_000 else 1


@bp.get("/inbox")
def inbox():
    principal = _signed_in()
    if principal is None:
        return _to_sign_in()
    audit_target("inbox", principal.org)
    db = get_session()
    query = inbox_query(principal)
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    pages = max(1, math.ceil(total / PER_PAGE))
    page = min(_page_number(request.args.get("page")), pages)
    rows = db.scalars(query.order_by(*INBOX_ORDER).offset((page - 1) * PER_PAGE).limit(PER_PAGE))
    at = clock_now()
    return render_template(
        "pages/inbox.html",
        principal=principal,
        rows=[_row(each, at) for each in rows],
        page=page,
        pages=pages,
        total=total,
    )


@bp.get("/disseminations/<uuid:dissemination_id>")
def package_page(dissemination_id: uuid.UUID):
    principal = _signed_in()
    if principal is None:
        return _to_sign_in()
    dissemination = find_dissemination(dissemination_id)
    package = dissemination.package
    own = dissemination.organisation == principal.org
    return render_template(
        "pages/package.html",
        principal=principal,
        marking=package.classification,
        dissemination=dissemination,
        package=package,
        row=_row(dissemination, clock_now()),
        handling_words=HANDLING_CODE_LABELS.get(package.handling_code, package.handling_code),
        acknowledged_at=date_time_words(dissemination.acknowledged_at),
        due_at=date_time_words(dissemination.due_at),
        withdrawn_at=date_words(dissemination.withdrawn_at or package.withdrawn_at),
        withdrawal_reason=dissemination.withdrawal_reason or package.withdrawal_reason,
        own=own,
        just_acknowledged=request.args.get("acknowledged") == "1",
    )


@bp.post("/disseminations/<uuid:dissemination_id>/acknowledge")
def acknowledge(dissemination_id: uuid.UUID):
    principal = _signed_in()
    if principal is None:
        return _to_sign_in()
    if _check_csrf():
        audit_target("dissemination", dissemination_id)
        return render_template("pages/problem.html", code=400, principal=principal), 400
    dissemination = find_dissemination_to_acknowledge(dissemination_id)
    db = get_session()
    issuing.acknowledge(db, current_app.extensions["settings"], dissemination, principal)
    commit(db)
    return redirect(url_for(".package_page", dissemination_id=dissemination_id, acknowledged=1), 303)


@bp.get("/disseminations/<uuid:dissemination_id>/return")
def file_return(dissemination_id: uuid.UUID):
    """To the outcomes service's return form for this dissemination, by a freshly signed link."""
    principal = _signed_in()
    if principal is None:
        return _to_sign_in()
    dissemination = find_dissemination(dissemination_id)
    if dissemination.organisation != principal.org:
        audit_detail(f"refused: return of {dissemination.organisation}, caller is {principal.org}")
        abort(403)
    if withdrawn(dissemination):
        audit_detail("refused: package withdrawn")
        raise issuing.StateConflict(f"Package {dissemination.package.reference} was withdrawn: no return is needed.")
    audit_detail("form link minted")
    return redirect(form_url(current_app.extensions["settings"], dissemination.id), 303)
