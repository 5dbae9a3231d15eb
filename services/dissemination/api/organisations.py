"""/api/v1/organisations: the directory every package is addressed from."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from sqlalchemy import func, select

from services.dissemination import directory
from services.dissemination.models import Organisation
from services.dissemination.schemas import (
    OrganisationQueryArgsSchema,
    OrganisationSchema,
    OrganisationUpdateSchema,
)
from shared.audit import audit_target
from shared.auth import require
from shared.db import commit, get_session
from shared.idempotency import idempotent

blp = Blueprint(
    "organisations", __name__, url_prefix="/api/v1/organisations", description="The organisation directory."
)


@blp.route("")
class Organisations(MethodView):
    @require()
    @blp.arguments(OrganisationQueryArgsSchema, location="query")
    @blp.response(200, OrganisationSchema(many=True))
    @blp.paginate()
    def get(self, args, pagination_parameters):
        """Organisations, by code; filter by kind, region and active."""
        query = select(Organisation)
        for name, value in args.items():
            query = query.where(getattr(Organisation, name) == value)
        session = get_session()
        pagination_parameters.item_count = session.scalar(select(func.count()).select_from(query.subquery()))
        return session.scalars(
            query.order_by(Organisation.code)
            .offset(pagination_parameters.first_item)
            .limit(pagination_parameters.page_size)
        ).all()

    @require("admin")
    @idempotent
    @blp.arguments(OrganisationSchema)
    @blp.response(201, OrganisationSchema)
    def post(self, values):
        """Add an organisation (admin)."""
        session = get_session()
        if session.get(Organisation, values["code"]) is not None:
            abort(409, message=f"Organisation {values['code']} already exists.")
        organisation = directory.create_organisation(session, current_app.extensions["settings"], values)
        audit_target("organisation", organisation.code)
        commit(session)
        return organisation


@blp.route("/<string:code>")
class OrganisationByCode(MethodView):
    @require()
    @blp.response(200, OrganisationSchema)
    def get(self, code):
        audit_target("organisation", code)
        return get_session().get(Organisation, code.upper()) or abort(404, message=f"No organisation {code}.")

    @require("admin")
    @blp.arguments(OrganisationUpdateSchema)
    @blp.response(200, OrganisationSchema)
    def patch(self, values, code):
        """Change an organisation's name, contacts, webhook or status (admin)."""
        audit_target("organisation", code)
        session = get_session()
        organisation = session.get(Organisation, code.upper()) or abort(404, message=f"No organisation {code}.")
        directory.update_organisation(session, current_app.extensions["settings"], organisation, values)
        commit(session)
        return organisation
