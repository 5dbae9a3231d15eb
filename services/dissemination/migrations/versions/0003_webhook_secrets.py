"""a webhook signing secret per organisation (Standard Webhooks), kept sealed

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 00:00:00

Organisations that already have a webhook get their secret on first use (the delivery job
generates it and announces it), because sealing needs WEBHOOK_SECRETS_KEY, which migrations
do not hold. No webhook is ever sent unsigned.
"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = "0003"
down_revision: Union[str, Sequence[str], None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("webhook_secret_sealed", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("webhook_secret_created_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.drop_column("webhook_secret_created_at")
        batch_op.drop_column("webhook_secret_sealed")
