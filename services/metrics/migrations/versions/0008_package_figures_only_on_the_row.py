"""a package's own figures only on its row

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 06:00:00

Since 0007 each package's own figures were kept twice: on its row (``packages.figures``) and as
facts under scope ``package``, seven rows in ten of the facts table (1.17M of 1.17M + 0.28M at
100k returns), each written by every batch that touched the package. From here they are kept on
the row alone (docs/performance.md). Each package's figures and verdict are recomputed from its
returns, a package its returns name but whose ``package.issued`` has not arrived gets its row
(undescribed, shown to no one, as the projection now does), and the package-scope facts go.
Downgrade writes them back from the rows (the undescribed rows stay: 0007 shows them to nobody
too). Stop the metrics service's web and worker processes before this upgrade: code from before
it, still applying events after it, would work the figures out from facts no longer there.
"""

from collections import Counter
from types import SimpleNamespace
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.orm import Session


revision: str = "0008"
down_revision: Union[str, Sequence[str], None] = "0007"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


# The tables as they are at this revision, named column by column: a later column the models
# gain must not be read here.
VERDICT_COLUMNS = (
    "verdict",
    "verdict_reason",
    "recipients",
    "final_returns",
    "actioned_returns",
    "arrests",
    "onward_arrests",
    "onward_recipients",
)


def _packages():
    from shared.db import JSONType, UTCDateTime

    return sa.table(
        "packages",
        sa.column("package_id", sa.Uuid()),
        sa.column("withdrawn_at", UTCDateTime()),
        sa.column("figures", JSONType),
        *(sa.column(name) for name in VERDICT_COLUMNS),
    )


FACTS = sa.table("facts", sa.column("scope"), sa.column("key"), sa.column("metric"), sa.column("classification"))


def upgrade() -> None:
    from services.metrics.projections import own_figures, package_figures_from_state, refresh_verdict

    packages = _packages()
    session = Session(bind=op.get_bind())
    try:
        figures = package_figures_from_state(session)
        known = set(session.scalars(sa.select(packages.c.package_id)))
        blank = {"verdict": "awaiting", "verdict_reason": ""} | {name: 0 for name in VERDICT_COLUMNS[2:]}
        placeholders = [{"package_id": package_id, **blank} for package_id in sorted(figures.keys() - known)]
        if placeholders:
            session.execute(sa.insert(packages), placeholders)
        updates = []
        for package_id, withdrawn_at in session.execute(sa.select(packages.c.package_id, packages.c.withdrawn_at)):
            package = SimpleNamespace(package_id=package_id, withdrawn_at=withdrawn_at)
            own = figures.get(package_id, Counter())
            refresh_verdict(session, package, own)  # type: ignore[arg-type]
            updates.append(
                {"id": package_id, "figures": own_figures(own)} | {name: getattr(package, name) for name in VERDICT_COLUMNS}
            )
        if updates:
            session.execute(sa.update(packages).where(packages.c.package_id == sa.bindparam("id")), updates)
        session.execute(sa.delete(FACTS).where(FACTS.c.scope == "package"))
        session.flush()
    finally:
        session.close()


def downgrade() -> None:
    from services.metrics.projections import PACKAGE_CLASSIFICATION, write_facts

    packages = _packages()
    session = Session(bind=op.get_bind())
    try:
        deltas: dict = {}
        for package_id, figures in session.execute(sa.select(packages.c.package_id, packages.c.figures)):
            for metric, value in (figures or {}).items():
                deltas[("package", str(package_id), metric, PACKAGE_CLASSIFICATION)] = value
        write_facts(session, deltas)
        session.flush()
    finally:
        session.close()
