"""The dead-man's switch for monitoring (issue 16): Prometheus' always-firing
``Watchdog`` alert reaches PIRA through Alertmanager every minute
(deploy/prometheus/rules.yaml, deploy/alertmanager/alertmanager.yaml). Each firing
notification re-arms one durable timer ``alerts.watchdog.silent_after`` ahead; when
the timer fires — nothing heard for that long: Prometheus, Alertmanager or the path
to PIRA is down — PIRA declares a P1 "Monitoring is blind" incident, which pages as
any other. When Watchdog is heard again, PIRA says so and resolves it.

The timer is armed by the first notification (a PIRA whose monitoring was never
connected has nothing to miss), lives in the ``timers`` table (a restart keeps it),
and has one pending row under a fixed key: re-arming moves it; firing renames it so
the next notification arms a new one. The blind incident holds a fixed alert-group
key, so two replicas can never declare two.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.clock import Clock
from bot.domain.durations import humanize
from bot.integrations.alertmanager import Alert
from bot.messages import Destination
from bot.people import Actor
from bot.settings import Config
from bot.store.models import Incident, Timer

if TYPE_CHECKING:
    from bot.incidents import Incidents
    from bot.maintenance import MaintenanceWindows
    from bot.outbox import Poster

log = logging.getLogger("pira.alerts")

KIND = "watchdog"  # the timer kind
ARMED = "watchdog"  # the pending timer's key
GROUP_KEY = "pira:watchdog"  # the blind incident's alert-group key
SOURCE = "watchdog"
ACTOR = Actor(key="watchdog", name="watchdog", roles=frozenset(), known=False)


class WatchdogTimer:
    def __init__(
        self,
        *,
        config: Config,
        clock: Clock,
        incidents: Incidents,
        poster: Poster,
        maintenance: MaintenanceWindows,
    ) -> None:
        self.config = config
        self.clock = clock
        self.incidents = incidents
        self.poster = poster
        self.maintenance = maintenance

    def heard(self, s: Session, alerts: list[Alert]) -> None:
        """Watchdog's notification (in the alert batch's transaction): a firing one
        re-arms the timer and ends a blind incident; a resolved one (the rule stopped
        firing) arms nothing, so silence is noticed ``silent_after`` after the last."""
        dog = self.config.alerts.watchdog
        if dog is None or not any(a.firing for a in alerts):
            return
        now = self.clock.now()
        due = now + dog.silent_after
        timer = s.scalar(select(Timer).where(Timer.key == ARMED).with_for_update())
        if timer is None:
            # Two replicas arming at once meet the unique key: the batch is re-applied.
            s.add(Timer(key=ARMED, kind=KIND, step=0, due_at=due))
        elif timer.due_at < due:
            timer.due_at = due
        blind = self._blind(s)
        if blind is not None and blind.is_open:
            self.poster.post(
                s,
                blind.id,
                Destination.incidents(),
                "text",
                {"text": f"👁 Watchdog is heard again: monitoring sees. Resolving #{blind.number}."},
                f"inc{blind.number}:watchdog-back",
            )
            self.incidents.resolve(
                number=blind.number,
                root_cause="Watchdog notifications resumed: monitoring sees again",
                resolution="resolved automatically when Watchdog was heard again",
                by=ACTOR,
                source=SOURCE,
                session=s,
            )

    def fire(self, s: Session, timer: Timer, now: datetime, late: str | None) -> None:
        """Nothing heard for ``silent_after``: declare "Monitoring is blind" (once)."""
        timer.key = f"{ARMED}:fired:{timer.id}"  # the next notification arms anew
        dog = self.config.alerts.watchdog
        if dog is None:
            return
        blind = self._blind(s)
        if blind is not None:
            if blind.is_open:
                return
            blind.alert_group_key = None  # resolved: its key goes to the new one
            s.flush()
        silent = humanize(now - timer.due_at + dog.silent_after)
        details: dict[str, object] = {
            "source": SOURCE,
            "labels": {"alertname": dog.alertname},
            "alerts": {},
            "page_at_once": True,  # silent for long enough already
        }
        held = self.maintenance.held(s, now)
        if held is not None:
            details["held"] = {"until": held.until.isoformat(), "reason": held.reason}
        incident = self.incidents.declare(
            severity="P1",
            title=f"Monitoring is blind: no {dog.alertname} notification for {silent}",
            impact="Alerts cannot reach PIRA: an incident would go unnoticed. Check "
            "Prometheus, Alertmanager and the route to PIRA.",
            by=ACTOR,
            source=SOURCE,
            started_at=timer.due_at - dog.silent_after,
            alert_group_key=GROUP_KEY,
            details=details,
            session=s,
        )
        log.warning("monitoring is blind", extra={"incident": incident.number, "silent": silent})

    @staticmethod
    def _blind(s: Session) -> Incident | None:
        return s.scalar(
            select(Incident).where(Incident.alert_group_key == GROUP_KEY).with_for_update()
        )
