"""Issue 3: the ack chain, resolution escalation and reminders on a driven clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from bot.app import App
from bot.clock import FakeClock
from bot.settings import Config
from bot.store.models import OutboxMessage, Timer
from tests.support.driver import Driver, Post

# Who is on call and when shifts hand off: the clock is driven (FakeClock).
pytestmark = pytest.mark.clock

SECONDS = {
    "severities": {
        "P0": {
            "page_after": "0s",
            "update_every": "4s",
            "escalate": [
                {"after": "6s", "to": "engineering_manager"},
                {"after": "9s", "to": "cto"},
            ],
        },
        "P2": {
            "page_after": "0s",
            "update_every": "1h",
            "escalate": [{"after": "1d", "to": "team_lead"}],
        },
    },
    "oncall": {
        "rotation": {"members": ["alice", "bob", "carol"], "start": "2026-11-30"},
        "chain": [
            {"role": "primary", "respond_within": {"P0": "3s", "P2": "10m"}},
            {"role": "secondary", "respond_within": {"P0": "1h", "P2": "1h"}},
        ],
        "overdue_grace": "2s",
    },
    "people": {
        "alice": {"name": "Alice", "roles": ["responder"], "slack": "U0ALICE"},
        "bob": {"name": "Bob", "roles": ["responder"], "telegram": 1002},
        "carol": {"name": "Carol", "roles": ["responder"]},
        "dave": {"name": "Dave"},
        "erin": {"name": "Erin"},
    },
    "roles": {"team_lead": "carol", "engineering_manager": "dave", "cto": "erin"},
}


@pytest.fixture
async def world(make_app: Callable[..., App]) -> AsyncIterator[tuple[App, Driver, FakeClock]]:
    clock = FakeClock()  # Monday 2026-11-30 09:00 UTC: alice's shift starts
    app = make_app(config=Config.model_validate(SECONDS), clock=clock)
    driver = Driver(app)
    await app.start(scheduler=False)
    yield app, driver, clock
    await app.stop()


async def run_until(app: App, d: Driver, clock: FakeClock, seconds: float) -> list[Post]:
    """Advance the clock second by second, firing timers as the scheduler would."""
    posts: list[Post] = []
    for _ in range(int(seconds)):
        clock.advance(timedelta(seconds=1))
        await app.timers.fire_due()
        posts += await d.posts()
    return posts


def dms(posts: list[Post]) -> list[str]:
    return [p.tag for p in posts if p.tag.startswith("DM")]


async def test_p0_chain_escalation_and_reminder_in_order(
    world: tuple[App, Driver, FakeClock],
) -> None:
    app, d, clock = world
    await d.say("/incident p0 all jobs failing", "carol")
    await app.timers.fire_due()
    at_once = await d.posts()
    assert dms(at_once) == ["DM @alice"]  # primary paged at declaration (page_after 0s)
    page = next(p for p in at_once if p.tag == "DM @alice")
    assert "Page: [P0] #1 all jobs failing" in page.text and "/ack #1" in page.text
    assert any(p.tag == "#incident-1" and "Paging @alice (primary)" in p.text for p in at_once)

    timeline: dict[int, list[str]] = {}
    for second in range(1, 13):
        timeline[second] = [
            f"{p.tag}: {p.text.splitlines()[0]}" for p in await run_until(app, d, clock, 1)
        ]
    assert [t for t in timeline[3] if t.startswith("DM")] == [
        "DM @bob: 🔔 **Page: [P0] #1 all jobs failing**"
    ]
    assert any("next update for #1 is due now" in t for t in timeline[4])
    assert [t for t in timeline[6] if t.startswith("DM")] == [
        "DM @dave: 🔔 **Page: [P0] #1 all jobs failing**"
    ]
    assert any("update overdue" in t for t in timeline[6])  # 4 s + 2 s grace
    assert [t for t in timeline[9] if t.startswith("DM")] == [
        "DM @erin: 🔔 **Page: [P0] #1 all jobs failing**"
    ]
    all_dms = [t.split(":")[0] for ts in timeline.values() for t in ts if t.startswith("DM")]
    assert sorted(all_dms) == ["DM @bob", "DM @dave", "DM @erin"]  # each exactly once


async def test_ack_stops_the_chain_not_the_triggers_and_resolve_stops_all(
    world: tuple[App, Driver, FakeClock],
) -> None:
    app, d, clock = world
    await d.say("/incident p0 all jobs failing", "carol")
    await app.timers.fire_due()
    await d.posts()
    clock.advance(timedelta(seconds=1))
    await d.say("/ack", "alice")
    posts = await run_until(app, d, clock, 7)  # up to 8 s
    assert dms(posts) == ["DM @dave"]  # no secondary page; the 6 s trigger still fires
    await d.say("/resolve fixed it", "alice")
    await d.posts()
    posts = await run_until(app, d, clock, 30)
    assert posts == []  # nothing after resolve
    with app.store.read() as s:
        pending = s.scalar(
            select(func.count(Timer.id)).where(
                Timer.fired_at.is_(None),
                Timer.cancelled_at.is_(None),
                Timer.incident_id.isnot(None),
            )
        )
    assert pending == 0


async def test_update_rearms_the_reminder(world: tuple[App, Driver, FakeClock]) -> None:
    app, d, clock = world
    await d.say("/incident p0 all jobs failing", "carol")
    await run_until(app, d, clock, 3)
    await d.say("/update restarting drivers", "alice")  # at 3 s: next due at 7 s
    posts = await run_until(app, d, clock, 3)  # to 6 s
    assert not any("is due now" in p.text for p in posts)
    posts = await run_until(app, d, clock, 1)  # 7 s
    assert any("is due now" in p.text for p in posts)


async def test_two_incidents_keep_independent_timers(
    world: tuple[App, Driver, FakeClock],
) -> None:
    app, d, clock = world
    await d.say("/incident p0 cluster down", "carol")
    await d.say("/incident p2 one team's jobs failing", "carol")
    await app.timers.fire_due()
    first = await d.posts()
    # Both page the primary at once: in one DM, as pages that pile up fold.
    assert dms(first) == ["DM @alice"]
    (page,) = [p.text for p in first if p.tag == "DM @alice"]
    assert page.startswith("🔔 2 pages: #1, #2")
    assert "[P0] #1 cluster down" in page and "[P2] #2 one team's jobs failing" in page
    posts = await run_until(app, d, clock, 10)
    rooms = {p.tag for p in posts if "Paging" in p.text}
    assert rooms == {"#incident-1"}  # P0's chain and triggers; P2 waits 10 min
    await d.say("/resolve #1 api server restarted", "alice")
    clock.advance(timedelta(minutes=10))
    await app.timers.fire_due()
    posts = await d.posts()
    assert dms(posts) == ["DM @bob"]  # incident 2's secondary, unaffected by #1
    assert all("#2" in p.text for p in posts if p.tag.startswith("DM"))


async def test_severity_change_replans_from_declaration(
    world: tuple[App, Driver, FakeClock],
) -> None:
    app, d, clock = world
    await d.say("/incident p2 slow jobs", "carol")
    await app.timers.fire_due()
    await d.posts()
    clock.advance(timedelta(seconds=7))
    await d.say("/severity p0", "carol")
    await app.timers.fire_due()
    posts = await d.posts()
    # Raised to P0 7 s after declaration: the 6 s trigger is due at once, and the
    # chain's second step (3 s) too; the 9 s trigger waits.
    assert sorted(dms(posts)) == ["DM @bob", "DM @dave"]
    posts = await run_until(app, d, clock, 2)
    assert dms(posts) == ["DM @erin"]


async def test_a_timer_run_twice_pages_once(world: tuple[App, Driver, FakeClock]) -> None:
    """A crash after the page committed but before the scheduler noted it: the
    second run finds the timer fired and does nothing."""
    app, d, _ = world
    await d.say("/incident p0 all jobs failing", "carol")
    await app.timers.fire_due()
    await d.posts()
    with app.store.read() as s:
        fired = s.scalar(select(Timer).where(Timer.kind == "page", Timer.step == 0))
        assert fired is not None and fired.fired_at is not None
    assert app.timers._fire_one(fired.id) == 0
    await app.timers.fire_due()
    assert await d.posts() == []
    with app.store.read() as s:
        count = s.scalar(
            select(func.count(OutboxMessage.id)).where(OutboxMessage.destination == "dm:alice")
        )
    assert count == 1


async def test_a_timer_due_while_down_fires_once_marked_late(
    world: tuple[App, Driver, FakeClock],
) -> None:
    app, d, clock = world
    await d.say("/incident p0 all jobs failing", "carol")
    await app.timers.fire_due()
    await d.posts()
    clock.advance(timedelta(minutes=7, seconds=3))  # the bot was down for 7 min
    await app.timers.fire_due()
    posts = await d.posts()
    bob = next(p for p in posts if p.tag == "DM @bob")
    assert "(late by 7 min)" in bob.text
    assert sorted(dms(posts)) == ["DM @bob", "DM @dave", "DM @erin"]
    await app.timers.fire_due()
    assert dms(await d.posts()) == []


async def test_unreachable_pages_are_said_in_the_room(
    make_app: Callable[..., App],
) -> None:
    config = Config.model_validate(
        {
            "severities": {"P0": {"page_after": "0s"}},
            "people": {"alice": {"roles": ["responder"]}},
        }
    )
    clock = FakeClock()
    app = make_app(config=config, clock=clock)
    d = Driver(app)
    await app.start(scheduler=False)
    try:
        await d.say("/incident p0 no rotation here", "alice")
        await app.timers.fire_due()
        posts = await d.posts()
        warning = next(p for p in posts if p.tag == "#incident-1" and "Could not page" in p.text)
        assert "no on-call rotation is configured" in warning.text
        reply = await d.say("/page engineering_manager", "alice")
        assert not reply.ok
        posts = await d.posts()
        assert any("Could not page engineering_manager" in p.text for p in posts)
    finally:
        await app.stop()


async def test_manual_page_and_oncall_override(world: tuple[App, Driver, FakeClock]) -> None:
    app, d, clock = world
    text = d.text(await d.say("/oncall"))
    assert "Primary: @alice" in text and "Secondary: @bob" in text
    assert "2026-12-07 09:00 UTC" in text  # the next Monday handoff
    assert (await d.say("/oncall override @carol 2h", "bob")).ok
    assert "Primary: @carol" in d.text(await d.say("/oncall"))
    await d.say("/incident p2 override check", "bob")
    await app.timers.fire_due()
    assert dms(await d.posts()) == ["DM @carol"]
    reply = await d.say("/page @erin #1 please look", "bob")
    assert reply.ok
    page = next(p for p in await d.posts() if p.tag == "DM @erin")
    assert "Paged by bob: please look" in page.text
    clock.advance(timedelta(hours=2))
    assert "Primary: @alice" in d.text(await d.say("/oncall"))


async def test_escalation_verify_lists_gaps(make_app: Callable[..., App]) -> None:
    config = Config.model_validate(
        {**SECONDS, "roles": {"team_lead": "carol", "engineering_manager": "dave"}}
    )
    app = make_app(config=config)
    d = Driver(app)
    await app.start(scheduler=False)
    try:
        text = d.text(await d.say("/escalation verify"))
        assert "cto (P0 escalation): nobody is set in roles.cto" in text
        assert "@carol (team_lead (P2 escalation)): no slack or telegram id" in text
        assert "@alice (the rotation): slack" in text
        assert "@bob (the rotation): telegram" in text
    finally:
        await app.stop()


async def test_resolved_incident_timer_does_nothing(world: tuple[App, Driver, FakeClock]) -> None:
    app, d, clock = world
    await d.say("/incident p0 flapping", "carol")
    await app.timers.fire_due()
    await d.posts()
    await d.say("/resolve flapped back", "alice")
    with app.store.transaction() as s:  # a timer the resolve somehow missed
        s.execute(update(Timer).where(Timer.kind == "escalate").values(cancelled_at=None))
    clock.advance(timedelta(seconds=10))
    await app.timers.fire_due()
    assert dms(await d.posts()) == []
