"""Leadership among replicas, through the database.

Every replica serves HTTP and stores what it is told; only the leader runs the
scheduler (APScheduler 3 cannot share a job store between two schedulers) and the
outbox worker (so a post is not sent by two replicas). The leader holds a row of
``leases`` and renews it every third of its time to live; when it dies the lease
expires and a standby takes it; a replica that stops cleanly gives it up at once.

Timers stay exactly-once across a change of leader: a timer is marked fired in
the same transaction as its posts (and locked while firing), so the new leader
sees what the old one did.

Fencing: the lease carries a generation, +1 each time it changes hands. The leader's
work (a post admitted for sending, a timer fired) commits only after checking, in
its own transaction, that the lease is still this replica's at the generation it
started with (:meth:`Fence.check`), and sends nothing once this replica's own
deadline for the lease has passed (:meth:`Fence.valid`, on the monotonic clock: a
replica paused past its lease — SIGSTOP, a long GC, a frozen VM — wakes up fenced).
A replica that finds its lease lapsed stops its workers before anything else.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from bot.outbox import Fenced
from bot.store.models import Lease

if TYPE_CHECKING:
    from bot.clock import Clock
    from bot.store import Store

log = logging.getLogger("pira.leader")

LEASE = "leader"
# The PostgreSQL advisory lock of the fence (Fence.check): "PIRA" and the schema's
# hash, so installations (or tests) in other schemas of one database don't share it.
# The two-key form: it can't meet the migration lock's one 64-bit key (bot/store/db.py).
FENCE_LOCK = "1346982465, hashtext(current_schema())"
# Of the lease's time to live, how long this replica trusts it after asking: renewals
# come every third, so a healthy leader never lapses; a paused one does, well before
# a standby may take over.
TRUSTED = 0.8


@dataclass(frozen=True)
class Fence:
    """The lease a leader's work runs under: who, which generation, and until when
    (this process's monotonic clock) it may act without asking again."""

    holder: str
    generation: int
    valid_until: float

    def valid(self) -> bool:
        return time.monotonic() < self.valid_until

    def check(self, s: Session) -> None:
        """In the transaction that commits leader work: raise :class:`Fenced` unless the
        lease is still this replica's, at this generation, within its deadline.

        A takeover must wait for this transaction instead of racing it (or the new
        leader could read a post as never attempted while this one is about to record
        the attempt and send it). On PostgreSQL this transaction holds the fence's
        advisory lock *shared* until its commit, and a takeover takes it *exclusive*
        (:meth:`Leadership.try_acquire`), so it waits for every such transaction and
        every later one sees the new generation: the lock comes first, and the lease is
        read in a statement after it, whose snapshot includes the takeover's commit.
        Share locks on the lease row did the same, but every one of them writes the row
        and, with several at once, a multi-transaction id: under a burst of deliveries
        they queued on each other (issue 13's profile). SQLite has one writer at a time;
        its transactions are serialized already."""
        if not self.valid():
            raise Fenced("the lease lapsed on this replica")
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text(f"SELECT pg_advisory_xact_lock_shared({FENCE_LOCK})"))
        row = s.execute(
            select(Lease.holder, Lease.generation).where(Lease.name == LEASE)
        ).one_or_none()
        if row is None or row.holder != self.holder or row.generation != self.generation:
            raise Fenced("another replica holds the lease")


class Leadership:
    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        ttl: timedelta,
        on_gain: Callable[[], Awaitable[None]],
        on_lose: Callable[[], Awaitable[None]],
    ) -> None:
        self.store = store
        self.clock = clock
        self.ttl = ttl
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._on_gain = on_gain
        self._on_lose = on_lose
        self.leading = False
        self.fence = Fence(self.holder, -1, 0.0)  # not valid until acquired

    def try_acquire(self) -> bool:
        """Take or renew the lease; True while this replica holds it."""
        asked = time.monotonic()
        now = self.clock.now()
        try:
            with self.store.lease_transaction() as s:
                lease = s.get(Lease, LEASE, with_for_update=True)
                if lease is None:
                    lease = Lease(name=LEASE, holder=self.holder, expires_at=now, generation=1)
                    s.add(lease)
                elif lease.holder != self.holder and not (
                    lease.expires_at <= now or _dead_here(lease.holder)
                ):
                    return False
                elif lease.holder != self.holder or lease.generation != self.fence.generation:
                    # Taken over (from another replica, or from this one's own lapsed
                    # term): a new generation fences whatever the old term still runs,
                    # once the old term's transactions under the fence have committed.
                    if s.get_bind().dialect.name == "postgresql":
                        s.execute(text(f"SELECT pg_advisory_xact_lock({FENCE_LOCK})"))
                    lease.holder = self.holder
                    lease.generation = (lease.generation or 0) + 1
                lease.expires_at = now + self.ttl
                generation = lease.generation
        except (IntegrityError, OperationalError):
            return False  # another replica took it in the same instant, or the db is busy
        self.fence = Fence(self.holder, generation, asked + self.ttl.total_seconds() * TRUSTED)
        return True

    def release(self) -> None:
        with self.store.lease_transaction() as s:
            lease = s.get(Lease, LEASE, with_for_update=True)
            if lease is not None and lease.holder == self.holder:
                lease.expires_at = self.clock.now()

    async def step(self) -> bool:
        """One round: acquire or renew, and start or stop the leader's duties. A lease
        that lapsed here (the process was paused, the database slow) stops the duties
        first; they start again if the lease is still to be had."""
        if self.leading and not self.fence.valid():
            self.leading = False
            log.warning(
                "leadership lost: standing by",
                extra={"holder": self.holder, "why": "the lease lapsed on this replica"},
            )
            await self._on_lose()
        try:
            leading = await self.store.run_lease(self.try_acquire)
        except Exception:
            log.exception("lease check failed")
            leading = False
        if leading and not self.leading:
            self.leading = True
            log.info("leader: running the scheduler and the outbox", extra={"holder": self.holder})
            await self._on_gain()
        elif not leading and self.leading:
            self.leading = False
            log.warning("leadership lost: standing by", extra={"holder": self.holder})
            await self._on_lose()
        return leading

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.ttl.total_seconds() / 3)
            await self.step()

    async def stop(self) -> None:
        if self.leading:
            self.leading = False
            await self._on_lose()
            await self.store.run_lease(self.release)


def _dead_here(holder: str) -> bool:
    """The holder ran on this host and its process is gone (killed, crashed): a
    restart on the same machine takes over at once instead of waiting out the lease."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
