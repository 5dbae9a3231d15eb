"""the organisation's sealed webhook signing secret, from organisation.updated

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 00:00:00

Copies made before this change have none: chases for such an organisation go by e-mail (never
an unsigned webhook) until the dissemination service announces its secret.
"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("webhook_secret_sealed", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.drop_column("webhook_secret_sealed")
