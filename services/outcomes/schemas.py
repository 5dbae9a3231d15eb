"""Request and response schemas of the outcomes API (the OpenAPI document comes from these)."""

from __future__ import annotations

from marshmallow import ValidationError, fields, pre_load, validate, validates_schema

from services.outcomes.models import NOTIFY_TARGETS
from shared.api import BaseSchema, StrictInteger
from shared.vocabulary import (
    ACCURACIES,
    ACTIONS,
    ATTRIBUTIONS,
    PRIORITIES,
    PRIORITISED,
    RESULT_FIELDS,
    RESULT_KINDS,
    RETURN_STATUSES,
    STRANDS,
    TIMELINESS,
    USEFULNESS_SCORES,
    ResultKind,
)

RETURN_LIST_STATUSES = ("open", "overdue", "returned", "withdrawn")
# The rules across fields, by (field, rule), in the API's words; the web form has its own words
# for each (services/outcomes/form_wording.py). They are checked even when other fields are
# wrong, so one answer lists every problem (the web form's one round of errors): a rule reads
# only the fields that loaded, and an answer refused for itself is not also called missing.
RULE_MESSAGES = {
    ("actions", "no_action_alone"): "no_action cannot be combined with other actions.",
    ("no_action_reason", "needed"): "Say why no action was taken.",
    ("passed_to", "needed"): "Say which organisation it was passed to.",
    ("tasking_forum", "needed"): "Name the tasking forum that set the priority.",
    ("attribution", "needed"): "Say whether the results came directly from this intelligence.",
    ("results.children_safeguarded", "within_people"): "Cannot be more than people_safeguarded.",
}


def _one_of(choices) -> validate.OneOf:
    return validate.OneOf(choices, error="Must be one of: {choices}.")


def _unique(values) -> None:
    if len(set(values)) != len(values):
        raise ValidationError("Each value may be given once.")


def _result_field(kind: ResultKind) -> fields.Field:
    bounds = validate.Range(min=0, max=kind.maximum)
    metadata = {"description": RESULT_DESCRIPTIONS[kind.name]} if kind.name in RESULT_DESCRIPTIONS else {}
    if kind.whole:
        return StrictInteger(load_default=0, validate=bounds, metadata=metadata)
    return fields.Float(load_default=0, allow_nan=False, validate=bounds, metadata=metadata)


RESULT_DESCRIPTIONS = {"children_safeguarded": "of the people safeguarded, how many were children"}


def _given(original: object, name: str) -> bool:
    """Whether the body answered ``name`` at all (blank text is no answer), right or wrong."""
    value = original.get(name) if isinstance(original, dict) else None
    return value is not None and not (isinstance(value, str) and not value.strip())


class _ResultRules(BaseSchema):
    @validates_schema(skip_on_field_errors=False)
    def children_within_people(self, data, **_kwargs):
        if "children_safeguarded" not in data or "people_safeguarded" not in data:
            return  # one of them was refused for itself
        if data["children_safeguarded"] > data["people_safeguarded"]:
            raise ValidationError(
                RULE_MESSAGES["results.children_safeguarded", "within_people"], field_name="children_safeguarded"
            )


# Non-negative counts and amounts, one field per result kind; anything left out is 0.
ResultsSchema = _ResultRules.from_dict({kind.name: _result_field(kind) for kind in RESULT_KINDS}, name="ResultsSchema")


class IntelligenceFeedbackSchema(BaseSchema):
    usefulness = StrictInteger(
        required=True,
        validate=validate.Range(min=USEFULNESS_SCORES[0], max=USEFULNESS_SCORES[-1]),
        metadata={"description": "1 not useful - 5 very useful"},
    )
    accuracy = fields.String(required=True, validate=_one_of(ACCURACIES))
    timeliness = fields.String(required=True, validate=_one_of(TIMELINESS))


