"""Issue 3 end to end: real `pira console` processes, real scheduler, second-long timers.

Windows around the expected times are generous (the scheduler ticks every second
and the machine may be busy): they check that a timer fires at its step, not speed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.console_proc import ConsoleProc, Printed

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


def test_p0_pages_escalates_and_reminds_each_once(
    db_url: str, config: Path, procs: list[ConsoleProc]
) -> None:
    bot = ConsoleProc(db_url=db_url, config=config, as_user="carol")
    procs.append(bot)
    primary, secondary = on_call_pair(bot)
    bot.send("/incident p0 all jobs failing")
    t0 = bot.wait_for("#incidents", "Incident: all jobs failing").at
    bot.wait_for("DM @erin", "Page: [P0] #1", timeout=20)
    time.sleep(4)  # the chain's own CTO step (12 s) finds erin already paged
    at = {p.tag: p.at - t0 for p in dms(bot)}
    assert sorted(p.tag for p in dms(bot)) == sorted(
        f"DM @{who}" for who in (primary, secondary, "carol", "dave", "erin")
    )  # once each
    assert at[f"DM @{primary}"] < 2
    assert 2 <= at[f"DM @{secondary}"] < 6
    assert 5 <= at["DM @dave"] < 9
    assert 8 <= at["DM @erin"] < 12
    reminder = bot.wait_for("#incident-1", "next update for #1 is due now")
    assert 3 <= reminder.at - t0 < 7
    assert "not resolved after 6s" in bot.wait_for("DM @dave", "Escalation").text
    bot.wait_for("#incident-1", "@erin (cto) was already paged")
    assert bot.matching("#incident-1", "late by") == []
    assert bot.finish() == 0


def test_ack_stops_the_chain_resolve_stops_everything(
    db_url: str, config: Path, procs: list[ConsoleProc]
) -> None:
    bot = ConsoleProc(db_url=db_url, config=config, as_user="carol")
    procs.append(bot)
    primary, secondary = on_call_pair(bot)
    bot.send("/incident p0 all jobs failing")
    bot.wait_for(f"DM @{primary}", "Page: [P0] #1")
    bot.send("/ack")
    bot.wait_for("reply", "#1 acknowledged by carol")
    bot.wait_for("DM @dave", "Escalation", timeout=12)  # the 6 s trigger still fires
    bot.send("/resolve restarted the API server")
    bot.wait_for("#incidents", "Incident Resolved")
    resolved_at = time.monotonic()
    time.sleep(6)  # past the 9 s trigger
    assert sorted(p.tag for p in dms(bot)) == sorted([f"DM @{primary}", "DM @dave"])
    assert [
        p for p in bot.printed if p.at > resolved_at - bot.started + 0.5 and p.tag != "reply"
    ] == []
    assert bot.matching(f"DM @{secondary}", "Page") == []
    assert bot.finish() == 0


def test_kill_9_then_restart_fires_what_came_due_once_marked_late(
    db_url: str, config: Path, procs: list[ConsoleProc]
) -> None:
    first = ConsoleProc(db_url=db_url, config=config, as_user="carol")
    procs.append(first)
    primary, secondary = on_call_pair(first)
    first.send("/incident p0 all jobs failing")
    t0 = time.monotonic()
    first.wait_for(f"DM @{primary}", "Page: [P0] #1")
    time.sleep(max(0.0, 2 - (time.monotonic() - t0)))
    first.kill9()
    time.sleep(max(0.0, 12 - (time.monotonic() - t0)))

    second = ConsoleProc(db_url=db_url, config=config, as_user="carol")
    procs.append(second)
    for who in (secondary, "carol", "dave", "erin"):
        page = second.wait_for(f"DM @{who}", "Page: [P0] #1", timeout=10)
        assert "late by" in page.text, who
    reminder = second.wait_for("#incident-1", "next update for #1 is due now")
    assert "late by" in reminder.text
    time.sleep(3)
    everything = dms(first, second)
    assert sorted(p.tag for p in everything) == sorted(
        f"DM @{who}" for who in (primary, secondary, "carol", "dave", "erin")
    )
    assert [p.tag for p in dms(first)] == [f"DM @{primary}"]
    # The reminder cycle goes on at its own pace after the restart, not late.
    next_reminder = second.wait_for("#incident-1", "is due now", count=2, timeout=10)
    assert "late by" not in next_reminder.text
    assert second.finish() == 0
