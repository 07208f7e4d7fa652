"""The delivery engine: the outbox's pending posts out to the platforms, each once.

**Lanes.** A lane is one room on one platform (platform, destination). Each lane
drains in its own task, in the order its posts were stored, at its own pace; a lane
that waits (a 429's ``retry_after``, a 5xx back-off, a channel's pacing) holds only
itself while the others go on. A dispatcher starts a task for every lane with a due
post and none running (at most ``max_lanes`` at once).

**Leader only.** Only the replica holding the lease delivers: the platforms' pacing
(one post a second per Slack channel) lives in that replica's adapters, which one
deliverer per platform keeps exact, and APScheduler is leader-only anyway. So rows
are not claimed with ``FOR UPDATE SKIP LOCKED``; a replica that lost the lease is
kept out by fencing instead.

**Exactly once.** Before the first request that could post it, the adapter reports
the post admitted by the platform's rate limiter (``Outbound.admitted``): the row
records ``attempted_at`` in a transaction that also checks the lease (the fence).
A post attempted before — by a process killed since, or a leader paused past its
lease — may have arrived: the adapter gets ``attempted_at`` and looks for it (Slack:
the channel's history, by the metadata key) before sending again. The row is marked
sent right after the platform accepted it (not fenced: that can only prevent a resend).

**Timers first.** While due timers are being fired, lanes wait to send their next post
(:meth:`OutboxWorker.firing`).

**Folds.** Pages to one person that pile up in their DM lane go out as one message,
recorded as such with the attempt (bot/delivery_fold.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from bot import delivery_fold as fold
from bot.clock import Clock
from bot.messages import Button, Destination
from bot.outbox import (
    SENDING,
    Adapter,
    Attachment,
    DeliveryError,
    FenceCheck,
    Fenced,
    Outbound,
)
from bot.render import Renderer
from bot.store import Store
from bot.store.models import OutboxMessage, StoredFile

log = logging.getLogger("pira.outbox")

MAX_BACKOFF = timedelta(minutes=5)
Lane = tuple[str, str]  # (platform, destination)


class OutboxWorker:
    def __init__(
        self,
        *,
        store: Store,
        adapters: dict[str, Adapter],
        renderer: Renderer,
        clock: Clock,
        fence: Callable[[], FenceCheck | None] | None = None,
        batch: int = 50,
        max_lanes: int = 64,
    ) -> None:
        self.store = store
        self.adapters = adapters
        self.renderer = renderer
        self.clock = clock
        # () -> FenceCheck | None: the lease now (None: no leadership, e.g. one
        # process in tests, where nothing fences).
        self.fence = fence or (lambda: None)
        self.batch = batch
        self.max_lanes = max_lanes
        self._wake = asyncio.Event()
        # Clear while due timers are being fired (Timers tells :meth:`firing`).
        self._timers_idle = asyncio.Event()
        self._timers_idle.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lanes: dict[Lane, asyncio.Task[int]] = {}

    def notify(self) -> None:
        """Something was enqueued: deliver now instead of at the next poll. Callable
        from any thread (verbs commit on the store's threads)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # not running: the first pass will find it
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    def firing(self, on: bool) -> None:
        """Due timers are being fired (``on``), or no longer: lanes wait to send their
        next post meanwhile. A firing pass is short and bounded by what is due; it plans
        the posts (pages and escalations among them) that delivery then sends, and it
        shares this process's interpreter lock and the database's CPUs with delivery.
        Sent side by side, a burst of posts made 10,000 timers due at once take 20 s to
        fire on PostgreSQL instead of 4.5 s (issue 13); on SQLite the writer lock
        already lets timers first. Callable from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._timers_idle.clear if on else self._timers_idle.set)

    async def run(self, poll: float = 1.0) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    await self.dispatch()
                except Exception:  # the worker must outlive a bad row or a lost database
                    log.exception("outbox pass failed")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(poll):
                        await self._wake.wait()
                self._wake.clear()
        finally:
            await self.stop_lanes()

    async def stop_lanes(self) -> None:
        lanes = list(self._lanes.values())
        for task in lanes:
            task.cancel()
        await asyncio.gather(*lanes, return_exceptions=True)
        self._lanes.clear()

    async def dispatch(self) -> list[asyncio.Task[int]]:
        """Start a task for every lane with a due post and none running."""
        fence = self.fence()
        if fence is not None and not fence.valid():
            return []
        due = await self.store.run(self._due_lanes)
        started = []
        for lane in due:
            if lane in self._lanes or len(self._lanes) >= self.max_lanes:
                continue
            task = asyncio.create_task(self._drain(lane), name=f"lane {lane[0]} {lane[1]}")
            self._lanes[lane] = task
            task.add_done_callback(functools.partial(self._lane_done, lane))
            started.append(task)
        return started

    def _lane_done(self, lane: Lane, _task: asyncio.Task[int]) -> None:
        self._lanes.pop(lane, None)

    async def deliver_due(self) -> int:
        """Deliver everything due now (lanes already draining included) and wait for
        it; how many were delivered."""
        delivered = 0
        while True:
            await self.dispatch()
            lanes = list(self._lanes.values())
            if not lanes:
                break
            done = await asyncio.gather(*lanes, return_exceptions=True)
            counts = sum(c for c in done if isinstance(c, int))
            delivered += counts
            if not counts:
                break  # what is left waits (back-off, an edit's original)
        return delivered

    def _due_lanes(self) -> list[Lane]:
        now = self.clock.now()
        with self.store.read() as s:
            rows = s.execute(
                select(OutboxMessage.platform, OutboxMessage.destination)
                .where(OutboxMessage.status == "pending")
                .where(OutboxMessage.platform.in_(list(self.adapters)))
                .where(OutboxMessage.next_attempt_at <= now)
                .group_by(OutboxMessage.platform, OutboxMessage.destination)
                .limit(self.max_lanes * 4)
            ).all()
        return [(str(p), str(d)) for p, d in rows]

    def _next_in_lane(self, lane: Lane) -> list[OutboxMessage]:
        with self.store.read() as s:
            return list(
                s.scalars(
                    select(OutboxMessage)
                    .where(OutboxMessage.status == "pending")
                    .where(OutboxMessage.platform == lane[0])
                    .where(OutboxMessage.destination == lane[1])
                    .order_by(OutboxMessage.id)
                    .limit(self.batch)
                )
            )

    async def _drain(self, lane: Lane) -> int:
        """Deliver a lane's posts in order until it is empty or has to wait."""
        delivered = 0
        try:
            while rows := await self.store.run(self._next_in_lane, lane):
                i = 0
                while i < len(rows):
                    await self._timers_idle.wait()
                    row = rows[i]
                    if row.next_attempt_at > self.clock.now():
                        return delivered  # keep the order: the rest waits for this one
                    if row.fold_of is not None:  # attempted before: the same posts again
                        group = await self.store.run(fold.members, self.store, row)
                    else:
                        group = fold.gather(rows, i, self.clock.now())
                    if not await self._deliver(group):
                        return delivered
                    delivered += len(group)
                    if row.fold_of is not None:
                        break  # its members need not follow it in ``rows``: read again
                    i += len(group)
        except Fenced as exc:
            log.warning("delivery stopped: fenced", extra={"lane": lane[1], "why": str(exc)})
        except Exception as exc:  # the database went away: the next pass starts again
            log.warning(
                "delivery stopped",
                extra={"lane": lane[1], "error": f"{type(exc).__name__}: {str(exc)[:200]}"},
            )
        return delivered

    def _by_key(self, key: str) -> OutboxMessage | None:
        with self.store.read() as session:
            return session.scalar(select(OutboxMessage).where(OutboxMessage.key == key))

    async def _deliver(self, rows: list[OutboxMessage]) -> bool:
        """Send one message: a post, or a fold of several (the first leads)."""
        row = rows[0]
        adapter = self.adapters[row.platform]
        body = row.body
        original_ref = None
        if body.get("edit_of"):
            original = await self.store.run(self._by_key, f"{body['edit_of']}@{row.platform}")
            if original is None or original.status == "failed":
                await self.store.run(
                    self._done, rows, None, "the message to edit was never delivered"
                )
                return True
            if original.status != "sent":
                return False  # edit after the original is out
            original_ref = original.remote_ref
        attachment = None
        if body.get("file") is not None:
            attachment = await self.store.run(self._file, int(body["file"]))
        fence = self.fence()
        if fence is not None and not fence.valid():
            raise Fenced("the lease lapsed on this replica")

        async def admitted() -> None:
            await self.store.run(self._attempt, rows, fence)
            # Looked at again as this task resumes, right before the adapter's request:
            # a replica frozen while the attempt committed must not send on waking.
            if fence is not None and not fence.valid():
                raise Fenced("the lease lapsed on this replica")

        try:
            if len(rows) > 1:
                text = fold.text(self.renderer, row.platform, rows)
                buttons = fold.buttons(rows)
            else:
                text = self.renderer.render(row.platform, body["template"], body["data"])
                buttons = tuple(Button.from_json(b) for b in body.get("buttons", []))
            message = Outbound(
                key=row.fold_of or row.key,
                destination=Destination(row.destination),
                text=text,
                buttons=buttons,
                incident=fold.incident(rows),
                template=body["template"],
                data=body["data"],
                edit_of=body.get("edit_of"),
                original_ref=original_ref,
                attempted_at=row.attempted_at,
                admitted=admitted,
                file=attachment,
            )
            sending = SENDING.set(fence)
            try:
                ref = await adapter.deliver(message)
            finally:
                SENDING.reset(sending)
        except Fenced:
            raise
        except DeliveryError as exc:
            await self.store.run(self._failed, rows, str(exc), exc.retry_after, exc.permanent)
            return False
        except Exception as exc:  # an adapter bug must not stop other rooms' posts
            log.exception("outbox delivery crashed", extra={"key": row.key})
            await self.store.run(self._failed, rows, f"{type(exc).__name__}: {exc}", None, False)
            return False
        await self.store.run(self._done, rows, ref, None)
        return True

    def _file(self, file_id: int) -> Attachment | None:
        with self.store.read() as s:
            stored = s.get(StoredFile, file_id)
            if stored is None:
                return None
            return Attachment(name=stored.name, mime=stored.mime, content=stored.content)

    def _attempt(self, rows: list[OutboxMessage], fence: FenceCheck | None) -> None:
        """Record that a send of ``rows`` (one post, or a fold and who is in it) is being
        attempted, under the fence: a replica that lost the lease, or a row already
        delivered, sends nothing."""
        values: dict[str, Any] = {"attempted_at": self.clock.now()}
        if len(rows) > 1:
            values["fold_of"] = rows[0].fold_of or rows[0].key
        with self.store.transaction() as s:
            if fence is not None:
                fence.check(s)
            # One statement (it locks the rows on PostgreSQL as FOR UPDATE would): every
            # post costs two commits, and on SQLite's one writer they add up in a burst.
            marked = s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_([r.id for r in rows]))
                .where(OutboxMessage.status == "pending")
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if getattr(marked, "rowcount", 0) != len(rows):  # rolled back: nothing marked
                raise Fenced(f"{rows[0].key} was delivered meanwhile")

    def _done(
        self, rows: list[OutboxMessage], ref: dict[str, Any] | None, note: str | None
    ) -> None:
        """Mark ``rows`` sent. Not fenced, unlike the attempt: the platform has accepted
        the post, and recording that can only keep it from being sent again, whoever
        leads now (a new leader that reads it pending first finds it by its attempt)."""
        with self.store.transaction() as s:
            s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_([r.id for r in rows]))
                .values(
                    status="sent",
                    sent_at=self.clock.now(),
                    attempts=OutboxMessage.attempts + 1,
                    remote_ref=ref,
                    error=note,
                )
                .execution_options(synchronize_session=False)
            )

    def _failed(
        self, rows: list[OutboxMessage], reason: str, retry_after: float | None, permanent: bool
    ) -> None:
        key, platform = rows[0].key, rows[0].platform
        with self.store.transaction() as s:
            fence = self.fence()
            if fence is not None:
                fence.check(s)
            found = [m for r in rows if (m := s.get(OutboxMessage, r.id)) is not None]
            for fresh in found:
                fresh.attempts += 1
                fresh.error = reason[:500]
            if not found:
                return
            if permanent and len(found) > 1:  # a fold refused: its posts go one by one
                for fresh in found:
                    fresh.fold_of = None
                log.warning("outbox fold refused, sent one by one", extra={"key": key})
                return
            if permanent:
                found[0].status = "failed"
                log.error(
                    "outbox post failed permanently",
                    extra={"key": key, "platform": platform, "reason": reason[:200]},
                )
                return
            attempts = max(f.attempts for f in found)
            if retry_after is not None:
                delay = timedelta(seconds=retry_after)
            else:
                delay = min(MAX_BACKOFF, timedelta(seconds=2 ** min(attempts, 9)))
            for fresh in found:
                fresh.next_attempt_at = self.clock.now() + delay
            log.warning(
                "outbox delivery postponed",
                extra={
                    "key": key,
                    "platform": platform,
                    "attempt": attempts,
                    "retry_in_s": delay.total_seconds(),
                    "reason": reason[:200],
                },
            )
