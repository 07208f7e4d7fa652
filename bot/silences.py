"""Alertmanager silences from chat (issue 16): ``/silence``, ``/silences``,
``/unsilence``. Alertmanager keeps the silences; PIRA asks it (async HTTP, nothing of
PIRA's database on the way) and, when a silence is about an incident, writes it on the
incident's timeline."""

from __future__ import annotations

from datetime import timedelta

from bot.clock import Clock
from bot.domain.incident import InvalidInput
from bot.incidents import Incidents
from bot.integrations.alertmanager_api import (
    AlertmanagerAPI,
    AlertmanagerAPIError,
    Matcher,
    Silence,
    check_id,
)
from bot.people import Actor

__all__ = ["Matcher", "Silence", "Silences", "SilencesOff"]

MAX_SILENCE = timedelta(days=7)
# Labels that say nothing about which alert it is (an incident's matchers leave them out).
NOT_MATCHED = frozenset({"severity", "pattern"})


class SilencesOff(InvalidInput):
    """PIRA_ALERTMANAGER_URL is not set."""


class Silences:
    def __init__(
        self, *, url: str | None, clock: Clock, incidents: Incidents, alertname: str | None
    ) -> None:
        self.api = AlertmanagerAPI(url) if url else None
        self.clock = clock
        self.incidents = incidents
        self.watchdog = alertname  # never silenced: it is the dead-man's switch

    def _api(self) -> AlertmanagerAPI:
        if self.api is None:
            raise SilencesOff(
                "Silences need Alertmanager's API: set PIRA_ALERTMANAGER_URL "
                "(e.g. http://alertmanager:9093) and restart PIRA."
            )
        return self.api

    def incident_matchers(self, number: int) -> list[Matcher]:
        """The matchers of an incident's alerts: its group's common labels (database
        work: call through the runner)."""
        incident = self.incidents.get(number)
        labels = (incident.details or {}).get("labels") or {}
        found = [Matcher(k, str(v)) for k, v in sorted(labels.items()) if k not in NOT_MATCHED]
        if not found:
            raise InvalidInput(
                f"#{number} has no alert labels to silence (it was not declared from "
                "alerts): name them, e.g. /silence 1h alertname=X namespace=spark"
            )
        return found

    async def create(
        self, *, duration: timedelta, matchers: list[Matcher], reason: str | None, by: Actor
    ) -> Silence:
        api = self._api()
        if not timedelta(minutes=1) <= duration <= MAX_SILENCE:
            raise InvalidInput("a silence lasts between 1m and 7d")
        if self.watchdog and any(
            m.name == "alertname" and m.value == self.watchdog for m in matchers
        ):
            raise InvalidInput(
                f"{self.watchdog} is the dead-man's switch: silencing it would declare "
                "“Monitoring is blind”; use /maintenance for planned work"
            )
        now = self.clock.now()
        comment = reason or f"silenced from chat by {by.name}"
        try:
            silence_id = await api.create(matchers, now, now + duration, by.handle, comment)
        except AlertmanagerAPIError as exc:
            raise InvalidInput(str(exc)) from None
        return Silence(
            silence_id, tuple(matchers), by.handle, comment, now, now + duration, "active"
        )

    async def active(self) -> list[Silence]:
        try:
            return await self._api().active()
        except AlertmanagerAPIError as exc:
            raise InvalidInput(str(exc)) from None

    async def expire(self, silence_id: str) -> Silence | None:
        """Expire one; the silence as it was (None: Alertmanager does not list it active)."""
        api = self._api()
        try:
            check_id(silence_id)
            before = next((s for s in await api.active() if s.id == silence_id), None)
            if before is None:
                raise InvalidInput(
                    f"no active silence {silence_id} (/silences lists the active ones)"
                )
            await api.expire(silence_id)
        except AlertmanagerAPIError as exc:
            raise InvalidInput(str(exc)) from None
        return before
