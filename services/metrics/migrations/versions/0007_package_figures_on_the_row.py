"""a package's own figures on its row

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 11:00:00

``packages.figures``: the package's own facts (scope ``package``), kept by the projection with
the verdict, so that a package's metrics are read with the package in one query instead of three
(docs/performance.md). Filled here from the facts already there.
"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session


revision: str = "0007"
down_revision: Union[str, Sequence[str], None] = "0006"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column(
        "packages",
        sa.Column("figures", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True),
    )
    from services.metrics.models import PackageState
    from services.metrics.projections import facts_of_packages, own_figures
    from shared.db import chunks

    session = Session(bind=op.get_bind())
    try:
        package_ids = list(session.scalars(sa.select(PackageState.package_id)))
        for chunk in chunks(package_ids, 2000):
            figures = facts_of_packages(session, chunk)
            session.execute(
                sa.update(PackageState),
                [{"package_id": package_id, "figures": own_figures(figures[package_id])} for package_id in chunk],
            )
        session.flush()
    finally:
        session.close()


def downgrade() -> None:
    op.drop_column("packages", "figures")
