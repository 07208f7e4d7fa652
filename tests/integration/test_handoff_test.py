"""Issue 17.5: at each weekly handoff the incoming primary gets a test page that must
be acknowledged within ``oncall.handoff_test.ack_within``, or the team lead (else the
secondary) is told — once, on a driven clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import App
from bot.clock import FakeClock
from bot.settings import Config
from bot.store.models import OutboxMessage, Timer
from tests.support.driver import Driver, Post

# Handoffs are at a weekday's local time: the clock is driven (FakeClock).
pytestmark = pytest.mark.clock

CONFIG: dict[str, Any] = {
    "timezone": "Europe/Berlin",
    "oncall": {
        "rotation": {
            "members": ["alice", "bob", "carol"],
            "handoff": "mon 09:00",
            "start": "2027-03-01",
        },
        "handoff_test": {"ack_within": "1h"},
    },
    "roles": {"team_lead": "dave"},
    "people": {"alice": {"roles": ["responder"]}, "bob": {}, "carol": {}, "dave": {}},
}
# Monday 2027-03-08 09:00 in Berlin (winter time): bob takes over from alice.
HANDOFF = datetime(2027, 3, 8, 8, 0, tzinfo=UTC)
NEXT_HANDOFF = datetime(2027, 3, 15, 8, 0, tzinfo=UTC)  # carol takes over


def at(when: datetime, **after: float) -> datetime:
    return when + timedelta(**after)


def about_test_page(posts: list[Post]) -> list[Post]:
    return [p for p in posts if "test page" in p.text.lower()]


async def started(make_app: Callable[..., App], config: dict[str, Any]) -> tuple[App, Driver]:
    clock = FakeClock(datetime(2027, 3, 5, 12, 0, tzinfo=UTC))
    app: App = make_app(config=Config.model_validate(config), clock=clock)
    d = Driver(app)
    await app.start(scheduler=False)
    app.timers.plan_calendar()
    return app, d


async def fire_at(app: App, d: Driver, when: datetime) -> list[Post]:
    assert isinstance(app.clock, FakeClock)
    app.clock.set(when)
    await app.timers.fire_due()
    return await d.posts()


async def test_unacknowledged_test_page_tells_the_team_lead_once(
    make_app: Callable[..., App],
) -> None:
    app, d = await started(make_app, CONFIG)
    try:
        assert about_test_page(await fire_at(app, d, at(HANDOFF, seconds=-1))) == []
        posts = await fire_at(app, d, at(HANDOFF, seconds=1))
        assert [p.tag for p in posts if "On-call handoff" in p.text] == ["#incidents"]
        pages = about_test_page(posts)
        assert [p.tag for p in pages] == ["DM @bob"]
        assert "Acknowledge it within 1h (by" in pages[0].text
        assert "or @dave is told" in pages[0].text
        with app.store.read() as s:
            row = s.scalar(select(OutboxMessage).where(OutboxMessage.destination == "dm:bob"))
            timer = s.scalar(select(Timer).where(Timer.kind == "handoff-test"))
        assert row is not None and timer is not None
        assert [b["command"] for b in row.body["buttons"]] == ["/escalation ack"]
        assert timer.target == "bob"
        assert timer.due_at == at(HANDOFF, hours=1, seconds=1)

        # Just before the deadline: nothing; just after: the lead and #incidents hear it.
        assert about_test_page(await fire_at(app, d, at(HANDOFF, minutes=59))) == []
        missed = about_test_page(await fire_at(app, d, at(HANDOFF, hours=1, seconds=2)))
        assert sorted(p.tag for p in missed) == ["#incidents", "DM @dave"]
        to_lead = next(p for p in missed if p.tag == "DM @dave").text
        assert "@bob did not acknowledge the handoff test page within 1h" in to_lead
        assert "You are told as the team lead" in to_lead
        room = next(p for p in missed if p.tag == "#incidents").text
        assert "@bob did not acknowledge" in room and "@dave (team lead) is told" in room
        # Exactly once: the deadline timer fired in the commit of its posts.
        await app.timers.fire_due()
        assert await d.posts() == []

        # bob answers after all: said in #incidents, once however often he presses.
        reply = await d.say("/escalation ack", "bob")
        assert reply.ok and "after the deadline" in d.text(reply)
        late = await d.posts()
        assert [p.tag for p in late] == ["#incidents"]
        assert "@bob acknowledged the handoff test page, after its deadline" in late[0].text
        await d.say("/escalation ack", "bob")
        assert await d.posts() == []
    finally:
        await app.stop()


async def test_acknowledged_test_page_tells_nobody(make_app: Callable[..., App]) -> None:
    app, d = await started(make_app, CONFIG)
    try:
        await fire_at(app, d, at(HANDOFF, seconds=1))
        posts = await fire_at(app, d, at(NEXT_HANDOFF, seconds=1))  # late: bot was down
        # bob's page of last week expired meanwhile (dave is told), carol gets hers.
        assert sorted(p.tag for p in about_test_page(posts)) == [
            "#incidents",
            "DM @carol",
            "DM @dave",
        ]
        with app.store.read() as s:
            row = s.scalar(select(OutboxMessage).where(OutboxMessage.destination == "dm:carol"))
        assert row is not None
        command = row.body["buttons"][0]["command"]  # what the Acknowledge button runs
        reply = await d.say(command, "carol")
        assert reply.ok and "Test page acknowledged" in d.text(reply)
        with app.store.read() as s:
            timer = s.scalar(
                select(Timer).where(Timer.kind == "handoff-test", Timer.target == "carol")
            )
        assert timer is not None and timer.cancelled_at == at(NEXT_HANDOFF, seconds=1)
        posts = await fire_at(app, d, at(NEXT_HANDOFF, hours=2))
        assert [p for p in posts if "did not acknowledge" in p.text] == []
        # Someone without a test page is told so.
        reply = await d.say("/escalation ack", "alice")
        assert not reply.ok and "No handoff test page was sent to you" in d.text(reply)
    finally:
        await app.stop()


async def test_without_a_team_lead_the_secondary_is_told(make_app: Callable[..., App]) -> None:
    app, d = await started(make_app, {**CONFIG, "roles": {}})
    try:
        page = about_test_page(await fire_at(app, d, at(HANDOFF, seconds=1)))
        assert "or @carol is told" in page[0].text  # bob's secondary this week
        missed = about_test_page(await fire_at(app, d, at(HANDOFF, hours=1, minutes=1)))
        assert sorted(p.tag for p in missed) == ["#incidents", "DM @carol"]
        assert "You are told as the secondary" in next(
            p.text for p in missed if p.tag == "DM @carol"
        )
    finally:
        await app.stop()


async def test_disabled_sends_no_test_page(make_app: Callable[..., App]) -> None:
    config = {**CONFIG, "oncall": {**CONFIG["oncall"], "handoff_test": {"enabled": False}}}
    app, d = await started(make_app, config)
    try:
        posts = await fire_at(app, d, at(HANDOFF, seconds=1))
        assert any("On-call handoff" in p.text for p in posts)
        assert about_test_page(posts) == []
        with app.store.read() as s:
            assert s.scalar(select(Timer).where(Timer.kind == "handoff-test")) is None
    finally:
        await app.stop()
