"""Alertmanager webhook → incidents (issue 6).

``POST /alertmanager`` takes Alertmanager's version-4 notification of an alert
*group*. One group (its ``groupKey``) is one incident: the first firing
notification declares it (severity from the labels, title from the summary,
start = earliest ``startsAt``), later ones update it.

No noise: Alertmanager re-sends a group every group/repeat interval and every
HA peer sends it too. What PIRA already knows of a group lives in the
incident's ``details["alerts"]`` (fingerprint → status, startsAt, resolutions),
so a re-sent group changes nothing and writes nothing. A new fingerprint adds a
timeline line; a resolved one is said once in the incident room.

Concurrency and storms: requests are parsed on arrival and queued; one worker
applies everything queued in *one* transaction (group commit) off the event
loop, then answers each request. Two identical posts at once land in the same
batch (one session: the second sees the first's incident); posts to two
replicas meet the unique ``incidents.alert_group_key`` (and ``number``): the
loser's transaction fails with an IntegrityError and is re-applied, now finding
the incident. Alertmanager gets 200 only after the commit; 503 (it retries)
when the queue is full or the database fails.

A group that fires again after its incident was resolved opens a *new*
incident when one of its firing alerts is new (a fingerprint the old incident
never saw, or a later ``startsAt``); the key moves to the new incident (the old
keeps it in ``details["alert_group_key"]``, the new one links ``repeat_of``).
Alerts still firing from before the resolution do not reopen anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.domain.incident import MAX_TITLE, InvalidInput, clean
from bot.integrations.alertmanager import (
    DEFAULT_SEVERITY_MAPPING,
    SEVERITIES,
    Alert,
    AlertmanagerPayload,
    PayloadError,
    SeverityMapping,
    group_severity,
    group_started_at,
    group_title,
    parse_payload,
)
from bot.messages import Button, Destination
from bot.people import Actor
from bot.store.models import Incident, TimelineEvent

if TYPE_CHECKING:
    from bot.app import App
    from bot.web import WebServer

log = logging.getLogger("pira.alerts")

SOURCE = "alertmanager"
ACTOR = Actor(key="alertmanager", name="alertmanager", roles=frozenset(), known=False)
# One transaction holds at most this much, so the database's write lock is never
# held long enough to stall commands and timers.
MAX_BATCH_PAYLOADS = 100
MAX_BATCH_ALERTS = 5000
MAX_QUEUE = 2000  # notifications waiting; beyond it 503 (Alertmanager retries)
ANSWER_TIMEOUT = 30.0
PARSE_INLINE = 256 * 1024  # larger bodies are parsed in a thread
MAX_LINKS = 5
SHOWN = 5  # alerts named in one room post
CONFLICT_RETRIES = 5
MAX_GROUP_KEY = 500  # the length of incidents.alert_group_key


@dataclass
class _Job:
    payload: AlertmanagerPayload
    future: asyncio.Future[dict[str, Any]]


@dataclass
class _Batch:
    results: list[dict[str, Any]]
    followups: list[tuple[str, int, str]] = field(default_factory=list)


class AlertIngest:
    def __init__(self, app: App) -> None:
        self.app = app
        self.settings = app.config.alertmanager
        self.mapping = SeverityMapping(
            label=self.settings.severity_label,
            aliases={**DEFAULT_SEVERITY_MAPPING.aliases, **self.settings.severity_map},
            default=self.settings.default_severity,
        )
        # Our own registry; register() adds it to the web server's, so /metrics shows it.
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pira_alertmanager_requests",
            "Webhook requests by outcome (accepted, unauthorized, forbidden, too_large, "
            "invalid, busy, error).",
            ["outcome"],
            registry=self.registry,
        )
        self.received = Counter(
            "pira_alertmanager_alerts_received",
            "Alerts in well-formed, authenticated notifications.",
            ["status"],
            registry=self.registry,
        )
        self.accepted = Counter(
            "pira_alertmanager_alerts_accepted",
            "Alerts applied to incidents (stored, or known already).",
            registry=self.registry,
        )
        self.rejected = Counter(
            "pira_alertmanager_alerts_rejected",
            "Alerts of well-formed notifications not applied (answered 503; Alertmanager retries).",
            registry=self.registry,
        )
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    def register(self, web_server: WebServer) -> None:
        """Add ``POST /alertmanager`` to the bot's HTTP server."""
        web_server.route("POST", "/alertmanager", self.handle)
        web_server.registry.register(self.registry)
        web_server.web.on_cleanup.append(self._stop_worker)
        if self.app.env.alertmanager_token is None:
            if self.settings.allow_unauthenticated:
                log.warning("alertmanager endpoint open without a token")
            else:
                log.info("alertmanager endpoint refuses posts: PIRA_ALERTMANAGER_TOKEN unset")

    # ---- HTTP ----------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        denied = self._authorize(request)
        if denied is not None:
            return denied
        cap = self.settings.max_body_bytes
        length = request.content_length
        if length is not None and length > cap:
            return self._reject(413, "too_large", f"body of {length} bytes is over {cap} bytes")
        body = await _read_capped(request, cap)
        if body is None:
            return self._reject(413, "too_large", f"body is over {cap} bytes")
        try:
            if len(body) > PARSE_INLINE:
                payload = await asyncio.to_thread(parse_payload, body)
            else:
                payload = parse_payload(body)
        except PayloadError as exc:
            return self._reject(400, "invalid", exc.reason)
        for alert in payload.alerts:
            self.received.labels(alert.status).inc()
        if self._queue.qsize() >= MAX_QUEUE:
            self.rejected.inc(len(payload.alerts))
            return self._reject(503, "busy", "too many notifications queued; retry", retry=5)
        self._start_worker()
        job = _Job(payload, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(job)
        try:
            result = await asyncio.wait_for(asyncio.shield(job.future), ANSWER_TIMEOUT)
        except TimeoutError:
            # Still applied later if the database comes back; a retry is then a no-op.
            self.rejected.inc(len(payload.alerts))
            return self._reject(503, "error", "the database did not answer in time; retry")
        if result.get("status") == "error":
            self.rejected.inc(len(payload.alerts))
            return self._reject(503, "error", "could not store the alerts; retry")
        self.accepted.inc(len(payload.alerts))
        self.requests.labels("accepted").inc()
        return web.json_response(result)

    def _authorize(self, request: web.Request) -> web.Response | None:
        token = self.app.env.alertmanager_token
        if token is None:
            if self.settings.allow_unauthenticated:
                return None
            return self._reject(
                403,
                "forbidden",
                "alert ingestion is off: PIRA_ALERTMANAGER_TOKEN is not set "
                "(or set alertmanager.allow_unauthenticated: true)",
            )
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            return self._reject(401, "unauthorized", "missing bearer token")
        # Header bytes that are not UTF-8 arrive as surrogate escapes: compare the bytes
        # as sent (any non-ASCII token is simply wrong).
        sent = given.encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(sent, token.encode()):
            return self._reject(401, "unauthorized", "wrong bearer token")
        return None

    def _reject(self, status: int, outcome: str, reason: str, retry: int = 0) -> web.Response:
        self.requests.labels(outcome).inc()
        log.warning("alertmanager post refused", extra={"status": status, "reason": reason})
        headers = {"WWW-Authenticate": 'Bearer realm="pira"'} if status == 401 else {}
        if retry:
            headers["Retry-After"] = str(retry)
        return web.json_response({"error": reason}, status=status, headers=headers)

    # ---- the worker: group commit --------------------------------------------

    def _start_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="alerts")

    async def _stop_worker(self, _app: web.Application | None = None) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    async def _work(self) -> None:
        while True:
            jobs = [await self._queue.get()]
            alerts = len(jobs[0].payload.alerts)
            while (
                not self._queue.empty()
                and len(jobs) < MAX_BATCH_PAYLOADS
                and alerts < MAX_BATCH_ALERTS
            ):
                jobs.append(self._queue.get_nowait())
                alerts += len(jobs[-1].payload.alerts)
            try:
                batch = await asyncio.to_thread(self.apply, [j.payload for j in jobs])
                # Verbs with their own transaction; rare, short, and they wake the
                # outbox, which must happen on the loop.
                self._follow_up(batch.followups)
            except Exception:
                log.exception("alert batch failed", extra={"notifications": len(jobs)})
                batch = _Batch([{"status": "error"}] * len(jobs))
            self.app.outbox.notify()
            for job, result in zip(jobs, batch.results, strict=True):
                if not job.future.done():
                    job.future.set_result(result)

    def apply(self, payloads: list[AlertmanagerPayload]) -> _Batch:
        """Apply notifications in one transaction (re-applied on a conflict with another
        replica); when one of them fails otherwise, each alone so the others land."""
        for _attempt in range(CONFLICT_RETRIES):
            batch = _Batch([])
            try:
                with self.app.store.transaction() as s:
                    batch.results = [self._apply(s, p, batch.followups) for p in payloads]
                return batch
            except IntegrityError:
                log.info("alert batch met another replica's change; re-applying")
            except Exception:
                if len(payloads) == 1:
                    raise
                log.exception("alert batch failed; applying one by one")
                break
        if len(payloads) == 1:
            raise RuntimeError("alert group kept conflicting with another replica")
        merged = _Batch([])
        for payload in payloads:
            try:
                one = self.apply([payload])
            except Exception:
                log.exception(
                    "alert notification failed", extra={"group": _stored_key(payload.group_key)}
                )
                merged.results.append({"status": "error"})
                continue
            merged.results.extend(one.results)
            merged.followups.extend(one.followups)
        return merged

    def _follow_up(self, followups: list[tuple[str, int, str]]) -> None:
        for kind, number, severity in followups:
            try:
                if kind == "severity":
                    self.app.incidents.set_severity(
                        number=number, severity=severity, by=ACTOR, source=SOURCE
                    )
                else:
                    self.app.incidents.resolve(
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
                # The next notification of the group finds it still to do.
                log.exception("alert follow-up failed", extra={"incident": number, "kind": kind})

    # ---- one notification ----------------------------------------------------

    def _apply(
        self, s: Session, p: AlertmanagerPayload, followups: list[tuple[str, int, str]]
    ) -> dict[str, Any]:
        key = _stored_key(p.group_key)
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

    def _declare(self, s: Session, p: AlertmanagerPayload, repeat_of: int | None) -> dict[str, Any]:
        now = self.app.clock.now()
        severity = group_severity(p, self.mapping)
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
        incident = self.app.incidents.declare(
            severity=severity,
            title=title,
            by=ACTOR,
            source=SOURCE,
            started_at=min(group_started_at(p) or now, now),
            alert_group_key=_stored_key(p.group_key),
            details=details,
            session=s,
        )
        firing = len(p.firing_alerts)
        text = f"Alertmanager: {firing} alert(s) firing in group {_group_name(p)}"
        if repeat_of is not None:
            text += f"; the group fired again after #{repeat_of} was resolved"
        self._event(s, incident, "alert", text, now)
        log.info(
            "incident declared from alerts",
            extra={"incident": incident.number, "severity": severity, "alerts": firing},
        )
        return {"status": "declared", "incident": incident.number, "severity": severity}

    def _update(
        self,
        s: Session,
        incident: Incident,
        p: AlertmanagerPayload,
        followups: list[tuple[str, int, str]],
    ) -> dict[str, Any]:
        now = self.app.clock.now()
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
                self._event(s, incident, "alert", f"new alert: {_describe(a, p)}", now)
            self.app.poster.post(
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
                self._event(s, incident, "alert", f"alert resolved: {_describe(a, p)}", now)
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
            self.app.poster.post(
                s,
                incident.id,
                room,
                "text",
                {"text": text},
                f"inc{number}:alerts-resolved:{_digest(resolved)}",
                buttons,
            )
        if p.firing_alerts and incident.is_open:
            severity = group_severity(p, self.mapping)
            if SEVERITIES.index(severity) < SEVERITIES.index(incident.severity):
                followups.append(("severity", number, severity))
        if not (new or resolved):
            return {"status": "unchanged", "incident": number}
        details["alerts"] = seen
        details["links"] = _links(list(details.get("links", [])), new)
        incident.details = details  # a new dict: JSON columns do not track mutation
        return {"status": "updated", "incident": number, "new": len(new), "resolved": len(resolved)}

    def _event(self, s: Session, incident: Incident, kind: str, text: str, at: datetime) -> None:
        s.add(
            TimelineEvent(
                incident_id=incident.id,
                at=at,
                actor=ACTOR.handle,
                source=SOURCE,
                kind=kind,
                text=text[:2000],
            )
        )


# ---- helpers ---------------------------------------------------------------------


async def _read_capped(request: web.Request, cap: int) -> bytes | None:
    """The body, or None once it exceeds ``cap`` (chunked bodies have no length)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _stored_key(group_key: str) -> str:
    """The group key as ``incidents.alert_group_key`` holds it: as sent when it fits the
    column, else its beginning and a digest of the whole (still one key per group)."""
    if len(group_key) <= MAX_GROUP_KEY:
        return group_key
    digest = hashlib.sha256(group_key.encode()).hexdigest()
    return f"{group_key[: MAX_GROUP_KEY - 72]}#sha256:{digest}"


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
