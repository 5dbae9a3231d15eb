"""/api/v1/metrics: what each package achieved, per package, organisation, month and grade."""

from __future__ import annotations

import uuid

from flask.views import MethodView
from flask_smorest import Blueprint, abort

from services.metrics import evidence, figures
from services.metrics.access import (
    cleared,
    find_package_and_returns,
    is_leader,
    require_leader,
    require_organisation,
)
from services.metrics.export import export_response
from services.metrics.models import Organisation
from services.metrics.schemas import (
    EvidencePackArgsSchema,
    GradingSchema,
    OrganisationMetricsSchema,
    PackageListArgsSchema,
    PackageMetricsSchema,
    PackageRowSchema,
    PeriodArgsSchema,
    SummarySchema,
)
from shared.api import page_of
from shared.audit import audit_target
from shared.auth import current_principal, require
from shared.db import get_session

blp = Blueprint("metrics", __name__, url_prefix="/api/v1/metrics", description="Outcome and benefit metrics.")


@blp.route("/packages")
class PackageList(MethodView):
    @require()
    @blp.arguments(PackageListArgsSchema(), location="query")
    @blp.response(200, PackageRowSchema(many=True))
    @blp.paginate()
    def get(self, args, pagination_parameters):
        """Packages with their verdict; filter by period, threat area, recipient and verdict; sort."""
        require_leader()
        session = get_session()
        query = figures.package_query(args, cleared())
        rows = page_of(session, query, pagination_parameters)
        return [figures.package_summary(row) for row in rows]


@blp.route("/packages/<uuid:package_id>")
class PackageMetrics(MethodView):
    @require()
    @blp.response(200, PackageMetricsSchema)
    def get(self, package_id: uuid.UUID):
        """Reach, return compliance, use, results, intelligence quality and the verdict."""
        audit_target("package", package_id)
        require_leader()
        package, returns = find_package_and_returns(package_id)
        return figures.package_metrics(None, package, returns)


@blp.route("/organisations")
class OrganisationList(MethodView):
    @require()
    @blp.response(200, OrganisationMetricsSchema(many=True))
    def get(self):
        """Every organisation that has received packages, with its figures."""
        require_leader()
        return figures.every_organisation_metrics(get_session(), cleared())


@blp.route("/organisations/<string:code>")
class OrganisationMetrics(MethodView):
    @require()
    @blp.response(200, OrganisationMetricsSchema)
    def get(self, code: str):
        """One organisation: packages received, return and on-time rates, days to return, results."""
        code = code.upper()
        audit_target("organisation", code)
        require_organisation(code)
        session = get_session()
        classifications = cleared()
        if (
            session.get(Organisation, code) is None
            and not figures.facts_for(session, "org", [code], classifications)[code]
        ):
            abort(404, message=f"No organisation {code}.")
        return figures.organisation_metrics(session, code, classifications)


def period_of(args: dict):
    start, end = figures.this_year()
    if args.get("from_month"):
        start = figures.parse_month(args["from_month"])
    if args.get("to_month"):
        end = figures.parse_month(args["to_month"])
    from shared.api import invalid

    if start > end:
        invalid({"to": "Must not be before 'from' (January of this year when 'from' is not given)."}, location="query")
    if len(figures.months_between(start, end)) > 120:
        invalid({"from": "Ask for ten years at most."}, location="query")
    return start, end


@blp.route("/summary")
class Summary(MethodView):
    @require()
    @blp.arguments(PeriodArgsSchema(), location="query")
    @blp.response(200, SummarySchema)
    def get(self, args):
        """The funnel issued -> delivered -> acknowledged -> returned -> actioned, result totals and
        the monthly trend; this year unless `from`/`to` say otherwise. Recipients see their own."""
        organisation = args.get("organisation")
        if not is_leader():
            organisation = organisation or current_principal().org
            require_organisation(organisation.upper())
        start, end = period_of(args)
        return figures.summary(
            get_session(),
            start,
            end,
            args.get("threat_area"),
            organisation.upper() if organisation else None,
            cleared(),
        )


EVIDENCE_PACK_RESPONSES = {
    "200": {
        "description": "The pack: printable HTML, or a PDF; named after its period (Content-Disposition)",
        "content": {
            "text/html": {"schema": {"type": "string"}},
            "application/pdf": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@blp.route("/evidence-pack")
class EvidencePack(MethodView):
    @require()
    @blp.arguments(EvidencePackArgsSchema(), location="query")
    @blp.doc(responses=EVIDENCE_PACK_RESPONSES)
    def get(self, args):
        """The inspection evidence pack, as printable HTML or as a PDF.

        For a period (this year unless `from`/`to` say otherwise), optionally one threat area or
        one organisation: what was sent, to whom, whether it was
        acknowledged, chased and returned, the action, results and priority that followed, the
        feedback on the intelligence, the figures' definitions, the data's completeness, and the
        comparisons with the previous period and the national figure. Only packages at or below
        the reader's clearance are listed or counted."""
        organisation = args["organisation"].upper() if args.get("organisation") else None
        audit_target("evidence_pack", args["format"])
        require_leader()
        start, end = period_of(args)
        pack = evidence.evidence_pack(
            get_session(), current_principal(), start, end, args.get("threat_area"), organisation
        )
        if args["format"] == "pdf":
            return evidence.pdf_response(pack)
        return evidence.html_response(pack)


@blp.route("/grading")
class Grading(MethodView):
    @require()
    @blp.response(200, GradingSchema)
    def get(self):
        """For each source evaluation x intelligence assessment, how recipients judged the
        intelligence: confirmed, partly confirmed, not confirmed or false."""
        require_leader()
        return figures.grading(get_session(), cleared())


@blp.route("/export.csv")
class Export(MethodView):
    @require()
    @blp.arguments(PackageListArgsSchema(), location="query")
    @blp.response(200, content_type="text/csv", description="The package list as CSV")
    def get(self, args):
        """The package list with the same filters, as CSV for spreadsheets."""
        require_leader()
        return export_response(get_session(), args, cleared())
