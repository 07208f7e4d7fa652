"""Alertmanager notifications → incidents: what one notification changes (issue 6).

One alert *group* (its ``groupKey``) is one incident: the first firing
notification declares it (severity from the labels, title from the summary,
start = earliest ``startsAt``), later ones update it.

No noise: Alertmanager re-sends a group every group/repeat interval and every
HA peer sends it too. What PIRA already knows of a group lives in the
incident's ``details["alerts"]`` (fingerprint → status, startsAt, resolutions),
so a re-sent group changes nothing and writes nothing. A new fingerprint adds a
timeline line; a resolved one is said once in the incident room.

A group that fires again after its incident was resolved opens a *new*
incident when one of its firing alerts is new (a fingerprint the old incident
never saw, or a later ``startsAt``); the key moves to the new incident (the old
keeps it in ``details["alert_group_key"]``, the new one links ``repeat_of``).
Alerts still firing from before the resolution do not reopen anything.

Everything here is synchronous database work: callers run it on the store's
threads (``await store.run(...)``), never on the event loop.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.alert_groups import (
    ACTOR,
    SOURCE,
    count,
    describe,
    digest,
    duration,
    event,
    group_name,
    links,
    names,
    new_episode,
    read_rule_for,
    record,
    stored_key,
)
from bot.clock import Clock
from bot.domain.durations import humanize
from bot.domain.incident import MAX_TITLE, InvalidInput, clean, time_text
from bot.incidents import Incidents
from bot.integrations.alertmanager import (
    DEFAULT_SEVERITY_MAPPING,
    SEVERITIES,
    Alert,
    AlertmanagerPayload,
    SeverityMapping,
    group_severity,
    group_started_at,
    group_title,
)
from bot.messages import Button, Destination
from bot.outbox import Poster
from bot.settings import Alertmanager as AlertmanagerSettings
from bot.settings import Alerts
from bot.store.models import Incident, Timer

if TYPE_CHECKING:
    from bot.maintenance import MaintenanceWindows
    from bot.watchdog import WatchdogTimer

log = logging.getLogger("pira.alerts")

__all__ = ["ACTOR", "RULES_FILE", "SOURCE", "AlertMapping", "FollowUp", "stored_key"]

AUTO_RESOLVE = "auto-resolve"  # the timer kind
# The alerting rules PIRA ships (their ``for`` by alertname); absent in an image
# without deploy/: then only an alert's ``for`` annotation is known.
RULES_FILE = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "rules.yaml"

# (kind, incident number, severity): a verb with its own transaction, done after the
# batch's commit. kind "severity": raise to that severity.
FollowUp = tuple[str, int, str]


class AlertMapping:
    """Applies one notification inside a caller's transaction; what needs a verb of
    its own (raise the severity) is returned as follow-ups."""

    def __init__(
        self,
        *,
        settings: AlertmanagerSettings,
        alerts: Alerts,
        clock: Clock,
        incidents: Incidents,
        poster: Poster,
        maintenance: MaintenanceWindows,
        watchdog: WatchdogTimer,
        tz: tzinfo,
        rules_file: Path | None = RULES_FILE,
    ) -> None:
        self.settings = settings
        self.alerts = alerts
        self.maintenance = maintenance
        self.watchdog = watchdog
        self.tz = tz
        self.rule_for = read_rule_for(rules_file)  # once, at start
        self.clock = clock
        self.incidents = incidents
        self.poster = poster
        self.severities = SeverityMapping(
            label=settings.severity_label,
            aliases={**DEFAULT_SEVERITY_MAPPING.aliases, **settings.severity_map},
            default=settings.default_severity,
        )

    def apply(
        self, s: Session, p: AlertmanagerPayload, followups: list[FollowUp]
    ) -> dict[str, Any]:
        """What ``p`` changes, in session ``s``; the answer for Alertmanager."""
        dog = self.alerts.watchdog
        if dog is not None and any(a.alertname == dog.alertname for a in p.alerts):
            # The dead-man's switch: heard, never an incident (bot/watchdog.py).
            self.watchdog.heard(s, [a for a in p.alerts if a.alertname == dog.alertname])
            rest = [a for a in p.alerts if a.alertname != dog.alertname]
            if not rest:
                return {"status": "watchdog"}
            p = p.model_copy(update={"alerts": rest})
        key = stored_key(p.group_key)
        incident = s.scalar(
            select(Incident).where(Incident.alert_group_key == key).with_for_update()
        )
        repeat_of = None
        if incident is not None and not incident.is_open and new_episode(incident, p):
            incident.alert_group_key = None
            incident.details = {**(incident.details or {}), "alert_group_key": key}
            s.flush()  # free the unique key before the new incident takes it
            repeat_of, incident = incident.number, None
        if incident is None:
            if not p.firing_alerts:
                return {"status": "ignored", "reason": "no firing alert and no incident"}
            return self._declare(s, p, repeat_of)
        return self._update(s, incident, p, followups)

    def follow_up(self, followups: list[FollowUp]) -> None:
        """Run the follow-ups, each in its own transaction (a database thread's work).
        One that fails is logged and left: the next notification of its group finds
        it still to do."""
        for kind, number, severity in followups:
            try:
                self.incidents.set_severity(
                    number=number, severity=severity, by=ACTOR, source=SOURCE
                )
            except InvalidInput:
                pass  # a person or another replica did it first
            except Exception:
                log.exception("alert follow-up failed", extra={"incident": number, "kind": kind})

    def _declare(self, s: Session, p: AlertmanagerPayload, repeat_of: int | None) -> dict[str, Any]:
        now = self.clock.now()
        severity = group_severity(p, self.severities)
        title = clean(group_title(p)).strip()[:MAX_TITLE] or "Alertmanager alert"
        details: dict[str, Any] = {
            "source": SOURCE,
            "receiver": p.receiver,
            "labels": dict(p.common_labels or p.group_labels),
            "links": links([], p.alerts),
            "alerts": {a.fingerprint: record(a, 0) for a in p.alerts},
        }
        if repeat_of is not None:
            details["repeat_of"] = repeat_of
        started = self._condition_start(p)
        if started is not None:
            details["start_known"] = True
        held = self.maintenance.held(s, now)
        if held is not None:  # announced, not paged (bot/maintenance.py)
            details["held"] = {"until": held.until.isoformat(), "reason": held.reason}
        incident = self.incidents.declare(
            severity=severity,
            title=title,
            by=ACTOR,
            source=SOURCE,
            started_at=min(x for x in (started, group_started_at(p), now) if x is not None),
            alert_group_key=stored_key(p.group_key),
            details=details,
            session=s,
        )
        firing = len(p.firing_alerts)
        text = f"Alertmanager: {firing} alert(s) firing in group {group_name(p)}"
        if repeat_of is not None:
            text += f"; the group fired again after #{repeat_of} was resolved"
        event(s, incident, text, now)
        if held is not None:
            until = time_text(held.until, self.tz)
            self.poster.post(
                s,
                incident.id,
                Destination.incidents(),
                "text",
                {
                    "text": f"🔧 #{incident.number} came in during maintenance ({held.reason}): "
                    f"nobody is paged now. If it is still open and unacknowledged at {until}, "
                    "the on-call is paged then. /ack or /page to act before."
                },
                f"inc{incident.number}:held",
                fresh=True,
            )
            event(s, incident, f"held by maintenance until {until}: {held.reason}", now)
        log.info(
            "incident declared from alerts",
            extra={"incident": incident.number, "severity": severity, "alerts": firing},
        )
        return {"status": "declared", "incident": incident.number, "severity": severity}

    def _condition_start(self, p: AlertmanagerPayload) -> datetime | None:
        """The earliest ``startsAt - for`` of the group's alerts whose ``for`` is known
        (None: no alert with both)."""
        starts = []
        for a in p.alerts:
            window = self._for(a)
            if a.starts_at is not None and window is not None:
                starts.append(a.starts_at - window)
        return min(starts, default=None)

    def _for(self, a: Alert) -> timedelta | None:
        raw = a.annotations.get("for")
        if raw:
            return duration(raw)
        return self.rule_for.get(a.alertname)

    def _update(
        self,
        s: Session,
        incident: Incident,
        p: AlertmanagerPayload,
        followups: list[FollowUp],
    ) -> dict[str, Any]:
        now = self.clock.now()
        details = dict(incident.details or {})
        seen: dict[str, dict[str, Any]] = dict(details.get("alerts", {}))
        new: list[Alert] = []
        resolved: list[Alert] = []
        for a in p.alerts:
            known = seen.get(a.fingerprint)
            if a.firing and (known is None or known["status"] != "firing"):
                new.append(a)  # a new alert, or one firing again after it resolved
                seen[a.fingerprint] = record(a, known["n"] if known else 0)
            elif not a.firing and (known is None or known["status"] == "firing"):
                resolved.append(a)
                seen[a.fingerprint] = record(a, (known["n"] if known else 0) + 1)
        number = incident.number
        room = Destination.incident(number)
        if new:
            self._cancel_auto_resolve(s, incident, now)  # it fired again: not over
            for a in new:
                event(s, incident, f"new alert: {describe(a, p)}", now)
            self.poster.post(
                s,
                incident.id,
                room,
                "text",
                {"text": f"🔔 #{number}: {count(new, 'new alert')} in the group: " + names(new, p)},
                f"inc{number}:alerts-new:{digest(new)}",
            )
        if resolved:
            for a in resolved:
                event(s, incident, f"alert resolved: {describe(a, p)}", now)
            all_done = not any(r["status"] == "firing" for r in seen.values())
            text = f"✅ #{number} alert resolved: {names(resolved, p)}."
            buttons: tuple[Button, ...] = ()
            if all_done and incident.is_open:
                if self._auto_resolves(incident, seen):
                    quiet = self.alerts.auto_resolve_quiet
                    s.add(
                        Timer(
                            key=f"inc{incident.id}:{AUTO_RESOLVE}:{uuid.uuid4().hex[:16]}",
                            incident_id=incident.id,
                            kind=AUTO_RESOLVE,
                            due_at=now + quiet,
                        )
                    )
                    text += (
                        " All alerts of the group are resolved: resolving automatically at "
                        f"{time_text(now + quiet, self.tz)} unless one fires again or someone "
                        "acknowledges."
                    )
                else:
                    text += (
                        " All alerts of the group are resolved. If the incident is over: "
                        f"/resolve #{number} <root cause>"
                    )
                    buttons = (Button("Resolve", f"/resolve #{number} alerts resolved", "primary"),)
            self.poster.post(
                s,
                incident.id,
                room,
                "text",
                {"text": text},
                f"inc{number}:alerts-resolved:{digest(resolved)}",
                buttons,
            )
        if p.firing_alerts and incident.is_open:
            severity = group_severity(p, self.severities)
            if SEVERITIES.index(severity) < SEVERITIES.index(incident.severity):
                followups.append(("severity", number, severity))
        if not (new or resolved):
            return {"status": "unchanged", "incident": number}
        details["alerts"] = seen
        details["links"] = links(list(details.get("links", [])), new)
        incident.details = details  # a new dict: JSON columns do not track mutation
        return {"status": "updated", "incident": number, "new": len(new), "resolved": len(resolved)}

    def _auto_resolves(self, incident: Incident, seen: dict[str, dict[str, Any]]) -> bool:
        """Whether PIRA may resolve the incident once its alerts are quiet: nobody
        acknowledged it, and its severity or every alert's name is configured so."""
        if incident.acknowledged_at is not None:
            return False
        if incident.severity in self.settings.auto_resolve:
            return True
        wanted = set(self.alerts.auto_resolve)
        if not wanted:
            return False
        fallback = ((incident.details or {}).get("labels") or {}).get("alertname")
        alertnames = {r.get("name") or fallback for r in seen.values()}
        return bool(alertnames) and alertnames <= wanted

    def _cancel_auto_resolve(self, s: Session, incident: Incident, now: datetime) -> None:
        s.execute(
            update(Timer)
            .where(
                Timer.incident_id == incident.id,
                Timer.kind == AUTO_RESOLVE,
                Timer.fired_at.is_(None),
                Timer.cancelled_at.is_(None),
            )
            .values(cancelled_at=now)
        )

    def fire_auto_resolve(self, s: Session, timer: Timer, now: datetime, late: str | None) -> None:
        """The quiet time after the group's last alert resolved is over (a timer, in its
        firing transaction): resolve, unless it fired again or someone acknowledged."""
        incident = s.get(Incident, timer.incident_id)
        if incident is None or not incident.is_open:
            return
        seen = (incident.details or {}).get("alerts", {})
        if any(r.get("status") == "firing" for r in seen.values()):
            return  # fired again (its timer was cancelled then; a guard all the same)
        number = incident.number
        if incident.acknowledged_at is not None:
            self.poster.post(
                s,
                incident.id,
                Destination.incident(number),
                "text",
                {
                    "text": f"✅ #{number}: all alerts stayed resolved, but someone "
                    f"acknowledged it: /resolve #{number} <root cause> when you are sure."
                },
                f"inc{number}:auto-resolve-acked:{timer.id}",
                (Button("Resolve", f"/resolve #{number} alerts resolved", "primary"),),
                fresh=True,
            )
            return
        quiet = self.alerts.auto_resolve_quiet
        self.incidents.resolve(
            number=number,
            root_cause=f"all alerts resolved and quiet for {humanize(quiet)}",
            resolution="resolved automatically (alerts.auto_resolve)",
            by=ACTOR,
            source=SOURCE,
            session=s,
        )
