"""a partial index for the chase sweep's candidates

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 05:00:00

The sweep asks for open returns, not returned, whose ladder is not done, by due date. The older
index (closed_at, final_returned_at, due_at) also holds every long-overdue return whose steps
have all gone, which the sweep then reads and filters out; this one holds only the candidates.
"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = "0006"
down_revision: Union[str, Sequence[str], None] = "0005"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

CANDIDATES = "closed_at IS NULL AND final_returned_at IS NULL AND ladder_done_at IS NULL"


def upgrade() -> None:
    op.create_index(
        "ix_expected_returns_chase_due",
        "expected_returns",
        ["due_at"],
        postgresql_where=sa.text(CANDIDATES),
        sqlite_where=sa.text(CANDIDATES),
    )


def downgrade() -> None:
    op.drop_index("ix_expected_returns_chase_due", table_name="expected_returns")
