"""/api/v1/returns: expected returns, filing outcomes, extensions and the chase log."""

from __future__ import annotations

import uuid

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, selectinload

from services.outcomes import chasing, filing
from services.outcomes.access import find_return, visible_returns_query
from services.outcomes.models import ChaseEntry, ExpectedReturn
from services.outcomes.schemas import (
    ChaseEntrySchema,
    ExpectedReturnSchema,
    ExtendSchema,
    OutcomeInputSchema,
    OutcomeSchema,
    ReturnQueryArgsSchema,
)
from shared import clock
from shared.api import page_of
from shared.auth import current_principal, require
from shared.db import commit, get_session
from shared.form_links import form_url
from shared.idempotency import idempotent

blp = Blueprint("returns", __name__, url_prefix="/api/v1/returns", description="Outcome returns.")


def _settings():
    return current_app.extensions["settings"]


def return_view(expected: ExpectedReturn) -> dict:
    """The return as its reader sees it: the form link only for the recipient organisation."""
    principal = current_principal()
    return {
        **{
            name: getattr(expected, name)
            for name in (
                "id",
                "package_id",
                "reference",
                "title",
                "threat_area",
                "classification",
                "organisation",
                "issued_at",
                "due_at",
                "acknowledged_at",
                "final_returned_at",
                "first_returned_at",
                "closed_at",
                "extensions",
                "onward_from",
                "onward_depth",
            )
        },
        "status": expected.status_at(clock.now()),
        "versions": expected.versions,
        "current": expected.current,
        "form_url": form_url(_settings(), expected.id) if principal.org == expected.organisation else None,
    }


STATUS_FILTERS = {
    "returned": lambda now: ExpectedReturn.final_returned_at.is_not(None),
    "withdrawn": lambda now: ExpectedReturn.close_reason == "withdrawn",
    "overdue": lambda now: and_(
        ExpectedReturn.final_returned_at.is_(None), ExpectedReturn.closed_at.is_(None), ExpectedReturn.due_at < now
    ),
    "open": lambda now: and_(
        ExpectedReturn.final_returned_at.is_(None), ExpectedReturn.closed_at.is_(None), ExpectedReturn.due_at >= now
    ),
}


def count_overdue(session: Session) -> int:
    """How many returns are overdue now, as ``status=overdue`` lists them (a gauge on /metrics)."""
    overdue = STATUS_FILTERS["overdue"](clock.now())
    return session.scalar(select(func.count()).select_from(ExpectedReturn).where(overdue)) or 0


@blp.route("")
class Returns(MethodView):
    @require()
    @blp.arguments(ReturnQueryArgsSchema(), location="query")
    @blp.response(200, ExpectedReturnSchema(many=True))
    @blp.paginate()
    def get(self, args, pagination_parameters):
        """Returns you may see, soonest due first. `status=overdue` lists the late ones."""
        query = visible_returns_query(current_principal())
        if "status" in args:
            query = query.where(STATUS_FILTERS[args["status"]](clock.now()))
        if "org" in args:
            query = query.where(ExpectedReturn.organisation == args["org"].upper())
        if "package" in args:
            query = query.where(ExpectedReturn.package_id == args["package"])
        # Each row shows its current outcome: the page's histories in one query, not one per row.
        query = query.options(selectinload(ExpectedReturn.outcomes))
        rows = page_of(get_session(), query, pagination_parameters, order_by=(ExpectedReturn.due_at, ExpectedReturn.id))
        return [return_view(row) for row in rows]


@blp.route("/<uuid:return_id>")
class ReturnById(MethodView):
    @require()
    @blp.response(200, ExpectedReturnSchema)
    def get(self, return_id: uuid.UUID):
        """One return, its current outcome and, for the recipient, the link to the web form."""
        return return_view(find_return(return_id))


@blp.route("/<uuid:return_id>/outcomes")
class ReturnOutcomes(MethodView):
    @require()
    @blp.response(200, OutcomeSchema(many=True))
    def get(self, return_id: uuid.UUID):
        """Every filing of this return, oldest first; the last is current."""
        return find_return(return_id).outcomes

    @require("recipient")
    @idempotent(authorise=lambda return_id: find_return(return_id))
    @blp.arguments(OutcomeInputSchema())
    @blp.response(201, OutcomeSchema)
    def post(self, values, return_id: uuid.UUID):
        """File an outcome for your organisation: interim, then final; filing again amends."""
        expected = find_return(return_id, for_update=True)
        if expected.organisation != current_principal().org:
            abort(403, message="Only the receiving organisation files its return.")
        session = get_session()
        outcome = filing.file_outcome(
            session, _settings(), expected, values, filed_by=current_principal().sub, via="api"
        )
        commit(session)
        return outcome


@blp.route("/<uuid:return_id>/extend")
class ReturnExtend(MethodView):
    @require("issuer")
    @idempotent(authorise=lambda return_id: find_return(return_id))
    @blp.arguments(ExtendSchema())
    @blp.response(200, ExpectedReturnSchema)
    def post(self, values, return_id: uuid.UUID):
        """Move the due date (a date, or a number of working days on); the chase re-plans."""
        expected = find_return(return_id, for_update=True)
        session = get_session()
        chasing.extend_return(session, _settings(), expected, values, current_principal().sub)
        commit(session)
        return return_view(expected)


@blp.route("/<uuid:return_id>/chases")
class ReturnChases(MethodView):
    @require()
    @blp.response(200, ChaseEntrySchema(many=True))
    def get(self, return_id: uuid.UUID):
        """The chase log of this return: each step, when it went, to whom, and how it went."""
        find_return(return_id)
        return (
            get_session()
            .scalars(select(ChaseEntry).where(ChaseEntry.return_id == return_id).order_by(ChaseEntry.planned_at))
            .all()
        )
