"""What the outcomes web form asks and says: its questions' choices (from the vocabulary), the
order of its fields, their labels, and the words for each problem, keyed by field and rule."""

from __future__ import annotations

import math

from marshmallow import validate

from services.outcomes.schemas import RULE_MESSAGES, ResultsSchema
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
