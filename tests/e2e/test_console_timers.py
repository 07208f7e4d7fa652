"""Issue 3 end to end: real `pira console` processes, real scheduler, second-long timers.

Each timer is measured from the event that caused it, the declaration, which lies
between the moment the command was written (``sent``) and the moment its
announcement was printed (``announced``). A timer due ``d`` after the declaration
must not print before ``sent + d`` (never early, on any machine) and must print by
``announced + d + LATE``: LATE is what a busy machine legitimately adds (the
scheduler's one-second tick, the firing transaction, printing); the tests pass with
both cores under a CPU hog, and 4 s still tells the steps (3 s apart) apart.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.messages import Destination
from bot.store import Store
from bot.store.models import OutboxMessage
from tests.support.console_proc import ConsoleProc, Printed

# Real processes on the real (or the run's moved) clock; who is on call is read with
# /oncall, and every timer is measured from the declaration.
pytestmark = pytest.mark.clock

LATE = 4.0
EARLY_TOLERANCE = 0.1  # the bot's wall clock against the test's monotonic one

# Seconds after the declaration, from CONFIG: the ack chain (3 s a step) and the
# resolution triggers (EM 6 s, CTO 9 s); carol is the team lead, dave the EM.
PAGES = {"primary": 0, "secondary": 3, "carol": 6, "dave": 6, "erin": 9}
REMINDER = 4

CONFIG = """
severities:
  P0:
    page_after: 0s
    update_every: 4s
    escalate:
      - {after: 6s, to: engineering_manager}
      - {after: 9s, to: cto}
oncall:
  rotation: {members: [alice, bob], every: 7d, handoff: "mon 09:00", start: "2026-01-05"}
  chain:
    - {role: primary, respond_within: {P0: 3s}}
    - {role: secondary, respond_within: {P0: 3s}}
    - {role: team_lead, respond_within: {P0: 3s}}
    - {role: engineering_manager, respond_within: {P0: 3s}}
    - {role: cto}
  overdue_grace: 2s
people:
  alice: {roles: [responder]}
  bob: {roles: [responder]}
  carol: {roles: [responder]}
  dave: {}
  erin: {}
roles: {team_lead: carol, engineering_manager: dave, cto: erin}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "pira.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def procs() -> Iterator[list[ConsoleProc]]:
    started: list[ConsoleProc] = []
    yield started
    for proc in started:
        proc.stop()


def dms(*bots: ConsoleProc) -> list[Printed]:
    return [p for bot in bots for p in bot.printed if p.tag.startswith("DM @")]


def on_call_pair(bot: ConsoleProc) -> tuple[str, str]:
    bot.send("/oncall")
    text = bot.wait_for("reply", "Primary:").text
    primary = text.split("Primary: @")[1].split()[0]
    secondary = text.split("Secondary: @")[1].split()[0]
    return primary, secondary


def due_by_person(primary: str, secondary: str) -> dict[str, int]:
    names = {"primary": primary, "secondary": secondary}
    return {names.get(step, step): after for step, after in PAGES.items()}


def declare(bot: ConsoleProc) -> tuple[float, float]:
    """Declare the P0; return (sent, announced) in the process's seconds."""
    sent = time.monotonic() - bot.started
    bot.send("/incident p0 all jobs failing")
    announced = bot.wait_for("#incidents", "Incident: all jobs failing").at
    return sent, announced


