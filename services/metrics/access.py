"""Leadership (the centre's leaders and admins) reads everything their clearance allows; a
recipient only its own organisation's figures; anyone else gets 403. Centre roles in a force's
token count for nothing (``shared.auth``).

Clearance bounds every read: a package above the caller's clearance answers 404 (its existence
is not revealed; the refusal is audited with the reason), and no figure counts it
(``Principal.allowed_classifications`` picks the rows of the read model's facts they may add up).
"""

from __future__ import annotations

import functools
import uuid

from flask_smorest import abort
from sqlalchemy import Select, bindparam, select

from services.metrics.models import PackageState, ReturnState
from services.metrics.projections import PackageRow, ReturnRow, StateRow
from shared.audit import audit_detail, audit_target
from shared.auth import current_principal
from shared.db import get_session, table_of


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


# A package's returns as its metrics read them (``figures.package_metrics``), read beside it.
RETURN_COLUMNS = (
    "organisation",
    "withdrawn",
    "acknowledged_at",
    "first_returned_at",
    "final_returned_at",
    "overdue",
    "version",
    "outcome",
    "onward_from",
)


PACKAGE_COLUMNS = tuple(column.name for column in table_of(PackageState).columns)


@functools.cache
def package_and_returns_query() -> Select:
    """The package's row and its returns' columns, outer-joined: built once, so that each read
    spares the statement's construction and its cache key (about 6% of this read's CPU, py-spy)."""
    packages, returns = table_of(PackageState), table_of(ReturnState)
    return (
        select(
            packages,
            returns.c.return_id.label("return_id_"),
            *(returns.c[name].label(f"{name}_") for name in RETURN_COLUMNS),
        )
        .select_from(packages.outerjoin(returns, returns.c.package_id == packages.c.package_id))
        .where(packages.c.package_id == bindparam("package_id"))
    )


def find_package_and_returns(package_id: uuid.UUID) -> tuple[PackageRow, list[ReturnRow]]:
    """``find_package``, with the package's returns read in the same query (its metrics): plain
    rows through Core, as the projector reads them. The ORM's two entities per row (their
    identity map, state and loading) cost this read as much as its statement did.

    The one statement is the whole read, so the request's session is opened in autocommit: the
    statement is its own snapshot, the audit entry commits alone after it, and neither waits on
    a ``BEGIN`` or a ``COMMIT`` (three round trips to PostgreSQL instead of five)."""
    audit_target("package", package_id)
    query = package_and_returns_query()
    session = get_session(autocommit=True)
    rows = [row._mapping for row in session.connection().execute(query, {"package_id": package_id})]
    package = StateRow(**{name: rows[0][name] for name in PACKAGE_COLUMNS}) if rows else None
    cleared = cleared_package(package)
    found = [
        StateRow(**{name: row[f"{name}_"] for name in RETURN_COLUMNS}) for row in rows if row["return_id_"] is not None
    ]
    return cleared, found


def cleared_package(package: PackageRow | None) -> PackageRow:
    principal = current_principal()
    if package is None or package.issued_at is None:
        abort(404, message="No figures for this package.")
    if not principal.cleared_for(package.classification or ""):
        audit_detail(f"refused: clearance {principal.clearance} below {package.classification}")
        abort(404, message="No figures for this package.")
    return package
