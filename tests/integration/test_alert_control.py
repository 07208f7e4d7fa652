"""Issue 16 with a driven clock, over the real webhook (``POST /alertmanager``) and the
real router: auto-resolution after a quiet time, the Watchdog dead-man's switch, and
maintenance windows that hold alert-driven pages until they end."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from bot.clock import FakeClock
from bot.store.models import AuditEntry, Incident, OutboxMessage
from tests.support.alert_bot import Bot, StartBot, alert, group

PEOPLE: dict[str, Any] = {
    "oncall": {
        "rotation": {"members": ["alice", "bob"], "start": "2026-11-30"},
        "chain": [{"role": "primary", "respond_within": {"P0": "15m", "P1": "1h", "P2": "1h"}}],
    },
    "people": {
        "alice": {"name": "Alice", "roles": ["responder", "operator"]},
        "bob": {"name": "Bob", "roles": ["responder"]},
    },
}


def config(**extra: Any) -> dict[str, Any]:
    return {**PEOPLE, **extra}


def pages(bot: Bot, number: int) -> list[OutboxMessage]:
    """The pages (DMs) sent for incident #number."""
    with bot.app.store.read() as s:
        incident = s.scalar(select(Incident).where(Incident.number == number))
        assert incident is not None
        rows = s.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.incident_id == incident.id)
            .order_by(OutboxMessage.id)
        ).all()
    return [r for r in rows if r.destination.startswith("dm:") and r.body["template"] == "page"]


def incident(bot: Bot, number: int) -> Incident:
    [found] = [i for i in bot.incidents() if i.number == number]
    return found


async def tick(bot: Bot, clock: FakeClock, delta: timedelta) -> None:
    clock.advance(delta)
    await bot.app.timers.fire_due()


def text_of(row: OutboxMessage) -> str:
    return json.dumps(row.body, ensure_ascii=False)


# ---- auto-resolve ------------------------------------------------------------------


async def test_auto_resolve_after_the_quiet_time(start_bot: StartBot) -> None:
    clock = FakeClock()
    bot = await start_bot(
        config=config(alerts={"auto_resolve": ["SparkExecutorLoss"], "auto_resolve_quiet": "5m"}),
        clock=clock,
    )
    await bot.post(group([alert("a")]))
    await bot.post(group([alert("a", status="resolved")]))
    [said] = bot.posts("incident:1", "resolving automatically at")
    assert "2026-11-30 09:05 UTC" in text_of(said)
    await tick(bot, clock, timedelta(minutes=4, seconds=59))
    assert incident(bot, 1).status == "investigating"
    await tick(bot, clock, timedelta(seconds=1))
    done = incident(bot, 1)
    assert done.status == "resolved"
    assert done.root_cause == "all alerts resolved and quiet for 5 min"
    assert done.resolved_at == datetime(2026, 11, 30, 9, 5, tzinfo=UTC)


async def test_other_alerts_are_not_auto_resolved(start_bot: StartBot) -> None:
    clock = FakeClock()
    bot = await start_bot(
        config=config(alerts={"auto_resolve": ["SparkDriverOOMKilled"]}), clock=clock
    )
    await bot.post(group([alert("a")]))
    await bot.post(group([alert("a", status="resolved")]))
    [said] = bot.posts("incident:1", "alert resolved")
    assert "/resolve #1" in text_of(said)  # the button, as before
    await tick(bot, clock, timedelta(hours=1))
    assert incident(bot, 1).status == "investigating"


async def test_acknowledged_before_the_alerts_resolve_is_left_to_people(
    start_bot: StartBot,
) -> None:
    clock = FakeClock()
    bot = await start_bot(
        config=config(alerts={"auto_resolve": ["SparkExecutorLoss"]}), clock=clock
    )
    await bot.post(group([alert("a")]))
    assert (await bot.driver.say("/ack #1", "alice")).ok
    await bot.post(group([alert("a", status="resolved")]))
    [said] = bot.posts("incident:1", "alert resolved")
    assert "resolving automatically" not in text_of(said)
    assert "/resolve #1" in text_of(said)
    await tick(bot, clock, timedelta(hours=1))
    assert incident(bot, 1).status == "investigating"


async def test_acknowledged_during_the_quiet_time_asks_instead(start_bot: StartBot) -> None:
    clock = FakeClock()
    bot = await start_bot(
        config=config(alerts={"auto_resolve": ["SparkExecutorLoss"]}), clock=clock
    )
    await bot.post(group([alert("a")]))
    await bot.post(group([alert("a", status="resolved")]))
    await tick(bot, clock, timedelta(minutes=2))
    assert (await bot.driver.say("/ack #1", "alice")).ok
    await tick(bot, clock, timedelta(minutes=3))
    assert incident(bot, 1).status == "investigating"
    [asked] = bot.posts("incident:1", "someone acknowledged it")
    assert asked.body["buttons"][0]["command"] == "/resolve #1 alerts resolved"


