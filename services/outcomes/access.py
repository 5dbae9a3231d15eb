"""Who may see which return. A recipient sees its own organisation's only; anything out of
reach answers 404 and the refusal is audited with the reason."""

from __future__ import annotations

import uuid

from flask_smorest import abort
from sqlalchemy import select

from services.outcomes.models import ExpectedReturn
from shared.audit import audit_detail, audit_target
from shared.auth import Principal, current_principal
from shared.db import get_session
from shared.settings import CLASSIFICATIONS

CENTRE_ROLES = ("issuer", "admin", "leader")


def visible_returns_query(principal: Principal):
    allowed = [c for c in CLASSIFICATIONS if principal.cleared_for(c)]
    query = select(ExpectedReturn).where(ExpectedReturn.classification.in_(allowed))
    if not principal.has_any(CENTRE_ROLES):
        query = query.where(ExpectedReturn.organisation == principal.org)
    return query


def find_return(return_id: uuid.UUID, *, for_update: bool = False) -> ExpectedReturn:
    audit_target("return", return_id)
    principal = current_principal()
    query = select(ExpectedReturn).where(ExpectedReturn.id == return_id)
    if for_update:
        query = query.with_for_update(of=ExpectedReturn)
    expected = get_session().scalars(query).first()
    if expected is None:
        abort(404, message="No such return.")
    if not principal.cleared_for(expected.classification):
        audit_detail(f"refused: clearance {principal.clearance} below {expected.classification}")
        abort(404, message="No such return.")
    if not principal.has_any(CENTRE_ROLES) and expected.organisation != principal.org:
        audit_detail(f"refused: return belongs to {expected.organisation}, caller is {principal.org}")
        abort(404, message="No such return.")
    return expected
