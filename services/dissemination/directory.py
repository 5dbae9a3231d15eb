"""The organisation directory: seeding the real UK forces and ROCUs, and admin edits.

Every change emits ``organisation.updated`` so the other services keep their own copy of the
contacts they need (escalation e-mail, webhook and its sealed signing secret) without reading
this service's tables.

A webhook URL is checked by the SSRF guard (``shared.netguard``) before it is stored. Setting a
new one gives the organisation a new signing secret; ``rotate_webhook_secret`` gives another.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.dissemination.models import Organisation, shared_models
from shared import netguard, webhook_secrets
from shared.db import utcnow
from shared.errors import Conflict, Invalid
from shared.outbox import emit
from shared.settings import Settings

SEED_FILE = Path(__file__).parent / "seed" / "organisations.json"


def seed_entries() -> list[dict]:
    return json.loads(SEED_FILE.read_text())


def seed_directory(session: Session, settings: Settings) -> tuple[int, int]:
    """Add the seed organisations that are missing; existing entries (and admins' edits to
    them) are left as they are. Returns (added, already present)."""
    existing = set(session.scalars(select(Organisation.code)))
    organisations = [new_organisation(settings, entry) for entry in seed_entries() if entry["code"] not in existing]
    session.add_all(organisations)
    session.flush()  # once for all: their defaults are set before their events are written
    for organisation in organisations:
        emit(session, shared_models, settings, "organisation.updated", organisation.code, organisation.as_event())
    session.commit()
    return len(organisations), len(existing)


class WebhookUrlRefused(Invalid):
    """The webhook URL may not be used (answered 422 naming ``webhook_url``)."""

    def __init__(self, problem: str):
        super().__init__({"webhook_url": problem})


def webhook_url_problem(settings: Settings, url: str | None) -> str | None:
    """Why ``url`` may not be an organisation's webhook, or None."""
    if url is None:
        return None
    try:
        netguard.check_url(url, settings.webhook_allow_private)
    except netguard.AddressNotAllowed as error:
        return f"The webhook URL {error}."
    except netguard.NotResolved:
        return "The webhook URL's host does not resolve."
    return None


def new_organisation(settings: Settings, values: dict) -> Organisation:
    """An organisation not yet added to a session: its webhook checked, and given its secret."""
    problem = webhook_url_problem(settings, values.get("webhook_url"))
    if problem:
        raise WebhookUrlRefused(problem)
    organisation = Organisation(**values)
    if organisation.webhook_url:
        _new_secret(settings, organisation)
    return organisation


def create_organisation(session: Session, settings: Settings, values: dict) -> Organisation:
    """Add an organisation; one with a webhook gets its signing secret (``webhook_secret_sealed``)."""
    if session.get(Organisation, values["code"]) is not None:
        raise Conflict(f"Organisation {values['code']} already exists.")
    organisation = new_organisation(settings, values)
    session.add(organisation)
    session.flush()
    emit(session, shared_models, settings, "organisation.updated", organisation.code, organisation.as_event())
    return organisation


def update_organisation(session: Session, settings: Settings, organisation: Organisation, values: dict) -> bool:
    """Apply an admin's edit. A new webhook URL gets a new signing secret, no webhook no secret.
    Returns whether a new secret was made."""
    url_changed = "webhook_url" in values and values["webhook_url"] != organisation.webhook_url
    if url_changed:
        problem = webhook_url_problem(settings, values["webhook_url"])
        if problem:
            raise WebhookUrlRefused(problem)
    for name, value in values.items():
        setattr(organisation, name, value)
    new_secret = False
    if not organisation.webhook_url:
        organisation.webhook_secret_sealed = organisation.webhook_secret_created_at = None
    elif url_changed or not organisation.webhook_secret_sealed:
        _new_secret(settings, organisation)
        new_secret = True
    session.flush()
    emit(session, shared_models, settings, "organisation.updated", organisation.code, organisation.as_event())
    return new_secret


def rotate_webhook_secret(session: Session, settings: Settings, organisation: Organisation) -> None:
    """A new signing secret for the organisation's webhook; the old one stops verifying."""
    if not organisation.webhook_url:
        raise Conflict(f"Organisation {organisation.code} has no webhook; set webhook_url first.")
    _new_secret(settings, organisation)
    session.flush()
    emit(session, shared_models, settings, "organisation.updated", organisation.code, organisation.as_event())


def ensure_webhook_secret(session: Session, settings: Settings, code: str) -> Organisation | None:
    """The organisation, with a signing secret if it has a webhook (directories from before
    per-organisation secrets get theirs on first use, and announce it). Locks the row while
    making one, so two deliveries never make two."""
    organisation = session.get(Organisation, code)
    if organisation is None or not organisation.webhook_url or organisation.webhook_secret_sealed:
        return organisation
    organisation = session.get(Organisation, code, with_for_update=True, populate_existing=True)
    assert organisation is not None  # found just above; organisations are never deleted
    if organisation.webhook_url and not organisation.webhook_secret_sealed:
        rotate_webhook_secret(session, settings, organisation)
    return organisation


def _new_secret(settings: Settings, organisation: Organisation) -> None:
    organisation.webhook_secret_sealed = webhook_secrets.new_sealed(settings)
    organisation.webhook_secret_created_at = utcnow()


def known_codes(session: Session, codes: list[str]) -> set[str]:
    if not codes:
        return set()
    return set(
        session.scalars(select(Organisation.code).where(Organisation.code.in_(codes), Organisation.active.is_(True)))
    )
