"""Who may see which return. A recipient sees its own organisation's only; anything out of
reach answers 404 and the refusal is audited with the reason."""

from __future__ import annotations

import functools
import uuid

from flask_smorest import abort
from sqlalchemy import Select, bindparam, select

from services.outcomes.models import ExpectedReturn
from shared.audit import audit_detail, audit_target
from shared.auth import Principal, current_principal
from shared.db import get_session


def visible_returns_query(principal: Principal):
    query = select(ExpectedReturn).where(ExpectedReturn.classification.in_(principal.allowed_classifications))
    if not principal.is_centre:
        query = query.where(ExpectedReturn.organisation == principal.org)
    return query


@functools.cache
def return_query(for_update: bool) -> Select:
    """One return by id (``return_id``), locked for a change when ``for_update``: built once, as
    every read and filing of a return asks it, and building it anew (its construction, its
    cache key) was Python work on every request."""
    query = select(ExpectedReturn).where(ExpectedReturn.id == bindparam("return_id"))
    return query.with_for_update(of=ExpectedReturn) if for_update else query


def find_return(return_id: uuid.UUID, *, for_update: bool = False) -> ExpectedReturn:
    audit_target("return", return_id)
    principal = current_principal()
    expected = get_session().scalars(return_query(for_update), {"return_id": return_id}).first()
    if expected is None:
        abort(404, message="No such return.")
    if not principal.cleared_for(expected.classification):
        audit_detail(f"refused: clearance {principal.clearance} below {expected.classification}")
        abort(404, message="No such return.")
    if not principal.is_centre and expected.organisation != principal.org:
        audit_detail(f"refused: return belongs to {expected.organisation}, caller is {principal.org}")
        abort(404, message="No such return.")
    return expected
