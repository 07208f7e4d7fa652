"""Configuration: the YAML file (every key optional, defaults from the runbook) and the environment.

Validated once at start; a file that does not validate is reported with every
error and its key path (see :func:`load_config`), never with a traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.domain.durations import format_duration, parse_duration
from bot.domain.severity import SEVERITIES, Severity
from bot.integrations.prometheus import RunbookQueries

ROLE_NAMES = ("primary", "secondary", "team_lead", "engineering_manager", "cto")
PERMISSIONS = ("responder", "operator", "admin")


def _to_duration(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r} (write a unit: 30s, 15m, 2h, 1d, 1w)")
    return parse_duration(str(value))


Duration = Annotated[
    timedelta, BeforeValidator(_to_duration), PlainSerializer(format_duration, return_type=str)
]


def _severity_key(value: Any) -> str:
    text = str(value).strip().upper()
    if text not in SEVERITIES:
        raise ValueError(f"unknown severity {value!r} (use P0, P1, P2 or P3)")
    return text


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EscalationTrigger(Strict):
    after: Duration
    to: str

    @field_validator("to")
    @classmethod
    def _target(cls, v: str) -> str:
        return v.strip().lstrip("@")


class SeverityPolicy(Strict):
    name: str = ""
    definition: str = ""
    examples: tuple[str, ...] = ()
    response: str = ""
    # None: never page (the incident room and #incidents only).
    page_after: Duration | None = timedelta(0)
    respond_within: Duration = timedelta(minutes=15)
    update_every: Duration = timedelta(minutes=30)
    escalate: tuple[EscalationTrigger, ...] = ()


def _m(minutes: float) -> timedelta:
    return timedelta(minutes=minutes)


# The runbook's severity table, "Severity Levels" and "Escalation Triggers".
DEFAULT_SEVERITIES: dict[Severity, SeverityPolicy] = {
    "P0": SeverityPolicy(
        name="Critical",
        definition="Complete platform outage affecting all users",
        examples=(
            "All Spark jobs failing",
            "Complete data loss",
            "Security breach",
            "Cluster completely unavailable",
        ),
        response="Page immediately, 15 min initial response",
        page_after=_m(0),
        respond_within=_m(15),
        update_every=_m(30),
        escalate=(
            EscalationTrigger(after=_m(30), to="engineering_manager"),
            EscalationTrigger(after=_m(60), to="cto"),
        ),
    ),
    "P1": SeverityPolicy(
        name="High",
        definition="Significant degradation affecting multiple users",
        examples=(
            "Multiple job failures (>50% failure rate)",
            "Severe performance degradation (>5x slower)",
            "Single data source unavailable",
            "Partial cluster failure",
        ),
        response="Page within 15 min, 1 hour initial response",
        page_after=_m(15),
        respond_within=_m(60),
        update_every=_m(30),
        escalate=(
            EscalationTrigger(after=_m(120), to="engineering_manager"),
            EscalationTrigger(after=_m(240), to="cto"),
        ),
    ),
    "P2": SeverityPolicy(
        name="Medium",
        definition="Limited impact affecting specific users or features",
        examples=(
            "Single team jobs failing",
            "Moderate performance degradation (2-5x slower)",
            "Non-critical feature broken",
        ),
        response="Respond within 1 hour, 4 hour initial response",
        page_after=_m(60),
        respond_within=_m(240),
        update_every=_m(120),
        escalate=(EscalationTrigger(after=timedelta(days=1), to="team_lead"),),
    ),
    "P3": SeverityPolicy(
        name="Low",
        definition="Minor issues with workaround available",
        examples=("Documentation errors", "UI issues", "Feature requests"),
        response="Next business day",
        page_after=None,
        respond_within=timedelta(days=1),
        update_every=timedelta(days=1),
        escalate=(EscalationTrigger(after=timedelta(weeks=1), to="team_lead"),),
    ),
}


class ChainStep(Strict):
    role: str
    respond_within: dict[Severity, Duration] = Field(default_factory=dict)

    @field_validator("respond_within", mode="before")
    @classmethod
    def _keys(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {_severity_key(k): d for k, d in v.items()}
        return v

    @field_validator("role")
    @classmethod
    def _role(cls, v: str) -> str:
        return v.strip().lstrip("@")


# The runbook's "On-Call Structure": primary → secondary → team lead → EM → CTO.
DEFAULT_CHAIN: tuple[ChainStep, ...] = (
    ChainStep(role="primary", respond_within={"P0": _m(15), "P1": _m(60)}),
    ChainStep(role="secondary", respond_within={"P0": _m(30), "P1": _m(60)}),
    ChainStep(role="team_lead", respond_within={"P0": _m(60), "P1": _m(60)}),
    ChainStep(role="engineering_manager"),
    ChainStep(role="cto"),
)


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


class OnCall(Strict):
    rotation: Rotation | None = None
    chain: tuple[ChainStep, ...] = DEFAULT_CHAIN
    # Extra time after "Next Update" before #incidents is told an update is overdue.
    overdue_grace: Duration = timedelta(minutes=10)


class Person(Strict):
    name: str = ""
    slack: str | None = None
    telegram: int | None = None
    roles: tuple[str, ...] = ()

    @field_validator("roles")
    @classmethod
    def _roles(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [r for r in v if r not in PERMISSIONS]
        if bad:
            raise ValueError(f"unknown role(s) {bad} (use {', '.join(PERMISSIONS)})")
        return v


class Channel(Strict):
    slack: str | None = None
    telegram: int | None = None


class Channels(Strict):
    incidents: Channel = Channel()


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

    @field_validator("severity_map", mode="before")
    @classmethod
    def _map(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k).strip().lower(): _severity_key(s) for k, s in v.items()}
        return v

    @field_validator("default_severity", mode="before")
    @classmethod
    def _default(cls, v: Any) -> Any:
        return _severity_key(v)

    @field_validator("auto_resolve", mode="before")
    @classmethod
    def _auto(cls, v: Any) -> Any:
        if isinstance(v, list | tuple):
            return tuple(_severity_key(s) for s in v)
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
            name = _severity_key(key)
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

    @model_validator(mode="after")
    def _cross(self) -> Config:
        if self.cluster.executors.min > self.cluster.executors.max:
            raise ValueError("cluster.executors.min is above cluster.executors.max")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def policy(self, severity: str) -> SeverityPolicy:
        return self.severities[severity]  # type: ignore[index]


class ConfigError(Exception):
    """The configuration file cannot be used; ``errors`` lists each problem with its key path."""

    def __init__(self, source: str, errors: list[str]) -> None:
        super().__init__(f"{source}: {len(errors)} error(s)")
        self.source = source
        self.errors = errors


def _path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if p not in ("function-after", "function-before"))


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Read and validate the YAML file; no path → the runbook's defaults."""
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
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            where = _path(err["loc"]) or "(top level)"
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            errors.append(f"{where}: {msg}")
        raise ConfigError(source, errors) from None


