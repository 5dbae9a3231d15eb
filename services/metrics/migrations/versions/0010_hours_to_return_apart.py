"""the hours histograms in a table of their own; the facts updated in place

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 09:50:00

0009's index on the hours histograms (``org_hours`` facts) carried their values, so that an
organisation's median days to return is read from the index alone. But an index carrying
``value`` stops PostgreSQL from updating any fact in place (a HOT update, which writes no index
entry): all 873,090 updates of a 100k-return load were non-HOT, and the facts' upsert was the
longest wait of a bulk batch. The histograms move to ``hours_to_return``, whose primary key
carries the count (read from the index alone, as before); the facts keep no index on ``value``
and a fifth of each page free for the new versions of their rows (docs/performance.md). The
free fifth applies to pages written from now on; ``VACUUM FULL facts`` (which locks the table
while it runs) gives it to the pages already there.
"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = "0010"
down_revision: Union[str, Sequence[str], None] = "0009"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "hours_to_return",
        sa.Column("organisation", sa.String(length=80), nullable=False),
        sa.Column("classification", sa.String(length=32), nullable=False),
        sa.Column("hours", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "organisation", "classification", "hours", name=op.f("pk_hours_to_return"), postgresql_include=["value"]
        ),
    )
    op.execute(
        "INSERT INTO hours_to_return (organisation, classification, hours, value) "
        "SELECT key, classification, CAST(metric AS INTEGER), value FROM facts WHERE scope = 'org_hours'"
    )
    op.execute("DELETE FROM facts WHERE scope = 'org_hours'")
    op.drop_index("ix_facts_org_hours", table_name="facts")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE facts SET (fillfactor = 80)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE facts RESET (fillfactor)")
    op.create_index(
        "ix_facts_org_hours",
        "facts",
        ["key", "classification", "metric"],
        postgresql_include=["value"],
        postgresql_where=sa.text("scope = 'org_hours'"),
        sqlite_where=sa.text("scope = 'org_hours'"),
    )
    op.execute(
        "INSERT INTO facts (scope, key, metric, classification, value) "
        "SELECT 'org_hours', organisation, CAST(hours AS VARCHAR(80)), classification, value FROM hours_to_return"
    )
    op.drop_table("hours_to_return")
