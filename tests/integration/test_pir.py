"""/pir [#N] [when] (issue 12, part 2): the post-incident review's slot on a business
day 18-48 h after the resolution (or the first after it, flagged), the times /pir
accepts, the `.ics` invite stored and posted in the incident room, the reminder as a
durable timer that fires once for a resolved incident, a reschedule leaving one pending
reminder, and the proposal on a P0/P1 resolution. On a driven clock."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import icalendar
import pytest
from sqlalchemy import select

from bot.app import App
from bot.clock import FakeClock
from bot.settings import Config
from bot.store.models import AuditEntry, OutboxMessage, StoredFile, Timer
from tests.integration.test_timers import SECONDS
from tests.support.driver import Driver

pytestmark = pytest.mark.clock

TUESDAY_NIGHT = datetime(2026, 12, 1, 21, 0, tzinfo=UTC)
FRIDAY = datetime(2026, 12, 4, 14, 0, tzinfo=UTC)


def settings(**extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = copy.deepcopy(SECONDS)
    config["people"]["alice"]["email"] = "alice@example.com"
    config["people"]["bob"]["email"] = "bob@example.com"
    config["people"]["carol"]["email"] = "carol@example.com"
    config["people"]["erin"]["roles"] = ["responder"]  # no email: mentioned, not invited
    config.update(extra)
    return config


@pytest.fixture
def start() -> datetime:
    return TUESDAY_NIGHT


@pytest.fixture
def config() -> dict[str, Any]:
    return settings()


@pytest.fixture
async def world(
    make_app: Callable[..., App],
    start: datetime,
    config: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[App, Driver, FakeClock]]:
    monkeypatch.setenv("PIRA_FILES_DIR", str(tmp_path / "files"))  # the console's files
    clock = FakeClock(start)
    app = make_app(config=Config.model_validate(config), clock=clock)
    driver = Driver(app)
    await app.start(scheduler=False)
    yield app, driver, clock
    await app.stop()


async def incident_resolved_in_an_hour(
    d: Driver, clock: FakeClock, severity: str = "p1", title: str = "executors evicted"
) -> None:
    """Declared by carol, acknowledged by alice, an update by erin, resolved by bob an
    hour after the start (the timers never fired: only people on the timeline)."""
    assert (await d.say(f"/incident {severity} {title}", "carol")).ok
    await d.say("/ack #1", "alice")
    await d.say("/update #1 draining nodes", "erin")
    clock.advance(timedelta(hours=1))
    assert (await d.say("/resolve #1 node pool upgrade -- rolled back", "bob")).ok
    await d.posts()


def reminders(app: App) -> list[Timer]:
    with app.store.read() as s:
        return list(s.scalars(select(Timer).where(Timer.kind == "pir-reminder")))


def invites(app: App) -> list[StoredFile]:
    with app.store.read() as s:
        return list(s.scalars(select(StoredFile).order_by(StoredFile.id)))


def rows(app: App, template: str) -> list[OutboxMessage]:
    with app.store.read() as s:
        return [
            r
            for r in s.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
            if r.body["template"] == template
        ]


async def test_p1_resolved_tuesday_night_gets_thursday_with_invite_and_reminder(
    world: tuple[App, Driver, FakeClock],
) -> None:
    app, d, clock = world
    await incident_resolved_in_an_hour(d, clock)  # resolved Tuesday 22:00 UTC
    reply = await d.say("/pir #1", "alice")
    assert reply.ok, d.text(reply)
    # Wednesday 14:00 would be 16 h after the resolution (under pir.rest, 18 h).
    assert d.text(reply).startswith(
        "Post-incident review of #1 scheduled for 2026-12-03 14:00 UTC."
    )
    assert "outside" not in d.text(reply)

    incident = await app.store.run(app.incidents.get, 1)
    assert incident.details["pir"]["at"] == "2026-12-03T14:00:00+00:00"
    assert incident.details["pir"]["outside_window"] is False
    assert incident.details["pir"]["by"] == "alice"
    lines = [(e.actor, e.text) for e in incident.timeline if e.kind == "pir"]
    assert lines == [("alice", "post-incident review scheduled: 2026-12-03 14:00 UTC")]
    with app.store.read() as s:
        audited = s.scalar(select(AuditEntry).where(AuditEntry.action.like("/pir%")))
    assert audited is not None and audited.actor == "alice" and "scheduled" in audited.detail

    # The post in the incident room: every person of the timeline mentioned, the
    # invite attached (the outbox row names the stored file).
    [post] = rows(app, "pir")
    assert post.destination == "incident:1"
    [stored] = invites(app)
    assert (stored.kind, stored.name, stored.mime) == ("pir-invite", "pir-1.ics", "text/calendar")
    assert post.body["file"] == stored.id and stored.incident_id == incident.id
    assert post.body["data"]["invitees"] == ["carol", "alice", "erin", "bob"]
    [room] = [p for p in await d.posts() if p.tag == "#incident-1"]
    assert "Post-incident review scheduled: #1 executors evicted" in room.text
    assert "@carol, @alice, @erin, @bob" in room.text
    assert "2026-12-03 14:00 UTC" in room.text

    calendar = icalendar.Calendar.from_ical(stored.content)
    [event] = calendar.walk("VEVENT")
    assert event.decoded("dtstart") == datetime(2026, 12, 3, 14, 0, tzinfo=UTC)
    assert event.decoded("dtend") == datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
    assert str(event["summary"]) == "Post-incident review: #1 executors evicted"
    attendees: list[Any] = event.get("attendee")
    assert sorted(str(a) for a in attendees) == [
        "mailto:alice@example.com",
        "mailto:bob@example.com",
        "mailto:carol@example.com",
    ]  # erin has no email
    assert str(event["organizer"]) == "mailto:alice@example.com"

    # The reminder: a durable timer an hour before, firing once although #1 is resolved.
    [timer] = reminders(app)
    assert timer.due_at == datetime(2026, 12, 3, 13, 0, tzinfo=UTC)
    assert timer.incident_id == incident.id
    clock.set(datetime(2026, 12, 3, 12, 59, tzinfo=UTC))
    await app.timers.fire_due()
    assert [p for p in await d.posts() if "post-incident review" in p.text.lower()] == []
    clock.set(datetime(2026, 12, 3, 13, 0, tzinfo=UTC))
    await app.timers.fire_due()
    await app.timers.fire_due()
    posted = [p for p in await d.posts() if "post-incident review" in p.text.lower()]
    assert [p.tag for p in posted] == ["#incident-1"]
    assert posted[0].text.startswith(
        "⏰ **Reminder: post-incident review of #1 at 2026-12-03 14:00 UTC**"
    )
    assert "@carol @alice @erin @bob" in posted[0].text
    [timer] = reminders(app)
    assert timer.fired_at == datetime(2026, 12, 3, 13, 0, tzinfo=UTC)


async def test_reschedule_moves_the_review_and_leaves_one_pending_reminder(
    world: tuple[App, Driver, FakeClock],
) -> None:
    app, d, clock = world
    await incident_resolved_in_an_hour(d, clock)
    clock.set(datetime(2026, 12, 2, 9, 0, tzinfo=UTC))  # Wednesday morning
    first = await d.say("/pir #1", "alice")
    assert "2026-12-03 14:00 UTC" in d.text(first)
    moved = await d.say("/pir #1 tomorrow 10:00", "carol")
    assert moved.ok, d.text(moved)
    assert d.text(moved).startswith("Post-incident review of #1 moved to 2026-12-03 10:00 UTC.")
    again = await d.say("/pir #1 thursday", "carol")  # pir.at on Thursday
    assert d.text(again).startswith("Post-incident review of #1 moved to 2026-12-03 14:00 UTC.")
    later = await d.say("/pir #1 fri 16:30", "carol")
    assert "2026-12-04 16:30 UTC" in d.text(later)

    pending = [t for t in reminders(app) if t.fired_at is None and t.cancelled_at is None]
    assert [t.due_at for t in pending] == [datetime(2026, 12, 4, 15, 30, tzinfo=UTC)]
    assert len(reminders(app)) == 4
    incident = await app.store.run(app.incidents.get, 1)
    assert incident.details["pir"]["version"] == 4
    assert [e.text for e in incident.timeline if e.kind == "pir"][1:] == [
        "post-incident review rescheduled: 2026-12-03 10:00 UTC",
        "post-incident review rescheduled: 2026-12-03 14:00 UTC",
        # Chosen by hand past the window: said, not refused.
        "post-incident review rescheduled: 2026-12-04 16:30 UTC "
        "(outside the runbook's 24–48 h window)",
    ]
    # One calendar event, updated: the same UID, a growing SEQUENCE.
    events = [icalendar.Calendar.from_ical(f.content).walk("VEVENT")[0] for f in invites(app)]
    assert len({str(e["uid"]) for e in events}) == 1
    assert [e.decoded("sequence") for e in events] == [0, 1, 2, 3]
    assert events[-1].decoded("dtstart") == datetime(2026, 12, 4, 16, 30, tzinfo=UTC)

    # Only the last reminder fires.
    clock.set(datetime(2026, 12, 5, 0, 0, tzinfo=UTC))
    await app.timers.fire_due()
    posted = [
        p for p in await d.posts() if p.text.startswith("⏰ **Reminder: post-incident review")
    ]
    assert len(posted) == 1 and "2026-12-04 16:30 UTC" in posted[0].text


@pytest.mark.parametrize(
    ("holidays", "expected"),
    [
        ({}, datetime(2026, 12, 7, 14, 0, tzinfo=UTC)),  # Monday
        ({"dates": ["2026-12-07"]}, datetime(2026, 12, 8, 14, 0, tzinfo=UTC)),  # Tuesday
    ],
)
async def test_friday_afternoon_gets_the_next_business_day_flagged(
    make_app: Callable[..., App],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    holidays: dict[str, Any],
    expected: datetime,
) -> None:
    monkeypatch.setenv("PIRA_FILES_DIR", str(tmp_path / "files"))
    clock = FakeClock(FRIDAY)
    config = settings(business={"holidays": holidays})
    app = make_app(config=Config.model_validate(config), clock=clock)
    d = Driver(app)
    await app.start(scheduler=False)
    try:
        await incident_resolved_in_an_hour(d, clock)  # resolved Friday 15:00
        reply = await d.say("/pir", "alice")  # the only incident: #1
        shown = f"{expected:%Y-%m-%d %H:%M} UTC"
        assert d.text(reply).startswith(
            f"Post-incident review of #1 scheduled for {shown} (outside the runbook's "
            "24–48 h window: no business day fell within it)."
        ), d.text(reply)
        incident = await app.store.run(app.incidents.get, 1)
        assert incident.details["pir"]["outside_window"] is True
        [room] = [p for p in await d.posts() if p.tag == "#incident-1"]
        assert "outside the runbook's 24–48 h window" in room.text
    finally:
        await app.stop()


@pytest.mark.parametrize("start", [datetime(2026, 5, 22, 14, 0, tzinfo=UTC)])
@pytest.mark.parametrize("config", [settings(business={"holidays": {"country": "DE"}})])
async def test_a_public_holiday_on_monday_moves_the_review_to_tuesday(
    world: tuple[App, Driver, FakeClock],
) -> None:
    _app, d, clock = world
    await incident_resolved_in_an_hour(d, clock)  # Friday 2026-05-22 15:00; Whit Monday
    reply = await d.say("/pir #1", "alice")
    assert "scheduled for 2026-05-26 14:00 UTC (outside" in d.text(reply), d.text(reply)


async def test_a_p1_resolution_proposes_the_review_a_p2_does_not(
    world: tuple[App, Driver, FakeClock],
) -> None:
    app, d, clock = world
    await incident_resolved_in_an_hour(d, clock)  # #1, P1, resolved Tuesday 22:00
    assert (await d.say("/incident p2 one team's jobs slow", "carol")).ok
    assert (await d.say("/resolve #2 quota raised", "carol")).ok
    [p1, p2] = rows(app, "resolved")
    assert p1.body["buttons"] == [
        {"label": "Schedule the review", "command": "/pir #1", "style": "primary"}
    ]
    assert p1.body["data"]["review_at"] == "2026-12-03T14:00:00+00:00"
    rendered = app.renderer.render("console", "resolved", p1.body["data"])
    assert "**Post-incident review:** proposed for 2026-12-03 14:00 UTC." in rendered
    assert p2.body["buttons"] == []
    assert "review_at" not in p2.body["data"]
    assert "Post-incident review" not in app.renderer.render("console", "resolved", p2.body["data"])
    # The button's command schedules the proposed slot.
    clicked = await d.say(p1.body["buttons"][0]["command"], "bob")
    assert "scheduled for 2026-12-03 14:00 UTC" in d.text(clicked)


@pytest.mark.parametrize(
    ("command", "who", "error"),
    [
        ("/pir #2", "alice", "#2 is not resolved yet"),
        ("/pir #1 2026-12-01 10:00", "alice", "2026-12-01 10:00 UTC is in the past"),
        ("/pir #1 21:00 sharp", "alice", "not a time"),
        ("/pir #1 someday", "alice", "not a time"),
        ("/pir #9", "alice", "there is no incident #9"),
        ("/pir #1", "dave", "needs the responder role"),
    ],
)
async def test_bad_pir_commands_are_answered_and_change_nothing(
    world: tuple[App, Driver, FakeClock],
    command: str,
    who: str,
    error: str,
) -> None:
    app, d, clock = world
    await incident_resolved_in_an_hour(d, clock)
    assert (await d.say("/incident p2 still open", "carol")).ok
    reply = await d.say(command, who)
    assert not reply.ok and error.lower() in d.text(reply).lower(), d.text(reply)
    assert reminders(app) == [] and invites(app) == [] and rows(app, "pir") == []
    incident = await app.store.run(app.incidents.get, 1)
    assert "pir" not in incident.details


async def test_the_review_post_escapes_the_title_on_every_platform(
    world: tuple[App, Driver, FakeClock],
) -> None:
    app, d, clock = world
    await incident_resolved_in_an_hour(d, clock, title="<!channel> <b>boom</b>")
    assert (await d.say("/pir #1", "alice")).ok
    [post] = rows(app, "pir")
    slack = app.renderer.render("slack", "pir", post.body["data"])
    telegram = app.renderer.render("telegram", "pir", post.body["data"])
    assert "<!channel>" not in slack and "&lt;!channel&gt;" in slack
    assert "<b>boom</b>" not in telegram and "&lt;b&gt;boom&lt;/b&gt;" in telegram
    assert "<@U0ALICE>" in slack  # alice's Slack id: a real mention
    assert 'tg://user?id=1002">Bob</a>' in telegram  # bob's Telegram id
