"""Configuration: the YAML file (every key optional, defaults from the runbook) and the environment.

Validated once at start; a file that does not validate is reported with every
error and its key path (see :func:`load_config`), never with a traceback.

This module is the one to import from (``from bot.settings import Config, Env``).
It holds the file's model (:class:`Config`) and :func:`load_config`; the pieces it
is built from live beside it: :mod:`bot.settings_fields` (durations, severity keys,
:class:`ConfigError`), :mod:`bot.settings_defaults` (the runbook's severity table
and on-call chain) and :mod:`bot.settings_env` (:class:`Env`).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import Field, field_validator

from bot.domain.severity import Severity
from bot.integrations.prometheus import RunbookQueries
from bot.settings_aftermath import Business, Holidays, Pir
from bot.settings_alerts import Alerts, MaintenanceWindow, Watchdog
from bot.settings_defaults import (
    DEFAULT_CHAIN,
    DEFAULT_SEVERITIES,
    ChainStep,
    EscalationTrigger,
    Notifier,
    SeverityPolicy,
)
from bot.settings_env import Env
from bot.settings_fields import (
    PERMISSIONS,
    ROLE_NAMES,
    ConfigError,
    Duration,
    Strict,
    severity_key,
)

__all__ = [
    "DEFAULT_CHAIN",
    "DEFAULT_SEVERITIES",
    "PERMISSIONS",
    "ROLE_NAMES",
    "Alertmanager",
    "Alerts",
    "Business",
    "ChainStep",
    "Channel",
    "Channels",
    "Cluster",
    "Config",
    "ConfigError",
    "Connect",
    "Duration",
    "Env",
    "EscalationTrigger",
    "Executors",
    "Holidays",
    "MaintenanceWindow",
    "OnCall",
    "Person",
    "Pir",
    "Rotation",
    "SeverityPolicy",
    "Strict",
    "Watchdog",
    "load_config",
]


class Rotation(Strict):
    members: tuple[str, ...]
    every: Duration = timedelta(days=7)
    handoff: str = "mon 09:00"
    start: str = "2026-11-30"

    @field_validator("members")
    @classmethod
    def _members(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("a rotation needs at least one member")
        return tuple(m.lstrip("@") for m in v)

    @field_validator("handoff")
    @classmethod
    def _handoff(cls, v: str) -> str:
        parts = v.lower().split()
        days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        if len(parts) != 2 or parts[0][:3] not in days:
            raise ValueError("write the handoff as '<weekday> HH:MM', e.g. 'mon 09:00'")
        hh, _, mm = parts[1].partition(":")
        if not (hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60):
            raise ValueError("write the handoff as '<weekday> HH:MM', e.g. 'mon 09:00'")
        return f"{parts[0][:3]} {int(hh):02d}:{int(mm):02d}"

    @field_validator("start")
    @classmethod
    def _start(cls, v: Any) -> str:
        from datetime import date

        try:
            return date.fromisoformat(str(v)).isoformat()
        except ValueError:
            raise ValueError("write the start as YYYY-MM-DD") from None


class HandoffTest(Strict):
    """At each weekly handoff the incoming primary gets a test page (bot/handoff_test.py);
    unacknowledged within ``ack_within``, the team lead (else the secondary) is told."""

    enabled: bool = True
    ack_within: Duration = timedelta(hours=1)

    @field_validator("ack_within")
    @classmethod
    def _ack_within(cls, v: timedelta) -> timedelta:
        if v < timedelta(minutes=1):
            raise ValueError("at least 1m")
        return v


class OnCall(Strict):
    rotation: Rotation | None = None
    chain: tuple[ChainStep, ...] = DEFAULT_CHAIN
    # Extra time after "Next Update" before #incidents is told an update is overdue.
    overdue_grace: Duration = timedelta(minutes=10)
    handoff_test: HandoffTest = HandoffTest()
    # How long /escalation verify waits for a platform's answer about one person.
    contact_timeout: Duration = timedelta(seconds=5)


class Person(Strict):
    name: str = ""
    slack: str | None = None
    telegram: int | None = None
    # Where the post-incident review's calendar invite (.ics) names them as attendee.
    email: str | None = None
    roles: tuple[str, ...] = ()
    # How a page reaches them (bot/notify.py): chat (a DM), ntfy (their topic),
    # pagerduty (the service's routing key), webhook (the signed JSON POST).
    notify: tuple[Notifier, ...] = ("chat",)
    ntfy_topic: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    # Their PagerDuty user id: an acknowledgement from PagerDuty counts as theirs.
    pagerduty_user: str | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is not None and (v.count("@") != 1 or " " in v.strip() or v.startswith("@")):
            raise ValueError(f"not an e-mail address: {v!r}")
        return v.strip() if v is not None else None

    @field_validator("roles")
    @classmethod
    def _roles(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [r for r in v if r not in PERMISSIONS]
        if bad:
            raise ValueError(f"unknown role(s) {bad} (use {', '.join(PERMISSIONS)})")
        return v

    @field_validator("notify")
    @classmethod
    def _notify(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("name at least one way to page them (e.g. [chat])")
        return tuple(dict.fromkeys(v))


class Channel(Strict):
    slack: str | None = None
    telegram: int | None = None


class Channels(Strict):
    incidents: Channel = Channel()
    # Plain-language P0/P1 announcements and resolutions, and published postmortems:
    # nothing else from the incident rooms goes there.
    stakeholders: Channel = Channel()


class Executors(Strict):
    statefulset: str = "spark-connect-executor"
    min: int = Field(default=1, ge=0)
    max: int = Field(default=50, ge=1)


class Connect(Strict):
    deployment: str = "spark-connect"


class Cluster(Strict):
    namespace: str = "spark"
    selector: str = "app.kubernetes.io/part-of=spark-k8s"
    executors: Executors = Executors()
    connect: Connect = Connect()
    backups_dir: str = "backups"
    timeout: Duration = timedelta(seconds=4)
    # How long PIRA watches what a /scale, /restart, /rollback, /kill or /restore led to
    # (executors Ready, the rollout, the pod gone) before calling it stuck; 0s: not watched.
    watch_outcome: Duration = timedelta(minutes=5)
    # PromQL of the runbook's checks (bot/integrations/prometheus.py RunbookQueries);
    # $namespace is the cluster's namespace unless queries.namespace is set.
    queries: RunbookQueries = RunbookQueries()


class Alertmanager(Strict):
    """``POST /alertmanager``: who may post, how labels map to severities, when an
    alert group that resolves also resolves its incident."""

    # Only read when PIRA_ALERTMANAGER_TOKEN is unset: true accepts posts without a
    # token (a trusted network only); false (default) refuses every post.
    allow_unauthenticated: bool = False
    severity_label: str = "severity"
    # Label values → severity, on top of the built-in ones (critical → P0, warning → P2…).
    severity_map: dict[str, Severity] = Field(default_factory=dict)
    default_severity: Severity = "P2"
    # Severities whose incident is resolved automatically once all its alerts resolve.
    auto_resolve: tuple[Severity, ...] = ()
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    # The Prometheus rules file whose ``for`` windows date an alert's start (MTTD):
    # startsAt minus the rule's ``for``. None: the shipped deploy/prometheus/rules.yaml
    # when it is there; an alert's own ``for`` annotation wins either way.
    rules_file: str | None = None

    @field_validator("severity_map", mode="before")
    @classmethod
    def _map(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k).strip().lower(): severity_key(s) for k, s in v.items()}
        return v

    @field_validator("default_severity", mode="before")
    @classmethod
    def _default(cls, v: Any) -> Any:
        return severity_key(v)

    @field_validator("auto_resolve", mode="before")
    @classmethod
    def _auto(cls, v: Any) -> Any:
        if isinstance(v, list | tuple):
            return tuple(severity_key(s) for s in v)
        return v


class Config(Strict):
    timezone: str = "UTC"
    severities: dict[Severity, SeverityPolicy] = Field(
        default_factory=lambda: dict(DEFAULT_SEVERITIES)
    )
    oncall: OnCall = OnCall()
    people: dict[str, Person] = Field(default_factory=dict)
    roles: dict[str, str] = Field(default_factory=dict)
    # A role every person gets, configured or not (e.g. "responder" for a small team).
    default_role: str | None = None
    channels: Channels = Channels()
    bridge_url: str | None = None
    cluster: Cluster = Cluster()
    # Several replicas: the leader renews its lease every third of this; a standby
    # takes over at most this long after the leader died.
    leader_lease: Duration = timedelta(seconds=15)
    alertmanager: Alertmanager = Alertmanager()
    alerts: Alerts = Alerts()
    maintenance: tuple[MaintenanceWindow, ...] = ()
    business: Business = Business()
    pir: Pir = Pir()
    # Links /health shows in place of the runbook's port-forward (name → URL), e.g.
    # {spark_ui: https://spark.example.com, grafana: https://grafana.example.com/d/spark}.
    links: dict[str, str] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {v!r} (an IANA name such as Europe/Berlin)"
            ) from None
        return v

    @field_validator("severities", mode="before")
    @classmethod
    def _merge_severities(cls, v: Any) -> Any:
        """A severity given in the file overrides only the keys it names."""
        if not isinstance(v, dict):
            return v
        merged: dict[str, Any] = {k: p.model_dump() for k, p in DEFAULT_SEVERITIES.items()}
        for key, value in v.items():
            name = severity_key(key)
            if isinstance(value, dict):
                merged[name] = {**merged[name], **value}
            else:
                merged[name] = value
        return merged

    @field_validator("people", mode="before")
    @classmethod
    def _people(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k).lstrip("@"): ({} if p is None else p) for k, p in v.items()}
        return v

    @field_validator("roles")
    @classmethod
    def _roles(cls, v: dict[str, str]) -> dict[str, str]:
        return {k: p.lstrip("@") for k, p in v.items()}

    @field_validator("default_role")
    @classmethod
    def _default_role(cls, v: str | None) -> str | None:
        if v is not None and v not in PERMISSIONS:
            raise ValueError(f"unknown role {v!r} (use {', '.join(PERMISSIONS)})")
        return v

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def policy(self, severity: str) -> SeverityPolicy:
        return self.severities[severity]  # type: ignore[index]


def load_config(
    path: str | os.PathLike[str] | None,
    *,
    warnings: list[str] | None = None,
    strict: bool = False,
) -> Config:
    """Read and validate the YAML file; no path → the runbook's defaults.

    Every error at once (:mod:`bot.settings_check`) in a :class:`ConfigError`; the
    warnings are appended to ``warnings``, or are errors too when ``strict``.
    """
    if path is None:
        return Config()
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [f"cannot read the file: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", exc)
        raise ConfigError(source, [f"{where}not valid YAML ({problem})"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, ["the file must be a mapping of keys (timezone:, severities:…)"])
    from bot.settings_check import check

    config, errors, found = check(data)
    if strict:
        errors, found = errors + [f"{w} (an error under --strict)" for w in found], []
    if errors:
        raise ConfigError(source, errors, warnings=found)
    if warnings is not None:
        warnings.extend(found)
    return config
