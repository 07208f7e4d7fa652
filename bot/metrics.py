"""The bot's own metrics (PRODUCT.md §7), served at ``GET /metrics``.

**From the database, at scrape time** (:class:`StoreCollector`): what the database
records durably is counted there, not in the process.

* ``pira_incidents_declared_total{severity,source}``: rows of ``incidents``.
* ``pira_incidents_open{severity}``: incidents not resolved (0 for every severity).
* ``pira_pages_total{step}``: the ack chain's steps reached, one per fired ``page``
  timer (``step`` is the chain role it pages: primary, secondary, team_lead, …), and
  pages by hand, one per ``page`` timeline line (``step="manual"``). A page counts
  when it is made, whether or not the person could be reached (an unreachable page is
  said in the room). Escalation triggers count in ``pira_escalations_total`` only.
* ``pira_escalations_total{to}``: resolution-escalation triggers fired (``escalate``
  timers; ``to`` is the role or person of the configuration's trigger).
* ``pira_timer_lateness_seconds{kind}``: ``fired_at - due_at`` of every fired timer
  (page, escalate, reminder, overdue, handoff, …), bucketed by the database.
* ``pira_outbox_pending{platform}``: posts waiting for delivery (0 for every running
  platform), those waiting out a rate limit or a back-off included.
* ``pira_delivery_failures_total{platform,reason}``: posts given up (outbox rows marked
  failed; nothing ever un-fails them). ``reason`` is read from the row's error:
  ``unreachable`` (the destination does not exist for the bot: no chat id or channel
  configured, channel, chat or user not found, the bot not in the channel or blocked),
  ``rejected`` (the platform refused the post itself: too long, bad markup, the message
  to edit gone) or ``other``. A failed attempt that is retried (a rate limit, a
  timeout, a platform's 5xx) is not a failure: while it waits the post shows in
  ``pira_outbox_pending`` (the outbox keeps only a post's last error, so retried
  attempts cannot be counted by reason, and postponements that are not failures —
  waiting for the announcement to thread under — also count as attempts).

Why the database: these counters survive restarts and a change of leader, and every
replica answers the same numbers (aggregate them with ``max``, not ``sum``, across
replicas). A counter only falls if rows are deleted, which PIRA never does. The cost is
a handful of aggregate queries per scrape (full scans of ``incidents``, ``timers``,
``outbox`` and the ``page`` lines of ``timeline``: milliseconds at PIRA's sizes). If
the database cannot be reached, these series are left out of that scrape (a warning
is logged at most once a minute) and the rest is still served.

**In the process**: ``pira_command_duration_seconds{command}`` (a Histogram the router
feeds through :meth:`BotMetrics.observe_command`: the time a command's handler ran,
``command`` one of the router's commands, else ``other``) and ``pira_leader`` (1 while
this replica holds the leader's lease).

**Off the event loop.** prometheus_client collects synchronously; :meth:`BotMetrics.render`
runs the whole exposition on the store's threads (``Store.run``), which is what
``WebServer`` awaits for ``GET /metrics``. No label takes a value from a person: labels
outside the known sets (severities, sources, platforms, the configuration's roles,
timer kinds) become ``other``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy import ColumnElement, case, extract, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bot.calendar_posts import CALENDAR_KINDS
from bot.domain.severity import SEVERITIES
from bot.settings import Config
from bot.store import Store
from bot.store.models import Incident, OutboxMessage, TimelineEvent, Timer
from bot.timer_plan import INCIDENT_KINDS

log = logging.getLogger("pira.metrics")
K = TypeVar("K")

SEVERITY_LABELS: tuple[str, ...] = SEVERITIES
SOURCES = ("console", "slack", "telegram", "alertmanager")
PLATFORMS = ("console", "slack", "telegram")
# The runbook's chain (PRODUCT.md §7); the configuration's own roles are added.
PAGE_STEPS = ("primary", "secondary", "team_lead", "engineering_manager", "cto", "manual")
TIMER_KINDS = (*INCIDENT_KINDS, *CALENDAR_KINDS)
REASONS = ("unreachable", "rejected", "other")
OTHER = "other"
# Timers fire on a 1-second tick; a timer that came due while the bot was down is late
# by minutes or hours.
LATENESS_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
COMMAND_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_WARN_EVERY = 60.0  # seconds between two "database unavailable" warnings

# What a given-up post's error says (lowercased), by reason; first match wins. The
# texts are those of bot/adapters/slack_send.py, telegram_errors.py, *_rooms.py.
_UNREACHABLE = (
    "no slack id",
    "no telegram id",
    "is not configured",
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "user_not_found",
    "cannot_dm_bot",
    "chat not found",
    "forbidden",
    "blocked",
    "kicked",
    "not a member",
    "supergroup",
)
_REJECTED = (
    "msg_too_long",
    "no_text",
    "invalid_",
    "message_not_found",
    "cant_update_message",
    "edit_window_closed",
    "badrequest",
    "too long",
    "can't parse",
    "refused",
)


def failure_reason(error: str | None) -> str:
    """The ``reason`` label of a post given up with ``error``."""
    text = (error or "").lower()
    if any(word in text for word in _UNREACHABLE):
        return "unreachable"
    if any(word in text for word in _REJECTED):
        return "rejected"
    return OTHER


def _known(value: str | None, allowed: Iterable[str]) -> str:
    return value if value is not None and value in allowed else OTHER


class BotMetrics:
    """The bot's series in ``registry``: the database's (a :class:`StoreCollector`),
    the leader gauge and the command histogram. ``leading()``: this replica holds the
    lease; ``platforms()``: the platforms running; ``commands``: the router's command
    names (the only values of ``command``)."""

    def __init__(
        self,
        *,
        registry: CollectorRegistry,
        store: Store,
        config: Config,
        leading: Callable[[], bool],
        platforms: Callable[[], Iterable[str]],
        commands: Iterable[str],
    ) -> None:
        self.registry = registry
        self.store = store
        self.commands = frozenset(commands)
        self.command_duration = Histogram(
            "pira_command_duration_seconds",
            "Time a command's handler ran, by command (unknown names: other).",
            ["command"],
            buckets=COMMAND_BUCKETS,
            registry=registry,
        )
        registry.register(
            StoreCollector(store=store, config=config, leading=leading, platforms=platforms)
        )

    def observe_command(self, command: str, seconds: float) -> None:
        """The router's observer: one command ran for ``seconds``."""
        label = command if command in self.commands else OTHER
        self.command_duration.labels(label).observe(seconds)

    async def render(self) -> bytes:
        """The exposition of the whole registry, made on a database thread."""
        return await self.store.run(generate_latest, self.registry)


