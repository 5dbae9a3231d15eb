"""From the outcomes web form to the API's rules and back: what was typed, numbers as people type
them, every problem found in one pass, the answers carried signed to the check page and back,
and repeated submissions.

The form adds no rule of its own: ``ReturnFormSchema`` is the API's ``OutcomeInputSchema`` (every
field and cross-field rule) plus who is filing, and ``filing.filing_problems`` the rules that need
the database. Here text only becomes the body the schema reads, as the API would receive it.
"""

from __future__ import annotations

import math
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from marshmallow import ValidationError
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict

from services.outcomes import filing
from services.outcomes.form_wording import (
    FEEDBACK_FIELDS,
    FIELD_ORDER,
    FILER_FIELDS,
    LIST_FIELDS,
    RESULTS,
    TEXT_FIELDS,
    human,
)
from services.outcomes.models import ExpectedReturn, OutcomeReturn
from services.outcomes.schemas import ReturnFormSchema
from shared.settings import Settings
from shared.vocabulary import ResultKind

ANSWERS_SALT = "outcome-form-answers-v1"
# Every key the form sends (besides its CSRF token), as typed.
TYPED_FIELDS = (
    *TEXT_FIELDS,
    *(r.key for r in RESULTS),
    *(f"intelligence_feedback.{n}" for n in FEEDBACK_FIELDS),
    *FILER_FIELDS,
    "based_on",
)


def values_from_request(form: MultiDict) -> MultiDict:
    """What was typed, as it was typed (to show it again)."""
    values: MultiDict[str, str] = MultiDict()
    for key in TYPED_FIELDS:
        values[key] = form.get(key, "")
    for key in LIST_FIELDS:
        values.setlist(key, [v for v in form.getlist(key) if v])
    return values


def values_from_outcome(outcome: OutcomeReturn) -> MultiDict:
    """The current version, to amend."""
    values: MultiDict[str, str] = MultiDict()
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


def _typed_number(text: str, kind: ResultKind) -> Any:
    """A count or an amount as people type them ('1,250', '£4500', '12g', ' 12 ') as a number;
    anything else is passed on as typed, for the schema to refuse as the API would."""
    cleaned = text.replace(",", "").replace(" ", "").removeprefix(kind.prefix).removesuffix(kind.suffix)
    try:
        number = float(cleaned)
    except ValueError:
        return text
    if not math.isfinite(number):
        return text
    return int(number) if number.is_integer() else number


def form_body(values: MultiDict) -> dict:
    """The body ``ReturnFormSchema`` loads, as the API would receive it: a blank box is no
    answer, a box ticked is a list item, a figure is a number."""
    body: dict[str, Any] = {}
    for key in (*TEXT_FIELDS, *FILER_FIELDS):
        value = values.get(key, "").strip()
        if value:
            body[key] = value
    for key in LIST_FIELDS:
        body[key] = values.getlist(key)
    body["results"] = {
        r.name: _typed_number(values.get(r.key, "").strip(), r) for r in RESULTS if values.get(r.key, "").strip()
    }
    feedback: dict[str, Any] = {}
    for name in FEEDBACK_FIELDS:
        value = values.get(f"intelligence_feedback.{name}", "").strip()
        if value:
            feedback[name] = int(value) if name == "usefulness" and value.isdigit() else value
    body["intelligence_feedback"] = feedback
    return body


def check(
    session: Session, settings: Settings, expected: ExpectedReturn, values: MultiDict
) -> tuple[dict, dict[str, str]]:
    """Every rule, field by field and across fields, and the filing rules, in one pass: the
    loaded answers (those that loaded, when some did not) and a problem per field, in words."""
    try:
        loaded: dict = ReturnFormSchema().load(form_body(values))
        messages: dict = {}
    except ValidationError as error:
        loaded = error.valid_data if isinstance(error.valid_data, dict) else {}
        messages = error.messages if isinstance(error.messages, dict) else {"_schema": error.messages}
    errors = {key: human(key, message, values.get(key, "")) for key, message in _flatten(messages).items()}
    for key, message in filing.filing_problems(session, settings, expected, loaded).items():
        errors.setdefault(key, message.rstrip("."))
    return loaded, errors


def _flatten(messages: dict, prefix: str = "") -> dict[str, str]:
    """marshmallow's nested messages as {'results.arrests': 'message'}; a list's item errors
    belong to the list."""
    flat: dict[str, str] = {}
    for key, value in messages.items():
        if isinstance(key, int) or key == "_schema":
            name = prefix or "_schema"
        else:
            name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            for sub_key, message in _flatten(value, name).items():
                flat.setdefault(sub_key, message)
        else:
            flat.setdefault(name, str(value[0] if isinstance(value, list) and value else value))
    return flat


def ordered(errors: dict[str, str]) -> list[str]:
    known = [key for key in FIELD_ORDER if key in errors]
    return known + [key for key in errors if key not in known]


def filed_by(loaded: dict) -> str:
    return f"{loaded['filer_name']} ({loaded['filer_role']})"


# ---------------------------------------------------------------------------------------------
# The answers between the form and its check page: signed, so what is sent is what was checked.


class AnswersProblem(Exception):
    """The answers carried to the check page could not be read back (altered, for another
    return, or older than ``max_age``)."""


def _answers_serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.form_secret, salt=ANSWERS_SALT)


def seal_answers(settings: Settings, expected: ExpectedReturn, values: MultiDict) -> str:
    """The typed answers as one signed value for the check page's hidden field (typed, not
    loaded, so going back to change them shows them as they were typed)."""
    typed = {key: values.getlist(key) for key in (*TYPED_FIELDS, *LIST_FIELDS) if values.getlist(key)}
    return _answers_serializer(settings).dumps({"return": str(expected.id), "values": typed})


def open_answers(settings: Settings, expected: ExpectedReturn, sealed: str, max_age: int) -> MultiDict:
    try:
        data = _answers_serializer(settings).loads(sealed, max_age=max_age)
    except BadSignature as error:  # SignatureExpired included
        raise AnswersProblem(str(error)) from error
    if not isinstance(data, dict) or data.get("return") != str(expected.id) or not isinstance(data.get("values"), dict):
        raise AnswersProblem("answers for another return")
    known = set(TYPED_FIELDS) | set(LIST_FIELDS)
    values: MultiDict[str, str] = MultiDict()
    for key, items in data["values"].items():
        if key in known and isinstance(items, list):
            values.setlist(key, [str(item) for item in items])
    return values


# ---------------------------------------------------------------------------------------------
# Sending twice.


def repeat_of_current(expected: ExpectedReturn, values: MultiDict, loaded: dict) -> bool:
    """True when these answers were given on the form showing the current version and say
    exactly what the current version says (so it is the same return sent again: a double
    click, a resent page, or Back then Send)."""
    current = expected.current
    if current is None or values.get("based_on") != str(current.version - 1) or current.filed_by != filed_by(loaded):
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
