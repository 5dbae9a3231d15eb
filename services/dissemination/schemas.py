"""Request and response schemas of the dissemination API (the OpenAPI document comes from these)."""

from __future__ import annotations

from flask import has_request_context
from marshmallow import ValidationError, fields, post_dump, validate, validates_schema

from services.dissemination.models import DELIVERY_STATUSES, ORGANISATION_KINDS, PACKAGE_STATUSES
from shared.api import BaseSchema, QueryBoolean, StrictBoolean, StrictInteger, UpdateSchema
from shared.auth import current_principal
from shared.vocabulary import (
    CLASSIFICATIONS,
    HANDLING_CODES,
    INTELLIGENCE_ASSESSMENTS,
    SOURCE_EVALUATIONS,
    THREAT_AREAS,
)

ORG_CODE = validate.Regexp(r"^[A-Z0-9][A-Z0-9-]{1,15}$", error="Use 2-16 capital letters, digits or '-'.")
DISSEMINATION_STATUSES = ("pending_delivery", "delivered", "delivery_failed", "acknowledged", "returned", "withdrawn")

# A webhook address: an http(s) URI in plain ASCII (RFC 3986: anything else percent-encoded), an
# IPv4 address or a host name whose last label has at least two characters (no IPv6 literal:
# fields.URL takes some that are not URIs), an optional port, path, query and fragment. Checked
# with fields.URL's own rules too; the OpenAPI document gives this pattern.
_PCHAR = r"(%[0-9A-Fa-f]{2}|[A-Za-z0-9._~!$&'()*+,;=:@-])"
WEBHOOK_URL_PATTERN = (
    r"^https?://([0-9]{1,3}(\.[0-9]{1,3}){3}"
    r"|([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9][A-Za-z0-9-]{0,61}[A-Za-z0-9])"
    rf"(:[0-9]{{1,5}})?(/{_PCHAR}*)*(\?({_PCHAR}|[/?])+)?(#({_PCHAR}|[/?])+)?$"
)
WEBHOOK_URL = [
    validate.Length(max=500),
    validate.URL(schemes={"http", "https"}, require_tld=False),
    validate.Regexp(WEBHOOK_URL_PATTERN, error="Use an http(s) address in plain ASCII (percent-encode the rest)."),
]


def _one_of(choices) -> validate.OneOf:
    return validate.OneOf(choices, error="Must be one of: {choices}.")


# --- organisations ---------------------------------------------------------------------


class OrganisationSchema(BaseSchema):
    code = fields.String(required=True, validate=ORG_CODE)
    name = fields.String(required=True, validate=validate.Length(min=2, max=200))
    kind = fields.String(required=True, validate=_one_of(ORGANISATION_KINDS))
    region = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=80))
    email = fields.Email(load_default=None, allow_none=True, validate=validate.Length(max=254))
    webhook_url = fields.String(
        load_default=None,
        allow_none=True,
        validate=WEBHOOK_URL,
        metadata={
            "format": "uri",
            "description": "https, resolving only to public addresses; setting it gives "
            "the organisation a new webhook signing secret, shown once in the answer",
        },
    )
    escalation_email = fields.Email(load_default=None, allow_none=True, validate=validate.Length(max=254))
    active = StrictBoolean(load_default=True)
    webhook_secret_created_at = fields.AwareDateTime(
        dump_only=True, allow_none=True, metadata={"description": "when the webhook signing secret was made"}
    )
    updated_at = fields.AwareDateTime(dump_only=True)


WEBHOOK_SECRET_DESCRIPTION = (
    "The organisation's Standard Webhooks signing secret (whsec_...). Shown only in this answer: "
    "give it to the organisation; it is never shown again (rotate to get a new one)."
)


class OrganisationWithSecretSchema(OrganisationSchema):
    """An organisation as created or changed: with ``webhook_secret`` when a new one was made."""

    webhook_secret = fields.String(
        dump_only=True, attribute="webhook_secret_for_answer", metadata={"description": WEBHOOK_SECRET_DESCRIPTION}
    )


class WebhookSecretSchema(BaseSchema):
    code = fields.String()
    webhook_url = fields.String()
    webhook_secret = fields.String(
        attribute="webhook_secret_for_answer", metadata={"description": WEBHOOK_SECRET_DESCRIPTION}
    )
    webhook_secret_created_at = fields.AwareDateTime()


