"""/api/v1/packages: drafting, issuing and withdrawing intelligence packages."""

from __future__ import annotations

import uuid

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import or_, select

from services.dissemination import drafting, issuing, onward
from services.dissemination.access import find_package
from services.dissemination.models import Dissemination, Package
from services.dissemination.schemas import (
    DisseminationSchema,
    PackageChainSchema,
    PackageCreateSchema,
    PackageQueryArgsSchema,
    PackageSchema,
    PackageUpdateSchema,
    WithdrawSchema,
)
from shared.api import page_of
from shared.audit import audit_target
from shared.auth import current_principal, require
from shared.db import commit, get_session
from shared.idempotency import idempotent
from shared.vocabulary import CENTRE_ROLES

blp = Blueprint("packages", __name__, url_prefix="/api/v1/packages", description="Intelligence packages.")


def _settings():
    return current_app.extensions["settings"]


@blp.route("")
class Packages(MethodView):
    @require()
    @blp.arguments(PackageQueryArgsSchema(), location="query")
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
        return page_of(
            get_session(), query, pagination_parameters, order_by=(Package.created_at.desc(), Package.reference.desc())
        )

    @require("issuer")
    @idempotent
    @blp.arguments(PackageCreateSchema())
    @blp.response(201, PackageSchema)
    def post(self, values):
        """Create a draft package."""
        session = get_session()
        package = drafting.create_draft(session, _settings(), current_principal(), values)
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
    @blp.arguments(PackageUpdateSchema())
    @blp.response(200, PackageSchema)
    def patch(self, values, package_id: uuid.UUID):
        """Edit a draft. Issued packages cannot change: withdraw and issue a new one."""
        package = find_package(package_id)
        session = get_session()
        drafting.edit_draft(session, _settings(), current_principal(), package, values)
        commit(session)
        return package


@blp.route("/<uuid:package_id>/issue")
class PackageIssue(MethodView):
    @require("issuer")
    @idempotent(authorise=lambda package_id: find_package(package_id))
    @blp.response(200, PackageSchema)
    def post(self, package_id: uuid.UUID):
        """Issue a draft: one dissemination per recipient, each notified. Issuing twice is 409."""
        package = find_package(package_id, for_update=True)
        session = get_session()
        issuing.issue_package(session, _settings(), package, current_principal())
        commit(session)
        return package


@blp.route("/<uuid:package_id>/withdraw")
class PackageWithdraw(MethodView):
    @require("issuer")
    @idempotent(authorise=lambda package_id: find_package(package_id))
    @blp.arguments(WithdrawSchema())
    @blp.response(200, PackageSchema)
    def post(self, values, package_id: uuid.UUID):
        """Withdraw a package: recipients are told to stop, and no return is expected."""
        package = find_package(package_id, for_update=True)
        session = get_session()
        issuing.withdraw_package(session, _settings(), package, current_principal(), values["reason"])
        commit(session)
        return package


@blp.route("/<uuid:package_id>/disseminations")
class PackageDisseminations(MethodView):
    @require(*sorted(CENTRE_ROLES))
    @blp.response(200, DisseminationSchema(many=True))
    def get(self, package_id: uuid.UUID):
        """Who the package went to: delivered, acknowledged, due and returned, per recipient."""
        return find_package(package_id).disseminations


@blp.route("/<uuid:package_id>/chain")
class PackageChain(MethodView):
    @require(*sorted(CENTRE_ROLES))
    @blp.response(200, PackageChainSchema)
    def get(self, package_id: uuid.UUID):
        """Where the package went, passed on included: centre -> ROCU -> force, each with its return."""
        package = find_package(package_id)
        return {
            "package_id": package.id,
            "reference": package.reference,
            "links": onward.chain_of(package, _settings().centre_org),
        }
