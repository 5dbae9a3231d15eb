"""Who may see what. Anything a caller may not see answers 404 (never 403), so its existence
is not revealed; the refusal is audited with the reason."""

from __future__ import annotations

import uuid

from flask_smorest import abort
from sqlalchemy import Select, select

from services.dissemination.models import Dissemination, Package
from shared.audit import audit_target
from shared.auth import Principal, current_principal
from shared.db import get_session


def find_package(package_id: uuid.UUID, *, for_update: bool = False) -> Package:
    audit_target("package", package_id)
    principal = current_principal()
    query = select(Package).where(Package.id == package_id)
    if for_update:
        query = query.with_for_update()
    package = get_session().scalars(query).first()
    if package is None:
        abort(404, message="No such package.")
    if not principal.cleared_for(package.classification):
        _refuse(f"clearance {principal.clearance} below {package.classification}", "No such package.")
    if not principal.is_centre:
        if package.status == "draft" or principal.org not in {d.organisation for d in package.disseminations}:
            _refuse(f"package not disseminated to {principal.org}", "No such package.")
    return package


def find_dissemination(dissemination_id: uuid.UUID, *, for_update: bool = False) -> Dissemination:
    audit_target("dissemination", dissemination_id)
    principal = current_principal()
    query = select(Dissemination).where(Dissemination.id == dissemination_id)
    if for_update:
        query = query.with_for_update()
    dissemination = get_session().scalars(query).first()
    if dissemination is None:
        abort(404, message="No such dissemination.")
    if not principal.cleared_for(dissemination.package.classification):
        _refuse(
            f"clearance {principal.clearance} below {dissemination.package.classification}", "No such dissemination."
        )
    if not principal.is_centre and dissemination.organisation != principal.org:
        _refuse(
            f"dissemination belongs to {dissemination.organisation}, caller is {principal.org}",
            "No such dissemination.",
        )
    return dissemination


def find_dissemination_to_acknowledge(dissemination_id: uuid.UUID) -> Dissemination:
    """The dissemination the caller acknowledges, locked: its own organisation's only (centre
    staff may read others', never acknowledge for them: 403)."""
    dissemination = find_dissemination(dissemination_id, for_update=True)
    if dissemination.organisation != current_principal().org:
        audit_detail_refused(f"acknowledging for {dissemination.organisation}, caller is {current_principal().org}")
        abort(403, message="Only the receiving organisation can acknowledge.")
    return dissemination


def inbox_query(principal: Principal) -> Select:
    """The caller organisation's disseminations within its clearance (the inbox, API and page)."""
    return (
        select(Dissemination)
        .join(Package)
        .where(
            Dissemination.organisation == principal.org,
            Package.classification.in_(principal.allowed_classifications),
        )
    )


INBOX_ORDER = (Dissemination.created_at.desc(), Dissemination.id)


def audit_detail_refused(reason: str) -> None:
    from shared.audit import audit_detail

    audit_detail(f"refused: {reason}")


def _refuse(reason: str, message: str) -> None:
    from shared.audit import audit_detail

    audit_detail(f"refused: {reason}")
    abort(404, message=message)
