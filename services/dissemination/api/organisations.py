"""/api/v1/organisations: the directory every package is addressed from.

An organisation's webhook signing secret appears in clear only in the answer that made it
(create or change with a new ``webhook_url``, or ``POST .../webhook-secret``). Views put the
sealed value in the answer and ``reveal_webhook_secret`` opens it on the way out, so the answer
that ``@idempotent`` keeps for a retry holds only the sealed value.
"""

from __future__ import annotations

import functools

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from sqlalchemy import select

from services.dissemination import directory
from services.dissemination.models import Organisation
from services.dissemination.schemas import (
    OrganisationQueryArgsSchema,
    OrganisationSchema,
    OrganisationUpdateSchema,
    OrganisationWithSecretSchema,
    WebhookSecretSchema,
)
from shared import webhook_secrets
from shared.api import page_of
from shared.audit import audit_target
from shared.auth import require
from shared.db import commit, get_session
from shared.idempotency import idempotent

blp = Blueprint(
    "organisations", __name__, url_prefix="/api/v1/organisations", description="The organisation directory."
)


def reveal_webhook_secret(view):
    """Open the sealed ``webhook_secret`` of a successful answer, fresh or replayed."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        response = current_app.make_response(view(*args, **kwargs))
        data = response.get_json(silent=True) if response.is_json and response.status_code < 300 else None
        if isinstance(data, dict) and data.get("webhook_secret"):
            data["webhook_secret"] = webhook_secrets.unseal(current_app.extensions["settings"], data["webhook_secret"])
            response.set_data(current_app.json.response(data).get_data())  # written as every answer is
        return response

    return wrapper


def _answer_with_secret(organisation: Organisation) -> Organisation:
    organisation.webhook_secret_for_answer = organisation.webhook_secret_sealed
    return organisation


@blp.route("")
class Organisations(MethodView):
    @require()
    @blp.arguments(OrganisationQueryArgsSchema(), location="query")
    @blp.response(200, OrganisationSchema(many=True))
    @blp.paginate()
    def get(self, args, pagination_parameters):
        """Organisations, by code; filter by kind, region and active."""
        query = select(Organisation)
        for name, value in args.items():
            query = query.where(getattr(Organisation, name) == value)
        return page_of(get_session(), query, pagination_parameters, order_by=(Organisation.code,))

    @require("admin")
    @reveal_webhook_secret
    @idempotent
    @blp.arguments(OrganisationSchema())
    @blp.response(201, OrganisationWithSecretSchema)
    def post(self, values):
        """Add an organisation (admin). With a webhook_url, the answer carries its signing secret
        (`webhook_secret`), this once."""
        session = get_session()
        audit_target("organisation", values["code"])
        organisation = directory.create_organisation(session, current_app.extensions["settings"], values)
        commit(session)
        return _answer_with_secret(organisation) if organisation.webhook_secret_sealed else organisation


@blp.route("/<string:code>")
class OrganisationByCode(MethodView):
    @require()
    @blp.response(200, OrganisationSchema)
    def get(self, code):
        audit_target("organisation", code)
        return get_session().get(Organisation, code.upper()) or abort(404, message=f"No organisation {code}.")

    @require("admin")
    @reveal_webhook_secret
    @blp.arguments(OrganisationUpdateSchema())
    @blp.response(200, OrganisationWithSecretSchema)
    def patch(self, values, code):
        """Change an organisation's name, contacts, webhook or status (admin). A new webhook_url
        gives a new signing secret, carried in this answer only (`webhook_secret`)."""
        audit_target("organisation", code)
        session = get_session()
        organisation = session.get(Organisation, code.upper()) or abort(404, message=f"No organisation {code}.")
        new_secret = directory.update_organisation(session, current_app.extensions["settings"], organisation, values)
        commit(session)
        return _answer_with_secret(organisation) if new_secret else organisation


@blp.route("/<string:code>/webhook-secret")
class OrganisationWebhookSecret(MethodView):
    @require("admin")
    @reveal_webhook_secret
    @idempotent
    @blp.response(201, WebhookSecretSchema)
    def post(self, code):
        """Rotate the organisation's webhook signing secret (admin). The new secret is in this
        answer only; the old one stops verifying at once."""
        audit_target("organisation", code.upper(), detail="webhook secret rotated")
        session = get_session()
        organisation = session.get(Organisation, code.upper()) or abort(404, message=f"No organisation {code}.")
        directory.rotate_webhook_secret(session, current_app.extensions["settings"], organisation)
        commit(session)
        return _answer_with_secret(organisation)
