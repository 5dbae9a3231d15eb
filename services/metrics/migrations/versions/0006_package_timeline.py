"""a timeline per package

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 04:00:00

``timeline``: one row per event in a package's story (issued, delivered, acknowledged, each chase
step, each return version, overdue, extended, withdrawn, passed on), for the package page of the
dashboard. Filled by the projection from now on; the history before this revision is filled by a
rebuild of the read model (``make metrics-rebuild``), which replays every event.
"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

from sqlalchemy.dialects import postgresql


revision: str = "0006"
down_revision: Union[str, Sequence[str], None] = "0005"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "timeline",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("package_id", sa.Uuid(), nullable=False),
        sa.Column("return_id", sa.Uuid(), nullable=True),
        sa.Column("organisation", sa.String(length=16), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_timeline")),
    )
    op.create_index("ix_timeline_package", "timeline", ["package_id", "occurred_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_timeline_package", table_name="timeline")
    op.drop_table("timeline")
