"""Alertmanager webhook payloads (version 4): models, parsing and pure helpers.

Alertmanager POSTs one JSON document per notification of an alert *group*
(see https://prometheus.io/docs/alerting/latest/configuration/#webhook_config).
:func:`parse_payload` turns the raw request body into an
:class:`AlertmanagerPayload` or raises :class:`PayloadError` whose ``reason``
is short enough to send back in a 400 answer.

The models ignore fields they do not know (newer Alertmanagers may add some)
and are strict on what PIRA relies on: ``version`` must be ``"4"``,
``groupKey`` must be present (it is the dedup key of a group), every alert
needs ``status``, ``labels``, ``startsAt`` (an RFC 3339 timestamp with a
timezone) and ``fingerprint`` (the dedup key of one alert). Alertmanager's zero
time ``0001-01-01T00:00:00Z`` — sent as ``endsAt`` of alerts without an end —
becomes ``None``.

What PIRA can understand in part it keeps, the rest it drops, so that no
notification is refused forever (Alertmanager retries a 5xx without end):

* strings lose their control characters (PostgreSQL refuses NUL in text) and
  lone surrogates become U+FFFD (they are not UTF-8: no database takes them);
  a ``groupKey`` or ``fingerprint`` with nothing left is refused;
* a ``startsAt`` or ``endsAt`` that has no UTC equivalent (``0001-01-01T00:30+01:00``
  is in year 0) or lies before 1970 is unknown: ``None``;
* a body nested too deeply or with a number of thousands of digits is refused
  with a reason, like any malformed JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from bot.domain.incident import clean
from bot.domain.severity import SEVERITIES, Severity

__all__ = [
    "DEFAULT_SEVERITY_MAPPING",
    "SEVERITIES",
    "Alert",
    "AlertStatus",
    "AlertmanagerPayload",
    "PayloadError",
    "Severity",
    "SeverityMapping",
    "group_severity",
    "group_started_at",
    "group_title",
    "parse_payload",
    "severity_from_labels",
]

AlertStatus = Literal["firing", "resolved"]

# Go's zero time.Time, which Alertmanager sends for "no end time".
_ZERO_TIME_PREFIX = "0001-01-01T00:00:00"
_MAX_REASON = 200
# Earlier start and end times are not real alert times (Go's zero time, typos): unknown.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


def _not_empty(text: str) -> str:
    if not text:
        raise ValueError("empty (once control characters are removed)")
    return text


def _known_time(value: datetime | None) -> datetime | None:
    """A time PIRA can store and compare, else ``None`` (unknown)."""
    if value is None:
        return None
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:  # no UTC equivalent within years 1..9999
        return None
    return value if in_utc >= EARLIEST else None


# Strings as any database stores them (``clean``: no control characters, which PostgreSQL
# refuses as NUL; lone surrogates, which are not UTF-8, replaced by U+FFFD).
Text = Annotated[str, AfterValidator(clean)]
# (No min_length: pydantic's length check refuses lone surrogates before clean() runs.)
Key = Annotated[str, AfterValidator(clean), AfterValidator(_not_empty)]
Labels = dict[Text, Text]
Time = Annotated[AwareDatetime | None, AfterValidator(_known_time)]


class PayloadError(ValueError):
    """The request body is not a usable Alertmanager version-4 payload.

    ``reason`` is a short, user-safe sentence (no payload echo beyond field
    names) meant for a 400 answer and the log.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason[:_MAX_REASON]
        super().__init__(self.reason)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class Alert(_Model):
    """One alert of a notification."""

    status: AlertStatus
    labels: Labels
    annotations: Labels = Field(default_factory=dict)
    # None: unknown (null, or no representable time); the field itself is required.
    starts_at: Time = Field(alias="startsAt")
    ends_at: Time = Field(default=None, alias="endsAt")
    generator_url: Text = Field(default="", alias="generatorURL")
    fingerprint: Key

    @field_validator("ends_at", mode="before")
    @classmethod
    def _zero_time_is_none(cls, value: Any) -> Any:
        if value in (None, "") or (isinstance(value, str) and value.startswith(_ZERO_TIME_PREFIX)):
            return None
        return value

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def summary(self) -> str:
        return self.annotations.get("summary", "")

    @property
    def firing(self) -> bool:
        return self.status == "firing"


class AlertmanagerPayload(_Model):
    """The body of one webhook notification (``version: "4"``)."""

    version: Literal["4"]
    group_key: Key = Field(alias="groupKey")
    receiver: Text
    status: AlertStatus
    alerts: list[Alert]
    group_labels: Labels = Field(default_factory=dict, alias="groupLabels")
    common_labels: Labels = Field(default_factory=dict, alias="commonLabels")
    common_annotations: Labels = Field(default_factory=dict, alias="commonAnnotations")
    external_url: Text = Field(default="", alias="externalURL")
    truncated_alerts: int = Field(default=0, ge=0, alias="truncatedAlerts")

    @property
    def firing_alerts(self) -> list[Alert]:
        return [a for a in self.alerts if a.firing]

    @property
    def resolved_alerts(self) -> list[Alert]:
        return [a for a in self.alerts if not a.firing]


