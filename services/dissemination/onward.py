"""Packages passed on by their recipients (onward disseminations).

A return reporting ``passed_on`` to an organisation (the outcomes service's ``outcome.filed``)
makes a dissemination of the same package to it, ``onward_from`` the dissemination the return
was about and one level deeper. It is delivered and acknowledged like any other, and announced
with ``package.issued`` (just the new dissemination) so the outcomes service expects, and
chases, a return from it too. An amendment that no longer passes it on, or passes it to
another organisation, withdraws it (and whatever was passed on from it): the organisation is
told, and ``dissemination.withdrawn`` closes its expected return. The outcomes service refuses
loops and chains deeper than ``ONWARD_MAX_DEPTH`` when the return is filed
(``services.outcomes.filing``); what is checked here again only keeps an event that slipped
past it (two pass-ons to one organisation at once) from doing anything.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, lazyload

from services.dissemination import delivery
from services.dissemination.models import Dissemination, Organisation, Package, shared_models
from services.dissemination.payloads import dissemination_event, package_event
from shared.db import after_commit, new_id
from shared.logs import get_logger
from shared.outbox import emit
from shared.settings import Settings

log = get_logger(__name__)

# What a batch of events (``services.dissemination.feedback.apply_events``) already knows, kept
# in ``session.info`` while it applies them.
BATCH_KEY = "dissemination_onward_batch"


@dataclass
class BatchKnowledge:
    """The disseminations a batch read and locked at once, and which of them have been passed on
    (any onward dissemination, live or withdrawn). Most returns pass nothing on: without this,
    each event read its dissemination again with the lock and looked for onward ones, two
    queries an event and half the service's CPU under ``make bench``."""

    locked: set[uuid.UUID] = field(default_factory=set)
    passed_on: set[uuid.UUID] = field(default_factory=set)


def follow_pass_on(session: Session, settings: Settings, event: dict) -> None:
    """Bring the dissemination's onward ones in line with the return just filed (any version)."""
    payload = event["payload"]
    source_id = uuid.UUID(payload["return_id"])
    batch: BatchKnowledge | None = session.info.get(BATCH_KEY)
    in_batch = batch is not None and source_id in batch.locked
    if in_batch:
        source = session.get(Dissemination, source_id)  # read and locked with the batch
    else:
        # Its package is not read again with the lock: it is looked up in the session when
        # needed (a batch has read every package it names).
        source = session.scalars(
            select(Dissemination)
            .where(Dissemination.id == source_id)
            .with_for_update(of=Dissemination)
            .options(lazyload(Dissemination.package))
        ).first()
    if source is None:
        return
    passed_to = (payload.get("outcome") or {}).get("passed_to")
    filed_at = datetime.fromisoformat(payload["filed_at"])
    nothing_passed_on = in_batch and batch is not None and source_id not in batch.passed_on
    onward = [] if nothing_passed_on else onward_of(session, source.id)
    # An older version arriving after a newer one (a relay retried late) changes nothing: each
    # onward dissemination remembers when the filing that made or withdrew it was filed.
    if any(filed_at < moment for d in onward for moment in (d.created_at, d.withdrawn_at) if moment):
        return
    for dissemination in onward:
        if dissemination.withdrawn_at is None and dissemination.organisation != passed_to:
            reason = (
                f"{source.organisation} amended its outcome return: the package is no longer passed on to "
                f"{dissemination.organisation}."
            )
            withdraw_onward(session, settings, dissemination, filed_at, reason)
    if passed_to and not any(d.organisation == passed_to and d.withdrawn_at is None for d in onward):
        pass_on(session, settings, source, passed_to, filed_at)


def onward_of(session: Session, dissemination_id: uuid.UUID) -> list[Dissemination]:
    return list(
        session.scalars(
            select(Dissemination)
            .where(Dissemination.onward_from == dissemination_id)
            .order_by(Dissemination.created_at)
        )
    )


def refusal(session: Session, settings: Settings, source: Dissemination, passed_to: str) -> str | None:
    """Why ``source``'s recipient may not pass the package to ``passed_to`` now; None if it may."""
    package = source.package
    if package.status != "issued" or source.withdrawn_at is not None:
        return f"package {package.reference} is no longer live for {source.organisation}"
    if source.onward_depth >= settings.onward_max_depth:
        return f"already passed on {source.onward_depth} times (ONWARD_MAX_DEPTH {settings.onward_max_depth})"
    if passed_to == settings.centre_org or passed_to in {d.organisation for d in package.disseminations}:
        return f"{passed_to} already holds package {package.reference}"
    organisation = session.get(Organisation, passed_to)
    if organisation is None or not organisation.active:
        return f"{passed_to} is not in the directory"
    return None


