"""Leadership among replicas, through the database.

Every replica serves HTTP and stores what it is told; only the leader runs the
scheduler (APScheduler 3 cannot share a job store between two schedulers) and the
outbox worker (so a post is not sent by two replicas). The leader holds a row of
``leases`` and renews it every third of its time to live; when it dies the lease
expires and a standby takes it; a replica that stops cleanly gives it up at once.

Timers stay exactly-once across a change of leader: a timer is marked fired in
the same transaction as its posts (and locked while firing), so the new leader
sees what the old one did.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError, OperationalError

from bot.store.models import Lease

if TYPE_CHECKING:
    from bot.clock import Clock
    from bot.store import Store

log = logging.getLogger("pira.leader")

LEASE = "leader"


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

    def try_acquire(self) -> bool:
        """Take or renew the lease; True while this replica holds it."""
        now = self.clock.now()
        try:
            with self.store.transaction() as s:
                lease = s.get(Lease, LEASE, with_for_update=True)
                if lease is None:
                    s.add(Lease(name=LEASE, holder=self.holder, expires_at=now + self.ttl))
                    return True
                if (
                    lease.holder == self.holder
                    or lease.expires_at <= now
                    or _dead_here(lease.holder)
                ):
                    lease.holder = self.holder
                    lease.expires_at = now + self.ttl
                    return True
                return False
        except (IntegrityError, OperationalError):
            return False  # another replica took it in the same instant, or the db is busy

    def release(self) -> None:
        with self.store.transaction() as s:
            lease = s.get(Lease, LEASE, with_for_update=True)
            if lease is not None and lease.holder == self.holder:
                lease.expires_at = self.clock.now()

    async def step(self) -> bool:
        """One round: acquire or renew, and start or stop the leader's duties."""
        try:
            leading = await self.store.run(self.try_acquire)
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
            await self.store.run(self.release)


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
