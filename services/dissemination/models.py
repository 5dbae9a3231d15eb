"""The dissemination service's tables: organisation directory, packages, disseminations."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

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


ORGANISATION_KINDS = ("territorial_force", "rocu", "national", "other")
PACKAGE_STATUSES = ("draft", "issued", "withdrawn", "closed")
DELIVERY_STATUSES = ("pending", "delivered", "failed")


class Organisation(Base):
    __tablename__ = "organisations"
    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    region: Mapped[str | None] = mapped_column(String(80))
    email: Mapped[str | None] = mapped_column(String(254))
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    # The Standard Webhooks signing secret, sealed (shared.webhook_secrets): never shown again
    # after the answer that created it.
    webhook_secret_sealed: Mapped[str | None] = mapped_column(Text)
    webhook_secret_created_at: Mapped[datetime | None]
    escalation_email: Mapped[str | None] = mapped_column(String(254))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def as_event(self) -> dict:
        return {
            "code": self.code,
            "name": self.name,
            "kind": self.kind,
            "region": self.region,
            "email": self.email,
            "webhook_url": self.webhook_url,
            # Sealed: only the services holding WEBHOOK_SECRETS_KEY can open it.
            "webhook_secret_sealed": self.webhook_secret_sealed,
            "escalation_email": self.escalation_email,
            "active": self.active,
        }


class ReferenceCounter(Base):
    """The last package number used in a year: references are NCLCC-<year>-<6 digits>."""

    __tablename__ = "reference_counters"
    year: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(default=0)


class Package(Base):
    __tablename__ = "packages"
    __table_args__ = (Index("ix_packages_status_created", "status", "created_at"),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    reference: Mapped[str] = mapped_column(String(32), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(Text)
    threat_area: Mapped[str] = mapped_column(String(32), index=True)
    classification: Mapped[str] = mapped_column(String(32))
    source_evaluation: Mapped[int]
    intelligence_assessment: Mapped[str] = mapped_column(String(1))
    handling_code: Mapped[str] = mapped_column(String(1))
    handling_conditions: Mapped[str | None] = mapped_column(Text)
    outcome_due_at: Mapped[datetime | None]
    outcome_due_working_days: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(16), default="draft")
    created_by: Mapped[str] = mapped_column(String(200))
    created_by_org: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    issued_at: Mapped[datetime | None]
    issued_by: Mapped[str | None] = mapped_column(String(200))
    withdrawn_at: Mapped[datetime | None]
    withdrawn_by: Mapped[str | None] = mapped_column(String(200))
    withdrawal_reason: Mapped[str | None] = mapped_column(Text)

    recipient_links: Mapped[list[PackageRecipient]] = relationship(
        cascade="all, delete-orphan", order_by="PackageRecipient.position", lazy="selectin"
    )
    disseminations: Mapped[list[Dissemination]] = relationship(
        back_populates="package", order_by="Dissemination.organisation", lazy="selectin"
    )

    @property
    def recipients(self) -> list[str]:
        return [link.organisation for link in self.recipient_links]


class PackageRecipient(Base):
    """The organisations a package is (to be) sent to, as the issuer listed them."""

    __tablename__ = "package_recipients"
    package_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("packages.id", ondelete="CASCADE"), primary_key=True)
    organisation: Mapped[str] = mapped_column(ForeignKey("organisations.code"), primary_key=True)
    position: Mapped[int] = mapped_column(default=0)


class Dissemination(Base):
    """One package sent to one recipient. The outcomes service's expected return has the same id."""

    __tablename__ = "disseminations"
    __table_args__ = (
        UniqueConstraint("package_id", "organisation"),
        Index("ix_disseminations_org_created", "organisation", "created_at"),
        Index("ix_disseminations_delivery", "delivery_status", "created_at"),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    package_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("packages.id"), index=True)
    organisation: Mapped[str] = mapped_column(ForeignKey("organisations.code"))
    due_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivery_status: Mapped[str] = mapped_column(String(16), default="pending")
    delivery_channel: Mapped[str | None] = mapped_column(String(16))
    delivery_attempts: Mapped[int] = mapped_column(default=0)
    delivery_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(200))
    returned_at: Mapped[datetime | None]
    withdrawal_notified_at: Mapped[datetime | None]
    # The latest return filed for it, interim or final (from the outcomes service's events).
    return_status: Mapped[str | None] = mapped_column(String(16))
    # Passed on by a recipient: the dissemination it came from and how many pass-ons deep it is.
    onward_from: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("disseminations.id"), index=True)
    onward_depth: Mapped[int] = mapped_column(default=0, server_default="0")
    # This dissemination alone withdrawn (an onward one whose pass-on was amended away).
    withdrawn_at: Mapped[datetime | None]
    withdrawal_reason: Mapped[str | None] = mapped_column(Text)

    package: Mapped[Package] = relationship(back_populates="disseminations", lazy="joined", innerjoin=True)
    # The dissemination whose recipient passed the package on to this one (services/dissemination/onward.py).
    onward_source: Mapped[Dissemination | None] = relationship(remote_side=[id], lazy="select", viewonly=True)

    @property
    def latest_return(self) -> str | None:
        """The latest return filed for it (``interim`` or ``final``), or None."""
        return self.return_status or ("final" if self.returned_at else None)

    @property
    def status(self) -> str:
        """Where this dissemination stands, most advanced first."""
        if self.package.status == "withdrawn" or self.withdrawn_at:
            return "withdrawn"
        if self.returned_at:
            return "returned"
        if self.acknowledged_at:
            return "acknowledged"
        if self.delivered_at:
            return "delivered"
        if self.delivery_status == "failed":
            return "delivery_failed"
        return "pending_delivery"


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
