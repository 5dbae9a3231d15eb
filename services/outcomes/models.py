"""The outcomes service's tables: expected returns, outcome returns (every amendment kept),
the chase policy and chase log, and its own copy of the organisation contacts it chases."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, inspect, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, object_session, relationship

from shared.db import TYPE_ANNOTATION_MAP, new_id, service_metadata, utcnow
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


NOTIFY_TARGETS = ("recipient", "escalation", "centre")


class Organisation(Base):
    """The contacts of an organisation, as the dissemination service last announced them."""

    __tablename__ = "organisations"
    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    region: Mapped[str | None] = mapped_column(String(80))
    email: Mapped[str | None] = mapped_column(String(254))
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    # The organisation's webhook signing secret, sealed as the dissemination service sent it.
    webhook_secret_sealed: Mapped[str | None] = mapped_column(Text)
    escalation_email: Mapped[str | None] = mapped_column(String(254))
    active: Mapped[bool] = mapped_column(default=True)


CHASE_CANDIDATES = "closed_at IS NULL AND final_returned_at IS NULL AND ladder_done_at IS NULL"


class ExpectedReturn(Base):
    """The outcome return a recipient owes for one dissemination (same id)."""

    __tablename__ = "expected_returns"
    __table_args__ = (
        Index("ix_expected_returns_org_due", "organisation", "due_at"),
        Index("ix_expected_returns_open_due", "closed_at", "final_returned_at", "due_at"),
        # The chase sweep's candidates: open, not returned, ladder not done, by due date. Returns
        # long overdue whose every step is sent fall out of it, however many pile up.
        Index(
            "ix_expected_returns_chase_due",
            "due_at",
            postgresql_where=text(CHASE_CANDIDATES),
            sqlite_where=text(CHASE_CANDIDATES),
        ),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    package_id: Mapped[uuid.UUID] = mapped_column(index=True)
    reference: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    threat_area: Mapped[str] = mapped_column(String(32))
    classification: Mapped[str] = mapped_column(String(32))
    organisation: Mapped[str] = mapped_column(String(16))
    issued_at: Mapped[datetime]
    due_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[datetime | None]
    first_returned_at: Mapped[datetime | None]
    final_returned_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    close_reason: Mapped[str | None] = mapped_column(String(40))
    overdue_emitted_at: Mapped[datetime | None]
    ladder_done_at: Mapped[datetime | None]
    extensions: Mapped[list] = mapped_column(default=list)
    # Passed on by a recipient: the return (= dissemination) it came from, and how many pass-ons deep.
    onward_from: Mapped[uuid.UUID | None] = mapped_column(index=True)
    onward_depth: Mapped[int] = mapped_column(default=0, server_default="0")

    # How many versions have been filed: the next filing is number ``versions + 1``, read from
    # the locked row, so filing costs the same however long the return's history is.
    versions: Mapped[int] = mapped_column(default=0, server_default="0")

    # Every version, oldest first. Loaded only when asked for (lists preload it for their page):
    # reading or filing one return never loads its whole history.
    outcomes: Mapped[list[OutcomeReturn]] = relationship(
        back_populates="expected_return", order_by="OutcomeReturn.version", lazy="select"
    )

    @property
    def current(self) -> OutcomeReturn | None:
        """The latest version: from the history if it is loaded, else the one row."""
        if "outcomes" not in inspect(self).unloaded:
            return self.outcomes[-1] if self.outcomes else None
        if not self.versions:
            return None
        session = object_session(self)
        assert session is not None, "a detached return cannot read its current outcome"
        return session.scalars(
            select(OutcomeReturn).where(OutcomeReturn.return_id == self.id, OutcomeReturn.version == self.versions)
        ).first()

    def status_at(self, now: datetime) -> str:
        if self.close_reason == "withdrawn":
            return "withdrawn"
        if self.final_returned_at:
            return "returned"
        if now > self.due_at:
            return "overdue"
        return "interim_returned" if self.first_returned_at else "open"


class OutcomeReturn(Base):
    """One filing of an outcome return. Amendments are new rows with the next version; the
    highest version is the current one. Nothing here is ever updated."""

    __tablename__ = "outcome_returns"
    __table_args__ = (UniqueConstraint("return_id", "version"),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    return_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("expected_returns.id"), index=True)
    version: Mapped[int]
    status: Mapped[str] = mapped_column(String(16))
    actions: Mapped[list]
    no_action_reason: Mapped[str | None] = mapped_column(Text)
    passed_to: Mapped[str | None] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(20))
    tasking_forum: Mapped[str | None] = mapped_column(String(200))
    results: Mapped[dict]
    attribution: Mapped[str | None] = mapped_column(String(16))
    strands: Mapped[list]
    usefulness: Mapped[int]
    accuracy: Mapped[str] = mapped_column(String(20))
    timeliness: Mapped[str] = mapped_column(String(20))
    comments: Mapped[str | None] = mapped_column(Text)
    filed_by: Mapped[str] = mapped_column(String(200))
    filed_via: Mapped[str] = mapped_column(String(8))
    filed_at: Mapped[datetime] = mapped_column(default=utcnow)

    expected_return: Mapped[ExpectedReturn] = relationship(back_populates="outcomes")


class ChasePolicy(Base):
    """The chase ladder; one row (id 1). Steps: {name, offset_seconds, notify}."""

    __tablename__ = "chase_policy"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False, default=1)
    steps: Mapped[list]
    updated_by: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChaseEntry(Base):
    """One chase step for one return: claimed once (the unique constraint), then sent."""

    __tablename__ = "chase_log"
    __table_args__ = (
        UniqueConstraint("return_id", "step"),
        Index("ix_chase_log_result", "result", "planned_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    return_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("expected_returns.id"), index=True)
    step: Mapped[str] = mapped_column(String(40))
    notify: Mapped[str] = mapped_column(String(16))
    planned_at: Mapped[datetime]
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    result: Mapped[str] = mapped_column(String(16), default="pending")
    channel: Mapped[str | None] = mapped_column(String(16))
    address: Mapped[str | None] = mapped_column(String(500))
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)


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
