"""Issue 13: the scheduler wakes at the next due timer, not on its next poll — asserted on
the real APScheduler's state (its job's next run time), never on elapsed time — and
due timers fire in batches, each exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from bot.app import App
from bot.clock import FakeClock
from bot.messages import Message, Room
from bot.settings import Config
from bot.store.db import Store
from bot.store.models import Incident, OutboxMessage, Timer
from bot.timers import BATCH
from tests.conftest import PG_URL
from tests.integration.test_timers import SECONDS, world  # noqa: F401  (a fixture)
from tests.support.driver import Driver

pytestmark = pytest.mark.clock

POLL = 3600.0  # the safety poll far away: every wake-up seen here is a moved one


@pytest.fixture
async def running(make_app: Callable[..., App]) -> AsyncIterator[tuple[App, Driver, FakeClock]]:
    clock = FakeClock()  # Monday 2026-11-30 09:00 UTC
    app = make_app(config=Config.model_validate(SECONDS), clock=clock)
    driver = Driver(app)
    await app.start(scheduler=False)
    await app.timers.start(tick_seconds=POLL)
    yield app, driver, clock
    await app.stop()


def wake_in(app: App) -> timedelta:
    """How far ahead the scheduler's next run is (it keeps real time; the app's driven
    clock is carried over to it)."""
    wake = app.timers.next_wake()
    assert wake is not None
    return wake - datetime.now(wake.tzinfo)


def pending(app: App) -> list[Timer]:
    with app.store.read() as s:
        return list(
            s.scalars(
                select(Timer)
                .where(Timer.fired_at.is_(None), Timer.cancelled_at.is_(None))
                .order_by(Timer.due_at)
            )
        )


def plan(app: App, key: str, due: datetime) -> None:
    """A timer planned by a transaction of its own (as any change plans one)."""
    with app.store.transaction() as s:
        s.add(Timer(key=key, kind="runbook-review", due_at=due))


async def test_planning_a_timer_moves_the_wake_up_to_its_due_time(
    running: tuple[App, Driver, FakeClock],
) -> None:
    app, d, clock = running
    # Nothing due soon: the scheduler sleeps towards its poll (an hour away).
    assert wake_in(app) > timedelta(minutes=59)

    # A P2: paged at once (the commit wakes the scheduler), then its ack chain's next
    # step in 10 minutes, the earliest pending timer: the scheduler sleeps towards it.
    await d.say("/incident p2 slow shuffle", "carol")
    await app.timers.fire_due()
    assert pending(app)[0].due_at - clock.now() == timedelta(minutes=10)
    assert abs(wake_in(app) - timedelta(minutes=10)) < timedelta(seconds=2)

    # A timer planned while it sleeps towards that one, due sooner: the wake-up moves
    # to it at the commit (no firing pass: nothing is due yet).
    plan(app, "test:sooner", clock.now() + timedelta(seconds=30))
    assert abs(wake_in(app) - timedelta(seconds=30)) < timedelta(seconds=2)
    assert pending(app)[0].key == "test:sooner"

    # One due later than the wake-up changes nothing.
    before = app.timers.next_wake()
    plan(app, "test:later", clock.now() + timedelta(minutes=20))
    assert app.timers.next_wake() == before


async def test_thousands_due_at_once_fire_in_batches_exactly_once(
    world: tuple[App, Driver, FakeClock],  # noqa: F811
) -> None:
    app, _d, clock = world
    count = BATCH * 3 + 7
    with app.store.transaction() as s:
        s.add_all(
            Timer(key=f"test:{i}", kind="runbook-review", due_at=clock.now()) for i in range(count)
        )
    assert await app.timers.fire_due() == count
    assert await app.timers.fire_due() == 0  # again: nothing fires twice
    with app.store.read() as s:
        ids = set(s.scalars(select(Timer.id).where(Timer.key.like("test:%"))))
        left = s.scalar(
            select(func.count())
            .select_from(Timer)
            .where(Timer.key.like("test:%"), Timer.fired_at.is_(None))
        )
        keys = list(s.scalars(select(OutboxMessage.key).where(OutboxMessage.key.like("timer%"))))
    assert left == 0
    # One post per timer (the console platform), each from its own timer.
    assert sorted(keys) == sorted(f"timer{i}@console" for i in ids)


@pytest.mark.skipif(not PG_URL, reason="replicas share a database on PostgreSQL")
async def test_a_timer_planned_on_another_replica_moves_the_leaders_wake_up(
    running: tuple[App, Driver, FakeClock], make_app: Callable[..., App]
) -> None:
    leader, _d, clock = running
    assert leader.timers.listener is not None
    await asyncio.wait_for(leader.timers.listener.listening.wait(), timeout=30)
    standby = make_app(config=Config.model_validate(SECONDS), clock=clock)  # same database
    try:
        assert wake_in(leader) > timedelta(minutes=59)  # asleep towards its poll
        # Rolled back: PostgreSQL never delivers its notification.
        with contextlib.suppress(RuntimeError), standby.store.transaction() as s:
            s.add(Timer(key="test:rolled-back", kind="runbook-review", due_at=clock.now()))
            s.flush()
            raise RuntimeError("rolled back")
        # Committed on the standby: the leader's scheduler is told, not its next poll.
        plan(standby, "test:elsewhere", clock.now() + timedelta(seconds=40))
        deadline = asyncio.get_running_loop().time() + 30
        while wake_in(leader) > timedelta(minutes=1):
            assert asyncio.get_running_loop().time() < deadline, "the leader was never told"
            await asyncio.sleep(0.05)
        assert abs(wake_in(leader) - timedelta(seconds=40)) < timedelta(seconds=2)
    finally:
        standby.store.dispose()


async def test_lanes_hold_their_next_post_while_due_timers_are_fired(
    running: tuple[App, Driver, FakeClock],
) -> None:
    """Timers first (bot/delivery.py, OutboxWorker.firing): while a firing pass runs, a
    lane waits to send; when it ends, the post goes out."""
    app, driver, _clock = running
    app.outbox.firing(True)  # what Timers says when a pass starts
    reply = await app.router.handle(
        Message("console", "operator", "/incident p3 held back", Room("console")),
        driver.actor(None),
    )
    assert reply.ok
    app.outbox.notify()
    # The lane has read its post and waits on the firing pass (asyncio.Event's waiters).
    for _ in range(1000):
        if app.outbox._timers_idle._waiters:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("no lane came to wait for the firing pass")
    assert driver.out.getvalue() == ""
    app.outbox.firing(False)  # the pass ended
    posts = await driver.posts()
    assert [p.tag for p in posts] and "held back" in posts[0].text


async def test_a_batch_that_fails_is_fired_again_one_by_one(
    world: tuple[App, Driver, FakeClock],  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One timer of a batch can't be fired (its incident's severity is no longer in the
    configuration): the batch is rolled back and fired again one timer at a time: the
    others fire once, that one stays due."""
    app, driver, clock = world
    await driver.say("/incident p3 odd one out")
    with app.store.transaction() as s:
        incident = s.scalars(select(Incident)).one()
        incident.severity = "P9"
        timers = [
            Timer(key=f"test:{i}", kind="runbook-review", due_at=clock.now()) for i in range(4)
        ]
        timers.insert(
            2, Timer(key="test:bad", kind="reminder", incident_id=incident.id, due_at=clock.now())
        )
        s.add_all(timers)
        s.flush()
        bad = timers[2].id
    with caplog.at_level("WARNING", logger="pira.timers"):
        assert await app.timers.fire_due() == 4
    messages = [r.getMessage() for r in caplog.records]
    # (Tried again once in the same pass: it is still due after the others fired.)
    assert "timer batch failed: firing it one by one" in messages
    assert "timer failed" in messages
    with app.store.read() as s:
        unfired = list(
            s.scalars(select(Timer.id).where(Timer.key.like("test:%"), Timer.fired_at.is_(None)))
        )
        keys = list(s.scalars(select(OutboxMessage.key).where(OutboxMessage.key.like("timer%"))))
    assert unfired == [bad]
    assert sorted(keys) == sorted(f"timer{t.id}@console" for t in timers if t.id != bad)