async def test_a_refire_inside_the_quiet_time_keeps_it_open(start_bot: StartBot) -> None:
    clock = FakeClock()
    bot = await start_bot(
        config=config(alerts={"auto_resolve": ["SparkExecutorLoss"]}), clock=clock
    )
    await bot.post(group([alert("a")]))
    await bot.post(group([alert("a", status="resolved")]))
    await tick(bot, clock, timedelta(minutes=3))
    await bot.post(group([alert("a", starts="2026-11-30T09:03:00Z")]))  # flapping
    await tick(bot, clock, timedelta(minutes=10))
    assert incident(bot, 1).status == "investigating"
    # Quiet for good this time: resolved five minutes after its last resolution.
    await bot.post(group([alert("a", status="resolved", starts="2026-11-30T09:03:00Z")]))
    await tick(bot, clock, timedelta(minutes=5))
    assert incident(bot, 1).status == "resolved"


async def test_auto_resolve_by_severity_waits_for_the_quiet_time_too(start_bot: StartBot) -> None:
    clock = FakeClock()
    bot = await start_bot(config=config(alertmanager={"auto_resolve": ["p3"]}), clock=clock)
    await bot.post(group([alert("a", severity="p3")], key="low"))
    await bot.post(group([alert("b", severity="p2")], key="high"))
    await bot.post(group([alert("a", severity="p3", status="resolved")], key="low"))
    await bot.post(group([alert("b", severity="p2", status="resolved")], key="high"))
    await tick(bot, clock, timedelta(minutes=5))
    by_key = {i.alert_group_key: i for i in bot.incidents()}
    assert by_key["low"].status == "resolved"
    assert by_key["high"].status == "investigating"


# ---- Watchdog ----------------------------------------------------------------------


def watchdog(status: str = "firing") -> dict[str, Any]:
    dog = alert("wd", status=status, severity="none", name="Watchdog")
    dog["labels"].pop("namespace")
    return group([dog], key='{}/{alertname="Watchdog"}:{alertname="Watchdog"}')


async def test_watchdog_silence_declares_monitoring_blind_once(start_bot: StartBot) -> None:
    clock = FakeClock()
    bot = await start_bot(
        config=config(alerts={"watchdog": {"alertname": "Watchdog", "silent_after": "10m"}}),
        clock=clock,
    )
    status, answer = await bot.post(watchdog())
    assert (status, answer) == (200, {"status": "watchdog"})
    for _ in range(3):  # heard every 9 minutes: never blind
        await tick(bot, clock, timedelta(minutes=9))
        await bot.post(watchdog())
    assert bot.incidents() == []
    # Silence: at 10 minutes after the last one, one P1 that pages.
    await tick(bot, clock, timedelta(minutes=9, seconds=59))
    assert bot.incidents() == []
    await tick(bot, clock, timedelta(seconds=1))
    [blind] = bot.incidents()
    assert (blind.severity, blind.status) == ("P1", "investigating")
    assert blind.title == "Monitoring is blind: no Watchdog notification for 10 min"
    assert len(pages(bot, 1)) == 1
    await tick(bot, clock, timedelta(minutes=30))
    assert len(bot.incidents()) == 1
    # Heard again: said, and resolved.
    await bot.post(watchdog())
    assert incident(bot, 1).status == "resolved"
    assert bot.posts("incidents", "Watchdog is heard again")
    # Silent once more: a new incident (the key moved on).
    await tick(bot, clock, timedelta(minutes=10))
    assert [i.number for i in bot.incidents() if i.is_open] == [2]


async def test_a_resolved_watchdog_does_not_rearm(start_bot: StartBot) -> None:
    clock = FakeClock()
    bot = await start_bot(config=config(), clock=clock)  # the default: Watchdog, 10m
    await bot.post(watchdog())
    await tick(bot, clock, timedelta(minutes=5))
    await bot.post(watchdog("resolved"))  # Prometheus stopped evaluating
    assert bot.incidents() == []
    await tick(bot, clock, timedelta(minutes=5))
    assert next(i.title for i in bot.incidents()).startswith("Monitoring is blind")


async def test_watchdog_off_is_an_alert_like_any_other(start_bot: StartBot) -> None:
    bot = await start_bot(config=config(alerts={"watchdog": None}))
    status, answer = await bot.post(watchdog())
    assert (status, answer["status"]) == (200, "declared")


# ---- maintenance -------------------------------------------------------------------


