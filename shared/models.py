"""Tables every service keeps for itself: outbox, inbox, idempotency records, audit log.

Mixins: each service's ``models.py`` combines them with its own declarative ``Base``
(``class OutboxEvent(OutboxEventMixin, Base): pass``), so the tables live in that service's
own metadata, schema and migrations, and type checkers see every column. ``SharedModels``
gathers one service's classes for the shared code (outbox, inbox, audit, idempotency).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, declared_attr, mapped_column, relationship

from shared.db import new_id, utcnow

DELIVERY_STATUSES = ("pending", "delivered", "dead")


class _Model:
    if TYPE_CHECKING:  # the declarative Base each service mixes in provides it

        def __init__(self, **kwargs: Any) -> None: ...


class OutboxEventMixin(_Model):
    """An event, written in the same transaction as the change that caused it."""

    __tablename__ = "outbox_events"
    position: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=new_id)
    type: Mapped[str] = mapped_column(String(80), index=True)
    aggregate_id: Mapped[str] = mapped_column(String(80), index=True)
    payload: Mapped[dict]
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The request that caused it (``shared.logs``), carried to every subscriber so that one
    # action can be followed through the logs of each service; none for events of a job
    # started by the clock (the chase sweep) or from before the column existed.
    request_id: Mapped[str | None] = mapped_column(String(128))

    @declared_attr
    def deliveries(cls) -> Mapped[list[OutboxDeliveryMixin]]:
        return relationship("OutboxDelivery", back_populates="event", lazy="selectin")

    def as_message(self, source: str) -> dict:
        return event_message(self, source)


def event_message(event: Any, source: str) -> dict:
    """The message an event is sent as, from anything with an event's attributes (an
    ``OutboxEvent``, or a row the relay read as one: ``shared.outbox.Companion``)."""
    return {
        "id": str(event.id),
        "type": event.type,
        "source": source,
        "position": event.position,
        "aggregate_id": event.aggregate_id,
        "occurred_at": event.occurred_at.isoformat(),
        "payload": event.payload,
        "request_id": event.request_id,
    }


class OutboxDeliveryMixin(_Model):
    """One event's delivery to one subscriber: pending until delivered, or dead after the last try."""

    __tablename__ = "outbox_deliveries"

    @declared_attr.directive
    def __table_args__(cls) -> tuple:
        return (
            UniqueConstraint("event_id", "subscriber"),
            Index("ix_outbox_deliveries_status_subscriber", "status", "subscriber"),
        )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    # Copied per service (SQLAlchemy copies a mixin's mapped_column, its ForeignKey included).
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("outbox_events.id", ondelete="CASCADE"))
    subscriber: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]

    @declared_attr
    def event(cls) -> Mapped[OutboxEventMixin]:
        return relationship("OutboxEvent", back_populates="deliveries")


class InboxEventMixin(_Model):
    """An event this service has applied; a redelivery of the same id changes nothing."""

    __tablename__ = "inbox_events"
    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(80))
    source: Mapped[str] = mapped_column(String(40))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class IdempotencyRecordMixin(_Model):
    """The first answer to a POST sent with an ``Idempotency-Key``, replayed on a retry."""

    __tablename__ = "idempotency_records"

    @declared_attr.directive
    def __table_args__(cls) -> tuple:
        return (UniqueConstraint("principal", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    principal: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(500))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int]
    response_body: Mapped[str] = mapped_column(Text)
    response_headers: Mapped[dict]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntryMixin(_Model):
    """Who did what, when, to which record, and the answer they got."""

    __tablename__ = "audit_log"

    @declared_attr.directive
    def __table_args__(cls) -> tuple:
        return (
            Index("ix_audit_log_target", "target_type", "target_id"),
            Index("ix_audit_log_at", "at"),
        )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str | None] = mapped_column(String(200), index=True)
    actor_org: Mapped[str | None] = mapped_column(String(40), index=True)
    actor_roles: Mapped[str | None] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(500))
    action: Mapped[str] = mapped_column(String(80), index=True)
    target_type: Mapped[str | None] = mapped_column(String(40))
    target_id: Mapped[str | None] = mapped_column(String(80))
    status_code: Mapped[int]
    outcome: Mapped[str] = mapped_column(String(16), index=True)
    detail: Mapped[str | None] = mapped_column(Text)
    remote_addr: Mapped[str | None] = mapped_column(String(64))


@dataclass(frozen=True)
class SharedModels:
    """One service's shared tables, as the outbox, inbox, audit and idempotency code reach them."""

    OutboxEvent: type[OutboxEventMixin]
    OutboxDelivery: type[OutboxDeliveryMixin]
    InboxEvent: type[InboxEventMixin]
    IdempotencyRecord: type[IdempotencyRecordMixin]
    AuditEntry: type[AuditEntryMixin]
