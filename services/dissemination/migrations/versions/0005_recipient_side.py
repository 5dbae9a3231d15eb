"""what a recipient's pages and onward disseminations need

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 00:00:00

- ``return_status``: the status of the latest return filed for the dissemination (``interim`` or
  ``final``), learnt from the outcomes service's events, for the recipient's inbox.
- ``onward_from`` and ``onward_depth``: a dissemination created because a recipient passed the
  package on (0 for the centre's own recipients, 1 for the first pass-on, ...).
- ``withdrawn_at`` and ``withdrawal_reason``: one dissemination withdrawn on its own (an onward
  one whose pass-on was amended away), as against the whole package.
"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = "0005"
down_revision: Union[str, Sequence[str], None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("disseminations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("return_status", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("onward_from", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("onward_depth", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("withdrawal_reason", sa.Text(), nullable=True))
        batch_op.create_foreign_key("fk_disseminations_onward_from_disseminations", "disseminations", ["onward_from"], ["id"])
        batch_op.create_index("ix_disseminations_onward_from", ["onward_from"])


def downgrade() -> None:
    with op.batch_alter_table("disseminations", schema=None) as batch_op:
        batch_op.drop_index("ix_disseminations_onward_from")
        batch_op.drop_constraint("fk_disseminations_onward_from_disseminations", type_="foreignkey")
        batch_op.drop_column("withdrawal_reason")
        batch_op.drop_column("withdrawn_at")
        batch_op.drop_column("onward_depth")
        batch_op.drop_column("onward_from")
        batch_op.drop_column("return_status")
