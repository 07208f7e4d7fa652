"""Issue 3: calendar posts — weekly handoff at the rotation's local handoff time,
monthly summary and runbook review — each once, even when the bot was down."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from bot.app import App
from bot.clock import FakeClock
from bot.settings import Config
from bot.store.models import StoredFile, Timer
from tests.support.driver import Driver

# Handoffs, month ends and DST: the clock is driven (FakeClock).
pytestmark = pytest.mark.clock

CONFIG = {
    "timezone": "Europe/Berlin",
    "oncall": {
        "rotation": {
            "members": ["alice", "bob", "carol"],
            "handoff": "mon 09:00",
            "start": "2027-03-01",
        }
    },
    "people": {"alice": {"roles": ["responder"]}, "bob": {}, "carol": {}},
}


async def test_handoff_post_at_local_time_and_monthly_posts(make_app: Callable[..., App]) -> None:
    clock = FakeClock(datetime(2027, 3, 26, 12, 0, tzinfo=UTC))  # Friday before DST
    app: App = make_app(config=Config.model_validate(CONFIG), clock=clock)
    d = Driver(app)
    await app.start(scheduler=False)
    try:
        app.timers.plan_calendar()
        await d.say("/incident p2 still open at handoff", "alice")
        await d.posts()
        with app.store.read() as s:
            handoff = s.scalar(select(Timer).where(Timer.kind == "handoff"))
        assert handoff is not None
        # Monday 09:00 in Berlin, after the change to summer time: 07:00 UTC.
        assert handoff.due_at == datetime(2027, 3, 29, 7, 0, tzinfo=UTC)

        clock.set(datetime(2027, 3, 29, 6, 59, 59, tzinfo=UTC))
        await app.timers.fire_due()
        assert [p for p in await d.posts() if "On-call handoff" in p.text] == []
        clock.set(datetime(2027, 3, 29, 7, 0, 1, tzinfo=UTC))
        await app.timers.fire_due()
        posts = [p for p in await d.posts() if "On-call handoff" in p.text]
        assert [p.tag for p in posts] == ["#incidents"]
        text = posts[0].text
        assert text.startswith("🔄 **On-call handoff**")
        assert "**Outgoing:** primary @alice, secondary @bob" in text
        assert "**Incoming:** primary @bob, secondary @carol" in text
        assert "#1 [P2] still open at handoff" in text
        await app.timers.fire_due()
        assert [p for p in await d.posts() if "On-call handoff" in p.text] == []  # once
        with app.store.read() as s:
            nxt = s.scalar(select(Timer).where(Timer.kind == "handoff", Timer.fired_at.is_(None)))
        assert nxt is not None and nxt.due_at == datetime(2027, 4, 5, 7, 0, tzinfo=UTC)

        await d.say("/resolve #1 done", "alice")
        await d.posts()
        # Down over the 1st of April: the month's posts come once, marked late.
        clock.set(datetime(2027, 4, 1, 9, 30, tzinfo=UTC))
        await app.timers.fire_due()
        posts = [p for p in await d.posts() if p.tag == "#incidents"]
        summary = next(p for p in posts if "Monthly incident summary 2027-03" in p.text)
        assert "1 incident(s) detected: P0 0, P1 0, P2 1, P3 0" in summary.text
        assert "- P0 count: 0 (target < 5) ✅" in summary.text
        with app.store.read() as s:
            chart = s.scalar(select(StoredFile).where(StoredFile.kind == "report-chart"))
        assert chart is not None and chart.name == "pira-report-2027-03.png"
        assert "late by" in summary.text
        assert any("Monthly runbook review" in p.text for p in posts)
        await app.timers.fire_due()
        assert [p for p in await d.posts() if "Monthly" in p.text] == []
    finally:
        await app.stop()
