"""The recipient web form at /form/<signed token> (no account needed).

The signed link (``shared.form_links.form_url``) names one expected return; whoever holds it may file and
amend that return, so every answer here is kept out of caches, search engines and Referer
headers. Plain HTML forms in the GOV.UK Design System's markup, CSRF-protected with Flask-WTF
(only here: the token-authenticated JSON API is not affected). They work fully without
JavaScript; ``static/form.js`` (served from here, allowed by the CSP) only hides the answers
that are not asked yet and moves the focus as GOV.UK Frontend does.

The pages: the form (GET), Continue (POST: every problem at once, or the check page), Change
(POST from the check page: the form again as filled in), Send return (POST: filed, then
``/done``). The answers travel from the form to the check page and on in one signed hidden
field, so what is filed is what was checked, with nothing kept on the server meanwhile.

Filing goes through the same rules as the API: ``ReturnFormSchema`` (the API's
``OutcomeInputSchema`` and who is filing) and ``filing.filing_problems``, then
``filing.file_outcome`` with ``via="form"``. The views are here; what the form asks and says is
in ``form_wording``, reading what was sent in ``form_input``.
"""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException

from services.outcomes import filing, form_input
from services.outcomes.form_wording import (
    FIELD_ORDER,
    RESULT_GROUPS,
    STATUS_TEXT,
    USEFULNESS_CHOICES,
    answers_to_check,
    field_id,
)
from services.outcomes.models import ExpectedReturn, Organisation
from shared import govuk
from shared.audit import audit_detail, audit_target
from shared.db import commit, get_session, utcnow
from shared.form_links import LinkProblem, return_id_from
from shared.local_time import date_time_words, date_words
from shared.vocabulary import (
    ACCURACY_CHOICES,
    ACTION_CHOICES,
    ATTRIBUTION_CHOICES,
    PRIORITY_CHOICES,
    RETURN_STATUS_CHOICES,
    STRAND_CHOICES,
    TIMELINESS_CHOICES,
    Choice,
)

SERVICE_NAME = "NCLCC outcome returns"
CENTRE_NAME = "the NCLCC"

bp = Blueprint(
    "form",
    __name__,
    template_folder="templates",
    static_folder="static",
    # Outside /form/ so stylesheet requests are not written to the audit log.
    static_url_path="/form-assets",
)
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

# ---------------------------------------------------------------------------------------------
# Pages that are not the form.


class PageProblem(Exception):
    """Answer with the problem page instead of the form."""

    def __init__(self, kind: str, status: int, expected: ExpectedReturn | None = None):
        super().__init__(kind)
        self.kind = kind
        self.status = status
        self.expected = expected


@bp.errorhandler(PageProblem)
def _problem_page(problem: PageProblem):
    return _problem(problem.kind, problem.status, problem.expected)


@bp.errorhandler(IntegrityError)
def _conflict(_error: IntegrityError):
    # Two filings of the same return at once (a double click on SQLite): the second loses.
    get_session().rollback()
    return _problem("conflict", 409)


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException):
    code = error.code or 500
    kind = "invalid" if code == 404 else "error"
    return _problem(kind, code)


@bp.errorhandler(Exception)
def _unexpected(error: Exception):
    current_app.logger.error("web form failed", exc_info=error)
    return _problem("error", 500)


def _problem(kind: str, status: int, expected: ExpectedReturn | None = None):
    settings = current_app.extensions["settings"]
    token = (request.view_args or {}).get("token")
    about = _about(expected) if expected is not None else {"expected": None}
    return render_template(
        "form/problem.html", **about, kind=kind, centre_email=settings.centre_email, token=token
    ), status


# ---------------------------------------------------------------------------------------------
# Views.


def _expected_return(token: str, *, for_update: bool = False) -> ExpectedReturn:
    settings = current_app.extensions["settings"]
    try:
        return_id = return_id_from(settings, token)
    except LinkProblem as problem:
        audit_detail(f"refused: {problem}")
        raise PageProblem("expired" if problem.expired else "invalid", 410 if problem.expired else 404) from problem
    audit_target("return", return_id, "web form")
    query = select(ExpectedReturn).where(ExpectedReturn.id == return_id)
    if for_update:
        query = query.with_for_update(of=ExpectedReturn)
    expected = get_session().scalars(query).first()
    if expected is None:
        audit_detail("refused: no such return")
        raise PageProblem("invalid", 404)
    if expected.close_reason == "withdrawn":
        audit_detail("refused: package withdrawn")
        raise PageProblem("withdrawn", 409, expected)
    return expected


