"""/action add, /action list, /action done (issue 12, part 2.4), on a driven clock:
items linked to incidents, most urgent first, owners and due dates, every step on the
incident's timeline, bad input answered and storing nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from bot.app import App
from bot.clock import FakeClock
from bot.store.models import ActionItem, Timer
from tests.integration.test_timers import world  # noqa: F401  (a fixture)
from tests.support.driver import Driver

pytestmark = pytest.mark.clock


def count(app: App) -> int:
    with app.store.read() as s:
        return int(s.scalar(select(func.count()).select_from(ActionItem)) or 0)


async def test_action_items_from_add_to_done(
    world: tuple[App, Driver, FakeClock],  # noqa: F811
) -> None:
    app, d, _clock = world  # Monday 2026-11-30 09:00 UTC
    await d.say("/incident p2 slow shuffle", "carol")
    await d.say("/incident p0 all jobs failing", "carol")

    first = await d.say("/action add #1 tune shuffle partitions @bob 2026-12-04", "carol")
    assert first.ok, d.text(first)
    assert d.text(first) == (
        "Action item added: 1. [P2] #1 tune shuffle partitions — @bob, due 2026-12-04"
    )
    await d.say("/action add #2 add executor retries 3d", "carol")
    await d.say("/action add #2 alert on driver memory @alice", "carol")

    listed = d.text(await d.say("/action list", "dave"))  # anyone may read
    assert listed.splitlines() == [
        "2. [P0] #2 add executor retries — no owner, due 2026-12-03",  # P0 first, due first
        "3. [P0] #2 alert on driver memory — @alice",
        "1. [P2] #1 tune shuffle partitions — @bob, due 2026-12-04",
    ]
    done = await d.say("/action done 2", "alice")
    assert done.ok and d.text(done).startswith("Done: ✅ 2. [P0] #2 add executor retries")
    again = await d.say("/action done 2", "alice")
    assert not again.ok and "was done already, by alice" in d.text(again)
    assert "2." not in d.text(await d.say("/action list", "dave"))
    assert d.text(await d.say("/action list all", "dave")).startswith("3. [P0]")

    incident = await app.store.run(app.incidents.get, 2)
    lines = [(e.actor, e.text) for e in incident.timeline if e.kind == "action-item"]
    assert lines == [
        ("carol", "action item 2: add executor retries"),
        ("carol", "action item 3: alert on driver memory"),
        ("alice", "action item 2 done: add executor retries"),
    ]
    with app.store.read() as s:
        due = s.scalar(select(ActionItem.due).where(ActionItem.id == 2))
    assert due == date(2026, 12, 3)


@pytest.mark.parametrize(
    ("command", "who", "error"),
    [
        ("/action add #1 @bob", "carol", "what is to be done is missing"),
        ("/action add #9 fix it", "carol", "no incident #9"),
        ("/action add #1 fix it @nobody", "carol", "@nobody is not a configured person"),
        ("/action add #1 fix it 2026-02-30", "carol", "2026-02-30 is not a date"),
        ("/action done 99", "carol", "there is no action item 99"),
        ("/action done x", "carol", "must be a whole number"),
        ("/action add #1 fix it", "dave", "needs the responder role"),
        ("/action remove 1", "carol", "is not one of: add, list, done"),
        ("/action add #1 fix it 2026-11-29", "carol", "2026-11-29 is in the past"),
    ],
)
async def test_bad_action_commands_are_answered_and_store_nothing(
    world: tuple[App, Driver, FakeClock],  # noqa: F811
    command: str,
    who: str,
    error: str,
) -> None:
    app, d, _clock = world
    await d.say("/incident p2 slow shuffle", "carol")
    reply = await d.say(command, who)
    assert not reply.ok and error.lower() in d.text(reply).lower(), d.text(reply)
    assert count(app) == 0


async def test_owners_are_reminded_once_on_the_due_date_and_handoff_lists_open_items(
    world: tuple[App, Driver, FakeClock],  # noqa: F811
) -> None:
    app, d, clock = world  # Monday 2026-11-30 09:00 UTC; the working day opens 09:00
    await d.say("/incident p2 slow shuffle", "carol")
    await d.say("/action add #1 tune shuffle partitions @bob 2026-12-02", "carol")
    await d.say("/action add #1 write the runbook entry 2026-12-02", "carol")
    await d.say("/action add #1 add a dashboard @alice 2026-12-02", "carol")
    await d.say("/action done 3", "alice")  # done before its date: no reminder
    await d.say("/resolve #1 too few shuffle partitions", "carol")  # reminders outlive it
    await d.posts()

    handoff = d.text(await d.say("/handoff", "dave"))
    assert handoff.split("**Open action items** (2)\n")[1].splitlines() == [
        "- 1. [P2] #1 tune shuffle partitions — @bob, due 2026-12-02",
        "- 2. [P2] #1 write the runbook entry — no owner, due 2026-12-02",
    ]

    clock.set(datetime(2026, 12, 2, 8, 59, 59, tzinfo=UTC))
    await app.timers.fire_due()
    assert [p for p in await d.posts() if "is due" in p.text] == []
    clock.advance(timedelta(seconds=1))
    await app.timers.fire_due()
    await app.timers.fire_due()  # run twice: still told once
    told = sorted((p.tag, p.text) for p in await d.posts() if "is due" in p.text)
    assert told == [  # two rooms, delivered side by side: in either order
        (
            "#incident-1",
            "No owner: ⏰ Action item 2 of #1 is due (2026-12-02): write the runbook entry. "
            "/action done 2 once it is done.",
        ),
        (
            "DM @bob",
            "⏰ Action item 1 of #1 is due (2026-12-02): tune shuffle partitions. "
            "/action done 1 once it is done.",
        ),
    ]
    with app.store.read() as s:
        pending = s.scalar(
            select(func.count())
            .select_from(Timer)
            .where(Timer.kind == "action-due", Timer.fired_at.is_(None))
            .where(Timer.cancelled_at.is_(None))
        )
    assert pending == 0
