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

import hashlib
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.clock import Clock
from bot.domain.durations import parse_duration
from bot.domain.incident import MAX_TITLE, InvalidInput, clean
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
from bot.people import Actor
from bot.settings import Alertmanager as AlertmanagerSettings
from bot.store.models import Incident, TimelineEvent

log = logging.getLogger("pira.alerts")

SOURCE = "alertmanager"
ACTOR = Actor(key="alertmanager", name="alertmanager", roles=frozenset(), known=False)
MAX_LINKS = 5
SHOWN = 5  # alerts named in one room post
MAX_GROUP_KEY = 500  # the length of incidents.alert_group_key
# The alerting rules PIRA ships (their ``for`` by alertname); absent in an image
# without deploy/: then only an alert's ``for`` annotation is known.
RULES_FILE = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "rules.yaml"

# (kind, incident number, severity): a verb with its own transaction, done after the
# batch's commit. kind "severity": raise to that severity; "resolve": resolve (the
# severity is the incident's, named in the resolution).
FollowUp = tuple[str, int, str]


class AlertMapping:
    """Applies one notification inside a caller's transaction; what needs a verb of
    its own (raise the severity, resolve) is returned as follow-ups."""

    def __init__(
        self,
        *,
        settings: AlertmanagerSettings,
        clock: Clock,
        incidents: Incidents,
        poster: Poster,
        rules_file: Path | None = RULES_FILE,
    ) -> None:
        self.settings = settings
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
        key = stored_key(p.group_key)
        incident = s.scalar(
            select(Incident).where(Incident.alert_group_key == key).with_for_update()
        )
        repeat_of = None
        if incident is not None and not incident.is_open and _new_episode(incident, p):
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
                if kind == "severity":
                    self.incidents.set_severity(
                        number=number, severity=severity, by=ACTOR, source=SOURCE
                    )
                else:
                    self.incidents.resolve(
                        number=number,
                        root_cause="all alerts of the Alertmanager group resolved",
                        resolution=f"resolved automatically ({severity} is in "
                        "alertmanager.auto_resolve)",
                        by=ACTOR,
                        source=SOURCE,
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
            "links": _links([], p.alerts),
            "alerts": {a.fingerprint: _record(a, 0) for a in p.alerts},
        }
        if repeat_of is not None:
            details["repeat_of"] = repeat_of
        started = self._condition_start(p)
        if started is not None:
            details["start_known"] = True
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
        text = f"Alertmanager: {firing} alert(s) firing in group {_group_name(p)}"
        if repeat_of is not None:
            text += f"; the group fired again after #{repeat_of} was resolved"
        _event(s, incident, text, now)
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
            return _duration(raw)
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
                seen[a.fingerprint] = _record(a, known["n"] if known else 0)
            elif not a.firing and (known is None or known["status"] == "firing"):
                resolved.append(a)
                seen[a.fingerprint] = _record(a, (known["n"] if known else 0) + 1)
        number = incident.number
        room = Destination.incident(number)
        if new:
            for a in new:
                _event(s, incident, f"new alert: {_describe(a, p)}", now)
            self.poster.post(
                s,
                incident.id,
                room,
                "text",
                {
                    "text": f"🔔 #{number}: {_count(new, 'new alert')} in the group: "
                    + _names(new, p)
                },
                f"inc{number}:alerts-new:{_digest(new)}",
            )
        if resolved:
            for a in resolved:
                _event(s, incident, f"alert resolved: {_describe(a, p)}", now)
            all_done = not any(r["status"] == "firing" for r in seen.values())
            text = f"✅ #{number} alert resolved: {_names(resolved, p)}."
            buttons: tuple[Button, ...] = ()
            if all_done and incident.is_open:
                if incident.severity in self.settings.auto_resolve:
                    followups.append(("resolve", number, incident.severity))
                    text += " All alerts of the group are resolved: resolving automatically."
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
                f"inc{number}:alerts-resolved:{_digest(resolved)}",
                buttons,
            )
        if p.firing_alerts and incident.is_open:
            severity = group_severity(p, self.severities)
            if SEVERITIES.index(severity) < SEVERITIES.index(incident.severity):
                followups.append(("severity", number, severity))
        if not (new or resolved):
            return {"status": "unchanged", "incident": number}
        details["alerts"] = seen
        details["links"] = _links(list(details.get("links", [])), new)
        incident.details = details  # a new dict: JSON columns do not track mutation
        return {"status": "updated", "incident": number, "new": len(new), "resolved": len(resolved)}


