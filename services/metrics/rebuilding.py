"""Rebuilding the read model from scratch by replaying the event logs the other services keep
(``/internal/events/log``). Because every handler adds differences, replaying the same events
in any order ends in the same figures as the live model."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import delete
from sqlalchemy.orm import Session

from services.metrics.models import (
    Fact,
    HoursToReturn,
    InboxEvent,
    Organisation,
    PackageState,
    ReturnState,
    TimelineEntry,
)
from services.metrics.projections import apply_events, id_of, lock_projection
from shared.inbox import record_received, unseen_positions

SOURCES = ("dissemination", "outcomes")
BATCH = 2000

FetchPage = Callable[[str, int, int], dict]


def event_stream(fetch_page: FetchPage, source: str, page_size: int = 1000) -> Iterator[dict]:
    """A source's events in its log's order; the next page fetched while this one is applied."""
    for events in read_ahead(event_pages(fetch_page, source, page_size)):
        yield from events


def event_pages(fetch_page: FetchPage, source: str, page_size: int) -> Iterator[list[dict]]:
    after = 0
    while True:
        page = fetch_page(source, after, page_size)
        yield page["events"]
        if len(page["events"]) < page_size:
            return
        after = page["next_after"]


def read_ahead(items: Iterable, depth: int = 2) -> Iterator:
    """``items``, produced by a thread of their own up to ``depth`` ahead of the consumer: the
    next page is fetched (or the next batch made) while the last is applied, whose time is half
    waiting on PostgreSQL. The producer's error is raised to the consumer, after what came before
    it; a consumer that stops early stops the producer."""
    iterator, end = iter(items), object()
    # One worker: the items are made one at a time, in order.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as producer:
        ahead = deque(producer.submit(next, iterator, end) for _ in range(max(depth, 1)))
        try:
            while (item := ahead.popleft().result()) is not end:
                ahead.append(producer.submit(next, iterator, end))
                yield item
        finally:
            for future in ahead:
                future.cancel()


def rebuild(session: Session, fetch_page: FetchPage, sources=SOURCES) -> int:
    """Empty the read model and replay every source's log, merged by time. Returns the number
    of events applied."""
    lock_projection(session)  # no live batch between its reads and its writes sees the tables go
    for model in (Fact, HoursToReturn, TimelineEntry, ReturnState, PackageState, Organisation, InboxEvent):
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
    # The live inbox's dedupe, but not its savepoints and one-at-a-time retry: an event the
    # projection refuses must stop a rebuild, not leave a gap in the figures.
    lock_projection(session)  # before the inbox, as the live inbox takes it (shared.inbox)
    ids = [id_of(str(event["id"])) for event in events]
    positions = unseen_positions(session, InboxEvent, ids)
    fresh = [events[position] for position in positions]
    fresh_ids = [ids[position] for position in positions]
    # The inbox's rows go out with the projection's writes, after its reads (shared.db.pipelined_writes).
    apply_events(session, fresh, with_writes=lambda: record_received(session, InboxEvent, fresh, fresh_ids))
    session.commit()
    return len(fresh)
