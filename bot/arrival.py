"""Diagnosed on arrival (issue 17, part 1): an incident declared from alerts gets, in its
room, /health narrowed to the alert's labels — the pods it names, their Warning events and
last error lines, the runbook patterns matched with their evidence, and the guarded
mitigation buttons (each asks for confirmation when clicked).

Off the request path: the batch worker (bot/alert_batches.py) hands over the numbers it
declared once they are committed and answered; a task per incident does the rest. The
snapshot is its own post, stored once the incident's announcement and due page are out
(or after :data:`ANNOUNCED_WAIT` whatever they do): it never delays them and arrives after
them. At most :data:`CONCURRENT` diagnoses run at once and :data:`MAX_WAITING` are kept;
beyond that (an alert storm), a declared incident gets a one-line hint to run /health.

Scope from the alert's (common) labels: ``namespace`` (else the configured one); the pods
named by ``pod``, else selected by ``app`` or ``app.kubernetes.io/name``, else the
configured selector. The actions stay the platform's (configured namespace): a driver
button is offered only for pods there.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.alert_groups import ACTOR, SOURCE
from bot.clock import Clock
from bot.diagnostics import HEALTH_BUDGET, Diagnostics, HealthReport, Scope
from bot.domain.categories import parse_category
from bot.domain.incident import InvalidInput
from bot.incidents import Incidents
from bot.integrations.kube import LogLine, PodInfo
from bot.messages import Button, Destination
from bot.outbox import Poster
from bot.store import Store
from bot.store.models import Incident, OutboxMessage, Timer

log = logging.getLogger("pira.arrival")

BUDGET = 5.0  # the whole diagnosis, as /health's answer (its parts get HEALTH_BUDGET)
ANNOUNCED_WAIT = HEALTH_BUDGET  # the longest the snapshot waits for the announcement and page
POLL = 0.1  # how often the outbox is looked at meanwhile (the posts may leave on another replica)
CONCURRENT = 4  # diagnoses at once: an alert storm does not fire 200 at the API server
MAX_WAITING = 12  # diagnoses running or queued; beyond, the one-line hint
LOG_PODS = 3  # pods whose last error lines are shown
LOG_LINES = 10  # lines per pod
MAX_LINE = 300  # characters of one line
KILL_BUTTONS = 2
# Label values (and namespaces) as Kubernetes allows them: anything else selects nothing.
LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
APP_LABELS = ("app", "app.kubernetes.io/name")


def scope_of(labels: dict[str, str]) -> tuple[Scope, str] | None:
    """The scope an alert's labels name, and its wording; None when they name something
    Kubernetes cannot hold (an invalid namespace)."""
    namespace = labels.get("namespace") or None
    if namespace is not None and not NAMESPACE.fullmatch(namespace):
        return None
    where = [f"namespace {namespace}"] if namespace else []
    pod = labels.get("pod")
    if pod:
        where.append(f"pod {pod}")
        return Scope(namespace, "", (pod,)), ", ".join(where)
    for key in APP_LABELS:
        value = labels.get(key)
        if value and LABEL_VALUE.fullmatch(value):
            where.append(f"{key}={value}")
            return Scope(namespace, f"{key}={value}"), ", ".join(where)
    where.append("the platform's pods")
    return Scope(namespace), ", ".join(where)


def _troubled(p: PodInfo) -> bool:
    return (
        p.phase == "Failed"
        or p.crash_looping
        or "OOMKilled" in (p.reason, p.last_terminated_reason)
    )


def last_error_lines(pods: list[PodInfo], lines: list[LogLine]) -> list[dict[str, Any]]:
    """The last error lines of up to :data:`LOG_PODS` pods, the troubled ones first."""
    by_pod: dict[str, list[LogLine]] = {}
    for ln in lines:
        by_pod.setdefault(ln.pod, []).append(ln)
    trouble = {p.name for p in pods if _troubled(p)}
    order = sorted(by_pod, key=lambda name: name not in trouble)  # stable: else as read
    shown = []
    for name in order[:LOG_PODS]:
        found = by_pod[name]
        several = len({ln.container for ln in found}) > 1
        texts = [(f"[{ln.container}] " if several else "") + ln.text.strip() for ln in found]
        texts = [t if len(t) <= MAX_LINE else t[: MAX_LINE - 1] + "…" for t in texts]
        shown.append({"pod": name, "lines": texts[-LOG_LINES:], "more": len(texts) > LOG_LINES})
    return shown


class Arrival:
    def __init__(
        self,
        *,
        store: Store,
        diagnostics: Diagnostics,
        incidents: Incidents,
        poster: Poster,
        clock: Clock,
        notify: Callable[[], None],
    ) -> None:
        """``notify`` wakes the outbox."""
        self.store = store
        self.diagnostics = diagnostics
        self.incidents = incidents
        self.poster = poster
        self.clock = clock
        self.notify = notify
        self._slots = asyncio.Semaphore(CONCURRENT)
        self._waiting = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def declared(self, numbers: list[int]) -> None:
        """Incidents just declared from alerts (committed): diagnose each in the
        background. Called on the event loop; returns at once."""
        if not numbers or not self.diagnostics.cluster_configured:
            return  # no cluster to look at: no snapshot (the announcement says enough)
        loop = asyncio.get_running_loop()
        for number in numbers:
            if self._waiting < MAX_WAITING:
                self._waiting += 1
                task = loop.create_task(self._diagnose(number), name=f"arrival #{number}")
            else:
                task = loop.create_task(self._hint(number), name=f"arrival hint #{number}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @property
    def busy(self) -> int:
        """Diagnoses (and hints) started and not finished."""
        return len(self._tasks)

    async def stop(self) -> None:
        """Cancel the diagnoses still running (the bot stops)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- one incident ------------------------------------------------------------------------

    async def _diagnose(self, number: int) -> None:
        try:
            async with self._slots:
                await self._snapshot(number)
        except Exception:  # a background task: logged, never raised into the loop
            log.exception("diagnosis on arrival failed", extra={"incident": number})
        finally:
            self._waiting -= 1

    async def _hint(self, number: int) -> None:
        text = (
            f"🩺 #{number}: too many alerts at once to diagnose each on arrival; "
            "run /health in this room."
        )
        try:
            await self.store.run(self._post, number, "text", {"text": text}, ())
        except Exception:
            log.exception("arrival hint failed", extra={"incident": number})

    async def _snapshot(self, number: int) -> None:
        labels = await self.store.run(self._labels, number)
        if labels is None:
            return  # gone, or resolved already
        scoped = scope_of(labels)
        announced = asyncio.ensure_future(self._announced(number))
        try:
            if scoped is None:
                await announced
                text = (
                    f"🩺 #{number}: the alert's namespace {labels.get('namespace')!r} is not a "
                    "Kubernetes name; nothing to diagnose. /health shows the whole platform."
                )
                await self.store.run(self._post, number, "text", {"text": text}, ())
                return
            scope, where = scoped
            try:
                report = await asyncio.wait_for(self.diagnostics.health(scope), BUDGET)
            except TimeoutError:
                report = None
            await announced
        finally:
            announced.cancel()
        if report is None:
            text = f"🩺 #{number}: no diagnosis within {BUDGET:g} s ({where}); run /health."
            await self.store.run(self._post, number, "text", {"text": text}, ())
            return
        if self._names_nothing(scope, report):
            text = (
                f"🩺 #{number}: nothing in the cluster matches the alert ({where}): no such "
                "pods. /health in this room shows the whole platform."
            )
            await self.store.run(self._post, number, "text", {"text": text}, ())
            return
        data, buttons = self._view(number, where, scope, report)
        posted = await self.store.run(self._post, number, "arrival", data, buttons)
        patterns = report.data["patterns"]
        if posted and patterns:
            # As /health in the room: kept for the root cause's category.
            with contextlib.suppress(InvalidInput):  # resolved meanwhile
                await self.store.run(
                    functools.partial(
                        self.incidents.saw_pattern,
                        number=number,
                        category=parse_category(patterns[0]["name"]),
                        by=ACTOR,
                        source=SOURCE,
                    )
                )
        log.info(
            "diagnosed on arrival",
            extra={"incident": number, "patterns": [p["name"] for p in patterns]},
        )

    @staticmethod
    def _names_nothing(scope: Scope, report: HealthReport) -> bool:
        """Whether the cluster has nothing of what the alert names: the pods it names (or
        selects) are not there; naming only a namespace, it has no pods and no events.
        The platform's own state (nodes, executors) is not the alert's: /health shows it."""
        facts = report.facts
        if facts.pods != []:  # some, or unknown
            return False
        return bool(scope.pods or scope.selector is not None) or not facts.events

    def _view(
        self, number: int, where: str, scope: Scope, report: HealthReport
    ) -> tuple[dict[str, Any], tuple[Button, ...]]:
        facts = report.facts
        buttons = list(report.buttons)
        platform = scope.namespace in (None, self.diagnostics.settings.namespace)
        if platform and any(p["name"] == "Driver OOM" for p in report.data["patterns"]):
            oomed = [p.name for p in facts.drivers if _troubled(p)]
            for name in oomed[:KILL_BUTTONS]:  # the job restarts without the killed driver
                buttons.append(Button(f"Kill driver {name}", f"/kill {name} #{number}", "danger"))
        buttons.append(Button("Whole platform: /health", "/health"))
        data = {
            **report.data,
            "number": number,
            "scope": where,
            "logs": last_error_lines(facts.pods or [], facts.error_lines or []),
            "logs_known": facts.error_lines is not None,
            "actions": [b.command for b in buttons[:-1]],
        }
        return data, tuple(buttons)

    # ---- database (the store's threads) ------------------------------------------------------

    def _labels(self, number: int) -> dict[str, str] | None:
        with self.store.read() as s:
            incident = s.scalar(select(Incident).where(Incident.number == number))
            if incident is None or not incident.is_open:
                return None
            labels = (incident.details or {}).get("labels") or {}
            return {str(k): str(v) for k, v in labels.items()}

    async def _announced(self, number: int) -> None:
        """Wait until the incident's posts outside its room (announcement, pages) are out
        and no page of it is due unsent; at most :data:`ANNOUNCED_WAIT`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ANNOUNCED_WAIT
        while await self.store.run(self._still_announcing, number):
            if loop.time() >= deadline:
                log.info(
                    "snapshot posted before the announcement was out", extra={"incident": number}
                )
                return
            await asyncio.sleep(POLL)

    def _still_announcing(self, number: int) -> bool:
        with self.store.read() as s:
            incident_id = s.scalar(select(Incident.id).where(Incident.number == number))
            if incident_id is None:
                return False
            page_due = s.scalar(
                select(Timer.id)
                .where(Timer.incident_id == incident_id, Timer.kind == "page")
                .where(Timer.due_at <= self.clock.now())
                .where(Timer.fired_at.is_(None), Timer.cancelled_at.is_(None))
                .limit(1)
            )
            if page_due is not None:
                return True
            unsent = s.scalar(
                select(OutboxMessage.id)
                .where(OutboxMessage.incident_id == incident_id)
                .where(OutboxMessage.destination != Destination.incident(number).value)
                .where(OutboxMessage.status == "pending")
                .limit(1)
            )
            return unsent is not None

    def _post(
        self, number: int, template: str, data: dict[str, Any], buttons: tuple[Button, ...]
    ) -> bool:
        """The snapshot (or its one line) in the incident's room, once per incident."""
        try:
            with self.store.transaction() as s:
                incident = s.scalar(select(Incident).where(Incident.number == number))
                if incident is None or not incident.is_open:
                    return False
                self.poster.post(
                    s,
                    incident.id,
                    Destination.incident(number),
                    template,
                    data,
                    f"inc{number}:snapshot",
                    buttons,
                )
        except IntegrityError:  # another replica posted it first
            return False
        self.notify()  # callable from any thread
        return True