def pass_on(session: Session, settings: Settings, source: Dissemination, passed_to: str, at: datetime) -> None:
    """A dissemination to ``passed_to``, delivered after commit and announced to the outcomes
    service as issued, due ``ONWARD_OUTCOME_DAYS`` after the pass-on."""
    problem = refusal(session, settings, source, passed_to)
    if problem:
        # The filing rules refuse these; one can only slip through a race (two returns passing
        # to one organisation before either onward dissemination existed): the first one stands.
        log.warning("pass-on not followed", dissemination_id=str(source.id), passed_to=passed_to, reason=problem)
        return
    package = source.package
    onward = Dissemination(
        id=new_id(),
        package=package,  # in package.disseminations at once: a later event of the batch sees it
        organisation=passed_to,
        due_at=at + timedelta(days=settings.onward_outcome_days),
        created_at=at,
        onward_from=source.id,
        onward_depth=source.onward_depth + 1,
    )
    session.add(onward)
    session.flush()
    batch: BatchKnowledge | None = session.info.get(BATCH_KEY)
    if batch is not None:
        batch.passed_on.add(source.id)
    payload = package_event(package)
    payload["disseminations"] = [{**dissemination_event(onward), "issued_at": at.isoformat()}]
    emit(session, shared_models, settings, "package.issued", package.id, payload)
    after_commit(session, delivery.enqueue_later(settings, "deliver", onward.id))


def withdraw_onward(
    session: Session, settings: Settings, dissemination: Dissemination, at: datetime, reason: str
) -> None:
    """Withdraw one onward dissemination and everything passed on from it: each organisation is
    told, as when a package is withdrawn, and its expected return is closed."""
    for each in [dissemination, *passed_on_from(session, dissemination)]:
        if each.withdrawn_at is not None:
            continue
        each.withdrawn_at = at
        each.withdrawal_reason = reason
        session.flush()
        payload = dissemination_event(each)
        payload.update(withdrawn_at=at.isoformat(), reason=reason)
        emit(session, shared_models, settings, "dissemination.withdrawn", each.id, payload)
        after_commit(session, delivery.enqueue_later(settings, "withdrawal", each.id))


def passed_on_from(session: Session, dissemination: Dissemination) -> list[Dissemination]:
    """Every dissemination passed on from this one, at any depth."""
    found: list[Dissemination] = []
    level = [dissemination.id]
    while level:
        children = list(session.scalars(select(Dissemination).where(Dissemination.onward_from.in_(level))))
        found.extend(children)
        level = [child.id for child in children]
    return found


# -- the chain, as the centre reads it ---------------------------------------------------------


def chain_of(package: Package, centre: str) -> list[dict]:
    """Every dissemination of the package, the centre's recipients first, each followed by what
    its recipient passed on: who passed it on, the way from the centre in words
    ('NCLCC -> ROCU-NW (final return) -> GMP (no return yet)') and each one's return status."""
    by_id = {d.id: d for d in package.disseminations}
    children: dict[uuid.UUID | None, list[Dissemination]] = {}
    for d in package.disseminations:
        children.setdefault(d.onward_from if d.onward_from in by_id else None, []).append(d)
    links: list[dict] = []

    def walk(parent: uuid.UUID | None, path: list[str], by: str) -> None:
        for d in sorted(children.get(parent, []), key=lambda d: (d.created_at, d.organisation)):
            status = d.latest_return
            state = "withdrawn" if d.status == "withdrawn" else f"{status} return" if status else "no return yet"
            here = [*path, f"{d.organisation} ({state})"]
            links.append(
                {
                    "dissemination_id": d.id,
                    "organisation": d.organisation,
                    "passed_on_by": by,
                    "onward_from": d.onward_from,
                    "onward_depth": d.onward_depth,
                    "status": d.status,
                    "return_status": status,
                    "due_at": d.due_at,
                    "withdrawn_at": d.withdrawn_at,
                    "withdrawal_reason": d.withdrawal_reason,
                    "chain": " -> ".join(here),
                }
            )
            walk(d.id, here, d.organisation)

    walk(None, [centre], centre)
    return links