async def test_maintenance_holds_alert_pages_until_its_end(start_bot: StartBot) -> None:
    clock = FakeClock()
    bot = await start_bot(config=config(), clock=clock)
    reply = await bot.driver.say("/maintenance 2h kernel upgrade", "alice")
    assert reply.ok, bot.driver.text(reply)
    assert "until 2026-11-30 11:00 UTC" in bot.driver.text(reply)
    await bot.post(group([alert("a", severity="p0")], key="g1"))
    await bot.post(group([alert("b", severity="p1")], key="g2"))
    await bot.post(group([alert("c", severity="p1")], key="g3"))
    # Announced, said why nobody is paged, nobody paged.
    assert len(bot.posts("incidents", "came in during maintenance")) == 3
    assert [len(pages(bot, n)) for n in (1, 2, 3)] == [0, 0, 0]
    # A person's declaration pages as usual.
    assert (await bot.driver.say("/incident p0 checkout is down", "bob")).ok
    await bot.app.timers.fire_due()
    assert len(pages(bot, 4)) == 1
    assert (await bot.driver.say("/ack #2", "bob")).ok
    assert (await bot.driver.say("/resolve #3 it was the upgrade", "bob")).ok
    await tick(bot, clock, timedelta(hours=1, minutes=59))
    assert [len(pages(bot, n)) for n in (1, 2, 3)] == [0, 0, 0]
    # The end: the open, unacknowledged one is paged, once.
    await tick(bot, clock, timedelta(minutes=1))
    assert [len(pages(bot, n)) for n in (1, 2, 3)] == [1, 0, 0]
    assert bot.posts("incident:1", "paging the on-call now")
    await tick(bot, clock, timedelta(minutes=5))
    assert len(pages(bot, 1)) == 1


async def test_maintenance_end_releases_at_once(start_bot: StartBot) -> None:
    clock = FakeClock()
    bot = await start_bot(config=config(), clock=clock)
    assert (await bot.driver.say("/maintenance 4h db failover", "alice")).ok
    await bot.post(group([alert("a", severity="p0")]))
    await tick(bot, clock, timedelta(minutes=10))
    assert pages(bot, 1) == []
    reply = await bot.driver.say("/maintenance end", "alice")
    assert reply.ok and "No maintenance under way" in bot.driver.text(reply)
    await bot.app.timers.fire_due()
    assert len(pages(bot, 1)) == 1
    assert bot.posts("incidents", "Maintenance ended by @alice")
    # Alerts page as usual again.
    await bot.post(group([alert("b", severity="p0")], key="later"))
    await bot.app.timers.fire_due()
    assert len(pages(bot, 2)) == 1


async def test_maintenance_needs_the_operator_role_and_is_audited(start_bot: StartBot) -> None:
    bot = await start_bot(config=config())
    reply = await bot.driver.say("/maintenance 1h", "bob")
    assert not reply.ok
    reply = await bot.driver.say("/maintenance end", "alice")
    assert not reply.ok and "No maintenance is under way" in bot.driver.text(reply)
    reply = await bot.driver.say("/maintenance 8d", "alice")
    assert not reply.ok and "between 1m and 7d" in bot.driver.text(reply)
    reply = await bot.driver.say("/maintenance", "bob")  # anyone may look
    assert reply.ok and "No maintenance under way" in bot.driver.text(reply)
    assert (await bot.driver.say("/maintenance 1h patching", "alice")).ok
    with bot.app.store.read() as s:
        rows = s.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(r.actor, r.outcome) for r in rows if r.action.startswith("/maintenance")] == [
        ("bob", "refused"),
        ("alice", "rejected"),
        ("alice", "rejected"),
        ("alice", "ok"),
    ]


async def test_planned_window_from_the_configuration(start_bot: StartBot) -> None:
    clock = FakeClock()  # Monday 2026-11-30 09:00 UTC
    window = {
        "start": "2026-11-23 08:00",
        "duration": "2h",
        "reason": "weekly patching",
        "rrule": "FREQ=WEEKLY;BYDAY=MO",
    }
    bot = await start_bot(config=config(maintenance=[window]), clock=clock)
    reply = await bot.driver.say("/maintenance", "bob")
    text = bot.driver.text(reply)
    assert "until 2026-11-30 10:00 UTC (weekly patching)" in text
    assert "Next planned: 2026-12-07 08:00 UTC" in text
    await bot.post(group([alert("a", severity="p0")]))
    await tick(bot, clock, timedelta(minutes=59))
    assert pages(bot, 1) == []
    await tick(bot, clock, timedelta(minutes=1))
    assert len(pages(bot, 1)) == 1
    # A planned window is not ended from chat.
    reply = await bot.driver.say("/maintenance end", "alice")
    assert not reply.ok and "No maintenance is under way" in bot.driver.text(reply)


async def test_a_held_p1_is_paged_at_the_end_not_its_page_after_later(
    start_bot: StartBot,
) -> None:
    # P1 pages 15 minutes after its declaration by the runbook's table; held by
    # maintenance, it has waited longer than that already: paged when the window ends.
    clock = FakeClock()
    bot = await start_bot(config=config(), clock=clock)
    assert (await bot.driver.say("/maintenance 30m patching", "alice")).ok
    await bot.post(group([alert("a", severity="p1")]))
    await tick(bot, clock, timedelta(minutes=29, seconds=59))
    assert pages(bot, 1) == []
    await tick(bot, clock, timedelta(seconds=1))
    assert len(pages(bot, 1)) == 1
    # The chain's next step counts from the release: the secondary is not configured
    # here, so nothing more comes within the first step's hour.
    await tick(bot, clock, timedelta(minutes=30))
    assert len(pages(bot, 1)) == 1
