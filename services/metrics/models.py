"""The metrics service's read model, built only from events.

``packages`` and ``returns`` hold the latest known state of each package and each return.
``facts`` holds every figure pre-aggregated: one row per (scope, key, metric), kept up to date
by adding the difference each event makes (see projections.py), so every leadership question
is answered by reading a handful of rows, however much data there is.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Float, Index, PrimaryKeyConstraint, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import TYPE_ANNOTATION_MAP, service_metadata
from shared.models import (
    AuditEntryMixin,
    IdempotencyRecordMixin,
    InboxEventMixin,
    OutboxDeliveryMixin,
    OutboxEventMixin,
    SharedModels,
)


class Base(DeclarativeBase):
    metadata = service_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


class Organisation(Base):
    __tablename__ = "organisations"
    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str | None] = mapped_column(String(32))
    region: Mapped[str | None] = mapped_column(String(80))


class PackageState(Base):
    __tablename__ = "packages"
    __table_args__ = (Index("ix_packages_issued", "issued_at"),)
    package_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # Empty until package.issued arrives (a withdrawal can arrive first).
    reference: Mapped[str | None] = mapped_column(String(32))
    title: Mapped[str | None] = mapped_column(String(200))
    threat_area: Mapped[str | None] = mapped_column(String(32), index=True)
    classification: Mapped[str | None] = mapped_column(String(32))
    source_evaluation: Mapped[int | None]
    intelligence_assessment: Mapped[str | None] = mapped_column(String(1))
    handling_code: Mapped[str | None] = mapped_column(String(1))
    issued_at: Mapped[datetime | None]
    due_at: Mapped[datetime | None]
    withdrawn_at: Mapped[datetime | None]
    # The verdict a leader sorts by, kept current by every event about the package.
    verdict: Mapped[str] = mapped_column(String(16), default="awaiting", index=True)
    verdict_reason: Mapped[str] = mapped_column(Text, default="")
    recipients: Mapped[int] = mapped_column(default=0)
    final_returns: Mapped[int] = mapped_column(default=0)
    actioned_returns: Mapped[int] = mapped_column(default=0)  # final returns reporting action
    arrests: Mapped[int] = mapped_column(default=0)
    # Of those, on the returns of organisations it was passed on to; and how many such returns.
    onward_arrests: Mapped[int] = mapped_column(default=0, server_default="0")
    onward_recipients: Mapped[int] = mapped_column(default=0, server_default="0")
    # The package's own figures (what its returns add up to, ``return_figures``), as the batch
    # that last touched it left them: read with the package, in one query (migrations 0007, 0008).
    figures: Mapped[dict | None]


class ReturnState(Base):
    """One expected return (= one dissemination), as the events last described it."""

    __tablename__ = "returns"
    return_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    package_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    organisation: Mapped[str | None] = mapped_column(String(16), index=True)
    due_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    delivery_failed: Mapped[bool] = mapped_column(default=False)
    acknowledged_at: Mapped[datetime | None]
    first_returned_at: Mapped[datetime | None]
    final_returned_at: Mapped[datetime | None]
    final_on_time: Mapped[bool | None]
    version: Mapped[int] = mapped_column(default=0)
    outcome_status: Mapped[str | None] = mapped_column(String(16))
    outcome: Mapped[dict | None]
    overdue: Mapped[bool] = mapped_column(default=False)
    withdrawn: Mapped[bool] = mapped_column(default=False)
    chases_sent: Mapped[int] = mapped_column(default=0)
    # Passed on by a recipient: the return it came from. Its results count as "onward".
    onward_from: Mapped[uuid.UUID | None]


class TimelineEntry(Base):
    """One event in a package's story, for its page on the dashboard: drafted and issued, then
    per recipient delivered (or not), acknowledged, each chase step, each return version, overdue,
    extended, withdrawn, passed on. One row per event (its id is the key, so an event applied
    twice adds one row); written from the event alone, never read back by the projection.

    ``kind`` says what happened; ``detail`` holds what the page says of it (the chase step, the
    return's version, status and outcome, the reason, the new due date)."""

    __tablename__ = "timeline"
    __table_args__ = (Index("ix_timeline_package", "package_id", "occurred_at"),)
    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    package_id: Mapped[uuid.UUID]
    return_id: Mapped[uuid.UUID | None]
    organisation: Mapped[str | None] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime]
    detail: Mapped[dict] = mapped_column(default=dict)


class Fact(Base):
    """A pre-aggregated figure: e.g. ('org', 'GMP', 'final', 'OFFICIAL') -> 41.

    ``classification`` is the marking of the packages the figure counts: a reader adds up the
    rows of the markings their clearance allows (at most one row per marking), so nobody is
    counted a package above their clearance. A package's own figures are not facts: they are
    kept on its row (``PackageState.figures``, since migration 0008).
    """

    __tablename__ = "facts"
    # No index carries ``value``: adding to a fact changes no indexed column, so PostgreSQL updates
    # the row in its page (a HOT update: no index entry written; migration 0010 leaves a fifth of
    # each page free for it). The hours histograms, whose index must carry their values, are kept
    # apart for that reason (``HoursToReturn``).
    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    metric: Mapped[str] = mapped_column(String(80), primary_key=True)
    classification: Mapped[str] = mapped_column(String(32), primary_key=True, default="", server_default="")
    value: Mapped[float] = mapped_column(Float, default=0)


class HoursToReturn(Base):
    """An organisation's histogram of final returns by whole hours from the package's issue to the
    first final return, for its median days to return (``figures.median_days_to_return``): one
    row per organisation, marking (as ``Fact.classification``) and hour; kept by the projection
    as the facts are (``projections.write_facts``).

    Its primary key carries the count, so an organisation's histogram (up to ~2,200 rows at 1M
    returns, otherwise each on a heap page of its own) is read from the index alone. Kept in the
    facts until migration 0010, that index stopped every fact from being updated in place."""

    __tablename__ = "hours_to_return"
    __table_args__ = (PrimaryKeyConstraint("organisation", "classification", "hours", postgresql_include=["value"]),)
    organisation: Mapped[str] = mapped_column(String(80))
    classification: Mapped[str] = mapped_column(String(32))
    hours: Mapped[int]
    value: Mapped[float] = mapped_column(Float, default=0)


class OutboxEvent(OutboxEventMixin, Base):
    pass


class OutboxDelivery(OutboxDeliveryMixin, Base):
    pass


class InboxEvent(InboxEventMixin, Base):
    pass


class IdempotencyRecord(IdempotencyRecordMixin, Base):
    pass


class AuditEntry(AuditEntryMixin, Base):
    pass


shared_models = SharedModels(OutboxEvent, OutboxDelivery, InboxEvent, IdempotencyRecord, AuditEntry)
