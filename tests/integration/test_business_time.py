"""P3's "next business day" (issue 12, part 1): a severity counted in business time has
its next-update reminder, overdue call-out and ack chain due at the next opening when
they would fall outside working time, and the announcement's Next Update agrees with
the timer; a P1 keeps wall-clock time. On a driven clock, in Europe/Berlin."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import App
from bot.clock import FakeClock
from bot.settings import Config
from bot.store.models import Incident, Timer
from tests.integration.test_timers import SECONDS
from tests.support.driver import Driver, Post

pytestmark = pytest.mark.clock

FRIDAY_5PM = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)  # 17:00 in Berlin (CET)


@pytest.fixture
async def world(
    make_app: Callable[..., App], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[App, Driver, FakeClock]]:
    monkeypatch.setenv("PIRA_FILES_DIR", str(tmp_path / "files"))
    config: dict[str, Any] = copy.deepcopy(SECONDS)
    config["timezone"] = "Europe/Berlin"
    # P3 pages too here, 1h30m after the declaration: 18:30 on a Friday, after hours.
    config["severities"]["P3"] = {"page_after": "1h30m"}
    clock = FakeClock(FRIDAY_5PM)
    app = make_app(config=Config.model_validate(config), clock=clock)
    driver = Driver(app)
    await app.start(scheduler=False)
    yield app, driver, clock
    await app.stop()


def due(app: App, number: int) -> dict[tuple[str, int], datetime]:
    """The pending timers of incident N: (kind, step) → due."""
    with app.store.read() as s:
        incident_id = s.scalar(select(Incident.id).where(Incident.number == number))
        timers = s.scalars(
            select(Timer).where(
                Timer.incident_id == incident_id,
                Timer.fired_at.is_(None),
                Timer.cancelled_at.is_(None),
                Timer.kind != "escalate",
            )
        )
        return {(t.kind, t.step): t.due_at for t in timers}


async def fire_at(app: App, d: Driver, clock: FakeClock, when: datetime) -> list[Post]:
    clock.set(when)
    await app.timers.fire_due()
    return await d.posts()


def about(posts: list[Post], number: int) -> list[str]:
    return [p.text.splitlines()[0] for p in posts if f"#{number}" in p.text]


async def test_p3_declared_friday_5pm_is_due_monday_9am_and_p1_is_not_moved(
    world: tuple[App, Driver, FakeClock],
) -> None:
    app, d, clock = world
    assert (await d.say("/incident p3 typo in the docs", "carol")).ok
    assert (await d.say("/incident p1 half the jobs failing", "carol")).ok
    posts = await d.posts()

    monday_9am = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # 09:00 CET
    assert due(app, 1) == {
        ("reminder", 0): monday_9am,  # not Saturday 17:00
        ("overdue", 0): datetime(2026, 12, 7, 8, 0, 2, tzinfo=UTC),  # + 2 s grace (SECONDS)
        ("page", 0): monday_9am,  # 18:30 Friday is after hours
        ("page", 1): datetime(2026, 12, 8, 8, 0, tzinfo=UTC),  # + 1 day: Tuesday 09:00
    }
    assert due(app, 2) == {  # P1: wall-clock time
        ("reminder", 0): datetime(2026, 12, 4, 16, 30, tzinfo=UTC),
        ("overdue", 0): datetime(2026, 12, 4, 16, 30, 2, tzinfo=UTC),
        ("page", 0): datetime(2026, 12, 4, 16, 15, tzinfo=UTC),
        ("page", 1): datetime(2026, 12, 4, 17, 15, tzinfo=UTC),
    }
    # The announcement says what the timer will do.
    announced = [p.text for p in posts if p.tag == "#incidents"]
    [p3] = [t for t in announced if "Incident: typo in the docs" in t]
    assert "**Next Update:** 2026-12-07 09:00 CET" in p3
    [p1] = [t for t in announced if "Incident: half the jobs failing" in t]
    assert "**Next Update:** 2026-12-04 17:30 CET" in p1

    # Driven: nothing for the P3 over the weekend, the P1 reminded at once.
    posts = await fire_at(app, d, clock, datetime(2026, 12, 4, 16, 30, tzinfo=UTC))
    assert any("next update for #2 is due now" in line for line in about(posts, 2))
    assert about(posts, 1) == []
    posts = await fire_at(app, d, clock, datetime(2026, 12, 5, 16, 0, tzinfo=UTC))  # Sat 17:00
    assert about(posts, 1) == []
    posts = await fire_at(app, d, clock, datetime(2026, 12, 7, 7, 59, tzinfo=UTC))
    assert about(posts, 1) == []
    posts = await fire_at(app, d, clock, monday_9am)
    lines = about(posts, 1)
    assert any("next update for #1 is due now" in line for line in lines), lines
    assert any("Page: [P3] #1 typo in the docs" in line for line in lines), lines
    posts = await fire_at(app, d, clock, datetime(2026, 12, 7, 8, 0, 5, tzinfo=UTC))
    # Overdue since the opening, not since Saturday.
    assert any("#1 typo in the docs: update overdue** by 5 s" in line for line in about(posts, 1))
    # The call-out re-arms the reminder: a day later, inside working hours.
    assert due(app, 1)[("reminder", 0)] == datetime(2026, 12, 8, 8, 0, 5, tzinfo=UTC)


async def test_an_update_after_hours_is_next_due_at_the_opening(
    world: tuple[App, Driver, FakeClock],
) -> None:
    app, d, clock = world
    assert (await d.say("/incident p3 typo in the docs", "carol")).ok
    await d.posts()
    # Monday 2026-12-07 10:00 CET: an update; the next one a day later, Tuesday 10:00.
    clock.set(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    await d.say("/update #1 fix in review", "carol")
    assert due(app, 1)[("reminder", 0)] == datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
    # Thursday 19:00 CET: a day later is Friday 19:00, after hours: Monday 09:00.
    clock.set(datetime(2026, 12, 10, 18, 0, tzinfo=UTC))
    await d.say("/update #1 merged", "carol")
    assert due(app, 1)[("reminder", 0)] == datetime(2026, 12, 14, 8, 0, tzinfo=UTC)
    *_, update = [p for p in await d.posts() if "Incident Update" in p.text]
    assert "merged" in update.text
    assert "**Next Update:** 2026-12-14 09:00 CET" in update.text
