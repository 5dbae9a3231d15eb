"""a fifth of each page of the returns' and packages' states left free for their updates

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 18:55:00

Each event about a return or a package changes its row (delivered, acknowledged, chased, filed,
overdue; the package's figures and verdict). PostgreSQL writes a changed row in place (a HOT
update: no new index entry) only when the row's page has room for its new version. The rows go
in in the order they are heard of, filling each page, and are changed later: over the 1M-return
bulk load only 41% of the returns' updates and 42% of the packages' were HOT, the rest a new row
on another page and an entry in each of their three indexes. Like the facts (0010), both tables
now leave a fifth of each page free (docs/performance.md, thirteenth round). It applies to pages
written from now on; ``VACUUM FULL returns, packages`` (which locks them while it runs) gives it
to the pages already there.
"""

from typing import Sequence, Union

from alembic import op


revision: str = "0011"
down_revision: Union[str, Sequence[str], None] = "0010"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TABLES = ("returns", "packages")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} SET (fillfactor = 80)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
