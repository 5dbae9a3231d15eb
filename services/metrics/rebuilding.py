"""Rebuilding the read model from scratch by replaying the event logs the other services keep
(``/internal/events/log``). Because every handler adds differences, replaying the same events
in any order ends in the same figures as the live model."""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Callable, Iterator

from sqlalchemy import delete
from sqlalchemy.orm import Session

from services.metrics.models import Fact, InboxEvent, Organisation, PackageState, ReturnState, TimelineEntry
from services.metrics.projections import apply_events

SOURCES = ("dissemination", "outcomes")
BATCH = 2000

FetchPage = Callable[[str, int, int], dict]


def event_stream(fetch_page: FetchPage, source: str, page_size: int = 1000) -> Iterator[dict]:
    after = 0
    while True:
        page = fetch_page(source, after, page_size)
        yield from page["events"]
        if len(page["events"]) < page_size:
            return
        after = page["next_after"]


def rebuild(session: Session, fetch_page: FetchPage, sources=SOURCES) -> int:
    """Empty the read model and replay every source's log, merged by time. Returns the number
    of events applied."""
    for model in (Fact, TimelineEntry, ReturnState, PackageState, Organisation, InboxEvent):
        session.execute(delete(model))
    session.commit()
    streams = [event_stream(fetch_page, source) for source in sources]
    merged = heapq.merge(*streams, key=lambda event: event["occurred_at"])
    applied = 0
    batch: list[dict] = []
    for event in merged:
        batch.append(event)
        if len(batch) >= BATCH:
            applied += apply_batch(session, batch)
            batch = []
    if batch:
        applied += apply_batch(session, batch)
    return applied


def apply_batch(session: Session, events: list[dict]) -> int:
    """Apply events not applied before (the inbox decides), recording them, in one transaction."""
    ids = [uuid.UUID(e["id"]) for e in events]
    seen = set(
        session.scalars(
            InboxEvent.__table__.select().with_only_columns(InboxEvent.event_id).where(InboxEvent.event_id.in_(ids))
        )
    )
    fresh, fresh_ids = [], set()
    for event, event_id in zip(events, ids, strict=True):
        if event_id not in seen and event_id not in fresh_ids:
            fresh.append(event)
            fresh_ids.add(event_id)
    session.add_all(InboxEvent(event_id=uuid.UUID(e["id"]), type=e["type"], source=e["source"]) for e in fresh)
    apply_events(session, fresh)
    session.commit()
    return len(fresh)
