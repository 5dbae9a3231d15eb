"""What the outcomes web form asks and says: its questions' choices (from the vocabulary), the
order of its fields, their labels, and the words for each problem, keyed by field and rule."""

from __future__ import annotations

import math

from marshmallow import Schema, fields, validate

from services.outcomes.schemas import RULE_MESSAGES, OutcomeInputSchema
from shared.vocabulary import RESULT_KINDS, USEFULNESS_SCORES, Choice

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
    "status",
    "actions",
    "no_action_reason",
    "passed_to",
    "priority",
    "tasking_forum",
    *(r.key for r in RESULTS),
    "attribution",
    "strands",
    *(f"intelligence_feedback.{name}" for name in FEEDBACK_FIELDS),
    "comments",
    "filer_name",
    "filer_role",
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
# The schema's rules across fields (RULE_MESSAGES), by field and rule, as the form says them.
RULE_WORDING = {
    ("actions", "no_action_alone"): "Select ‘No action’ on its own, or untick it",
    ("results.children_safeguarded", "within_people"): "Children safeguarded cannot be more than people safeguarded",
    ("no_action_reason", "needed"): "Say why no action was taken",
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


def human(key: str, message: str) -> str:
    """A schema message on field ``key`` as the person filling in the form should read it."""
    rule = _RULES_BY_MESSAGE.get((key, message))
    if rule is not None:
        return RULE_WORDING[key, rule]
    if key in ANSWER_NEEDED:
        # A choice the form offers: anything wrong with it means no offered answer was picked.
        return ANSWER_NEEDED[key]
    label = LABELS.get(key, key.rsplit(".", 1)[-1].replace("_", " ").capitalize())
    broken = _broken_validator(key, message)
    if isinstance(broken, validate.Length) and broken.max is not None:
        return f"{label} must be {broken.max:,} characters or fewer"
    if isinstance(broken, validate.Range):
        return f"{label} must be between {_number(broken.min or 0)} and {_number(broken.max or math.inf)}"
    return message.rstrip(".")


def _broken_validator(key: str, message: str) -> validate.Validator | None:
    """Which of the field's own validators gave ``message``: each validator's messages, filled
    in with its own limits, are compared whole (the rule, not the start of its wording)."""
    schema: Schema = OutcomeInputSchema()
    *parents, name = key.split(".")
    for parent in parents:
        nested = schema.fields.get(parent)
        if not isinstance(nested, fields.Nested) or not isinstance(nested.schema, Schema):
            return None
        schema = nested.schema
    field = schema.fields.get(name)
    for validator in getattr(field, "validators", []):
        templates = [
            getattr(validator, attribute, None)
            for attribute in ("error", "message_min", "message_max", "message_all", "message_equal")
        ]
        limits = {
            "min": getattr(validator, "min", None),
            "max": getattr(validator, "max", None),
            "equal": getattr(validator, "equal", None),
            "input": "",
        }
        if any(isinstance(template, str) and template.format(**limits) == message for template in templates):
            return validator
    return None


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,}"
