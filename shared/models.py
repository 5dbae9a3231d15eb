"""Tables every service keeps for itself: outbox, inbox, idempotency records, audit log.

Each service's ``models.py`` calls ``build_shared_models(Base)`` so these tables live in
that service's own metadata, schema and migrations.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.db import utcnow

DELIVERY_STATUSES = ("pending", "delivered", "dead")


@dataclass(frozen=True)
class SharedModels:
    OutboxEvent: type
    OutboxDelivery: type
    InboxEvent: type
    IdempotencyRecord: type
    AuditEntry: type


def build_shared_models(Base: type) -> SharedModels:  # noqa: N803 - a class is passed
    class OutboxEvent(Base):
        """An event, written in the same transaction as the change that caused it."""

        __tablename__ = "outbox_events"
        position: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
        id: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
        type: Mapped[str] = mapped_column(String(80), index=True)
        aggregate_id: Mapped[str] = mapped_column(String(80), index=True)
        payload: Mapped[dict]
        occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
        deliveries: Mapped[list[OutboxDelivery]] = relationship(back_populates="event", lazy="selectin")

        def as_message(self, source: str) -> dict:
            return {
                "id": str(self.id),
                "type": self.type,
                "source": source,
                "position": self.position,
                "aggregate_id": self.aggregate_id,
                "occurred_at": self.occurred_at.isoformat(),
                "payload": self.payload,
            }

    class OutboxDelivery(Base):
        """One event's delivery to one subscriber: pending until delivered, or dead after the last try."""

        __tablename__ = "outbox_deliveries"
        __table_args__ = (
            UniqueConstraint("event_id", "subscriber"),
            Index("ix_outbox_deliveries_status_subscriber", "status", "subscriber"),
        )
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
        event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("outbox_events.id", ondelete="CASCADE"))
        subscriber: Mapped[str] = mapped_column(String(40))
        status: Mapped[str] = mapped_column(String(16), default="pending")
        attempts: Mapped[int] = mapped_column(default=0)
        last_error: Mapped[str | None] = mapped_column(Text)
        last_attempt_at: Mapped[datetime | None]
        delivered_at: Mapped[datetime | None]
        event: Mapped[OutboxEvent] = relationship(back_populates="deliveries")

    class InboxEvent(Base):
        """An event this service has applied; a redelivery of the same id changes nothing."""

        __tablename__ = "inbox_events"
        event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
        type: Mapped[str] = mapped_column(String(80))
        source: Mapped[str] = mapped_column(String(40))
        received_at: Mapped[datetime] = mapped_column(default=utcnow)

    class IdempotencyRecord(Base):
        """The first answer to a POST sent with an ``Idempotency-Key``, replayed on a retry."""

        __tablename__ = "idempotency_records"
        __table_args__ = (UniqueConstraint("principal", "key"),)
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

    class AuditEntry(Base):
        """Who did what, when, to which record, and the answer they got."""

        __tablename__ = "audit_log"
        __table_args__ = (
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

    return SharedModels(
        OutboxEvent=OutboxEvent,
        OutboxDelivery=OutboxDelivery,
        InboxEvent=InboxEvent,
        IdempotencyRecord=IdempotencyRecord,
        AuditEntry=AuditEntry,
    )
