"""/api/v1/packages: drafting, issuing and withdrawing intelligence packages."""

from __future__ import annotations

import uuid

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from sqlalchemy import func, or_, select

from services.dissemination import drafting, issuing
from services.dissemination.access import find_package
from services.dissemination.models import Dissemination, Package
from services.dissemination.schemas import (
    DisseminationSchema,
    PackageCreateSchema,
    PackageQueryArgsSchema,
    PackageSchema,
    PackageUpdateSchema,
    WithdrawSchema,
)
from shared.api import invalid
from shared.audit import audit_target
from shared.auth import CENTRE_ROLES, current_principal, require
from shared.db import commit, get_session
from shared.idempotency import idempotent

blp = Blueprint("packages", __name__, url_prefix="/api/v1/packages", description="Intelligence packages.")

def _settings():
    return current_app.extensions["settings"]


def _check_rules(values: dict) -> None:
    problems = drafting.package_problems(get_session(), _settings(), current_principal(), values)
    if problems:
        invalid(problems)


@blp.route("")
class Packages(MethodView):
    @require()
    @blp.arguments(PackageQueryArgsSchema, location="query")
    @blp.response(200, PackageSchema(many=True))
    @blp.paginate()
    def get(self, args, pagination_parameters):
        """Packages the caller may see, newest first. Recipients see those sent to them."""
        query = drafting.packages_visible_query(current_principal())
        if "status" in args:
            query = query.where(Package.status == args["status"])
        if "threat_area" in args:
            query = query.where(Package.threat_area == args["threat_area"])
        if "recipient" in args and current_principal().is_centre:  # a force cannot probe who else received
            query = query.where(
                Package.id.in_(select(Dissemination.package_id).where(Dissemination.organisation == args["recipient"]))
            )
        if "q" in args:
            pattern = f"%{args['q']}%"
            query = query.where(or_(Package.reference.ilike(pattern), Package.title.ilike(pattern)))
        session = get_session()
        pagination_parameters.item_count = session.scalar(select(func.count()).select_from(query.subquery()))
        return session.scalars(
            query.order_by(Package.created_at.desc(), Package.reference.desc())
            .offset(pagination_parameters.first_item)
            .limit(pagination_parameters.page_size)
        ).all()

    @require("issuer")
    @idempotent
    @blp.arguments(PackageCreateSchema)
    @blp.response(201, PackageSchema)
    def post(self, values):
        """Create a draft package."""
        _check_rules(values)
        session = get_session()
        package = drafting.create_draft(session, current_principal(), values)
        audit_target("package", package.id, f"draft {package.reference}")
        commit(session)
        return package


@blp.route("/<uuid:package_id>")
class PackageById(MethodView):
    @require()
    @blp.response(200, PackageSchema)
    def get(self, package_id: uuid.UUID):
        return find_package(package_id)

    @require("issuer")
    @blp.arguments(PackageUpdateSchema)
    @blp.response(200, PackageSchema)
    def patch(self, values, package_id: uuid.UUID):
        """Edit a draft. Issued packages cannot change: withdraw and issue a new one."""
        package = find_package(package_id)
        if package.status != "draft":
            abort(409, message=f"Package {package.reference} is {package.status}; only a draft can be edited.")
        for required in ("title", "summary", "threat_area", "classification", "source_evaluation",
                         "intelligence_assessment", "handling_code"):
            if required in values and values[required] is None:
                invalid({required: "Field may not be null."})
        _check_rules(drafting.merged_values(package, values))
        drafting.update_draft(package, values)
        commit(get_session())
        return package


@blp.route("/<uuid:package_id>/issue")
class PackageIssue(MethodView):
    @require("issuer")
    @idempotent(authorise=lambda package_id: find_package(package_id))
    @blp.response(200, PackageSchema)
    def post(self, package_id: uuid.UUID):
        """Issue a draft: one dissemination per recipient, each notified. Issuing twice is 409."""
        package = find_package(package_id, for_update=True)
        _check_rules(drafting.merged_values(package, {}))
        session = get_session()
        try:
            issuing.issue_package(session, _settings(), package, current_principal())
        except issuing.StateConflict as error:
            abort(409, message=str(error))
        except issuing.RuleBroken as error:
            invalid(error.problems)
        commit(session)
        return package


@blp.route("/<uuid:package_id>/withdraw")
class PackageWithdraw(MethodView):
    @require("issuer")
    @idempotent(authorise=lambda package_id: find_package(package_id))
    @blp.arguments(WithdrawSchema)
    @blp.response(200, PackageSchema)
    def post(self, values, package_id: uuid.UUID):
        """Withdraw a package: recipients are told to stop, and no return is expected."""
        package = find_package(package_id, for_update=True)
        session = get_session()
        try:
            issuing.withdraw_package(session, _settings(), package, current_principal(), values["reason"])
        except issuing.StateConflict as error:
            abort(409, message=str(error))
        commit(session)
        return package


@blp.route("/<uuid:package_id>/disseminations")
class PackageDisseminations(MethodView):
    @require(*sorted(CENTRE_ROLES))
    @blp.response(200, DisseminationSchema(many=True))
    def get(self, package_id: uuid.UUID):
        """Who the package went to: delivered, acknowledged, due and returned, per recipient."""
        return find_package(package_id).disseminations
