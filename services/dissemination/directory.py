"""The organisation directory: seeding the real UK forces and ROCUs, and admin edits.

Every change emits ``organisation.updated`` so the other services keep their own copy of the
contacts they need (escalation e-mail, webhook) without reading this service's tables.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.dissemination.models import Organisation, shared_models
from shared.events import emit
from shared.settings import Settings

SEED_FILE = Path(__file__).parent / "seed" / "organisations.json"


def seed_entries() -> list[dict]:
    return json.loads(SEED_FILE.read_text())


def seed_directory(session: Session, settings: Settings) -> tuple[int, int]:
    """Add the seed organisations that are missing; existing entries (and admins' edits to
    them) are left as they are. Returns (added, already present)."""
    existing = set(session.scalars(select(Organisation.code)))
    added = 0
    for entry in seed_entries():
        if entry["code"] in existing:
            continue
        create_organisation(session, settings, entry)
        added += 1
    session.commit()
    return added, len(existing)


def create_organisation(session: Session, settings: Settings, values: dict) -> Organisation:
    organisation = Organisation(**values)
    session.add(organisation)
    session.flush()
    emit(session, shared_models, settings, "organisation.updated", organisation.code, organisation.as_event())
    return organisation


def update_organisation(session: Session, settings: Settings, organisation: Organisation, values: dict) -> None:
    for name, value in values.items():
        setattr(organisation, name, value)
    session.flush()
    emit(session, shared_models, settings, "organisation.updated", organisation.code, organisation.as_event())


def known_codes(session: Session, codes: list[str]) -> set[str]:
    if not codes:
        return set()
    return set(
        session.scalars(select(Organisation.code).where(Organisation.code.in_(codes), Organisation.active.is_(True)))
    )