@pytest.mark.skipif(
    not PG_URL, reason="SQLite has its writer lock (tests/unit/test_writer_lock.py)"
)
async def test_on_postgresql_nothing_of_this_process_begins_during_a_timer_batch(
    db_url: str,
) -> None:
    """Timers first on PostgreSQL (bot/store/writer.py UrgentFirst): a read and a
    transaction asked for while a batch runs begin once it has committed; the lease's
    transaction holds nobody back."""
    store = Store(db_url)
    store.migrate()
    inside, commit = threading.Event(), threading.Event()
    order: list[str] = []

    def batch() -> None:
        with store.transaction(urgent=True) as s:
            s.execute(select(func.count()).select_from(Timer))
            inside.set()
            assert commit.wait(30)
            order.append("batch")

    def read() -> None:
        with store.read() as s:
            s.execute(select(func.count()).select_from(Timer))
            order.append("read")

    def write() -> None:
        with store.transaction() as s:
            s.execute(select(func.count()).select_from(Timer))
            order.append("write")

    def lease() -> None:
        with store.lease_transaction() as s:
            s.execute(select(func.count()).select_from(Timer))

    try:
        running = asyncio.ensure_future(store.run(batch))
        assert await asyncio.to_thread(inside.wait, 30)
        waiting = [asyncio.ensure_future(store.run(f)) for f in (read, write)]
        for _ in range(300):  # (within PostgreSQL's 5 s for a transaction left idle)
            if store._turns.waiting == 2:
                break
            await asyncio.sleep(0.01)
        await asyncio.wait_for(store.run_lease(lease), 30)  # not held back
        assert store._turns.waiting == 2 and order == []
        commit.set()
        await asyncio.wait_for(asyncio.gather(running, *waiting), 30)
        assert order[0] == "batch" and sorted(order[1:]) == ["read", "write"]
    finally:
        commit.set()
        store.dispose()
