"""/api/v1/chase-policy: the ladder of chase steps (admin)."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from services.outcomes import chasing
from services.outcomes.schemas import ChasePolicySchema
from shared.audit import audit_target
from shared.auth import current_principal, require
from shared.db import commit, get_session

blp = Blueprint("chase_policy", __name__, url_prefix="/api/v1/chase-policy", description="How late returns are chased.")


@blp.route("")
class ChasePolicyView(MethodView):
    @require("admin", "issuer")
    @blp.response(200, ChasePolicySchema)
    def get(self):
        """The steps, relative to each return's due date (negative offsets are before it)."""
        return chasing.current_policy(get_session())

    @require("admin")
    @blp.arguments(ChasePolicySchema())
    @blp.response(200, ChasePolicySchema)
    def put(self, values):
        """Replace the ladder. Steps already sent stay sent; new ones apply from the next sweep."""
        audit_target("chase_policy", 1)
        session = get_session()
        policy = chasing.set_policy(session, values["steps"], current_principal().sub)
        commit(session)
        return policy