def _describe(error: Mapping[str, Any]) -> str:
    loc = ""
    for part in error.get("loc", ()):
        loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
    kind = error.get("type", "")
    if kind == "missing":
        return f"missing field {loc}"
    msg = str(error.get("msg", "invalid value"))
    return f"invalid field {loc}: {msg}" if loc else msg


_TOO_DEEP = "nested too deeply to be an Alertmanager payload"


def _shown(value: Any) -> str:
    """A short picture of a wrong value, safe for any JSON (no recursion, no megabytes)."""
    if value is None or isinstance(value, bool | int | float | str):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return f"of type {type(value).__name__}"


def parse_payload(raw: bytes | str) -> AlertmanagerPayload:
    """Parse a webhook request body.

    Raises :class:`PayloadError` for malformed JSON (including nesting deeper
    than Python's recursion limit and integers beyond its digit limit), a
    non-object body, a version other than ``"4"`` and missing or ill-typed
    fields; never anything else.
    """
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise PayloadError(_TOO_DEEP) from None
    except ValueError:  # an integer beyond Python's digit limit (sys.get_int_max_str_digits)
        raise PayloadError("malformed JSON: a number has too many digits") from None
    if not isinstance(data, dict):
        raise PayloadError("payload must be a JSON object")
    if "version" not in data:
        raise PayloadError('missing field version (expected "4")')
    if data["version"] != "4":
        raise PayloadError(f'unsupported payload version {_shown(data["version"])} (expected "4")')
    try:
        return AlertmanagerPayload.model_validate(data)
    except RecursionError:
        raise PayloadError(_TOO_DEEP) from None
    except ValidationError as exc:
        errors = exc.errors()
        reason = _describe(errors[0])
        if len(errors) > 1:
            reason += f" (and {len(errors) - 1} more)"
        raise PayloadError(reason) from None


_DEFAULT_ALIASES: dict[str, Severity] = {
    "critical": "P0",
    "page": "P0",
    "high": "P1",
    "error": "P1",
    "major": "P1",
    "warning": "P2",
    "medium": "P2",
    "minor": "P2",
    "low": "P3",
    "info": "P3",
    "none": "P3",
}


class SeverityMapping(_Model):
    """How an alert's labels map to a runbook severity.

    ``label`` is read first; ``p0``..``p3`` (any case) are taken as they are,
    other values go through ``aliases`` (keys compared lower-case), and an
    alert without the label or with an unknown value gets ``default``.
    """

    label: str = "severity"
    aliases: dict[str, Severity] = Field(default_factory=lambda: dict(_DEFAULT_ALIASES))
    default: Severity = "P2"

    @field_validator("aliases", mode="after")
    @classmethod
    def _lower_keys(cls, value: dict[str, Severity]) -> dict[str, Severity]:
        return {k.strip().lower(): v for k, v in value.items()}


DEFAULT_SEVERITY_MAPPING = SeverityMapping()


def severity_from_labels(
    labels: Mapping[str, str], mapping: SeverityMapping = DEFAULT_SEVERITY_MAPPING
) -> Severity:
    """The runbook severity of one alert's labels (see :class:`SeverityMapping`)."""
    value = labels.get(mapping.label, "").strip()
    upper = value.upper()
    for severity in SEVERITIES:
        if upper == severity:
            return severity
    return mapping.aliases.get(value.lower(), mapping.default)


def group_severity(
    payload: AlertmanagerPayload, mapping: SeverityMapping = DEFAULT_SEVERITY_MAPPING
) -> Severity:
    """The most severe severity among the firing alerts (all alerts if none fires)."""
    alerts = payload.firing_alerts or payload.alerts
    if not alerts:
        return severity_from_labels(payload.common_labels, mapping)
    return min((severity_from_labels(a.labels, mapping) for a in alerts), key=SEVERITIES.index)


def group_title(payload: AlertmanagerPayload) -> str:
    """A one-line title: the first firing alert's summary, else its alertname.

    Falls back to the first alert when none fires, then to the group labels.
    """
    alerts = payload.firing_alerts or payload.alerts
    for alert in alerts[:1]:
        return alert.summary.strip() or alert.alertname or "Alertmanager alert"
    name = payload.group_labels.get("alertname") or payload.common_labels.get("alertname")
    return name or "Alertmanager alert"


def group_started_at(payload: AlertmanagerPayload) -> datetime | None:
    """The earliest known ``startsAt`` of the group's alerts (``None`` for an empty group
    or when no start is known)."""
    return min((a.starts_at for a in payload.alerts if a.starts_at is not None), default=None)
