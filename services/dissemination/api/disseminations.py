"""/api/v1/disseminations: one package as sent to one recipient; acknowledgement."""

from __future__ import annotations

import uuid

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from services.dissemination import issuing
from services.dissemination.access import find_dissemination, find_dissemination_to_acknowledge
from services.dissemination.schemas import InboxItemSchema
from shared.auth import current_principal, require
from shared.db import commit, get_session
from shared.idempotency import idempotent

blp = Blueprint(
    "disseminations", __name__, url_prefix="/api/v1/disseminations", description="Packages as sent to a recipient."
)


@blp.route("/<uuid:dissemination_id>")
class DisseminationById(MethodView):
    @require()
    @blp.response(200, InboxItemSchema)
    def get(self, dissemination_id: uuid.UUID):
        """One dissemination with its package (a recipient sees only its own organisation's)."""
        return find_dissemination(dissemination_id)


@blp.route("/<uuid:dissemination_id>/acknowledge")
class DisseminationAcknowledge(MethodView):
    @require("recipient")
    @idempotent(authorise=lambda dissemination_id: find_dissemination(dissemination_id))
    @blp.response(200, InboxItemSchema)
    def post(self, dissemination_id: uuid.UUID):
        """Acknowledge receipt for your organisation. Acknowledging again changes nothing."""
        dissemination = find_dissemination_to_acknowledge(dissemination_id)
        session = get_session()
        issuing.acknowledge(session, current_app.extensions["settings"], dissemination, current_principal())
        commit(session)
        return dissemination