@bp.before_request
def _posts_carry_the_csrf_token():
    if request.method != "POST":
        return None
    try:
        current_app.extensions["csrf"].protect()
    except CSRFError as error:
        _audit_link_quietly((request.view_args or {}).get("token", ""))
        audit_detail(f"refused: CSRF: {error.description}")
        return _problem("csrf", 400)
    return None


@bp.get("/form/<token>")
def show(token: str):
    expected = _expected_return(token)
    current = expected.current
    values = form_input.values_from_outcome(current) if current else MultiDict()
    return _render_form(token, expected, values, {}, shows_current=current is not None)


@bp.post("/form/<token>")
def check_answers(token: str):
    """Continue: every rule at once; the form again with every problem, or the check page."""
    expected = _expected_return(token)
    values = form_input.values_from_request(request.form)
    loaded, errors = form_input.check(get_session(), current_app.extensions["settings"], expected, values)
    if errors:
        audit_detail("invalid: " + ", ".join(form_input.ordered(errors)))
        return _render_form(token, expected, values, errors, status=422)
    return _render_check(token, expected, values, loaded)


@bp.post("/form/<token>/change")
def change(token: str):
    """A Change link (or Back) on the check page: the form again, as it was filled in."""
    expected = _expected_return(token)
    return _render_form(token, expected, _sealed_answers(expected), {})


@bp.post("/form/<token>/send")
def send(token: str):
    """Send return: the checked answers, checked again (the return may have moved on since),
    then filed once however often they are sent."""
    expected = _expected_return(token, for_update=True)
    session = get_session()
    values = _sealed_answers(expected)
    loaded, errors = form_input.check(session, current_app.extensions["settings"], expected, values)
    if errors:
        audit_detail("invalid when sent: " + ", ".join(form_input.ordered(errors)))
        return _render_form(token, expected, values, errors, status=422)
    if form_input.repeat_of_current(expected, values, loaded):
        # The same answers sent twice (a double click, or Back and Send again): filed once.
        return redirect(url_for("form.done", token=token), 303)
    try:
        filing.file_outcome(
            session,
            current_app.extensions["settings"],
            expected,
            loaded,
            filed_by=form_input.filed_by(loaded),
            via="form",
        )
    except filing.FilingRefused as refused:
        session.rollback()
        raise PageProblem("withdrawn", 409, expected) from refused
    commit(session)
    return redirect(url_for("form.done", token=token), 303)


def _sealed_answers(expected: ExpectedReturn) -> MultiDict:
    try:
        return form_input.open_answers(
            current_app.extensions["settings"],
            expected,
            request.form.get("answers", ""),
            max_age=current_app.config["WTF_CSRF_TIME_LIMIT"],
        )
    except form_input.AnswersProblem as problem:
        audit_detail(f"refused: answers: {problem}")
        raise PageProblem("csrf", 400, expected) from problem


@bp.get("/form/<token>/done")
def done(token: str):
    expected = _expected_return(token)
    if expected.current is None:
        return redirect(url_for("form.show", token=token), 303)
    return render_template(
        "form/done.html",
        **_about(expected),
        outcome=expected.current,
        token=token,
        status_choices={c.value: c.label for c in RETURN_STATUS_CHOICES},
    )


@bp.after_request
def _private(response):
    """The URL carries the link's token: keep it out of Referer headers, caches and indexes."""
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    if request.endpoint != "form.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def _audit_link_quietly(token: str) -> None:
    try:
        audit_target("return", return_id_from(current_app.extensions["settings"], token), "web form")
    except LinkProblem:
        pass


# ---------------------------------------------------------------------------------------------
# Rendering.


def _about(expected: ExpectedReturn) -> dict:
    """What every page about a return shows: the return, its organisation by name, and the
    protective marking of the package it is about (in the banners, top and bottom)."""
    own = get_session().get(Organisation, expected.organisation)
    return {
        "expected": expected,
        "organisation_name": own.name if own else expected.organisation,
        "marking": expected.classification,
    }


