"""each expected return counts its filed versions

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 04:00:00

``versions``: how many outcome versions the return has. Filing numbers the next version from it
(read under the return's row lock) instead of loading the whole history, so filing costs the
same however often a return has been amended. Filled from the versions already filed.
"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = "0005"
down_revision: Union[str, Sequence[str], None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("expected_returns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("versions", sa.Integer(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE expected_returns SET versions = ("
        "SELECT coalesce(max(version), 0) FROM outcome_returns WHERE outcome_returns.return_id = expected_returns.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("expected_returns", schema=None) as batch_op:
        batch_op.drop_column("versions")
