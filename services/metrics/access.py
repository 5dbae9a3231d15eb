"""Leadership (the centre's leaders and admins) reads everything their clearance allows; a
recipient only its own organisation's figures; anyone else gets 403. Centre roles in a force's
token count for nothing (``shared.auth``).

Clearance bounds every read: a package above the caller's clearance answers 404 (its existence
is not revealed; the refusal is audited with the reason), and no figure counts it
(``Principal.allowed_classifications`` picks the rows of the read model's facts they may add up).
"""

from __future__ import annotations

import uuid

from flask_smorest import abort
from sqlalchemy import select

from services.metrics.models import PackageState, ReturnState
from shared.audit import audit_detail, audit_target
from shared.auth import current_principal
from shared.db import get_session


def is_leader() -> bool:
    return current_principal().is_leader


def cleared() -> list[str]:
    """The classifications the caller may see and be counted."""
    return current_principal().allowed_classifications


def require_leader() -> None:
    if not is_leader():
        audit_detail("refused: leadership figures")
        abort(403, message="Only leadership may read these figures.")


def require_organisation(code: str) -> None:
    """Leaders read any organisation; a recipient only its own."""
    principal = current_principal()
    if is_leader():
        return
    if principal.has_any(("recipient",)) and principal.org == code:
        return
    audit_detail(f"refused: {principal.org} asked for {code}")
    abort(403, message="You may read only your own organisation's figures.")


def find_package(package_id: uuid.UUID) -> PackageState:
    """An issued package the caller is cleared for; 404 otherwise."""
    audit_target("package", package_id)
    return cleared_package(get_session().get(PackageState, package_id))


def find_package_and_returns(package_id: uuid.UUID) -> tuple[PackageState, list[ReturnState]]:
    """``find_package``, with the package's returns read in the same query (its metrics)."""
    audit_target("package", package_id)
    rows = (
        get_session()
        .execute(
            select(PackageState, ReturnState)
            .outerjoin(ReturnState, ReturnState.package_id == PackageState.package_id)
            .where(PackageState.package_id == package_id)
        )
        .all()
    )
    package = cleared_package(rows[0][0] if rows else None)
    return package, [ret for _, ret in rows if ret is not None]


def cleared_package(package: PackageState | None) -> PackageState:
    principal = current_principal()
    if package is None or package.issued_at is None:
        abort(404, message="No figures for this package.")
    if not principal.cleared_for(package.classification or ""):
        audit_detail(f"refused: clearance {principal.clearance} below {package.classification}")
        abort(404, message="No figures for this package.")
    return package