# ---- helpers ---------------------------------------------------------------------


def read_rule_for(path: Path | None) -> dict[str, timedelta]:
    """alertname → its rule's ``for`` from a Prometheus rules file (empty when the file
    is missing or unreadable: a start it cannot know is left unknown)."""
    if path is None:
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        log.info("no alerting rules read", extra={"path": str(path), "why": str(exc)[:200]})
        return {}
    found: dict[str, timedelta] = {}
    groups = data.get("groups") if isinstance(data, dict) else None
    for group in groups if isinstance(groups, list) else []:
        rules = group.get("rules") if isinstance(group, dict) else None
        for rule in rules if isinstance(rules, list) else []:
            if isinstance(rule, dict) and rule.get("alert") and rule.get("for"):
                window = _duration(str(rule["for"]))
                if window is not None:
                    found[str(rule["alert"])] = window
    return found


def _duration(text: str) -> timedelta | None:
    """A Prometheus duration as far as PIRA's parser reads it (``2m``, ``1h30m``)."""
    try:
        return parse_duration(text.strip())
    except ValueError:
        return None


def stored_key(group_key: str) -> str:
    """The group key as ``incidents.alert_group_key`` holds it: as sent when it fits the
    column, else its beginning and a digest of the whole (still one key per group)."""
    if len(group_key) <= MAX_GROUP_KEY:
        return group_key
    digest = hashlib.sha256(group_key.encode()).hexdigest()
    return f"{group_key[: MAX_GROUP_KEY - 72]}#sha256:{digest}"


def _event(s: Session, incident: Incident, text: str, at: datetime) -> None:
    s.add(
        TimelineEvent(
            incident_id=incident.id,
            at=at,
            actor=ACTOR.handle,
            source=SOURCE,
            kind="alert",
            text=text[:2000],
        )
    )


def _record(a: Alert, resolutions: int) -> dict[str, Any]:
    at = a.starts_at.isoformat() if a.starts_at is not None else None
    return {"status": a.status, "at": at, "n": resolutions}


def _new_episode(incident: Incident, p: AlertmanagerPayload) -> bool:
    """Whether a firing alert started after what the resolved incident knew (an alert
    whose start is unknown, now or then, did not start again as far as PIRA can tell)."""
    seen = (incident.details or {}).get("alerts", {})
    for a in p.firing_alerts:
        known = seen.get(a.fingerprint)
        if known is None:
            return True
        if a.starts_at is None or not known.get("at"):
            continue
        try:
            if a.starts_at > datetime.fromisoformat(known["at"]):
                return True
        except (ValueError, TypeError, OverflowError):
            continue  # stored by an older PIRA in a form it cannot compare: not new
    return False


def _links(links: list[str], alerts: list[Alert]) -> list[str]:
    for a in alerts:
        for link in (a.generator_url, a.annotations.get("runbook_url", "")):
            if link and link not in links and len(links) < MAX_LINKS:
                links.append(link)
    return links


def _group_name(p: AlertmanagerPayload) -> str:
    labels = p.group_labels or p.common_labels
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"


def _describe(a: Alert, p: AlertmanagerPayload) -> str:
    """The alert's name and what sets it apart from the rest of its group."""
    own = {k: v for k, v in a.labels.items() if p.common_labels.get(k) != v and k != "alertname"}
    text = a.summary or a.alertname or a.fingerprint
    if own:
        text += " (" + ", ".join(f"{k}={v}" for k, v in sorted(own.items())) + ")"
    return clean(text)[:300]


def _names(alerts: list[Alert], p: AlertmanagerPayload) -> str:
    shown = "; ".join(_describe(a, p) for a in alerts[:SHOWN])
    return shown + (f" (+{len(alerts) - SHOWN} more)" if len(alerts) > SHOWN else "")


def _count(alerts: list[Alert], word: str) -> str:
    return f"{len(alerts)} {word}" + ("s" if len(alerts) != 1 else "")


def _digest(alerts: list[Alert]) -> str:
    """Stable across re-sends and replicas: the same change gets the same post key."""
    parts = sorted(
        f"{a.fingerprint}/{a.status}/{a.starts_at.isoformat() if a.starts_at else '?'}"
        for a in alerts
    )
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
