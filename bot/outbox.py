"""The durable outbox: every post is stored first, in the transaction of the change
that caused it, then delivered by a worker.

A crash between the change and the post cannot lose the post (it is in the
same commit), and a post is marked sent right after its platform accepted it,
so a restart delivers what was pending, once. Each row has a unique delivery
key: planning the same post twice (a timer run twice) stores it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.clock import Clock
from bot.messages import Button, Destination
from bot.render import Renderer
from bot.store import Store
from bot.store.models import OutboxMessage

if TYPE_CHECKING:
    from bot.web import WebServer

log = logging.getLogger("pira.outbox")

MAX_BACKOFF = timedelta(minutes=5)


@dataclass(frozen=True)
class Outbound:
    """A rendered post handed to an adapter."""

    key: str
    destination: Destination
    text: str
    buttons: tuple[Button, ...]
    incident: int | None
    template: str
    data: dict[str, Any]
    # An edit of an earlier post (its key without the platform suffix) and that
    # post's platform reference (what ``deliver`` returned for it).
    edit_of: str | None = None
    original_ref: dict[str, Any] | None = None


class DeliveryError(Exception):
    """An adapter could not deliver now. ``retry_after`` (seconds) when the platform
    said so; ``permanent`` when retrying cannot help (the row is marked failed)."""

    def __init__(self, reason: str, *, retry_after: float | None = None, permanent: bool = False):
        super().__init__(reason)
        self.retry_after = retry_after
        self.permanent = permanent


@runtime_checkable
class Adapter(Protocol):
    name: str

    def reaches(self, destination: Destination) -> bool:
        """Whether this platform has an address for the destination (a DM needs an id)."""
        ...

    async def deliver(self, message: Outbound) -> dict[str, Any] | None:
        """Send; return the platform's reference to the message (for later edits)."""
        ...


@runtime_checkable
class ChatAdapter(Adapter, Protocol):
    """A chat platform: delivers posts and, once started, receives commands (webhook
    routes on the bot's HTTP server, long polling or a socket of its own)."""

    async def start(self, web: WebServer) -> None: ...

    async def stop(self) -> None: ...

    async def settle(self) -> None:
        """Wait until the commands being handled are answered."""
        ...


def enqueue(
    session: Session,
    *,
    adapters: Iterable[Adapter],
    destination: Destination,
    template: str,
    data: dict[str, Any],
    key: str,
    now: datetime,
    buttons: Sequence[Button] = (),
    incident_id: int | None = None,
    edit_of: str | None = None,
    fresh: bool = False,
) -> list[str]:
    """Store one post for every adapter that reaches the destination.

    Returns the platforms it was stored for (empty: nobody can be reached, the
    caller must say so somewhere). A key already stored is not stored again;
    ``fresh``: the caller knows the key is new (skips the look-up).
    """
    stored: list[str] = []
    for adapter in adapters:
        if not adapter.reaches(destination):
            continue
        row_key = f"{key}@{adapter.name}"
        exists = (
            None
            if fresh
            else session.scalar(select(OutboxMessage.id).where(OutboxMessage.key == row_key))
        )
        stored.append(adapter.name)
        if exists is not None:
            continue
        session.add(
            OutboxMessage(
                key=row_key,
                platform=adapter.name,
                destination=destination.value,
                incident_id=incident_id,
                body={
                    "template": template,
                    "data": data,
                    "buttons": [b.to_json() for b in buttons],
                    "edit_of": edit_of,
                },
                status="pending",
                attempts=0,
                created_at=now,
                next_attempt_at=now,
            )
        )
    return stored


class Poster:
    """Enqueues posts in a caller's transaction, for every platform running now.

    What services use to post: they never see the adapters, only which platforms a
    post was stored for (none: nobody could be reached, and the caller says so)."""

    def __init__(self, *, adapters: Callable[[], Sequence[Adapter]], clock: Clock) -> None:
        self._adapters = adapters
        self.clock = clock

    def platforms(self) -> list[str]:
        return [a.name for a in self._adapters()]

    def post(
        self,
        session: Session,
        incident_id: int | None,
        destination: Destination,
        template: str,
        data: dict[str, Any],
        key: str,
        buttons: Sequence[Button] = (),
        edit_of: str | None = None,
        fresh: bool = False,
    ) -> list[str]:
        """Store one post; returns the platforms it goes to. ``edit_of``: the key of an
        earlier post this one replaces in place; ``fresh``: the key is known to be new."""
        return enqueue(
            session,
            adapters=self._adapters(),
            destination=destination,
            template=template,
            data=data,
            key=key,
            now=self.clock.now(),
            buttons=buttons,
            incident_id=incident_id,
            edit_of=edit_of,
            fresh=fresh,
        )


