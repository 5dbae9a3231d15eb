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
from sqlalchemy import ARRAY, Select, String, Table, any_, bindparam, exists, select

from services.metrics.models import PackageState, ReturnState
from services.metrics.projections import PackageRow, ReturnRow, StateRow
from shared.audit import (
    audit_detail,
    audit_table,
    audit_target,
    entry_insert_where,
    entry_params,
    entry_written,
    foreseen_entry,
)
from shared.auth import current_principal
from shared.db import get_read_connection, get_session, table_of


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


@functools.cache
def package_read_with_entry_query(audit: Table) -> Select:
    """PostgreSQL: ``package_and_returns_query`` with the read's audit entry written by the same
    statement (a data-modifying CTE), where the caller may read the package (issued, and of a
    classification in ``:cleared``): one round trip, committed as one. The entry's id comes back
    on every row. SQLite has no ``INSERT`` in a ``WITH``: there, the entry follows the read."""
    packages = table_of(PackageState)
    readable = exists().where(
        packages.c.package_id == bindparam("package_id"),
        packages.c.issued_at.is_not(None),
        packages.c.classification == any_(bindparam("cleared", type_=ARRAY(String))),
    )
    entry = entry_insert_where(audit, readable).cte("entry")
    return package_and_returns_query().add_columns(select(entry.c.id).scalar_subquery().label("audit_entry_id_"))


def find_package_and_returns(package_id: uuid.UUID) -> tuple[PackageRow, list[ReturnRow]]:
    """``find_package``, with the package's returns read in the same query (its metrics): plain
    rows through Core, as the projector reads them. The ORM's two entities per row (their
    identity map, state and loading) cost this read as much as its statement did.

    The one statement is the whole read, so it goes on the request's connection in autocommit
    (``get_read_connection``): no ``BEGIN`` or ``COMMIT`` to wait on. On PostgreSQL the
    statement also writes the read's audit entry, foreseeing the answer
    (``package_read_with_entry_query``): one statement, where a transaction of a read and an
    insert took five round trips. The entry is
    corrected if the answer turns out otherwise (``shared.audit``); where the package is not one
    the caller may read, no entry is written with the read, and the refusal is recorded as any
    other."""
    audit_target("package", package_id)
    connection = get_read_connection()
    params: dict = {"package_id": package_id}
    entry = foreseen_entry() if connection.dialect.name == "postgresql" else None
    if entry is not None:
        query = package_read_with_entry_query(audit_table())
        params |= entry_params(entry) | {"cleared": cleared()}
    else:
        query = package_and_returns_query()
    rows = [row._mapping for row in connection.execute(query, params)]
    if entry is not None and rows and rows[0]["audit_entry_id_"] is not None:
        entry_written(rows[0]["audit_entry_id_"], entry)
    package = StateRow(**{name: rows[0][name] for name in PACKAGE_COLUMNS}) if rows else None
    readable = cleared_package(package)
    found = [
        StateRow(**{name: row[f"{name}_"] for name in RETURN_COLUMNS}) for row in rows if row["return_id_"] is not None
    ]
    return readable, found


def cleared_package(package: PackageRow | None) -> PackageRow:
    principal = current_principal()
    if package is None or package.issued_at is None:
        abort(404, message="No figures for this package.")
    if not principal.cleared_for(package.classification or ""):
        audit_detail(f"refused: clearance {principal.clearance} below {package.classification}")
        abort(404, message="No figures for this package.")
    return package