class OutcomeInputSchema(BaseSchema):
    status = fields.String(required=True, validate=_one_of(RETURN_STATUSES))
    actions = fields.List(
        fields.String(validate=_one_of(ACTIONS)),
        required=True,
        validate=[validate.Length(min=1, error="Choose at least one action."), _unique],
    )
    no_action_reason = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=4000),
        metadata={"description": "needed with no_action, and read only then"},
    )
    passed_to = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=16),
        metadata={"description": "organisation code, needed with passed_on, and read only then"},
    )
    priority = fields.String(required=True, validate=_one_of(PRIORITIES))
    tasking_forum = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=200),
        metadata={"description": "the forum that set the priority"},
    )
    results = fields.Nested(ResultsSchema, load_default=lambda: ResultsSchema().load({}))
    attribution = fields.String(
        load_default=None,
        allow_none=True,
        validate=_one_of(ATTRIBUTIONS),
        metadata={
            "description": "direct: the results came from this intelligence; contributed: it was one of several sources"
        },
    )
    strands = fields.List(
        fields.String(validate=_one_of(STRANDS)),
        load_default=list,
        validate=_unique,
        metadata={"description": "the 4P strands the action served"},
    )
    intelligence_feedback = fields.Nested(IntelligenceFeedbackSchema, required=True)
    comments = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=10000))

    @pre_load
    def unasked_answers_left_out(self, data, **_kwargs):
        """The reason for no action and who it was passed to are only asked with those actions
        (the form reveals them under their box): otherwise they are left out, unread."""
        actions = data.get("actions") if isinstance(data, dict) else None
        if not isinstance(actions, list):
            return data
        asked = {"no_action_reason": "no_action" in actions, "passed_to": "passed_on" in actions}
        return {key: value for key, value in data.items() if asked.get(key, True)}

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def actions_make_sense(self, data, original_data, **_kwargs):
        actions = data.get("actions") or []
        errors: dict[str, list[str]] = {}
        if "no_action" in actions and len(actions) > 1:
            errors["actions"] = [RULE_MESSAGES["actions", "no_action_alone"]]
        if "no_action" in actions and not _given(original_data, "no_action_reason"):
            errors["no_action_reason"] = [RULE_MESSAGES["no_action_reason", "needed"]]
        if "passed_on" in actions and not _given(original_data, "passed_to"):
            errors["passed_to"] = [RULE_MESSAGES["passed_to", "needed"]]
        if data.get("priority") in PRIORITISED and not _given(original_data, "tasking_forum"):
            errors["tasking_forum"] = [RULE_MESSAGES["tasking_forum", "needed"]]
        # Results read as sent: a figure refused for itself (-1, "two") still asks for its
        # attribution, which it will need once corrected.
        results = original_data.get("results") if isinstance(original_data, dict) else None
        entered = isinstance(results, dict) and any(
            _given(results, name) and results[name] != 0 for name in RESULT_FIELDS
        )
        if entered and not _given(original_data, "attribution"):
            errors["attribution"] = [RULE_MESSAGES["attribution", "needed"]]
        if errors:
            raise ValidationError(errors)


# "<name> (<role>)" fits OutcomeReturn.filed_by (200 characters).
FILER_NAME_MAX, FILER_ROLE_MAX = 100, 95


class ReturnFormSchema(OutcomeInputSchema):
    """What the web form sends: the API's answers, with every field and rule inherited, and who
    is filing, which the API takes from the bearer token and the form asks for."""

    filer_name = fields.String(required=True, validate=validate.Length(max=FILER_NAME_MAX))
    filer_role = fields.String(required=True, validate=validate.Length(max=FILER_ROLE_MAX))


class OutcomeSchema(BaseSchema):
    id = fields.UUID()
    return_id = fields.UUID()
    version = fields.Integer()
    status = fields.String()
    actions = fields.List(fields.String())
    no_action_reason = fields.String(allow_none=True)
    passed_to = fields.String(allow_none=True)
    priority = fields.String()
    tasking_forum = fields.String(allow_none=True)
    results = fields.Dict()
    attribution = fields.String(allow_none=True)
    strands = fields.List(fields.String())
    intelligence_feedback = fields.Method("feedback")
    comments = fields.String(allow_none=True)
    filed_by = fields.String()
    filed_via = fields.String(metadata={"description": "api or form"})
    filed_at = fields.AwareDateTime()

    def feedback(self, outcome) -> dict:
        return {"usefulness": outcome.usefulness, "accuracy": outcome.accuracy, "timeliness": outcome.timeliness}


