"""Several replicas on one database: one leads (scheduler, outbox), the others stand
by; failover when the leader stops or dies; no timer lost or doubled."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import timedelta

import aiohttp
import pytest
from sqlalchemy import func, select, text

from bot.app import App
from bot.clock import FakeClock
from bot.leader import Leadership
from bot.outbox import Fenced, Outbound
from bot.people import Directory
from bot.settings import Config
from bot.store.db import DB_THREADS, Store
from bot.store.models import Lease, OutboxMessage, Timer
from tests.conftest import PG_URL
from tests.support.http import wait_healthy
from tests.support.promstack import LOOPBACK, free_port

# Rotation and lease times: the clock is driven (FakeClock).
pytestmark = pytest.mark.clock

CONFIG = Config.model_validate(
    {
        "severities": {"P0": {"page_after": "0s"}},
        "oncall": {
            "rotation": {"members": ["alice", "bob"], "start": "2026-11-30"},
            "chain": [{"role": "primary", "respond_within": {"P0": "1m"}}, {"role": "secondary"}],
        },
        "people": {"alice": {"roles": ["responder"]}, "bob": {"roles": ["responder"]}},
        "leader_lease": "15s",
    }
)


class Sink:
    name = "console"

    def __init__(self) -> None:
        self.sent: list[str] = []

    def reaches(self, destination: object) -> bool:
        return True

    async def deliver(self, message: Outbound) -> None:
        self.sent.append(message.key)


async def test_one_leader_and_failover(make_app: Callable[..., App]) -> None:
    clock = FakeClock()
    first, second = make_app(config=CONFIG, clock=clock), make_app(config=CONFIG, clock=clock)
    sinks = Sink(), Sink()
    first.add_adapter(sinks[0])
    second.add_adapter(sinks[1])
    await first.start()
    await second.start()
    try:
        assert first.leading and not second.leading
        assert first.timers.scheduler is not None and second.timers.scheduler is None

        # Declared on the standby; the leader fires and delivers.
        second.incidents.declare(
            severity="P0",
            title="declared on replica 2",
            by=Directory.operator_console(),
            source="test",
        )
        assert await first.timers.fire_due() == 1
        await first.outbox.deliver_due()
        assert any(k.endswith(":dm@console") for k in sinks[0].sent)
        assert sinks[1].sent == []

        # The leader dies (no renewal): after the lease the standby takes over.
        clock.advance(timedelta(seconds=10))
        assert first.leadership is not None and second.leadership is not None
        assert not await second.leadership.step()
        clock.advance(timedelta(seconds=6))
        assert await second.leadership.step()
        assert second.leading and second.timers.scheduler is not None
        # The old leader comes back: it finds the lease taken and stands down.
        assert not await first.leadership.step()
        assert not first.leading and first.timers.scheduler is None

        clock.advance(timedelta(minutes=1))  # the secondary's page comes due
        assert await second.timers.fire_due() == 1
        assert await first.timers.fire_due() == 0  # a timer fires once, whoever asks
        with second.store.read() as s:
            pages = s.scalar(
                select(func.count(OutboxMessage.id)).where(OutboxMessage.key.like("%:dm@console"))
            )
            fired = s.scalar(select(func.count(Timer.id)).where(Timer.fired_at.isnot(None)))
        assert pages == 2 and fired == 2

        # A clean stop hands over at once.
        await second.stop()
        assert await first.leadership.step()
    finally:
        await first.stop()
        await second.stop()


async def test_readyz_is_200_on_every_replica_and_says_which_leads(
    make_app: Callable[..., App],
) -> None:
    clock = FakeClock()
    apps: list[App] = []
    urls: list[str] = []
    for _ in range(2):
        port = free_port()
        app = make_app(
            config=CONFIG,
            clock=clock,
            env={"PIRA_HTTP_PORT": str(port), "PIRA_HTTP_HOST": LOOPBACK},
        )
        app.add_adapter(Sink())
        apps.append(app)
        urls.append(f"http://{LOOPBACK}:{port}")
    stop = asyncio.Event()
    servers = []
    for app in apps:
        await app.start()
        servers.append(asyncio.create_task(app.serve_forever(stop)))
    try:
        async with aiohttp.ClientSession() as http:
            for url in urls:
                await wait_healthy(url)
            answers = []
            for url in urls:
                async with http.get(f"{url}/readyz") as r:
                    answers.append((r.status, await r.json()))
        assert [status for status, _ in answers] == [200, 200]  # both serve
        assert [body["leader"] for _, body in answers] == [True, False]
    finally:
        stop.set()
        await asyncio.gather(*servers)
        for app in apps:
            await app.stop()


async def test_the_lease_is_renewed_while_every_database_thread_is_busy(
    make_app: Callable[..., App],
) -> None:
    """A burst (10,000 timers due at once, each post marked sent) queues thousands of
    calls on the database threads; the lease's renewal must not wait behind them, or the
    leader's lease lapses mid-burst and it stands down."""
    clock = FakeClock()
    app = make_app(config=CONFIG, clock=clock)
    app.add_adapter(Sink())
    await app.start()
    release = threading.Event()
    assert app.leadership is not None
    busy = [asyncio.ensure_future(app.store.run(release.wait)) for _ in range(DB_THREADS)]
    queued = asyncio.ensure_future(app.store.run(lambda: "behind the burst"))
    try:
        before = app.leadership.fence.generation
        clock.advance(timedelta(seconds=10))  # two thirds of the lease: renew
        renewed = await asyncio.wait_for(app.leadership.step(), timeout=30)
        assert renewed and app.leading and not queued.done()  # every thread still busy
        assert app.leadership.fence.generation == before  # renewed, not lost and retaken
        with app.store.read() as s:
            lease = s.get(Lease, "leader")
        assert lease is not None and lease.expires_at == clock.now() + timedelta(seconds=15)
    finally:
        release.set()
        await asyncio.gather(*busy, queued)
        await app.stop()