@dataclass(frozen=True)
class Env:
    """What comes from the environment: places and secrets. Secrets never enter logs."""

    config_path: str | None
    database_url: str
    http_host: str
    http_port: int
    slack_bot_token: str | None
    slack_signing_secret: str | None
    slack_app_token: str | None
    slack_api_url: str | None
    telegram_token: str | None
    telegram_api_url: str | None
    telegram_webhook_url: str | None
    telegram_webhook_secret: str | None
    alertmanager_token: str | None
    prometheus_url: str | None
    # The Kubernetes API: KUBECONFIG, else the in-cluster service account when in a pod.
    kubeconfig: str | None = None
    in_cluster: bool = False

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> Env:
        e = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = e.get(name, "").strip()
            return value or None

        port = get("PIRA_HTTP_PORT") or "8080"
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError("PIRA_HTTP_PORT", [f"PIRA_HTTP_PORT: not a port number: {port!r}"])
        return cls(
            config_path=get("PIRA_CONFIG"),
            database_url=get("PIRA_DATABASE_URL") or "sqlite:///pira.db",
            http_host=get("PIRA_HTTP_HOST") or "127.0.0.1",
            http_port=int(port),
            slack_bot_token=get("PIRA_SLACK_BOT_TOKEN"),
            slack_signing_secret=get("PIRA_SLACK_SIGNING_SECRET"),
            slack_app_token=get("PIRA_SLACK_APP_TOKEN"),
            slack_api_url=get("PIRA_SLACK_API_URL"),
            telegram_token=get("PIRA_TELEGRAM_TOKEN"),
            telegram_api_url=get("PIRA_TELEGRAM_API_URL"),
            telegram_webhook_url=get("PIRA_TELEGRAM_WEBHOOK_URL"),
            telegram_webhook_secret=get("PIRA_TELEGRAM_WEBHOOK_SECRET"),
            alertmanager_token=get("PIRA_ALERTMANAGER_TOKEN"),
            prometheus_url=get("PIRA_PROMETHEUS_URL"),
            kubeconfig=get("KUBECONFIG"),
            in_cluster=bool(get("KUBERNETES_SERVICE_HOST")),
        )

    @property
    def has_chat_credentials(self) -> bool:
        return bool(self.slack_bot_token or self.telegram_token)

    def __repr__(self) -> str:  # never print a secret by accident
        url = _redact_url(self.database_url)
        return f"Env(database_url={url!r}, http={self.http_host}:{self.http_port})"


def _redact_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable url>"
