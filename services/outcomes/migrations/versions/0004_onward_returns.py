"""expected returns from organisations a package was passed on to

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 01:00:00

``onward_from``: the return (= dissemination) whose recipient passed the package on, and
``onward_depth``: how many pass-ons deep (0 for the centre's own recipients). The filing rules
read them to refuse loops and chains deeper than ``ONWARD_MAX_DEPTH``.
"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = "0004"
down_revision: Union[str, Sequence[str], None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("expected_returns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("onward_from", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("onward_depth", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_index("ix_expected_returns_onward_from", ["onward_from"])


def downgrade() -> None:
    with op.batch_alter_table("expected_returns", schema=None) as batch_op:
        batch_op.drop_index("ix_expected_returns_onward_from")
        batch_op.drop_column("onward_depth")
        batch_op.drop_column("onward_from")
