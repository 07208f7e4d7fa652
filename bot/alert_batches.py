"""Alert notifications, queued and applied in batches (group commit; issue 6).

Requests are parsed on arrival and queued; one worker applies everything queued
in *one* transaction on the store's database threads (``await store.run``),
then answers each request. Two identical posts at once land in the same batch
(one session: the second sees the first's incident); posts to two replicas meet
the unique ``incidents.alert_group_key`` (and ``number``): the loser's
transaction fails with an IntegrityError and is re-applied, now finding the
incident. A notification is answered only after the commit (and its
follow-ups); ``{"status": "error"}`` when it could not be stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from sqlalchemy.exc import IntegrityError

from bot.alert_mapping import AlertMapping, FollowUp, stored_key
from bot.integrations.alertmanager import AlertmanagerPayload
from bot.store import Store

log = logging.getLogger("pira.alerts")

# One transaction holds at most this much, so the database's write lock is never
# held long enough to stall commands and timers.
MAX_BATCH_PAYLOADS = 100
MAX_BATCH_ALERTS = 5000
MAX_QUEUE = 2000  # notifications waiting; beyond it the endpoint answers 503
CONFLICT_RETRIES = 5


@dataclass
class _Job:
    payload: AlertmanagerPayload
    future: asyncio.Future[dict[str, Any]]


@dataclass
class Batch:
    """One answer per notification, in order, and the verbs to run after the commit."""

    results: list[dict[str, Any]]
    followups: list[FollowUp] = field(default_factory=list)


class AlertBatches:
    def __init__(
        self,
        *,
        store: Store,
        mapping: AlertMapping,
        notify: Callable[[], None],
        declared: Callable[[list[int]], None] = lambda _numbers: None,
    ) -> None:
        """``declared``: told, on the loop after the commit, the incidents the batch
        declared (bot/arrival.py diagnoses them in the background); must not block."""
        self.store = store
        self.mapping = mapping
        self.notify = notify
        self.declared = declared
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    @property
    def full(self) -> bool:
        """Whether the queue holds as much as it may (the caller asks for a retry)."""
        return self._queue.qsize() >= MAX_QUEUE

    def submit(self, payload: AlertmanagerPayload) -> asyncio.Future[dict[str, Any]]:
        """Queue ``payload``; the future gets its answer once its batch is committed."""
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="alerts")
        job = _Job(payload, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(job)
        return job.future

    async def stop(self, _app: web.Application | None = None) -> None:
        """Stop the worker (an aiohttp cleanup callback)."""
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
                batch = await self.store.run(self._apply_and_follow_up, [j.payload for j in jobs])
            except Exception:
                log.exception("alert batch failed", extra={"notifications": len(jobs)})
                batch = Batch([{"status": "error"}] * len(jobs))
            self.notify()  # on the loop, where the outbox waits
            for job, result in zip(jobs, batch.results, strict=True):
                if not job.future.done():
                    job.future.set_result(result)
            numbers = [r["incident"] for r in batch.results if r.get("status") == "declared"]
            if numbers:
                try:
                    self.declared(numbers)
                except Exception:  # the worker goes on whatever a listener does
                    log.exception("declared-incident listener failed")

    def _apply_and_follow_up(self, payloads: list[AlertmanagerPayload]) -> Batch:
        batch = self.apply(payloads)
        # Verbs with their own transaction; rare and short.
        self.mapping.follow_up(batch.followups)
        return batch

    def apply(self, payloads: list[AlertmanagerPayload]) -> Batch:
        """Apply notifications in one transaction (re-applied on a conflict with another
        replica); when one of them fails otherwise, each alone so the others land.
        Synchronous database work: from async code, ``await store.run(apply, ...)``."""
        for _attempt in range(CONFLICT_RETRIES):
            batch = Batch([])
            try:
                with self.store.transaction() as s:
                    batch.results = [self.mapping.apply(s, p, batch.followups) for p in payloads]
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
        merged = Batch([])
        for payload in payloads:
            try:
                one = self.apply([payload])
            except Exception:
                log.exception(
                    "alert notification failed", extra={"group": stored_key(payload.group_key)}
                )
                merged.results.append({"status": "error"})
                continue
            merged.results.extend(one.results)
            merged.followups.extend(one.followups)
        return merged
