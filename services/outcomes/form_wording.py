"""What the outcomes web form asks and says: its questions' choices (from the vocabulary), the
order of its fields, their labels, the words for each problem (keyed by field and by the schema's
rule that refused it), and the answers as the check page reads them back."""

from __future__ import annotations

import math
from dataclasses import dataclass

from marshmallow import Schema, fields, validate

from services.outcomes.schemas import RULE_MESSAGES, ReturnFormSchema
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
    labels,
)

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
FILER_FIELDS = ("filer_name", "filer_role")
# The answers that are only asked with one of the actions: the form reveals each under its box.
CONDITIONAL = {"passed_to": "passed_on", "no_action_reason": "no_action"}

# Every field the form shows, in page order: the error summary lists problems in this order.
FIELD_ORDER = (
    "status",
    "actions",
    "passed_to",  # revealed under "Passed it to another organisation"
    "no_action_reason",  # revealed under "No action", the last box
    "priority",
    "tasking_forum",
    *(r.key for r in RESULTS),
    "attribution",
    "strands",
    *(f"intelligence_feedback.{name}" for name in FEEDBACK_FIELDS),
    "comments",
    *FILER_FIELDS,
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
    "filer_name": "Enter your name",
    "filer_role": "Enter your role or work e-mail address",
}
# The schema's rules across fields (RULE_MESSAGES), by field and rule, as the form says them.
RULE_WORDING = {
    ("actions", "no_action_alone"): "Select ‘No action’ on its own, or untick it",
    ("results.children_safeguarded", "within_people"): "Children safeguarded cannot be more than people safeguarded",
    ("no_action_reason", "needed"): "Enter why no action was taken",
    ("passed_to", "needed"): "Select the organisation you passed it to",
    ("tasking_forum", "needed"): "Enter the tasking forum that set the priority",
    ("attribution", "needed"): ANSWER_NEEDED["attribution"],
}
assert RULE_WORDING.keys() == RULE_MESSAGES.keys(), "every rule needs the form's words"
_RULES_BY_MESSAGE = {(field, message): rule for (field, rule), message in RULE_MESSAGES.items()}
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


def human(key: str, message: str, typed: str = "") -> str:
    """A schema message on field ``key`` as the person filling in the form should read it.
    ``typed`` is what they typed there, to tell "two" (not a number) from "1.5" (not whole)."""
    rule = _RULES_BY_MESSAGE.get((key, message))
    if rule is not None:
        return RULE_WORDING[key, rule]
    if key in ANSWER_NEEDED and key not in LABELS:
        # A choice the form offers: anything wrong with it means no offered answer was picked.
        return ANSWER_NEEDED[key]
    broken = _broken_rule(key, message)
    if key in ANSWER_NEEDED and broken == "required":
        return ANSWER_NEEDED[key]
    label = LABELS.get(key, key.rsplit(".", 1)[-1].replace("_", " ").capitalize())
    if isinstance(broken, validate.Length) and broken.max is not None:
        return f"{label} must be {broken.max:,} characters or fewer"
    if isinstance(broken, validate.Range):
        return f"{label} must be between {_number(broken.min or 0)} and {_number(broken.max or math.inf)}"
    if broken in ("invalid", "special") and key in _RESULTS_BY_KEY:
        whole = _RESULTS_BY_KEY[key].whole
        if whole and _is_number(typed):
            return f"{label} must be a whole number"
        return f"Enter {label.lower()} as a number, {'like 3' if whole else 'like 120 or 12.5'}"
    return message.rstrip(".")


_RESULTS_BY_KEY = {r.key: r for r in RESULTS}


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text.replace(",", "")))
    except ValueError:
        return False


