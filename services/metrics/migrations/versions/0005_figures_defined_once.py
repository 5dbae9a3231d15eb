"""figures defined once

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 02:00:00

Three facts changed meaning (``services/metrics/definitions.py``, docs/figures.md): a return
filed counts as acknowledged and delivered; ``final_actioned`` (final returns whose current
version reports action) is new, the actioned rate's numerator; and every result kind is named in
a package's verdict reason. The facts are recomputed from the ``packages`` and ``returns`` tables
(see ``projections.facts_from_state``) and every verdict is refreshed; no table changes shape.
"""

from typing import Sequence, Union

from alembic import op
from sqlalchemy import select
from sqlalchemy.orm import Session, defer


revision: str = "0005"
down_revision: Union[str, Sequence[str], None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    from services.metrics.models import PackageState
    from services.metrics.projections import FIGURES_COLUMNS, facts_from_state, refresh_verdict

    session = Session(bind=op.get_bind())
    try:
        facts_from_state(session, absent=FIGURES_COLUMNS, package_scope=True, hours_apart=False)  # until 0008, 0010
        session.flush()
        not_yet = [defer(column, raiseload=True) for column in FIGURES_COLUMNS]  # added by 0007
        for package in session.scalars(select(PackageState).options(*not_yet)).all():
            refresh_verdict(session, package)
        session.flush()
    finally:
        session.close()


def downgrade() -> None:
    # The new facts are a superset of the old; the old code reads the ones it knows.
    pass