def wait_until_sent(db_url: str, tag: str, timeout: float = 10) -> None:
    store = Store(db_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with store.read() as s:
                rows = s.scalars(select(OutboxMessage).where(OutboxMessage.status == "sent"))
                if any(Destination(r.destination).label() == tag for r in rows):
                    return
            time.sleep(0.05)
    finally:
        store.dispose()
    raise AssertionError(f"{tag} never marked sent")


def late_seconds(text: str) -> int:
    """The lateness a post states ("late by 14 s"), 0 when it states none."""
    m = re.search(r"late by (\d+) s\b", text)
    if m:
        return int(m.group(1))
    return 0 if "late by" not in text else 10**6  # minutes or more


def assert_on_time(at: float, due: float, sent: float, announced: float, what: str) -> None:
    assert at >= sent + due - EARLY_TOLERANCE, f"{what} early: {at - sent:.2f}s after sending"
    assert at <= announced + due + LATE, f"{what} late: {at - announced:.2f}s after announcing"


def test_p0_pages_escalates_and_reminds_each_once(
    db_url: str, config: Path, procs: list[ConsoleProc]
) -> None:
    bot = ConsoleProc(db_url=db_url, config=config, as_user="carol")
    procs.append(bot)
    primary, secondary = on_call_pair(bot)
    sent, announced = declare(bot)
    # The chain's own CTO step (12 s) finds erin already paged: the last timer.
    bot.wait_for("#incident-1", "@erin (cto) was already paged", timeout=12 + LATE + 10)
    due = due_by_person(primary, secondary)
    assert sorted(p.tag for p in dms(bot)) == sorted(f"DM @{who}" for who in due)  # once each
    for page in dms(bot):
        who = page.tag.removeprefix("DM @")
        assert "Page: [P0] #1" in page.text or "Escalation" in page.text, page
        assert_on_time(page.at, due[who], sent, announced, page.tag)
    reminder = bot.wait_for("#incident-1", "next update for #1 is due now")
    assert_on_time(reminder.at, REMINDER, sent, announced, "the reminder")
    assert "not resolved after 6s" in bot.wait_for("DM @dave", "Escalation").text
    assert bot.matching("#incident-1", "late by") == []
    assert bot.finish() == 0


def test_ack_stops_the_chain_resolve_stops_everything(
    db_url: str, config: Path, procs: list[ConsoleProc]
) -> None:
    bot = ConsoleProc(db_url=db_url, config=config, as_user="carol")
    procs.append(bot)
    primary, secondary = on_call_pair(bot)
    sent, announced = declare(bot)
    bot.wait_for(f"DM @{primary}", "Page: [P0] #1")
    bot.send("/ack")
    acked = bot.wait_for("reply", "#1 acknowledged by carol").at
    # The 6 s trigger still fires: /ack stops the chain, not the resolution triggers.
    escalation = bot.wait_for("DM @dave", "Escalation", timeout=6 + LATE + 10)
    assert_on_time(escalation.at, 6, sent, announced, "the EM trigger")
    bot.send("/resolve restarted the API server")
    resolved = bot.wait_for("#incidents", "Incident Resolved").at
    # Nothing may come after the resolution: wait past the last timer the incident
    # had (the chain's CTO step, 12 s) plus what a busy machine adds.
    time.sleep(max(0.0, announced + 12 + LATE - (time.monotonic() - bot.started)))
    # A reply prints after its commit, and every step is due at sent + its delay or later.
    if acked < sent + 3:  # acknowledged before the secondary's step came due
        assert sorted(p.tag for p in dms(bot)) == sorted([f"DM @{primary}", "DM @dave"])
        assert bot.matching(f"DM @{secondary}", "Page") == []
    assert [p for p in bot.printed if p.at > resolved + 0.5 and p.tag != "reply"] == []
    if resolved < sent + 9:  # resolved before the CTO trigger came due
        assert bot.matching("DM @erin", "") == []
    assert bot.finish() == 0


def test_kill_9_then_restart_fires_what_came_due_once_marked_late(
    db_url: str, config: Path, procs: list[ConsoleProc]
) -> None:
    first = ConsoleProc(db_url=db_url, config=config, as_user="carol")
    procs.append(first)
    primary, secondary = on_call_pair(first)
    _, announced = declare(first)
    first.wait_for(f"DM @{primary}", "Page: [P0] #1")
    # A terminal cannot take a line back: a post printed but not yet marked sent when
    # the process dies is printed again (at least once; the delivery-engine issue).
    # So kill once the page is marked sent: on an idle machine, before the secondary's
    # step (3 s).
    wait_until_sent(db_url, f"DM @{primary}")
    first.kill9()
    # Down until every timer of the incident came due (the last, erin's, at 9 s).
    restart_at = first.started + announced + 12
    time.sleep(max(0.0, restart_at - time.monotonic()))

    second = ConsoleProc(db_url=db_url, config=config, as_user="carol")
    procs.append(second)
    due = due_by_person(primary, secondary)
    printed_first = {p.tag.removeprefix("DM @") for p in dms(first)}
    assert primary in printed_first
    for who in due:
        if who in printed_first:
            continue  # a busy machine may have fired it before the kill: not again
        page = second.wait_for(f"DM @{who}", "Page: [P0] #1", timeout=20)
        assert "late by" in page.text, who
    if not first.matching("#incident-1", "is due now"):
        assert "late by" in second.wait_for("#incident-1", "is due now").text
    # The reminder cycle goes on at its own pace after the restart: the catch-up ones
    # were late by 8 s or more (due at 4 s, restarted after 12 s); the next one is on
    # time (a busy machine may make it late by a second or two, never by a cycle).
    next_reminder = second.wait_for("#incident-1", "is due now", count=2, timeout=20)
    assert late_seconds(next_reminder.text) < 3, next_reminder.text
    # Exactly once across both processes (a double would have printed by now: the
    # second process fired everything due in one pass before the next reminder).
    everything = dms(first, second)
    assert sorted(p.tag for p in everything) == sorted(f"DM @{who}" for who in due)
    assert second.finish() == 0