@pytest.mark.skipif(not PG_URL, reason="the fence's lock is PostgreSQL's (SQLite has one writer)")
async def test_a_takeover_waits_for_leader_work_in_flight_and_fences_what_comes_after(
    db_url: str,
) -> None:
    """The fence's promise: a transaction that checked the lease commits before a new
    leader takes over (so the new leader sees what it recorded, e.g. a post's attempt),
    and any transaction of the old term that checks after the takeover is fenced. Waiting
    is asserted on PostgreSQL's own view (the takeover's session waits on a lock)."""
    store = Store(db_url)
    store.migrate()
    clock = FakeClock()
    ttl = timedelta(seconds=15)

    async def nothing() -> None:
        return None

    old, new = (
        Leadership(store=store, clock=clock, ttl=ttl, on_gain=nothing, on_lose=nothing)
        for _ in range(2)
    )
    try:
        assert await store.run_lease(old.try_acquire)
        fence = old.fence
        checked, commit = threading.Event(), threading.Event()

        def leader_work() -> None:
            with store.transaction() as s:
                fence.check(s)
                checked.set()
                assert commit.wait(30)

        work = asyncio.ensure_future(store.run(leader_work))
        assert await asyncio.to_thread(checked.wait, 30)
        clock.advance(ttl + timedelta(seconds=1))  # the old term's lease has expired
        takeover = asyncio.ensure_future(store.run_lease(new.try_acquire))

        def waiting_on_a_lock() -> bool:
            with store.read() as s:
                return bool(
                    s.scalar(
                        text(
                            "SELECT count(*) FROM pg_stat_activity"
                            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                            " AND query LIKE '%pg_advisory_xact_lock(%'"
                        )
                    )
                )

        for _ in range(300):
            if await store.run(waiting_on_a_lock):
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the takeover did not wait for the transaction under the old fence")
        assert not takeover.done()
        commit.set()
        await work
        assert await asyncio.wait_for(takeover, 30)
        assert new.fence.generation == fence.generation + 1

        def late_old_work() -> None:
            with store.transaction() as s:
                fence.check(s)

        with pytest.raises(Fenced, match="another replica"):
            await store.run(late_old_work)
    finally:
        commit.set()
        store.dispose()