class OrganisationUpdateSchema(UpdateSchema):
    name = fields.String(validate=validate.Length(min=2, max=200))
    kind = fields.String(validate=_one_of(ORGANISATION_KINDS))
    region = fields.String(allow_none=True, validate=validate.Length(max=80))
    email = fields.Email(allow_none=True, validate=validate.Length(max=254))
    webhook_url = fields.String(allow_none=True, validate=WEBHOOK_URL, metadata={"format": "uri"})
    escalation_email = fields.Email(allow_none=True, validate=validate.Length(max=254))
    active = StrictBoolean()


class OrganisationQueryArgsSchema(BaseSchema):
    kind = fields.String(validate=_one_of(ORGANISATION_KINDS))
    region = fields.String()
    active = QueryBoolean()


# --- packages ----------------------------------------------------------------------------


class PackageFieldsSchema(BaseSchema):
    """The fields an issuer writes; every one optional here, required ones named in create."""

    title = fields.String(validate=validate.Length(min=3, max=200))
    summary = fields.String(validate=validate.Length(min=1, max=20000))
    threat_area = fields.String(validate=_one_of(THREAT_AREAS))
    # Any Government Security Classification is accepted here so that SECRET gets a clear
    # "above the maximum" answer rather than "not a choice".
    classification = fields.String(validate=_one_of(CLASSIFICATIONS))
    source_evaluation = StrictInteger(
        validate=_one_of(SOURCE_EVALUATIONS),
        metadata={"description": "3x5x2 source evaluation: 1 reliable, 2 untested, 3 not reliable"},
    )
    intelligence_assessment = fields.String(
        validate=_one_of(INTELLIGENCE_ASSESSMENTS),
        metadata={"description": "3x5x2 intelligence assessment A-E"},
    )
    handling_code = fields.String(
        validate=_one_of(HANDLING_CODES),
        metadata={"description": "P: lawful sharing permitted; C: conditions apply (give handling_conditions)"},
    )
    handling_conditions = fields.String(allow_none=True, validate=validate.Length(max=4000))
    recipients = fields.List(
        fields.String(validate=ORG_CODE),
        validate=validate.Length(max=100),
        metadata={"description": "organisation codes, e.g. ['GMP', 'MPS']"},
    )
    outcome_due_at = fields.AwareDateTime(
        allow_none=True, metadata={"description": "when the outcome return is due; default 28 days after issue"}
    )
    outcome_due_working_days = StrictInteger(
        allow_none=True,
        validate=validate.Range(min=1, max=250),
        metadata={
            "description": "or: due this many working days after issue, skipping weekends and the "
            "bank holidays of each recipient's part of the UK"
        },
    )

    @validates_schema
    def unique_recipients(self, data, **_kwargs):
        recipients = data.get("recipients") or []
        if len(set(recipients)) != len(recipients):
            raise ValidationError("Each organisation may be listed once.", field_name="recipients")
        if data.get("outcome_due_at") and data.get("outcome_due_working_days"):
            raise ValidationError(
                "Give a due date or a number of working days, not both.", field_name="outcome_due_working_days"
            )


class PackageCreateSchema(PackageFieldsSchema):
    title = fields.String(required=True, validate=validate.Length(min=3, max=200))
    summary = fields.String(required=True, validate=validate.Length(min=1, max=20000))
    threat_area = fields.String(required=True, validate=_one_of(THREAT_AREAS))
    classification = fields.String(required=True, validate=_one_of(CLASSIFICATIONS))
    source_evaluation = StrictInteger(required=True, validate=_one_of(SOURCE_EVALUATIONS))
    intelligence_assessment = fields.String(required=True, validate=_one_of(INTELLIGENCE_ASSESSMENTS))
    handling_code = fields.String(required=True, validate=_one_of(HANDLING_CODES))
    recipients = fields.List(fields.String(validate=ORG_CODE), load_default=list, validate=validate.Length(max=100))


class PackageUpdateSchema(UpdateSchema, PackageFieldsSchema):
    """A PATCH of a draft: the fields to change, at least one."""


class PackageSchema(BaseSchema):
    id = fields.UUID()
    reference = fields.String(metadata={"example": "NCLCC-2026-000123"})
    title = fields.String()
    summary = fields.String()
    threat_area = fields.String()
    classification = fields.String()
    source_evaluation = fields.Integer()
    intelligence_assessment = fields.String()
    handling_code = fields.String()
    handling_conditions = fields.String(allow_none=True)
    recipients = fields.List(
        fields.String(),
        metadata={"description": "organisation codes; a recipient sees only its own, never who else received it"},
    )
    outcome_due_at = fields.AwareDateTime(allow_none=True)
    outcome_due_working_days = fields.Integer(allow_none=True)
    status = fields.String()
    created_by = fields.String()
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()
    issued_at = fields.AwareDateTime(allow_none=True)
    issued_by = fields.String(allow_none=True)
    withdrawn_at = fields.AwareDateTime(allow_none=True)
    withdrawal_reason = fields.String(allow_none=True)

    @post_dump
    def only_own_organisation_for_recipients(self, data, **_kwargs):
        """Who else received a package is the centre's business: a force sees only itself."""
        principal = current_principal() if has_request_context() else None
        if principal is not None and not principal.is_centre and "recipients" in data:
            data["recipients"] = [code for code in data["recipients"] if code == principal.org]
        return data


