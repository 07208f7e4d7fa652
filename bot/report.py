"""The monthly report (runbook, "Incident Metrics"): MTTD, MTTR per severity, counts and
repeat incidents against the runbook's targets, with a chart.

A month is the incidents *detected* in it, in the configured time zone. MTTD counts
only incidents whose start is known (``details["start_known"]``: ``/started``,
``/incident ... --started``, an alert whose rule's ``for`` is known); the others are
counted as "start unknown", never scored 0. A repeat is an incident whose root-cause
category (never ``other``) is that of an incident resolved in the 30 days before its
detection; the rate is repeats over the incidents that have a category at all.

The arithmetic (:func:`compute`) is pure; :func:`collect` reads it from a session;
:class:`Reports` is what the command and the CLI call (the chart is rendered on the
store's threads, never on the event loop).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from bot import audit
from bot.clock import Clock
from bot.domain.incident import InvalidInput
from bot.domain.severity import SEVERITIES
from bot.domain.targets import (
    COUNT_TARGETS,
    MTTD_TARGET,
    MTTR_TARGETS,
    REPEAT_TARGET,
    REPEAT_WINDOW,
)
from bot.files import keep
from bot.messages import Destination
from bot.people import Actor
from bot.report_chart import render_chart
from bot.settings import Config
from bot.store import Store
from bot.store.models import Incident

if TYPE_CHECKING:
    from bot.outbox import Poster

CHART_KIND = "report-chart"
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


# ---- the month --------------------------------------------------------------------


@dataclass(frozen=True)
class Month:
    """A calendar month in the configured zone: ``[start, end)``; ``so_far`` when it
    is the current one."""

    label: str
    start: datetime
    end: datetime
    so_far: bool = False


def check_month(text: str) -> tuple[int, int]:
    """``YYYY-MM`` → (year, month); InvalidInput naming the form otherwise."""
    m = _MONTH.match(text.strip())
    if m is None or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1970:
        raise InvalidInput(f"{text[:20]!r} is not a month: write YYYY-MM, e.g. 2026-11")
    return int(m.group(1)), int(m.group(2))


def month_of(year: int, month: int, tz: ZoneInfo, now: datetime) -> Month:
    start = datetime(year, month, 1, tzinfo=tz)
    end = (
        datetime(year + 1, 1, 1, tzinfo=tz)
        if month == 12
        else datetime(year, month + 1, 1, tzinfo=tz)
    )
    return Month(label=f"{year:04d}-{month:02d}", start=start, end=end, so_far=start <= now < end)


def parse_month(text: str | None, *, now: datetime, tz: ZoneInfo) -> Month:
    """The month a person asked for (None: this month so far); not one still to come."""
    if text is None:
        local = now.astimezone(tz)
        return month_of(local.year, local.month, tz, now)
    found = month_of(*check_month(text), tz, now)
    if found.start > now:
        raise InvalidInput(f"{found.label} is still to come")
    return found


def previous_month(at: datetime, tz: ZoneInfo) -> Month:
    """The month before the one ``at`` falls in (the monthly post's)."""
    local = at.astimezone(tz)
    year, month = (local.year - 1, 12) if local.month == 1 else (local.year, local.month - 1)
    return month_of(year, month, tz, at)


# ---- the arithmetic ---------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """What the report needs of one incident."""

    number: int
    severity: str
    started_at: datetime
    detected_at: datetime
    resolved_at: datetime | None = None
    category: str | None = None
    start_known: bool = False

    @classmethod
    def of(cls, i: Incident) -> Facts:
        return cls(
            number=i.number,
            severity=i.severity,
            started_at=i.started_at,
            detected_at=i.detected_at,
            resolved_at=i.resolved_at,
            category=i.category,
            start_known=bool((i.details or {}).get("start_known")),
        )


@dataclass(frozen=True)
class Line:
    """One metric of the table: ``ok`` None when there is no data."""

    name: str
    value: str
    target: str
    ok: bool | None
    note: str | None = None

    @property
    def mark(self) -> str:
        return "" if self.ok is None else "✅" if self.ok else "❌"


@dataclass(frozen=True)
class MonthReport:
    month: Month
    counts: dict[str, int]
    mttd: timedelta | None
    start_unknown: int
    mttr: dict[str, timedelta | None]
    repeats: list[int]
    categorized: int
    # (the week's first day in the month, "MM-DD"; incidents per severity)
    weeks: list[tuple[str, dict[str, int]]] = field(default_factory=list)

    @property
    def repeat_rate(self) -> float | None:
        return len(self.repeats) / self.categorized if self.categorized else None

    def lines(self) -> list[Line]:
        out = [_time_line("MTTD", self.mttd, MTTD_TARGET, "no incident with a known start")]
        for sev, target in MTTR_TARGETS.items():
            out.append(_time_line(f"MTTR {sev}", self.mttr[sev], target, f"no {sev} resolved"))
        for sev, most in COUNT_TARGETS.items():
            n = self.counts[sev]
            out.append(Line(f"{sev} count", str(n), f"< {most}", n < most))
        rate = self.repeat_rate
        limit = f"< {percent(REPEAT_TARGET)}"
        if rate is None:
            empty = "no incident with a root-cause category"
            out.append(Line("Repeat incidents", "—", limit, None, empty))
        else:
            value = f"{percent(rate)} ({len(self.repeats)} of {self.categorized})"
            out.append(Line("Repeat incidents", value, limit, rate < REPEAT_TARGET))
        return out

    def data(self, late: str | None = None) -> dict[str, Any]:
        """The ``report`` (and ``monthly``) template's data: JSON, for the outbox."""
        return {
            "month": self.month.label,
            "so_far": self.month.so_far,
            "metrics": [{**asdict(x), "mark": x.mark} for x in self.lines()],
            "start_unknown": self.start_unknown,
            "total": sum(self.counts.values()),
            "counts": dict(self.counts),
            "repeats": list(self.repeats),
            "late": late,
        }


def compute(
    incidents: Sequence[Facts], month: Month, *, earlier: Sequence[Facts] = ()
) -> MonthReport:
    """The month's metrics from the incidents detected in it; ``earlier``: incidents
    resolved before it that may make one of them a repeat (the month's own count too)."""
    mine = [i for i in incidents if month.start <= i.detected_at < month.end]
    counts: dict[str, int] = {sev: sum(1 for i in mine if i.severity == sev) for sev in SEVERITIES}
    known = [i.detected_at - i.started_at for i in mine if i.start_known]
    mttr: dict[str, timedelta | None] = {
        sev: mean(
            [i.resolved_at - i.detected_at for i in mine if i.severity == sev and i.resolved_at]
        )
        for sev in SEVERITIES
    }
    pool = list({i.number: i for i in (*earlier, *incidents)}.values())
    with_category = [i for i in mine if i.category is not None]
    repeats = [i.number for i in with_category if _repeats(i, pool)]
    return MonthReport(
        month=month,
        counts=counts,
        mttd=mean(known),
        start_unknown=len(mine) - len(known),
        mttr=mttr,
        repeats=sorted(repeats),
        categorized=len(with_category),
        weeks=weeks(mine, month),
    )


def _repeats(i: Facts, pool: Sequence[Facts]) -> bool:
    if i.category in (None, "other"):
        return False
    since = i.detected_at - REPEAT_WINDOW
    return any(
        o.number != i.number
        and o.category == i.category
        and o.resolved_at is not None
        and since <= o.resolved_at < i.detected_at
        for o in pool
    )


def weeks(incidents: Sequence[Facts], month: Month) -> list[tuple[str, dict[str, int]]]:
    """Incidents per week (Monday to Sunday, cut at the month's ends) and severity."""
    tz = month.start.tzinfo
    first = month.start.date()
    last = (month.end - timedelta(days=1)).date()
    monday = first - timedelta(days=first.weekday())
    out: list[tuple[str, dict[str, int]]] = []
    while monday <= last:
        label = max(monday, first).strftime("%m-%d")
        out.append((label, dict.fromkeys(SEVERITIES, 0)))
        monday += timedelta(days=7)
    base = first - timedelta(days=first.weekday())
    for i in incidents:
        day = i.detected_at.astimezone(tz).date()
        index = (day - base).days // 7
        if 0 <= index < len(out):
            out[index][1][i.severity] += 1
    return out


def mean(values: Sequence[timedelta]) -> timedelta | None:
    return sum(values, timedelta()) / len(values) if values else None


def span(delta: timedelta) -> str:
    """``40 s``, ``4 min 30 s``, ``45 min``, ``2 h``, ``1 h 05 min`` (to the second)."""
    seconds = max(0, round(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min" + (f" {rest} s" if rest else "")
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h" + (f" {minutes:02d} min" if minutes else "")


def percent(rate: float) -> str:
    value = round(rate * 100, 1)
    return f"{value:.0f} %" if value == int(value) else f"{value:.1f} %"


def _time_line(name: str, value: timedelta | None, target: timedelta, empty: str) -> Line:
    if value is None:
        return Line(name, "—", f"< {span(target)}", None, empty)
    return Line(name, span(value), f"< {span(target)}", value < target)


# ---- from the database --------------------------------------------------------------


def collect(s: Session, month: Month) -> MonthReport:
    """The month's report from the incidents table (one read)."""
    rows = s.scalars(
        select(Incident).where(
            or_(
                (Incident.detected_at >= month.start) & (Incident.detected_at < month.end),
                # a day more: the window is exact per incident, in UTC, below
                (Incident.resolved_at >= month.start - REPEAT_WINDOW - timedelta(days=1))
                & (Incident.resolved_at < month.end)
                & Incident.category.is_not(None),
            )
        )
    )
    facts = [Facts.of(i) for i in rows]
    return compute(facts, month)


def post_report(
    s: Session,
    *,
    poster: Poster,
    report: MonthReport,
    chart: bytes,
    destination: Destination,
    template: str,
    by: str,
    now: datetime,
    late: str | None = None,
) -> int:
    """Store the chart and post it with the table as its caption, in the caller's
    transaction (the post's key is the file's: each report is posted once); returns the
    stored file's id."""
    stored = keep(
        s,
        incident_id=None,
        kind=CHART_KIND,
        name=f"pira-report-{report.month.label}.png",
        mime="image/png",
        content=chart,
        by=by,
        now=now,
    )
    key = f"report:{stored.id}"
    poster.post(s, None, destination, template, report.data(late), key, file=stored.id)
    return stored.id


class Reports:
    """``/report`` and ``pira report``: the month's metrics, its chart, its post."""

    def __init__(
        self,
        *,
        store: Store,
        config: Config,
        clock: Clock,
        poster: Poster,
        notify: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.poster = poster
        self._notify = notify

    def month(self, text: str | None) -> Month:
        return parse_month(text, now=self.clock.now(), tz=self.config.tz)

    def export(self, month: str | None) -> tuple[MonthReport, bytes]:
        """The report and its chart (PNG), posting nothing (``pira report``)."""
        found = self.month(month)
        with self.store.read() as s:
            report = collect(s, found)
        return report, render_chart(report)

    def post(
        self, *, month: str | None, room_incident: int | None, by: Actor, source: str
    ) -> MonthReport:
        """The report, and its chart posted with the table to the incident room it was
        asked from (else #incidents) in one transaction."""
        report, chart = self.export(month)
        destination = (
            Destination.incident(room_incident) if room_incident else Destination.incidents()
        )
        now = self.clock.now()
        with self.store.transaction() as s:
            audit.join(s, now, "ok", f"report {report.month.label} ({source})")
            post_report(
                s,
                poster=self.poster,
                report=report,
                chart=chart,
                destination=destination,
                template="report",
                by=by.handle,
                now=now,
            )
        self._notify()
        return report
