"""returns from organisations a package was passed on to

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 01:00:00

``onward_from`` on a return: the return whose recipient passed the package on. Results reported
on such a return count toward the package under attribution ``onward``; a package's row keeps
how many onward returns it has and their arrests, for its list and CSV. Facts already counted
are unchanged: no return before this revision was an onward one.
"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = "0004"
down_revision: Union[str, Sequence[str], None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("returns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("onward_from", sa.Uuid(), nullable=True))
    with op.batch_alter_table("packages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("onward_arrests", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("onward_recipients", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("packages", schema=None) as batch_op:
        batch_op.drop_column("onward_recipients")
        batch_op.drop_column("onward_arrests")
    with op.batch_alter_table("returns", schema=None) as batch_op:
        batch_op.drop_column("onward_from")