class OutboxWorker:
    """Delivers pending posts in order per (platform, destination), retrying with backoff.

    Runs on one replica at a time (the leader), so rows are not claimed.
    """

    def __init__(
        self,
        *,
        store: Store,
        adapters: dict[str, Adapter],
        renderer: Renderer,
        clock: Clock,
        batch: int = 200,
    ) -> None:
        self.store = store
        self.adapters = adapters
        self.renderer = renderer
        self.clock = clock
        self.batch = batch
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

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

    async def run(self, poll: float = 1.0) -> None:
        self._loop = asyncio.get_running_loop()
        while True:
            try:
                await self.deliver_due()
            except Exception:  # the worker must outlive a bad row or a lost database
                log.exception("outbox pass failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll):
                    await self._wake.wait()
            self._wake.clear()

    async def deliver_due(self) -> int:
        """One pass over due rows; returns how many were delivered.

        Each lane (platform, destination) is delivered in order, one post after the
        other; lanes run concurrently, so a slow or rate-limited room (or platform)
        does not hold back the others. Passes never overlap.
        """
        async with self._lock:
            now = self.clock.now()
            rows = await self.store.run(self._pending)
            lanes: dict[tuple[str, str], list[OutboxMessage]] = {}
            for row in rows:
                lanes.setdefault((row.platform, row.destination), []).append(row)
            counts = await asyncio.gather(
                *(self._deliver_lane(lane, now) for lane in lanes.values())
            )
            return sum(counts)

    def _pending(self) -> list[OutboxMessage]:
        with self.store.read() as session:
            return list(
                session.scalars(
                    select(OutboxMessage)
                    .where(OutboxMessage.status == "pending")
                    .where(OutboxMessage.platform.in_(list(self.adapters)))
                    .order_by(OutboxMessage.id)
                    .limit(self.batch)
                )
            )

    def _by_key(self, key: str) -> OutboxMessage | None:
        with self.store.read() as session:
            return session.scalar(select(OutboxMessage).where(OutboxMessage.key == key))

    async def _deliver_lane(self, rows: list[OutboxMessage], now: datetime) -> int:
        delivered = 0
        for row in rows:
            if row.next_attempt_at > now or not await self._deliver(row):
                break  # keep the order of posts in one room
            delivered += 1
        return delivered

    async def _deliver(self, row: OutboxMessage) -> bool:
        adapter = self.adapters[row.platform]
        body = row.body
        original_ref = None
        if body.get("edit_of"):
            original = await self.store.run(self._by_key, f"{body['edit_of']}@{row.platform}")
            if original is None or original.status == "failed":
                await self.store.run(
                    self._done, row, None, "the message to edit was never delivered"
                )
                return True
            if original.status != "sent":
                return False  # edit after the original is out
            original_ref = original.remote_ref
        try:
            text = self.renderer.render(row.platform, body["template"], body["data"])
            message = Outbound(
                key=row.key,
                destination=Destination(row.destination),
                text=text,
                buttons=tuple(Button.from_json(b) for b in body.get("buttons", [])),
                incident=row.incident_id,
                template=body["template"],
                data=body["data"],
                edit_of=body.get("edit_of"),
                original_ref=original_ref,
            )
            ref = await adapter.deliver(message)
        except DeliveryError as exc:
            await self.store.run(self._failed, row, str(exc), exc.retry_after, exc.permanent)
            return False
        except Exception as exc:  # an adapter bug must not stop other rooms' posts
            log.exception("outbox delivery crashed", extra={"key": row.key})
            await self.store.run(self._failed, row, f"{type(exc).__name__}: {exc}", None, False)
            return False
        await self.store.run(self._done, row, ref, None)
        return True

    def _done(self, row: OutboxMessage, ref: dict[str, Any] | None, note: str | None) -> None:
        with self.store.transaction() as session:
            fresh = session.get(OutboxMessage, row.id)
            if fresh is not None:
                fresh.status = "sent"
                fresh.sent_at = self.clock.now()
                fresh.attempts += 1
                fresh.remote_ref = ref
                fresh.error = note

    def _failed(self, row: OutboxMessage, reason: str, retry_after: float | None, permanent: bool):
        with self.store.transaction() as session:
            fresh = session.get(OutboxMessage, row.id)
            if fresh is None:
                return
            fresh.attempts += 1
            fresh.error = reason[:500]
            if permanent:
                fresh.status = "failed"
                log.error(
                    "outbox post failed permanently",
                    extra={"key": row.key, "platform": row.platform, "reason": reason[:200]},
                )
                return
            if retry_after is not None:
                delay = timedelta(seconds=retry_after)
            else:
                delay = min(MAX_BACKOFF, timedelta(seconds=2 ** min(fresh.attempts, 9)))
            fresh.next_attempt_at = self.clock.now() + delay
            log.warning(
                "outbox delivery postponed",
                extra={
                    "key": row.key,
                    "platform": row.platform,
                    "attempt": fresh.attempts,
                    "retry_in_s": delay.total_seconds(),
                    "reason": reason[:200],
                },
            )
