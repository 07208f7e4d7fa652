"""The postmortem's Markdown, drafted from an incident's record: every section the
runbook's aftermath asks for, filled from what PIRA knows, and the judgement
sections left as headings for the review to fill. Pure: the record in, text out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from bot.domain.categories import CATEGORIES
from bot.domain.durations import format_duration, humanize
from bot.domain.incident import STATUS_LABELS, time_text
from bot.domain.targets import MTTD_TARGET, MTTR_TARGETS

TO_FILL = "_To be filled in at the post-incident review._"


@dataclass(frozen=True)
class Line:
    at: datetime
    actor: str
    text: str


@dataclass(frozen=True)
class ItemLine:
    id: int
    text: str
    owner: str | None
    due: str | None
    done: bool


@dataclass(frozen=True)
class Record:
    """What the postmortem is drafted from (read in one transaction)."""

    number: int
    title: str
    severity: str
    severity_name: str
    status: str
    reporter: str
    source: str
    commander: str | None
    impact: str | None
    affected: str | None
    category: str | None
    root_cause: str | None
    resolution: str | None
    started_at: datetime
    detected_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    details: dict[str, Any]
    timeline: Sequence[Line]
    items: Sequence[ItemLine]


def _cell(text: str | None) -> str:
    return (text or "—").replace("|", "\\|").replace("\n", " ")


def _against(span: timedelta, target: timedelta | None) -> str:
    if target is None:
        return f"{humanize(span)} (the runbook sets no target for this severity)"
    mark = "✅" if span < target else "❌"
    return f"{humanize(span)} (target < {format_duration(target)}) {mark}"


def write(r: Record, *, tz: tzinfo, now: datetime, version: int) -> str:
    def t(at: datetime | None) -> str:
        return time_text(at, tz) if at is not None else "—"

    start_known = bool(r.details.get("start_known"))
    out = [
        f"# Postmortem: #{r.number} {r.title}",
        "",
        f"_Draft {version}, written by PIRA from the incident record on {t(now)}. The "
        "sections marked to be filled in are for the post-incident review._",
        "",
        "## Summary",
        "",
        "| | |",
        "|---|---|",
        f"| Severity | {r.severity} ({_cell(r.severity_name)}) |",
        f"| Status | {STATUS_LABELS.get(r.status, r.status)} |",
        f"| Started | {t(r.started_at)}{'' if start_known else ' (not known: the declaration)'} |",
        f"| Detected | {t(r.detected_at)} |",
        f"| Acknowledged | {t(r.acknowledged_at)}"
        + (f" by @{_cell(r.acknowledged_by)}" if r.acknowledged_by else "")
        + " |",
        f"| Resolved | {t(r.resolved_at)} |",
        f"| Commander | {'@' + _cell(r.commander) if r.commander else '—'} |",
        f"| Reported by | @{_cell(r.reporter)} ({_cell(r.source)}) |",
        f"| Category | {CATEGORIES.get(r.category or '', '—')} |",
        "",
        "## Impact",
        "",
        r.impact or "Not recorded.",
        "",
        f"**Affected:** {r.affected or 'Not recorded.'}",
        "",
        "## Detection and resolution",
        "",
    ]
    if start_known:
        out.append(f"- Time to detect: {_against(r.detected_at - r.started_at, MTTD_TARGET)}")
    else:
        out.append("- Time to detect: start not known (left out of MTTD)")
    if r.acknowledged_at is not None:
        out.append(f"- Time to acknowledge: {humanize(r.acknowledged_at - r.detected_at)}")
    if r.resolved_at is not None:
        span = r.resolved_at - r.detected_at
        out.append(f"- Time to resolve: {_against(span, MTTR_TARGETS.get(r.severity))}")
    out += ["", "## Timeline", "", "| Time | Who | What |", "|---|---|---|"]
    out += [f"| {t(e.at)} | {_cell(e.actor)} | {_cell(e.text)} |" for e in r.timeline]
    out += [
        "",
        "## Root cause",
        "",
        r.root_cause or "Not recorded.",
        "",
        f"**Category:** {CATEGORIES.get(r.category or '', 'not set')}",
        "",
        "## Resolution",
        "",
        r.resolution or "Not recorded.",
        "",
        "## Actions taken during the incident",
        "",
    ]
    actions = r.details.get("actions") or []
    out += [f"- {a}" for a in actions] if actions else ["None recorded."]
    out += ["", "## Action items", ""]
    for item in r.items:
        owner = f" — @{item.owner}" if item.owner else " — no owner"
        due = f", due {item.due}" if item.due else ""
        out.append(f"- [{'x' if item.done else ' '}] {item.id}. {item.text}{owner}{due}")
    if not r.items:
        out.append("None yet.")
    pir = r.details.get("pir")
    if isinstance(pir, dict) and pir.get("at"):
        out += ["", "## Post-incident review", "", t(datetime.fromisoformat(pir["at"]))]
    out += [
        "",
        "## What went well",
        "",
        TO_FILL,
        "",
        "## What didn't go well",
        "",
        TO_FILL,
        "",
        "## Lessons learned",
        "",
        TO_FILL,
        "",
    ]
    return "\n".join(out)