class PackageQueryArgsSchema(BaseSchema):
    status = fields.String(validate=_one_of(PACKAGE_STATUSES))
    threat_area = fields.String(validate=_one_of(THREAT_AREAS))
    recipient = fields.String(validate=ORG_CODE, metadata={"description": "organisation code"})
    q = fields.String(validate=validate.Length(max=200), metadata={"description": "text in reference or title"})


class WithdrawSchema(BaseSchema):
    reason = fields.String(required=True, validate=validate.Length(min=3, max=2000))


# --- disseminations ---------------------------------------------------------------------


class DisseminationSchema(BaseSchema):
    id = fields.UUID()
    package_id = fields.UUID()
    reference = fields.String(attribute="package.reference")
    organisation = fields.String()
    status = fields.String(metadata={"description": " / ".join(DISSEMINATION_STATUSES)})
    due_at = fields.AwareDateTime()
    delivery_status = fields.String(metadata={"description": " / ".join(DELIVERY_STATUSES)})
    delivery_channel = fields.String(allow_none=True)
    delivery_attempts = fields.Integer()
    delivery_error = fields.String(allow_none=True)
    delivered_at = fields.AwareDateTime(allow_none=True)
    acknowledged_at = fields.AwareDateTime(allow_none=True)
    acknowledged_by = fields.String(allow_none=True)
    returned_at = fields.AwareDateTime(allow_none=True)
    onward_from = fields.UUID(
        allow_none=True, metadata={"description": "passed on by a recipient: the dissemination it came from"}
    )
    onward_depth = fields.Integer(metadata={"description": "0 for the centre's recipients, 1 for a first pass-on, ..."})
    passed_on_by = fields.Function(
        lambda d: d.onward_source.organisation if d.onward_source else None,
        allow_none=True,
        metadata={"type": "string", "description": "the recipient that passed it on"},
    )
    withdrawn_at = fields.AwareDateTime(
        allow_none=True, metadata={"description": "withdrawn on its own: its pass-on was amended away"}
    )
    withdrawal_reason = fields.String(allow_none=True)


class ChainLinkSchema(BaseSchema):
    dissemination_id = fields.UUID()
    organisation = fields.String()
    passed_on_by = fields.String(metadata={"description": "the centre, or the recipient that passed it on"})
    onward_from = fields.UUID(allow_none=True)
    onward_depth = fields.Integer()
    status = fields.String(metadata={"description": " / ".join(DISSEMINATION_STATUSES)})
    return_status = fields.String(allow_none=True, metadata={"description": "the latest return: interim or final"})
    due_at = fields.AwareDateTime()
    withdrawn_at = fields.AwareDateTime(allow_none=True)
    withdrawal_reason = fields.String(allow_none=True)
    chain = fields.String(
        metadata={
            "example": "NCLCC -> ROCU-NW (final return) -> GMP (no return yet)",
            "description": "the way from the centre",
        }
    )


class PackageChainSchema(BaseSchema):
    package_id = fields.UUID()
    reference = fields.String()
    links = fields.List(
        fields.Nested(ChainLinkSchema),
        metadata={"description": "every dissemination, each followed by those passed on from it"},
    )


class PackageForRecipientSchema(BaseSchema):
    id = fields.UUID()
    reference = fields.String()
    title = fields.String()
    summary = fields.String()
    threat_area = fields.String()
    classification = fields.String()
    source_evaluation = fields.Integer()
    intelligence_assessment = fields.String()
    handling_code = fields.String()
    handling_conditions = fields.String(allow_none=True)
    status = fields.String()
    issued_at = fields.AwareDateTime(allow_none=True)
    withdrawn_at = fields.AwareDateTime(allow_none=True)
    withdrawal_reason = fields.String(allow_none=True)


class InboxItemSchema(DisseminationSchema):
    package = fields.Nested(PackageForRecipientSchema)


class InboxQueryArgsSchema(BaseSchema):
    status = fields.String(validate=_one_of(DISSEMINATION_STATUSES))
