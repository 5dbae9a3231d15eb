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
Downgrade writes them back from the rows.
"""

from collections import Counter
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.orm import Session


revision: str = "0008"
down_revision: Union[str, Sequence[str], None] = "0007"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    from services.metrics.models import Fact, PackageState
    from services.metrics.projections import own_figures, package_figures_from_state, refresh_verdict

    session = Session(bind=op.get_bind())
    try:
        figures = package_figures_from_state(session)
        known = set(session.scalars(sa.select(PackageState.package_id)))
        for package_id in sorted(figures.keys() - known):
            session.add(
                PackageState(
                    package_id=package_id,
                    verdict="awaiting",
                    verdict_reason="",
                    recipients=0,
                    final_returns=0,
                    actioned_returns=0,
                    arrests=0,
                    onward_arrests=0,
                    onward_recipients=0,
                )
            )
        session.flush()
        for package in session.scalars(sa.select(PackageState).execution_options(yield_per=2000)):
            own = figures.get(package.package_id, Counter())
            refresh_verdict(session, package, own)
            package.figures = own_figures(own)
        session.flush()
        session.execute(sa.delete(Fact).where(Fact.scope == "package"))
        session.flush()
    finally:
        session.close()


def downgrade() -> None:
    from services.metrics.models import PackageState
    from services.metrics.projections import PACKAGE_CLASSIFICATION, write_facts

    session = Session(bind=op.get_bind())
    try:
        deltas: dict = {}
        for package_id, figures in session.execute(sa.select(PackageState.package_id, PackageState.figures)):
            for metric, value in (figures or {}).items():
                deltas[("package", str(package_id), metric, PACKAGE_CLASSIFICATION)] = value
        write_facts(session, deltas)
        session.flush()
    finally:
        session.close()
