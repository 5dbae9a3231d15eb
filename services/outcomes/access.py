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


def visible_returns_query(principal: Principal):
    query = select(ExpectedReturn).where(ExpectedReturn.classification.in_(principal.allowed_classifications))
    if not principal.is_centre:
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
    if not principal.is_centre and expected.organisation != principal.org:
        audit_detail(f"refused: return belongs to {expected.organisation}, caller is {principal.org}")
        abort(404, message="No such return.")
    return expected