def _others(expected: ExpectedReturn) -> list[Organisation]:
    """The organisations it may be passed to: the other active ones that do not hold the package
    already (the centre, its recipients, those it was passed on to), keeping the one this return
    passed it to (``filing.pass_on_problem`` has the rule; the list only spares a refusal)."""
    db = get_session()
    holders = {
        held.organisation
        for held in db.scalars(select(ExpectedReturn).where(ExpectedReturn.package_id == expected.package_id))
        if not (held.onward_from == expected.id and held.close_reason != "withdrawn")
    }
    holders |= {expected.organisation, current_app.extensions["settings"].centre_org}
    return list(
        db.scalars(
            select(Organisation)
            .where(Organisation.active.is_(True), Organisation.code.not_in(holders))
            .order_by(Organisation.name)
        ).all()
    )


def _render_form(
    token: str,
    expected: ExpectedReturn,
    values: MultiDict,
    errors: dict[str, str],
    status: int = 200,
    shows_current: bool = False,
):
    now = utcnow()
    return_status = expected.status_at(now)
    ordered = form_input.ordered(errors)
    return render_template(
        "form/form.html",
        **_about(expected),
        token=token,
        current=expected.current,
        shows_current=shows_current,
        values=values,
        # The version the form was first shown on, kept through errors and changes: sending
        # the same answers from it again is a repeat, not a new version.
        based_on=values.get("based_on") or str(expected.versions),
        errors=errors,
        error_list=[(field_id(key) if key in FIELD_ORDER else "outcome-form", errors[key]) for key in ordered],
        passed_to_choices=[Choice(o.code, o.name) for o in _others(expected)],
        overdue=expected.final_returned_at is None and now > expected.due_at,
        return_status=STATUS_TEXT.get(return_status, return_status),
        status_choices=RETURN_STATUS_CHOICES,
        action_choices=ACTION_CHOICES,
        priority_choices=PRIORITY_CHOICES,
        attribution_choices=ATTRIBUTION_CHOICES,
        strand_choices=STRAND_CHOICES,
        usefulness_choices=USEFULNESS_CHOICES,
        accuracy_choices=ACCURACY_CHOICES,
        timeliness_choices=TIMELINESS_CHOICES,
        result_groups=RESULT_GROUPS,
    ), status


def _render_check(token: str, expected: ExpectedReturn, values: MultiDict, loaded: dict):
    names = {o.code: o.name for o in _others(expected)}
    return render_template(
        "form/check.html",
        **_about(expected),
        token=token,
        current=expected.current,
        sections=answers_to_check(loaded, names),
        answers=form_input.seal_answers(current_app.extensions["settings"], expected, values),
    )


def _words(code: str | None) -> str:
    return (code or "").replace("_", " ").capitalize()


def init_app(app: Flask) -> None:
    """Registered by create_app: the form's blueprint and CSRF protection for it only."""
    # The JSON API authenticates by bearer token and has no CSRF token: check only where asked.
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    # An officer may keep the form open for hours while gathering the figures.
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", 12 * 3600)
    # Flask-WTF's HTTPS check wants a Referer from this host, but the form's pages send none
    # (Referrer-Policy: no-referrer, so the token in the URL does not leak): with the check on,
    # every submission over HTTPS would be refused. The CSRF token and SameSite cookie remain.
    app.config.setdefault("WTF_CSRF_SSL_STRICT", False)
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    if app.extensions["settings"].public_urls.get("outcomes", "").lower().startswith("https://"):
        # Behind https the session cookie (it holds the CSRF secret) goes only over https, never
        # to scripts, and never with a request another site starts. A link opened from an e-mail
        # gets a fresh one on its first page, which the form's own POST then carries.
        app.config["SESSION_COOKIE_SECURE"] = True
        app.config["SESSION_COOKIE_SAMESITE"] = "Strict"
    elif app.config.get("SESSION_COOKIE_SAMESITE") is None:
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    CSRFProtect().init_app(app)  # keeps itself in app.extensions["csrf"]
    app.jinja_env.filters["field_id"] = field_id
    app.jinja_env.filters["date"] = date_words
    app.jinja_env.filters["date_time"] = date_time_words
    app.jinja_env.filters["words"] = _words
    app.jinja_env.globals["service_name"] = SERVICE_NAME
    app.jinja_env.globals["centre_name"] = CENTRE_NAME
    govuk.init_app(app, "/form-assets")
    app.register_blueprint(bp)
