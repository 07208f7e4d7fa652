"""What the runbook's templates show of an incident, and the buttons it offers.

Pure over an incident row, the configuration and a moment: no database, no
posting. The incident verbs, the on-call pages, the timers and the adapters all
shape their posts from here, so an announcement looks the same whoever sends it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.domain.business import BusinessCalendar
from bot.domain.incident import STATUS_LABELS, duration_text
from bot.messages import Button
from bot.settings import Config
from bot.store.models import Incident


class IncidentViews:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.calendar = BusinessCalendar(config.business, config.tz)

    def next_update(self, incident: Incident) -> datetime:
        """When the next Update is due, as the reminder's timer has it (bot/timer_plan.py):
        at the next opening of the business calendar for a severity counted in business
        time (P3's "next business day")."""
        policy = self.config.policy(incident.severity)
        due = incident.last_update_at + policy.update_every
        return self.calendar.due(due, business_time=policy.business_time)

    def post_data(self, incident: Incident, now: datetime) -> dict[str, Any]:
        """Everything the runbook's templates show, JSON-safe (stored in the outbox)."""
        end = incident.resolved_at or now
        return {
            "number": incident.number,
            "title": incident.title,
            "severity": incident.severity,
            "status_label": STATUS_LABELS[incident.status],
            "started": incident.started_at.isoformat(),
            "duration": duration_text(incident.started_at, end),
            "commander": incident.commander,
            "impact": incident.impact,
            "next_update": self.next_update(incident).isoformat(),
            "bridge_url": self.config.bridge_url if incident.severity in ("P0", "P1") else None,
        }

    @staticmethod
    def ticket_data(incident: Incident) -> dict[str, Any]:
        details = incident.details or {}
        return {
            "number": incident.number,
            "title": incident.title,
            "severity": incident.severity,
            "reporter": incident.reporter,
            "started": incident.started_at.isoformat(),
            "affected": incident.affected,
            "status_label": STATUS_LABELS[incident.status],
            "commander": incident.commander,
            "impact": incident.impact,
            "current_status": details.get("current_status") or STATUS_LABELS[incident.status],
            "initial_actions": _actions(details),
            "links": details.get("links", []),
            "alert_labels": details.get("labels", {}),
        }

    @staticmethod
    def buttons(incident: Incident) -> tuple[Button, ...]:
        """What an announcement offers, following the incident's state."""
        if not incident.is_open:
            return ()
        n = incident.number
        offered = [
            Button("Post update", f"/update #{n}", prompt=f"What's new on #{n}?"),
            Button(
                "Resolve",
                f"/resolve #{n}",
                "danger",
                prompt=f"Root cause of #{n} (add ' -- ' and the resolution if you like)",
            ),
        ]
        if incident.acknowledged_at is None:
            offered.insert(0, Button("Acknowledge", f"/ack #{n}", "primary"))
        return tuple(offered)


def _actions(details: dict[str, Any]) -> str | None:
    """The actions taken, one line each (cluster actions, pages by hand), after any
    initial actions given when the incident was declared."""
    lines = [str(details["initial_actions"])] if details.get("initial_actions") else []
    lines += [f"- {a}" for a in details.get("actions", [])]
    return "\n".join(lines) or None
