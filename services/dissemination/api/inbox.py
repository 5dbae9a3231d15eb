"""/api/v1/inbox: the caller organisation's packages."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from services.dissemination.access import INBOX_ORDER, inbox_query
from services.dissemination.models import Dissemination, Package
from services.dissemination.schemas import InboxItemSchema, InboxQueryArgsSchema
from shared.api import page_of
from shared.auth import current_principal, require
from shared.db import get_session

blp = Blueprint("inbox", __name__, url_prefix="/api/v1/inbox", description="Your organisation's packages.")


def _live():
    """Neither the package nor this dissemination alone (a pass-on amended away) withdrawn."""
    return (Package.status != "withdrawn") & Dissemination.withdrawn_at.is_(None)


STATUS_FILTERS = {
    "withdrawn": lambda: (Package.status == "withdrawn") | Dissemination.withdrawn_at.is_not(None),
    "returned": lambda: _live() & Dissemination.returned_at.is_not(None),
    "acknowledged": lambda: _live() & Dissemination.returned_at.is_(None) & Dissemination.acknowledged_at.is_not(None),
    "delivered": lambda: (
        _live()
        & Dissemination.returned_at.is_(None)
        & Dissemination.acknowledged_at.is_(None)
        & Dissemination.delivered_at.is_not(None)
    ),
    "delivery_failed": lambda: (
        _live() & Dissemination.delivered_at.is_(None) & (Dissemination.delivery_status == "failed")
    ),
    "pending_delivery": lambda: (
        _live() & Dissemination.delivered_at.is_(None) & (Dissemination.delivery_status == "pending")
    ),
}


@blp.route("")
class Inbox(MethodView):
    @require()
    @blp.arguments(InboxQueryArgsSchema(), location="query")
    @blp.response(200, InboxItemSchema(many=True))
    @blp.paginate()
    def get(self, args, pagination_parameters):
        """Packages sent to your organisation, newest first, within your clearance."""
        query = inbox_query(current_principal())
        if "status" in args:
            query = query.where(STATUS_FILTERS[args["status"]]())
        return page_of(get_session(), query, pagination_parameters, order_by=INBOX_ORDER)
