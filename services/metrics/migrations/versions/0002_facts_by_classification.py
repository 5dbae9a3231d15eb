"""facts by classification

Every pre-aggregated figure is split by the classification of the packages it counts, so each
reader adds up only the markings their clearance allows. The figures are recomputed from the
``packages`` and ``returns`` tables (the facts are the sum of what each return and package
contributes, see ``projections.facts_from_state``), so no rebuild from the event logs is needed.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 18:00:00

"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    from services.metrics.projections import FIGURES_COLUMNS, ONWARD_COLUMNS, facts_from_state

    op.drop_table("facts")
    op.create_table(
        "facts",
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("metric", sa.String(length=80), nullable=False),
        sa.Column("classification", sa.String(length=32), server_default="", nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", "metric", "classification", name=op.f("pk_facts")),
    )
    session = Session(bind=op.get_bind())
    try:
        # Package-scope facts: kept in the facts until 0008 moved them to the package's row.
        facts_from_state(  # the columns added by 0004 and 0007 absent; the hours in the facts until 0010
            session, absent=ONWARD_COLUMNS + FIGURES_COLUMNS, package_scope=True, hours_apart=False
        )
        session.flush()
    finally:
        session.close()


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT scope, key, metric, SUM(value) FROM facts GROUP BY scope, key, metric")).all()
    op.drop_table("facts")
    facts = op.create_table(
        "facts",
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("metric", sa.String(length=80), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", "metric", name=op.f("pk_facts")),
    )
    if rows:
        op.bulk_insert(facts, [{"scope": s, "key": k, "metric": m, "value": v} for s, k, m, v in rows])
