"""The runbook's defaults: its severity table ("Severity Levels", "Escalation
Triggers") and its on-call chain ("On-Call Structure"), with the models they are
written in. A configuration file overrides them key by key (see :mod:`bot.settings`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, field_validator

from bot.domain.severity import Severity
from bot.settings_fields import Duration, Strict, severity_key

# Where a page can go (bot/notify.py): a chat DM, or a phone through a notifier.
Notifier = Literal["chat", "ntfy", "pagerduty", "webhook"]
NOTIFIERS: tuple[str, ...] = ("chat", "ntfy", "pagerduty", "webhook")


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
    # Its response and update times count in business time (the business calendar):
    # the runbook's "next business day" for P3.
    business_time: bool = False
    # Notifiers every page of this severity also goes to, whatever the person's
    # own ``notify`` (e.g. P0 always to the phone: [ntfy]).
    notify_also: tuple[Notifier, ...] = ()


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
        business_time=True,
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
            return {severity_key(k): d for k, d in v.items()}
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