def _broken_rule(key: str, message: str) -> object:
    """Which of the field's own rules gave ``message``: one of its validators (each validator's
    messages, filled in with its own limits, are compared whole), or the name of the field's own
    error ("required", "invalid"...), never the start of its wording."""
    schema: Schema = ReturnFormSchema()
    *parents, name = key.split(".")
    for parent in parents:
        nested = schema.fields.get(parent)
        if not isinstance(nested, fields.Nested) or not isinstance(nested.schema, Schema):
            return None
        schema = nested.schema
    field = schema.fields.get(name)
    if field is None:
        return None
    for validator in field.validators:
        templates = [
            getattr(validator, attribute, None)
            for attribute in ("error", "message_min", "message_max", "message_all", "message_equal")
        ]
        limits = {
            "min": getattr(validator, "min", None),
            "max": getattr(validator, "max", None),
            "equal": getattr(validator, "equal", None),
            "choices": getattr(validator, "choices_text", None),
            "labels": getattr(validator, "labels_text", None),
            "input": "",
        }
        if any(isinstance(template, str) and template.format(**limits) == message for template in templates):
            return validator
    for error_name, template in field.error_messages.items():
        if template == message:
            return error_name
    return None


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,}"


# ---------------------------------------------------------------------------------------------
# The check page: each answer read back, with the field its Change link returns to.


@dataclass(frozen=True)
class Answer:
    question: str
    answer: str | list[str]
    field: str  # the key in FIELD_ORDER whose input the Change link returns to


_ACTIONS, _STRANDS, _STATUSES = labels(ACTION_CHOICES), labels(STRAND_CHOICES), labels(RETURN_STATUS_CHOICES)
_PRIORITIES, _ATTRIBUTIONS = labels(PRIORITY_CHOICES), labels(ATTRIBUTION_CHOICES)
_ACCURACIES, _TIMELINESS = labels(ACCURACY_CHOICES), labels(TIMELINESS_CHOICES)


def answers_to_check(loaded: dict, organisation_names: dict[str, str]) -> list[tuple[str, list[Answer]]]:
    """The answers ``ReturnFormSchema`` loaded, by section as the form asks them, in words."""
    actions = list(loaded["actions"])
    did = [Answer("Type of return", _STATUSES[loaded["status"]], "status")]
    did.append(Answer("What you did", [_ACTIONS[a] for a in actions], "actions"))
    if "passed_on" in actions:
        code = loaded["passed_to"]
        did.append(Answer("Passed to", organisation_names.get(code, code), "passed_to"))
    if "no_action" in actions:
        did.append(Answer("Why no action was taken", loaded["no_action_reason"], "no_action_reason"))
    did.append(Answer("Priority", _PRIORITIES[loaded["priority"]], "priority"))
    did.append(Answer("Tasking forum", loaded.get("tasking_forum") or "None given", "tasking_forum"))

    figures = loaded["results"]
    results = [Answer(r.label, _figure(r, figures[r.name]), r.key) for r in RESULTS if figures.get(r.name)]
    if not results:
        results = [Answer("Results", "None entered", RESULTS[0].key)]
    attribution = _ATTRIBUTIONS[loaded["attribution"]] if loaded.get("attribution") else "Not answered"
    results.append(Answer("Came from this intelligence", attribution, "attribution"))
    strands = [_STRANDS[s] for s in loaded.get("strands") or []]
    results.append(Answer("The 4 Ps it served", strands or "None selected", "strands"))

    feedback = loaded["intelligence_feedback"]
    intelligence = [
        Answer(
            "Usefulness", f"{feedback['usefulness']} out of {USEFULNESS_SCORES[-1]}", "intelligence_feedback.usefulness"
        ),
        Answer("Accuracy", _ACCURACIES[feedback["accuracy"]], "intelligence_feedback.accuracy"),
        Answer("Timeliness", _TIMELINESS[feedback["timeliness"]], "intelligence_feedback.timeliness"),
        Answer("Comments", loaded.get("comments") or "None", "comments"),
    ]
    you = [
        Answer("Your name", loaded["filer_name"], "filer_name"),
        Answer("Your role or e-mail", loaded["filer_role"], "filer_role"),
    ]
    return [("What you did", did), ("Results", results), ("The intelligence", intelligence), ("About you", you)]


def _figure(kind, value: float) -> str:
    shown = f"{int(value):,}" if float(value).is_integer() else f"{value:,}"
    return f"{kind.prefix}{shown}{kind.suffix and ' ' + kind.suffix}"
