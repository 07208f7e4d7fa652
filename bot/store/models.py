"""SQLAlchemy models: incidents, timelines, timers, outbox, confirmations, audit log."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no zone: store naive UTC)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Incident(Base):
    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int] = mapped_column(Integer, unique=True)
    title: Mapped[str] = mapped_column(String(300))
    severity: Mapped[str] = mapped_column(String(2))
    status: Mapped[str] = mapped_column(String(20), default="investigating")
    reporter: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(20))
    commander: Mapped[str | None] = mapped_column(String(100))
    impact: Mapped[str | None] = mapped_column(Text)
    # The root cause's category (bot/domain/categories.py), set at resolution.
    category: Mapped[str | None] = mapped_column(String(30))
    affected: Mapped[str | None] = mapped_column(Text)
    # started: when the problem began (an alert's startsAt, else the declaration);
    # detected: when PIRA learned of it. MTTD = detected - started.
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    root_cause: Mapped[str | None] = mapped_column(Text)
    resolution: Mapped[str | None] = mapped_column(Text)
    last_update_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Alertmanager group this incident was opened from (dedup of re-sent groups).
    alert_group_key: Mapped[str | None] = mapped_column(String(500), unique=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    timeline: Mapped[list[TimelineEvent]] = relationship(
        back_populates="incident", order_by="TimelineEvent.id", cascade="all, delete-orphan"
    )

    @property
    def is_open(self) -> bool:
        return self.status != "resolved"


class TimelineEvent(Base):
    __tablename__ = "timeline"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(30))
    text: Mapped[str] = mapped_column(Text)

    incident: Mapped[Incident] = relationship(back_populates="timeline")


class Timer(Base):
    """One durable timer of an incident (or a calendar post when incident_id is None).

    ``key`` is unique: planning the same timer twice stores it once. A timer is
    done when ``fired_at`` or ``cancelled_at`` is set, in the same transaction
    as the posts it makes, so it takes effect once.
    """

    __tablename__ = "timers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    kind: Mapped[str] = mapped_column(String(30))
    step: Mapped[int] = mapped_column(Integer, default=0)
    target: Mapped[str | None] = mapped_column(String(100))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_timers_pending", "fired_at", "cancelled_at", "due_at"),)


class OutboxMessage(Base):
    """A post waiting for (or done with) delivery to one platform and destination."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(300), unique=True)
    platform: Mapped[str] = mapped_column(String(20), index=True)
    destination: Mapped[str] = mapped_column(String(100))
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    remote_ref: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Set when a send is admitted by the platform's rate limiter: an attempted post
    # may have arrived and is looked up before it is sent again.
    attempted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Sent in one message with others (a fold, bot/delivery_fold.py): the key of the
    # fold's first post, recorded with the attempt, so a fold tried before a restart is
    # tried again, or found, with exactly the same posts.
    fold_of: Mapped[str | None] = mapped_column(String(300))

    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_lane", "status", "platform", "destination", "id"),
    )


class Confirmation(Base):
    __tablename__ = "confirmations"

    code: Mapped[str] = mapped_column(String(12), primary_key=True)
    actor: Mapped[str] = mapped_column(String(100))
    command: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(100))
    outcome: Mapped[str] = mapped_column(String(20))
    detail: Mapped[str] = mapped_column(Text, default="")


class Override(Base):
    """``/oncall override``: someone is primary from ``starts_at`` to ``ends_at``."""

    __tablename__ = "oncall_overrides"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person: Mapped[str] = mapped_column(String(100))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_by: Mapped[str] = mapped_column(String(100))


class Room(Base):
    """Incident N's own place on a platform: a Slack channel or thread, a Telegram
    forum topic or reply chain."""

    __tablename__ = "rooms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(20))
    incident_number: Mapped[int] = mapped_column(Integer)
    chat_id: Mapped[str] = mapped_column(String(100))
    thread_id: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ux_rooms_platform_incident", "platform", "incident_number", unique=True),
    )


class ActionItem(Base):
    """A follow-up of an incident (the runbook's action items): what, who, by when."""

    __tablename__ = "action_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(100))
    due: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(100))
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    done_by: Mapped[str | None] = mapped_column(String(100))

    incident: Mapped[Incident] = relationship()


class StoredFile(Base):
    """A file PIRA made and posts (a postmortem, a review's invite, a report's chart):
    stored first, in the transaction that decides to post it, so the outbox row that
    sends it (``body["file"]``: this id) never points at nothing."""

    __tablename__ = "files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    kind: Mapped[str] = mapped_column(String(30))
    name: Mapped[str] = mapped_column(String(200))
    mime: Mapped[str] = mapped_column(String(100))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(100))


class RoomMessage(Base):
    """A chat message PIRA posted for incident N: a reply to it is about N."""

    __tablename__ = "room_messages"

    platform: Mapped[str] = mapped_column(String(20), primary_key=True)
    chat_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    incident_number: Mapped[int] = mapped_column(Integer)


class ButtonCode(Base):
    """A button whose command is too long for the platform's payload: the code sent in
    its place and the command (and question, for buttons that ask for text) behind it."""

    __tablename__ = "button_codes"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    command: Mapped[str] = mapped_column(Text)
    prompt: Mapped[str | None] = mapped_column(Text)


class Lease(Base):
    """Leadership among replicas: the holder runs the scheduler and the outbox worker
    until ``expires_at``; it renews well before, a standby takes over after."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The fencing token: +1 each time the lease changes hands. Work started under one
    # generation commits only while the lease is still at it.
    generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Maintenance(Base):
    """A maintenance window declared from chat (``/maintenance 2h reason``); planned
    windows come from the configuration. While one lasts, alert-declared incidents
    are announced but their pages and escalations wait for its end."""

    __tablename__ = "maintenance"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    reason: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(100))
    # Set by ``/maintenance end`` (ends_at is then moved to that moment).
    ended_by: Mapped[str | None] = mapped_column(String(100))


class PageToken(Base):
    """The acknowledgement link of one page sent to a phone (ntfy's "Acknowledge"):
    only its SHA-256 is stored; used once, and only while its page stands."""

    __tablename__ = "page_tokens"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    person: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookEvent(Base):
    """An inbound webhook event already taken (PagerDuty's event id): a replay is
    refused."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    source: Mapped[str] = mapped_column(String(30))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
