"""The recipient web form at /form/<signed token> (no account needed).

The signed link (``links.form_url``) names one expected return; whoever holds it may file and
amend that return, so every answer here is kept out of caches, search engines and Referer
headers. Plain HTML forms in the GOV.UK Design System's markup, no JavaScript, CSRF-protected
with Flask-WTF (only here: the token-authenticated JSON API is not affected).

Filing goes through the same rules as the API: ``OutcomeInputSchema`` and
``filing.filing_problems``, then ``filing.file_outcome`` with ``via="form"``.
"""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Blueprint, Flask, current_app, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect
from marshmallow import ValidationError, validate
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException

from services.outcomes import filing
from services.outcomes.links import LinkProblem, return_id_from
from services.outcomes.models import ExpectedReturn, Organisation, OutcomeReturn
from services.outcomes.schemas import OutcomeInputSchema, ResultsSchema
from shared.audit import audit_detail, audit_target
from shared.db import commit, get_session, utcnow
from shared.vocabulary import (
    ACCURACY_CHOICES,
    ACTION_CHOICES,
    ATTRIBUTION_CHOICES,
    PRIORITY_CHOICES,
    RESULT_KINDS,
    RETURN_STATUS_CHOICES,
    STRAND_CHOICES,
    TIMELINESS_CHOICES,
    USEFULNESS_SCORES,
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
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

try:
    LOCAL_TIME = ZoneInfo("Europe/London")
except ZoneInfoNotFoundError:  # pragma: no cover - no time-zone database installed
    LOCAL_TIME = None


# ---------------------------------------------------------------------------------------------
# What the form asks: the choices, their labels and the messages a person sees.


USEFULNESS_CHOICES = tuple(Choice(str(n), str(n)) for n in USEFULNESS_SCORES)  # the legend's hint says 1 to 5
RESULTS = RESULT_KINDS
RESULT_GROUPS = (
    ("People and premises", RESULTS[0:4]),
    ("Safeguarding", RESULTS[4:7]),
    ("Seizures", RESULTS[7:11]),
)

LIST_FIELDS = ("actions", "strands")
TEXT_FIELDS = ("status", "no_action_reason", "passed_to", "priority", "tasking_forum", "attribution", "comments")
FEEDBACK_FIELDS = ("usefulness", "accuracy", "timeliness")
FILER_NAME_MAX, FILER_ROLE_MAX = 100, 95  # "<name> (<role>)" fits OutcomeReturn.filed_by (200)

# Every field the form shows, in page order: the error summary lists problems in this order.
FIELD_ORDER = (
    "status", "actions", "no_action_reason", "passed_to", "priority", "tasking_forum",
    *(r.key for r in RESULTS), "attribution", "strands",
    *(f"intelligence_feedback.{name}" for name in FEEDBACK_FIELDS), "comments", "filer_name", "filer_role",
)
LABELS = {
    "no_action_reason": "The reason for taking no action",
    "tasking_forum": "The tasking forum",
    "comments": "Comments",
    "filer_name": "Your name",
    "filer_role": "Your role or e-mail",
    **{r.key: r.short or r.label for r in RESULTS},
}
# What to say when a question was left unanswered (or answered with something not offered).
ANSWER_NEEDED = {
    "status": "Select whether this is an interim or a final return",
    "actions": "Select what you did with the intelligence",
    "priority": "Select the priority you gave it",
    "passed_to": "Select the organisation you passed it to",
    "attribution": "Select whether the results came directly from this intelligence",
    "strands": "Select the strands the action served",
    "intelligence_feedback.usefulness": "Select how useful the intelligence was",
    "intelligence_feedback.accuracy": "Select how accurate the intelligence was",
    "intelligence_feedback.timeliness": "Select whether the intelligence came in time",
}
REWORDED = {
    "no_action cannot be combined with other actions.": "Select ‘No action’ on its own, or untick it",
    "Cannot be more than people_safeguarded.": "Children safeguarded cannot be more than people safeguarded",
    "Say why no action was taken.": "Say why no action was taken",
    "Say which organisation it was passed to.": "Select the organisation you passed it to",
    "Name the tasking forum that set the priority.": "Enter the tasking forum that set the priority",
    "Say whether the results came directly from this intelligence.": ANSWER_NEEDED["attribution"],
}
STATUS_TEXT = {
    "open": "Not filed yet",
    "interim_returned": "Interim return filed",
    "overdue": "Overdue",
    "returned": "Final return filed",
    "withdrawn": "Withdrawn",
}


def field_id(key: str) -> str:
    """The HTML id of a field (of its first input for radios and checkboxes): results.arrests
    is results-arrests, no_action_reason is no-action-reason."""
    return key.replace(".", "-").replace("_", "-")


def _human(key: str, message: str) -> str:
    """A schema message as the person filling in the form should read it."""
    if message in REWORDED:
        return REWORDED[message]
    if key in ANSWER_NEEDED:
        # A choice the form offers: anything wrong with it means no offered answer was picked.
        return ANSWER_NEEDED[key]
    label = LABELS.get(key, key.rsplit(".", 1)[-1].replace("_", " ").capitalize())
    if message.startswith("Longer than maximum length"):
        return f"{label} must be {message.rstrip('.').rsplit(' ', 1)[-1]} characters or fewer"
    if key.startswith("results.") and message.startswith("Must be greater"):
        return f"{label} must be between 0 and {_result_maximum(key.split('.', 1)[1]):,}"
    return message.rstrip(".")


def _result_maximum(name: str) -> float:
    for validator in ResultsSchema().fields[name].validators:
        if isinstance(validator, validate.Range) and validator.max is not None:
            maximum = validator.max
            return int(maximum) if float(maximum).is_integer() else maximum
    return math.inf


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
    return render_template(
        "form/problem.html", kind=kind, expected=expected, centre_email=settings.centre_email, token=token
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


@bp.get("/form/<token>")
def show(token: str):
    expected = _expected_return(token)
    current = expected.current
    values = _values_from_outcome(current) if current else MultiDict()
    return _render_form(token, expected, values, {})


@bp.post("/form/<token>")
def submit(token: str):
    try:
        current_app.extensions["csrf"].protect()
    except CSRFError as error:
        _audit_link_quietly(token)
        audit_detail(f"refused: CSRF: {error.description}")
        return _problem("csrf", 400)
    expected = _expected_return(token, for_update=True)
    session = get_session()
    values = _values_from_request(request.form)
    data, errors = _outcome_input(values)
    name, role = values.get("filer_name", "").strip(), values.get("filer_role", "").strip()
    if not name:
        errors["filer_name"] = "Enter your name"
    elif len(name) > FILER_NAME_MAX:
        errors["filer_name"] = f"Your name must be {FILER_NAME_MAX} characters or fewer"
    if not role:
        errors["filer_role"] = "Enter your role or e-mail address"
    elif len(role) > FILER_ROLE_MAX:
        errors["filer_role"] = f"Your role or e-mail must be {FILER_ROLE_MAX} characters or fewer"
    loaded, problems = _validate(session, expected, data)
    for key, message in problems.items():
        errors.setdefault(key, message)
    if errors:
        audit_detail("invalid: " + ", ".join(_ordered(errors)))
        return _render_form(token, expected, values, errors, status=422)
    filed_by = f"{name} ({role})"
    if _repeat_of_current(expected, values, loaded, filed_by):
        # The same answers sent twice (a double click, or back-and-resend): filed once.
        return redirect(url_for("form.done", token=token), 303)
    try:
        filing.file_outcome(session, current_app.extensions["settings"], expected, loaded,
                            filed_by=filed_by, via="form")
    except filing.FilingRefused as refused:
        session.rollback()
        raise PageProblem("withdrawn", 409, expected) from refused
    commit(session)
    return redirect(url_for("form.done", token=token), 303)


@bp.get("/form/<token>/done")
def done(token: str):
    expected = _expected_return(token)
    if expected.current is None:
        return redirect(url_for("form.show", token=token), 303)
    return render_template("form/done.html", expected=expected, outcome=expected.current, token=token,
                           status_choices={c.value: c.label for c in RETURN_STATUS_CHOICES})


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
# From the form to OutcomeInputSchema, and back.


def _values_from_request(form: MultiDict) -> MultiDict:
    """What was typed, as it was typed (to show it again)."""
    values = MultiDict()
    for key in (*TEXT_FIELDS, *(r.key for r in RESULTS), *(f"intelligence_feedback.{n}" for n in FEEDBACK_FIELDS),
                "filer_name", "filer_role", "based_on"):
        values[key] = form.get(key, "")
    for key in LIST_FIELDS:
        values.setlist(key, [v for v in form.getlist(key) if v])
    return values


def _values_from_outcome(outcome: OutcomeReturn) -> MultiDict:
    """The current version, to amend."""
    values = MultiDict()
    for key in TEXT_FIELDS:
        value = getattr(outcome, key)
        values[key] = "" if value is None else str(value)
    for key in LIST_FIELDS:
        values.setlist(key, list(getattr(outcome, key) or []))
    for result in RESULTS:
        amount = (outcome.results or {}).get(result.name) or 0
        values[result.key] = "" if not amount else _show_number(amount)
    for name in FEEDBACK_FIELDS:
        values[f"intelligence_feedback.{name}"] = str(getattr(outcome, name))
    return values


def _show_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _parse_number(text: str, whole: bool) -> int | float:
    """A count or an amount as people type them: '1,250', '£4500', ' 12 '. ValueError if not."""
    cleaned = text.strip().replace(",", "").replace(" ", "").removeprefix("£")
    if cleaned.lower().endswith("g") and not whole:
        cleaned = cleaned[:-1]
    try:
        number = float(cleaned)
    except ValueError:
        raise ValueError("not a number") from None
    if not math.isfinite(number):
        raise ValueError("not a number")
    if whole:
        if not number.is_integer():
            raise ValueError("not whole")
        return int(number)
    return number


def _outcome_input(values: MultiDict) -> tuple[dict, dict[str, str]]:
    """The dict OutcomeInputSchema.load expects, and the errors found while building it
    (numbers that are not numbers)."""
    errors: dict[str, str] = {}
    data: dict = {}
    for key in TEXT_FIELDS:
        value = values.get(key, "").strip()
        if value:
            data[key] = value
    data["actions"] = values.getlist("actions")
    if values.getlist("strands"):
        data["strands"] = values.getlist("strands")
    results: dict = {}
    for result in RESULTS:
        text = values.get(result.key, "").strip()
        if not text:
            continue
        try:
            results[result.name] = _parse_number(text, result.whole)
        except ValueError as error:
            label = LABELS[result.key]
            example = "like 3" if result.whole else "like 120 or 12.5"
            errors[result.key] = (f"{label} must be a whole number" if str(error) == "not whole"
                                  else f"Enter {label.lower()} as a number, {example}")
    data["results"] = results
    feedback: dict = {}
    usefulness = values.get("intelligence_feedback.usefulness", "").strip()
    if usefulness:
        if usefulness.isdigit():
            feedback["usefulness"] = int(usefulness)
        else:
            errors["intelligence_feedback.usefulness"] = ANSWER_NEEDED["intelligence_feedback.usefulness"]
    for name in ("accuracy", "timeliness"):
        value = values.get(f"intelligence_feedback.{name}", "").strip()
        if value:
            feedback[name] = value
    data["intelligence_feedback"] = feedback
    return data, errors


def _validate(session, expected: ExpectedReturn, data: dict) -> tuple[dict, dict[str, str]]:
    """Load with the API's schema. When some fields are wrong, the rules across fields are still
    checked on the rest, so one submission shows every problem it can."""
    schema = OutcomeInputSchema()
    try:
        return _with_filing_problems(session, expected, schema.load(data), {})
    except ValidationError as error:
        messages = error.messages
    errors = _flatten(messages)
    try:
        loaded = schema.load(_without(data, messages), partial=True)
    except ValidationError as more:
        for key, message in _flatten(more.messages).items():
            errors.setdefault(key, message)
        loaded = more.valid_data if isinstance(more.valid_data, dict) else {}
    return _with_filing_problems(session, expected, loaded, errors)


def _with_filing_problems(session, expected, loaded: dict, errors: dict[str, str]) -> tuple[dict, dict[str, str]]:
    for key, message in filing.filing_problems(session, expected, loaded).items():
        errors.setdefault(key, message)
    return loaded, errors


def _flatten(messages, prefix: str = "") -> dict[str, str]:
    """marshmallow's nested messages as {'results.arrests': 'message'}; a list's item errors
    belong to the list."""
    flat: dict[str, str] = {}
    items = messages.items() if isinstance(messages, dict) else [(None, messages)]
    for key, value in items:
        if key is None or isinstance(key, int) or key == "_schema":
            name = prefix or "_schema"
        else:
            name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            for sub_key, message in _flatten(value, name).items():
                flat.setdefault(sub_key, message)
        else:
            message = value[0] if isinstance(value, list) and value else str(value)
            flat.setdefault(name, _human(name, str(message)))
    return flat


def _without(data: dict, messages: dict) -> dict:
    kept = dict(data)
    for key, value in messages.items():
        if key not in kept:
            continue
        if isinstance(value, dict) and isinstance(kept[key], dict):
            kept[key] = _without(kept[key], value)
        else:
            del kept[key]
    return kept


def _ordered(errors: dict[str, str]) -> list[str]:
    known = [key for key in FIELD_ORDER if key in errors]
    return known + [key for key in errors if key not in known]


def _repeat_of_current(expected: ExpectedReturn, values: MultiDict, loaded: dict, filed_by: str) -> bool:
    """True when this submission was made from the form showing the current version and
    says exactly what the current version says (so it is the same submission again)."""
    current = expected.current
    if current is None or values.get("based_on") != str(current.version - 1) or current.filed_by != filed_by:
        return False
    actions = list(loaded["actions"])
    feedback = loaded["intelligence_feedback"]
    return (
        current.status == loaded["status"]
        and current.actions == actions
        and current.no_action_reason == (loaded.get("no_action_reason") if "no_action" in actions else None)
        and current.passed_to == (loaded.get("passed_to") if "passed_on" in actions else None)
        and current.priority == loaded["priority"]
        and current.tasking_forum == loaded.get("tasking_forum")
        and current.results == dict(loaded["results"])
        and current.attribution == loaded.get("attribution")
        and current.strands == list(loaded.get("strands") or [])
        and (current.usefulness, current.accuracy, current.timeliness)
        == (feedback["usefulness"], feedback["accuracy"], feedback["timeliness"])
        and current.comments == loaded.get("comments")
    )


# ---------------------------------------------------------------------------------------------
# Rendering.


def _render_form(token: str, expected: ExpectedReturn, values: MultiDict, errors: dict[str, str], status: int = 200):
    session = get_session()
    organisations = session.scalars(
        select(Organisation)
        .where(Organisation.active.is_(True), Organisation.code != expected.organisation)
        .order_by(Organisation.name)
    ).all()
    own = session.get(Organisation, expected.organisation)
    now = utcnow()
    return_status = expected.status_at(now)
    ordered = _ordered(errors)
    return render_template(
        "form/form.html",
        token=token,
        expected=expected,
        current=expected.current,
        values=values,
        based_on=values.get("based_on") if errors else str(len(expected.outcomes)),
        errors=errors,
        error_list=[(field_id(key) if key in FIELD_ORDER else "outcome-form", errors[key]) for key in ordered],
        organisation_name=own.name if own else expected.organisation,
        passed_to_choices=[Choice(o.code, o.name) for o in organisations],
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


def _local(moment: datetime) -> datetime:
    return moment.astimezone(LOCAL_TIME) if LOCAL_TIME else moment


def _date(moment: datetime | None) -> str:
    if moment is None:
        return ""
    local = _local(moment)
    return f"{local.day} {local:%B %Y}"


def _date_time(moment: datetime | None) -> str:
    if moment is None:
        return ""
    local = _local(moment)
    hour = local.hour % 12 or 12
    return f"{local.day} {local:%B %Y} at {hour}:{local:%M}{'am' if local.hour < 12 else 'pm'}"


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
    app.jinja_env.filters["date"] = _date
    app.jinja_env.filters["date_time"] = _date_time
    app.jinja_env.filters["words"] = _words
    app.jinja_env.globals["service_name"] = SERVICE_NAME
    app.jinja_env.globals["centre_name"] = CENTRE_NAME
    app.register_blueprint(bp)

