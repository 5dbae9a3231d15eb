"""From the outcomes web form to ``OutcomeInputSchema`` and back: what was typed, numbers as
people type them, validation with every problem found at once, and repeated submissions."""

from __future__ import annotations

import math

from marshmallow import ValidationError
from werkzeug.datastructures import MultiDict

from services.outcomes import filing
from services.outcomes.form_wording import (
    ANSWER_NEEDED,
    FEEDBACK_FIELDS,
    FIELD_ORDER,
    LABELS,
    LIST_FIELDS,
    RESULTS,
    TEXT_FIELDS,
    human,
)
from services.outcomes.models import ExpectedReturn, OutcomeReturn
from services.outcomes.schemas import OutcomeInputSchema


def values_from_request(form: MultiDict) -> MultiDict:
    """What was typed, as it was typed (to show it again)."""
    values: MultiDict[str, str] = MultiDict()
    for key in (
        *TEXT_FIELDS,
        *(r.key for r in RESULTS),
        *(f"intelligence_feedback.{n}" for n in FEEDBACK_FIELDS),
        "filer_name",
        "filer_role",
        "based_on",
    ):
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


def outcome_input(values: MultiDict) -> tuple[dict, dict[str, str]]:
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
            errors[result.key] = (
                f"{label} must be a whole number"
                if str(error) == "not whole"
                else f"Enter {label.lower()} as a number, {example}"
            )
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


def validate(session, expected: ExpectedReturn, data: dict) -> tuple[dict, dict[str, str]]:
    """Load with the API's schema. When some fields are wrong, the rules across fields are still
    checked on the rest, so one submission shows every problem it can."""
    schema = OutcomeInputSchema()
    try:
        return _with_filing_problems(session, expected, schema.load(data), {})
    except ValidationError as error:
        messages = error.messages
    errors = _flatten(messages)
    try:
        loaded = schema.load(_without(data, messages if isinstance(messages, dict) else {}), partial=True)
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
            flat.setdefault(name, human(name, str(message)))
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


def ordered(errors: dict[str, str]) -> list[str]:
    known = [key for key in FIELD_ORDER if key in errors]
    return known + [key for key in errors if key not in known]


def repeat_of_current(expected: ExpectedReturn, values: MultiDict, loaded: dict, filed_by: str) -> bool:
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