class StoreCollector:
    """Collects the database's series at scrape time, and ``pira_leader``. Call
    :meth:`collect` off the event loop (it queries the database)."""

    def __init__(
        self,
        *,
        store: Store,
        config: Config,
        leading: Callable[[], bool],
        platforms: Callable[[], Iterable[str]],
    ) -> None:
        self.store = store
        self.leading = leading
        self.platforms = platforms
        # Label values come from the configuration (bounded), never from a command.
        self.steps = frozenset({*PAGE_STEPS, *(step.role for step in config.oncall.chain)})
        self.targets = frozenset(t.to for p in config.severities.values() for t in p.escalate)
        self._warned = -_WARN_EVERY

    def describe(self) -> Iterator[Metric]:
        """The families, without samples (the registry checks names clash; no query)."""
        yield from self._families()[0].values()
        yield self._leader(0)

    def collect(self) -> Iterator[Metric]:
        yield self._leader(1 if self.leading() else 0)
        try:
            with self.store.read() as s:
                families = self._read(s)
        except SQLAlchemyError as exc:
            now = time.monotonic()
            if now - self._warned >= _WARN_EVERY:
                self._warned = now
                log.warning("metrics: database unavailable", extra={"error": type(exc).__name__})
            return
        yield from families

    # ---- the families -----------------------------------------------------------

    @staticmethod
    def _leader(value: int) -> GaugeMetricFamily:
        return GaugeMetricFamily("pira_leader", "1 on the replica that leads, else 0.", value)

    @staticmethod
    def _families() -> tuple[dict[str, Any], HistogramMetricFamily]:
        lateness = HistogramMetricFamily(
            "pira_timer_lateness_seconds",
            "How late timers fired (fired - due), by kind.",
            labels=["kind"],
        )
        families: dict[str, Any] = {
            "declared": CounterMetricFamily(
                "pira_incidents_declared_total",
                "Incidents declared, by severity and source.",
                labels=["severity", "source"],
            ),
            "open": GaugeMetricFamily(
                "pira_incidents_open", "Incidents not resolved, by severity.", labels=["severity"]
            ),
            "pages": CounterMetricFamily(
                "pira_pages_total",
                "Pages: ack-chain steps reached (by role) and pages by hand (manual).",
                labels=["step"],
            ),
            "escalations": CounterMetricFamily(
                "pira_escalations_total",
                "Resolution-escalation triggers fired, by target.",
                labels=["to"],
            ),
            "lateness": lateness,
            "pending": GaugeMetricFamily(
                "pira_outbox_pending",
                "Posts waiting for delivery, by platform.",
                labels=["platform"],
            ),
            "failures": CounterMetricFamily(
                "pira_delivery_failures_total",
                "Posts given up, by platform and reason (unreachable, rejected, other).",
                labels=["platform", "reason"],
            ),
        }
        return families, lateness

    def _read(self, s: Session) -> list[Metric]:
        families, lateness = self._families()
        declared = _tally(
            {(sev, src): 0.0 for sev in SEVERITY_LABELS for src in SOURCES},
            s.execute(
                select(Incident.severity, Incident.source, func.count()).group_by(
                    Incident.severity, Incident.source
                )
            ),
            lambda row: (_known(row[0], SEVERITY_LABELS), _known(row[1], SOURCES)),
        )
        for (severity, source), n in declared.items():
            families["declared"].add_metric([severity, source], n)
        open_now = _tally(
            dict.fromkeys(SEVERITY_LABELS, 0.0),
            s.execute(
                select(Incident.severity, func.count())
                .where(Incident.status != "resolved")
                .group_by(Incident.severity)
            ),
            lambda row: _known(row[0], SEVERITY_LABELS),
        )
        for severity, n in open_now.items():
            families["open"].add_metric([severity], n)
        self._paging(s, families)
        self._lateness(s, lateness)
        self._outbox(s, families)
        return list(families.values())

    def _paging(self, s: Session, families: dict[str, Any]) -> None:
        fired = s.execute(
            select(Timer.kind, Timer.target, func.count())
            .where(Timer.fired_at.is_not(None), Timer.kind.in_(("page", "escalate")))
            .group_by(Timer.kind, Timer.target)
        ).all()
        chain = self.steps - {"manual"}
        pages = _tally(
            dict.fromkeys(sorted(self.steps), 0.0),
            (row for row in fired if row[0] == "page"),
            lambda row: _known(row[1], chain),
        )
        pages["manual"] += (
            s.scalar(
                select(func.count()).select_from(TimelineEvent).where(TimelineEvent.kind == "page")
            )
            or 0
        )
        escalations = _tally(
            dict.fromkeys(sorted(self.targets), 0.0),
            (row for row in fired if row[0] == "escalate"),
            lambda row: _known(row[1], self.targets | chain),
        )
        for step, n in pages.items():
            families["pages"].add_metric([step], n)
        for to, n in escalations.items():
            families["escalations"].add_metric([to], n)

    def _lateness(self, s: Session, family: HistogramMetricFamily) -> None:
        late = _seconds_between(self.store.dialect, Timer.fired_at, Timer.due_at)
        within = [func.sum(case((late <= bound, 1), else_=0)) for bound in LATENESS_BUCKETS]
        by_kind: dict[str, list[float]] = {}
        for kind, count, total, *cumulative in s.execute(
            select(Timer.kind, func.count(), func.sum(late), *within)
            .where(Timer.fired_at.is_not(None))
            .group_by(Timer.kind)
        ):
            row = by_kind.setdefault(_known(kind, TIMER_KINDS), [0.0] * (len(within) + 2))
            for i, value in enumerate((count, total, *cumulative)):
                row[i] += float(value or 0)
        for kind, (count, total, *cumulative) in sorted(by_kind.items()):
            buckets = [(_le(b), c) for b, c in zip(LATENESS_BUCKETS, cumulative, strict=True)]
            family.add_metric([kind], [*buckets, ("+Inf", count)], total)

    def _outbox(self, s: Session, families: dict[str, Any]) -> None:
        running = sorted(set(self.platforms()))
        allowed = {*PLATFORMS, *running}
        pending = _tally(
            dict.fromkeys(running, 0.0),
            s.execute(
                select(OutboxMessage.platform, func.count())
                .where(OutboxMessage.status == "pending")
                .group_by(OutboxMessage.platform)
            ),
            lambda row: _known(row[0], allowed),
        )
        for platform, n in pending.items():
            families["pending"].add_metric([platform], n)
        failed = _tally(
            {(p, r): 0.0 for p in running for r in REASONS},
            s.execute(
                select(OutboxMessage.platform, OutboxMessage.error, func.count())
                .where(OutboxMessage.status == "failed")
                .group_by(OutboxMessage.platform, OutboxMessage.error)
            ),
            lambda row: (_known(row[0], allowed), failure_reason(row[1])),
        )
        for (platform, reason), n in failed.items():
            families["failures"].add_metric([platform, reason], n)


def _tally(
    counts: dict[K, float], rows: Iterable[Any], label: Callable[[Any], K]
) -> dict[K, float]:
    """Add each row's count (its last column) to ``counts`` under ``label(row)``; the
    zeros already in ``counts`` stay (a series exists before its first increment)."""
    for row in rows:
        key = label(row)
        counts[key] = counts.get(key, 0.0) + float(row[-1] or 0)
    return counts


def _seconds_between(dialect: str, later: Any, earlier: Any) -> ColumnElement[Any]:
    """``later - earlier`` in seconds, computed by the database."""
    if dialect == "postgresql":
        return extract("epoch", later - earlier)
    # SQLite keeps datetimes as text; julianday's double is exact to ~0.1 ms here, so
    # round to the millisecond (a timer exactly 1 s late stays in the 1 s bucket).
    return func.round((func.julianday(later) - func.julianday(earlier)) * 86400.0, 3)


def _le(bound: float) -> str:
    return str(float(bound))
