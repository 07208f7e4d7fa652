"""Issue 2: declare and drive an incident end to end through the router, the store,
the outbox and the console adapter, with a driven clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.app import App
from bot.clock import FakeClock
from bot.messages import Destination
from bot.settings import Config
from bot.store.models import AuditEntry, Incident, OutboxMessage, TimelineEvent, Timer
from tests.support.driver import Driver

# Times in posts (Started, Next Update): the clock is driven (FakeClock).
pytestmark = pytest.mark.clock

PEOPLE = {
    "alice": {"name": "Alice", "roles": ["responder"]},
    "bob": {"name": "Bob", "roles": ["responder"]},
    "vera": {"name": "Vera"},  # configured, no roles: read-only
}


@pytest.fixture
async def world(make_app: Callable[..., App]) -> AsyncIterator[tuple[App, Driver, FakeClock]]:
    clock = FakeClock()
    app = make_app(config=Config.model_validate({"people": PEOPLE}), clock=clock)
    driver = Driver(app)
    await app.start(scheduler=False)
    yield app, driver, clock
    await app.stop()


def counts(app: App) -> tuple[int, int, int, int]:
    with app.store.read() as s:
        return (
            s.scalar(select(func.count(Incident.id))) or 0,
            s.scalar(select(func.count(TimelineEvent.id))) or 0,
            s.scalar(select(func.count(OutboxMessage.id))) or 0,
            s.scalar(select(func.count(Timer.id))) or 0,
        )


async def test_whole_incident_through_the_runbook(world: tuple[App, Driver, FakeClock]) -> None:
    app, d, clock = world
    reply = await d.say("/incident p1 Spark jobs failing on prod", "alice")
    assert reply.ok and "#1" in d.text(reply)
    posts = await d.posts()
    announce = next(p for p in posts if p.tag == "#incidents")
    assert announce.text.startswith("🚨 **[P1] Incident: Spark jobs failing on prod**")
    assert "**Status:** 🟡 Investigating" in announce.text
    assert "**Started:** 2026-11-30 09:00 UTC" in announce.text
    assert "**Severity:** P1" in announce.text
    assert "**Next Update:** 2026-11-30 09:30 UTC" in announce.text  # P1: every 30 min
    assert "*Follow along in #incident-1*" in announce.text
    assert any(p.tag == "#incident-1" and "Incident #1" in p.text for p in posts)

    clock.advance(timedelta(minutes=4))
    assert (await d.say("/ack", "bob")).ok
    clock.advance(timedelta(minutes=6))
    reply = await d.say("/status mitigating rolled back the 3.5 upgrade", "alice")
    assert reply.ok
    update = next(p for p in await d.posts() if p.tag == "#incidents")
    assert update.text.startswith("🚨 **[P1] Incident Update: Spark jobs failing on prod**")
    assert "**Status:** 🟠 Mitigating" in update.text
    assert "**Duration:** 10 min" in update.text
    assert "rolled back the 3.5 upgrade" in update.text
    assert "**Next Update:** 2026-11-30 09:40 UTC" in update.text  # re-armed from now
    assert "**Commander:** @bob" in update.text  # the first to ack became commander

    clock.advance(timedelta(minutes=20))
    assert (await d.say("/update executors recovering", "alice")).ok
    update = next(p for p in await d.posts() if p.tag == "#incidents")
    assert "**Update:** executors recovering" in update.text
    assert "**Duration:** 30 min" in update.text

    clock.advance(timedelta(minutes=95))
    reply = await d.say("/resolve driver OOM in nightly ETL -- raised driver memory to 8g", "alice")
    assert reply.ok
    resolved = next(p for p in await d.posts() if p.tag == "#incidents")
    assert resolved.text.startswith("🟢 **[P1] Incident Resolved: Spark jobs failing on prod**")
    assert "**Status:** ✅ Resolved" in resolved.text
    assert "**Duration:** 2h 05m" in resolved.text
    assert "**Root Cause:** driver OOM in nightly ETL" in resolved.text
    assert "**Resolution:** raised driver memory to 8g" in resolved.text

    timeline = d.text(await d.say("/timeline #1"))
    lines = [line for line in timeline.splitlines()[1:] if line.strip()]
    assert [line.split()[3] for line in lines] == ["alice", "bob", "alice", "alice", "alice"]
    assert "2026-11-30 09:04 UTC  bob (console): acknowledged by bob" in timeline
    assert "resolved: driver OOM in nightly ETL -- raised driver memory to 8g" in timeline

    with app.store.read() as s:
        incident = s.scalar(select(Incident).where(Incident.number == 1))
        assert incident is not None
        assert incident.status == "resolved" and incident.commander == "bob"
        pending = s.scalar(
            select(func.count(Timer.id)).where(
                Timer.fired_at.is_(None), Timer.cancelled_at.is_(None)
            )
        )
        assert pending == 0  # resolve stopped every timer


@pytest.mark.parametrize(
    "command, expected",
    [
        ("/incident p7 x", "Unknown severity 'p7'"),
        ("/incident", "The severity (p0-p3) is missing"),
        ("/incident p1", "The title is missing"),
        ("/incident p1 " + "x" * 10_000, "too long"),
        ("/incident p1 \x00\x07\x1b", "The title is missing"),
        ("/status #99 resolved", "There is no incident #99"),
        ("/status bogus", "'bogus' is not one of"),
        ("/resolve", "The root cause is missing"),
        ("/resolve #1 fixed", "There is no incident #1"),
        ("/ack", "No incident is open"),
        ("/severity p9", "Unknown severity"),
        ("/frobnicate", "Unknown command /frobnicate"),
        ("hello", "Commands start with /"),
        ("/commander @nobody", "No incident is open"),
    ],
)
async def test_bad_input_is_one_line_and_stores_nothing(
    world: tuple[App, Driver, FakeClock], command: str, expected: str
) -> None:
    app, d, _ = world
    before = counts(app)
    reply = await d.say(command, "alice")
    text = d.text(reply)
    assert not reply.ok
    assert expected in text
    assert "\n" not in text and len(text) < 300
    assert counts(app) == before
    assert await d.posts() == []


async def test_errors_on_an_open_incident_change_nothing(
    world: tuple[App, Driver, FakeClock],
) -> None:
    app, d, _ = world
    await d.say("/incident p2 Single team jobs failing", "alice")
    await d.posts()
    before = counts(app)
    for command in (
        "/status investigating",
        "/severity p2",
        "/commander @nobody",
        "/update",
        "/status #1 bogus",
        "/impact",
    ):
        reply = await d.say(command, "alice")
        assert not reply.ok, command
    assert counts(app) == before
    assert await d.posts() == []


async def test_control_characters_are_removed_from_posts(
    world: tuple[App, Driver, FakeClock],
) -> None:
    _, d, _ = world
    await d.say("/incident p2 bad\x1b[31m title\u202e here", "alice")
    announce = next(p for p in await d.posts() if p.tag == "#incidents")
    assert "\x1b" not in announce.text and "\u202e" not in announce.text
    assert "bad[31m title here" in announce.text


async def test_roles_are_enforced_and_refusals_audited(
    world: tuple[App, Driver, FakeClock],
) -> None:
    app, d, _ = world
    reply = await d.say("/incident p1 not allowed", "vera")
    assert not reply.ok and "needs the responder role" in d.text(reply)
    assert counts(app)[0] == 0
    assert (await d.say("/incidents", "vera")).ok  # read-only commands are open
    with app.store.read() as s:
        entry = s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
    assert entry is not None and entry.actor == "vera" and entry.outcome == "refused"


async def test_incident_selection(world: tuple[App, Driver, FakeClock]) -> None:
    app, d, _ = world
    await d.say("/incident p1 first", "alice")
    await d.say("/incident p2 second", "alice")
    reply = await d.say("/ack", "alice")
    assert not reply.ok and "2 incidents are open (#1, #2)" in d.text(reply)
    assert (await d.say("/ack", "alice", room=2)).ok  # inside incident 2's room
    assert app.incidents.get(2).acknowledged_by == "alice"
    assert app.incidents.get(1).acknowledged_by is None
    await d.say("/resolve #1 gone", "alice")
    assert (await d.say("/update only one open now", "alice")).ok


async def test_severity_change_and_fields_show_in_posts(
    world: tuple[App, Driver, FakeClock],
) -> None:
    app, d, _ = world
    await d.say("/incident p2 Moderate slowdown", "alice")
    await d.say("/impact nightly ETL 3x slower", "alice")
    await d.say("/commander @bob", "alice")
    await d.posts()
    reply = await d.say("/severity p1", "alice")
    assert reply.ok
    update = next(p for p in await d.posts() if p.tag == "#incidents")
    assert "**[P1] Incident Update: Moderate slowdown**" in update.text
    assert "Severity raised from P2 to P1" in update.text
    assert "**Impact:** nightly ETL 3x slower" in update.text
    assert "**Commander:** @bob" in update.text
    assert app.incidents.get(1).severity == "P1"


async def test_a_replayed_post_is_stored_once(world: tuple[App, Driver, FakeClock]) -> None:
    """The outbox key makes enqueueing the same post twice a no-op."""
    app, d, _ = world
    await d.say("/incident p1 once", "alice")
    with app.store.transaction() as s:
        incident = s.scalar(select(Incident))
        assert incident is not None
        data = app.views.post_data(incident, app.clock.now())
        app.poster.post(s, incident.id, Destination.incidents(), "announce", data, "inc1:announce")
    posts = await d.posts()
    assert sum(1 for p in posts if p.tag == "#incidents") == 1