class ExpectedReturnSchema(BaseSchema):
    id = fields.UUID()
    package_id = fields.UUID()
    reference = fields.String()
    title = fields.String()
    threat_area = fields.String()
    classification = fields.String()
    organisation = fields.String()
    status = fields.String(metadata={"description": "open, interim_returned, overdue, returned or withdrawn"})
    issued_at = fields.AwareDateTime()
    due_at = fields.AwareDateTime()
    acknowledged_at = fields.AwareDateTime(allow_none=True)
    returned_at = fields.AwareDateTime(attribute="final_returned_at", allow_none=True)
    first_returned_at = fields.AwareDateTime(allow_none=True)
    closed_at = fields.AwareDateTime(allow_none=True)
    versions = fields.Integer()
    current = fields.Nested(OutcomeSchema, allow_none=True)
    extensions = fields.List(fields.Dict())
    form_url = fields.String(allow_none=True, metadata={"description": "the recipient's web form (recipients only)"})
    onward_from = fields.UUID(
        allow_none=True, metadata={"description": "passed on by a recipient: the return (dissemination) it came from"}
    )
    onward_depth = fields.Integer(metadata={"description": "0 for the centre's recipients, 1 for a first pass-on, ..."})


class ReturnQueryArgsSchema(BaseSchema):
    status = fields.String(validate=_one_of(RETURN_LIST_STATUSES))
    org = fields.String(validate=validate.Length(max=16))
    package = fields.UUID()


class ExtendSchema(BaseSchema):
    due_at = fields.AwareDateTime(metadata={"description": "the new due date"})
    working_days = StrictInteger(
        validate=validate.Range(min=1, max=120),
        metadata={"description": "or: move the due date this many working days on"},
    )
    reason = fields.String(required=True, validate=validate.Length(min=3, max=2000))

    @validates_schema
    def one_way(self, data, **_kwargs):
        if ("due_at" in data) == ("working_days" in data):
            raise ValidationError("Give either due_at or working_days.", field_name="due_at")


class ChaseStepSchema(BaseSchema):
    name = fields.String(
        required=True,
        validate=validate.Regexp(r"^[a-z][a-z0-9_]{1,39}$", error="Use 2-40 lower-case letters, digits or '_'."),
    )
    offset_seconds = StrictInteger(
        required=True,
        validate=validate.Range(min=-365 * 86400, max=365 * 86400),
        metadata={"description": "relative to the due date; negative is before"},
    )
    notify = fields.String(required=True, validate=_one_of(NOTIFY_TARGETS))


class ChasePolicySchema(BaseSchema):
    steps = fields.List(fields.Nested(ChaseStepSchema), required=True, validate=validate.Length(max=20))
    updated_by = fields.String(dump_only=True, allow_none=True)
    updated_at = fields.AwareDateTime(dump_only=True)

    @validates_schema
    def unique_names(self, data, **_kwargs):
        names = [step["name"] for step in data.get("steps", [])]
        if len(set(names)) != len(names):
            raise ValidationError("Each step needs its own name.", field_name="steps")


class ChaseEntrySchema(BaseSchema):
    id = fields.Integer()
    return_id = fields.UUID()
    step = fields.String()
    notify = fields.String()
    planned_at = fields.AwareDateTime()
    sent_at = fields.AwareDateTime(allow_none=True)
    result = fields.String(metadata={"description": "pending, sent, sent_fallback, failed or cancelled"})
    channel = fields.String(allow_none=True)
    address = fields.String(allow_none=True)
    attempts = fields.Integer()
    error = fields.String(allow_none=True)
