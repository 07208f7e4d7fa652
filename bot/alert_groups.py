"""What PIRA keeps of an Alertmanager group on its incident, and how a room names its
alerts: the pieces of bot/alert_mapping.py that read and write no incident."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.orm import Session

from bot.domain.durations import parse_duration
from bot.domain.incident import clean
from bot.integrations.alertmanager import Alert, AlertmanagerPayload
from bot.people import Actor
from bot.store.models import Incident, TimelineEvent

log = logging.getLogger("pira.alerts")

SOURCE = "alertmanager"
ACTOR = Actor(key="alertmanager", name="alertmanager", roles=frozenset(), known=False)
MAX_LINKS = 5
SHOWN = 5  # alerts named in one room post
MAX_GROUP_KEY = 500  # the length of incidents.alert_group_key


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
                window = duration(str(rule["for"]))
                if window is not None:
                    found[str(rule["alert"])] = window
    return found


def duration(text: str) -> timedelta | None:
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


def event(s: Session, incident: Incident, text: str, at: datetime) -> None:
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


def record(a: Alert, resolutions: int) -> dict[str, Any]:
    at = a.starts_at.isoformat() if a.starts_at is not None else None
    return {"status": a.status, "at": at, "n": resolutions, "name": a.alertname}


def new_episode(incident: Incident, p: AlertmanagerPayload) -> bool:
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


def links(links: list[str], alerts: list[Alert]) -> list[str]:
    for a in alerts:
        for link in (a.generator_url, a.annotations.get("runbook_url", "")):
            if link and link not in links and len(links) < MAX_LINKS:
                links.append(link)
    return links


def group_name(p: AlertmanagerPayload) -> str:
    labels = p.group_labels or p.common_labels
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"


def describe(a: Alert, p: AlertmanagerPayload) -> str:
    """The alert's name and what sets it apart from the rest of its group."""
    own = {k: v for k, v in a.labels.items() if p.common_labels.get(k) != v and k != "alertname"}
    text = a.summary or a.alertname or a.fingerprint
    if own:
        text += " (" + ", ".join(f"{k}={v}" for k, v in sorted(own.items())) + ")"
    return clean(text)[:300]


def names(alerts: list[Alert], p: AlertmanagerPayload) -> str:
    shown = "; ".join(describe(a, p) for a in alerts[:SHOWN])
    return shown + (f" (+{len(alerts) - SHOWN} more)" if len(alerts) > SHOWN else "")


def count(alerts: list[Alert], word: str) -> str:
    return f"{len(alerts)} {word}" + ("s" if len(alerts) != 1 else "")


def digest(alerts: list[Alert]) -> str:
    """Stable across re-sends and replicas: the same change gets the same post key."""
    parts = sorted(
        f"{a.fingerprint}/{a.status}/{a.starts_at.isoformat() if a.starts_at else '?'}"
        for a in alerts
    )
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
