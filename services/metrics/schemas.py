"""Schemas of the metrics API: query arguments strictly checked, answers documented."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from shared.api import BaseSchema
from shared.vocabulary import THREAT_AREAS, VERDICTS

SORTS = (
    "issued_at",
    "-issued_at",
    "reference",
    "-reference",
    "verdict",
    "-verdict",
    "arrests",
    "-arrests",
    "final_returns",
    "-final_returns",
    "actioned_returns",
    "-actioned_returns",
)
MONTH = validate.Regexp(r"^20\d\d-(0[1-9]|1[0-2])$", error="Use YYYY-MM, a month of 2000-2099.")


class PeriodArgsSchema(BaseSchema):
    # `from` is a Python keyword: the field is named from_month and read from ?from=.
    from_month = fields.String(data_key="from", validate=MONTH, metadata={"description": "first month, YYYY-MM"})
    to_month = fields.String(data_key="to", validate=MONTH, metadata={"description": "last month, YYYY-MM"})
    threat_area = fields.String(validate=validate.OneOf(THREAT_AREAS))
    organisation = fields.String(validate=validate.Length(max=16))

    @validates_schema
    def ordered(self, data, **_kwargs):
        if data.get("from_month") and data.get("to_month") and data["from_month"] > data["to_month"]:
            raise ValidationError("Must not be after 'to'.", field_name="from")


class EvidencePackArgsSchema(PeriodArgsSchema):
    organisation = fields.String(
        validate=validate.Regexp(r"^[A-Za-z0-9_-]{1,16}$", error="Use an organisation's code, for example GMP."),
        metadata={"description": "one organisation's pack, compared with the national figure"},
    )
    format = fields.String(
        load_default="html",
        validate=validate.OneOf(("html", "pdf")),
        metadata={"description": "html (printable, with a print stylesheet) or pdf"},
    )


class PackageListArgsSchema(PeriodArgsSchema):
    verdict = fields.String(validate=validate.OneOf(VERDICTS))
    sort = fields.String(load_default="-issued_at", validate=validate.OneOf(SORTS))


class PackageRowSchema(BaseSchema):
    package_id = fields.UUID()
    reference = fields.String()
    title = fields.String()
    threat_area = fields.String()
    classification = fields.String()
    grading = fields.String(metadata={"description": "3x5x2: source evaluation, assessment, handling code"})
    issued_at = fields.AwareDateTime()
    due_at = fields.AwareDateTime(allow_none=True)
    withdrawn_at = fields.AwareDateTime(allow_none=True)
    verdict = fields.String(metadata={"description": " / ".join(VERDICTS)})
    verdict_reason = fields.String()
    recipients = fields.Integer()
    final_returns = fields.Integer()
    actioned_returns = fields.Integer(metadata={"description": "final returns whose current version reports action"})
    arrests = fields.Integer()
    onward_recipients = fields.Integer(
        metadata={"description": "organisations a recipient passed it on to (their returns count toward it)"}
    )
    onward_arrests = fields.Integer(metadata={"description": "of the arrests, those on onward returns"})


class PackageMetricsSchema(PackageRowSchema):
    reach = fields.Dict()
    compliance = fields.Dict()
    use = fields.Dict()
    results = fields.Dict(
        metadata={
            "description": "totals, and by attribution: direct, contributed, and onward (on the returns of "
            "organisations it was passed on to)"
        }
    )
    rates = fields.Dict(metadata={"description": "return_rate, on_time_rate, acknowledged_rate, actioned_rate"})
    quality = fields.Dict()
    by_recipient = fields.List(fields.Dict())


class OrganisationMetricsSchema(BaseSchema):
    code = fields.String()
    name = fields.String()
    region = fields.String(allow_none=True)
    packages_received = fields.Integer()
    returned = fields.Integer()
    return_rate = fields.Float(allow_none=True)
    on_time_rate = fields.Float(allow_none=True)
    median_days_to_return = fields.Float(allow_none=True)
    overdue_now = fields.Integer()
    final_actioned = fields.Integer(metadata={"description": "final returns whose current version reports action"})
    actioned_rate = fields.Float(allow_none=True)
    acknowledged_rate = fields.Float(allow_none=True)
    results = fields.Dict()
    quality = fields.Dict()
    use = fields.Dict()


class SummarySchema(BaseSchema):
    period = fields.Dict()
    threat_area = fields.String(allow_none=True)
    organisation = fields.String(allow_none=True)
    packages_issued = fields.Integer()
    funnel = fields.Dict(
        metadata={
            "description": "issued to recipients -> delivered -> acknowledged -> returned -> final -> actioned "
            "(final returns reporting action); each stage counts a subset of the one before"
        }
    )
    rates = fields.Dict(
        metadata={
            "description": "shares, 0-1 or null: returned (final of expected), on_time (of final), acknowledged "
            "(of expected; filing counts), actioned (final returns reporting action, of final returns)"
        }
    )
    on_time = fields.Integer(metadata={"description": "final returns filed by their due date"})
    results = fields.Dict()
    trend = fields.List(fields.Dict())


class GradingSchema(BaseSchema):
    cells = fields.List(fields.Dict(), metadata={"description": "one per source evaluation x assessment"})
