"""Issue 2 end to end: `pira console` as a real process on a real database."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.store import Store
from bot.store.models import OutboxMessage
from tests.support.console_proc import ConsoleProc
from tests.support.driver import parse
from tests.support.travel import pira_command


@pytest.fixture
def procs() -> Iterator[list[ConsoleProc]]:
    started: list[ConsoleProc] = []
    yield started
    for proc in started:
        proc.stop()


def start(procs: list[ConsoleProc], db_url: str, **kwargs: object) -> ConsoleProc:
    proc = ConsoleProc(db_url=db_url, **kwargs)  # type: ignore[arg-type]
    procs.append(proc)
    return proc


@pytest.mark.clock  # the real (or the run's moved) clock: times in posts, any hour or day
def test_a_whole_incident_in_a_terminal(db_url: str, procs: list[ConsoleProc]) -> None:
    bot = start(procs, db_url)
    bot.send("/incident p1 Spark jobs failing on prod")
    announce = bot.wait_for("#incidents", "Incident: Spark jobs failing on prod")
    assert announce.text.startswith("🚨 [P1] Incident: Spark jobs failing on prod")
    assert "Status: 🟡 Investigating" in bot.wait_for("#incidents", "Next Update").text
    started = re.search(r"Started: (\S+ \d\d):(\d\d) UTC", announce.text)
    nxt = re.search(r"Next Update: (\S+ \d\d):(\d\d) UTC", announce.text)
    assert started and nxt
    assert (int(nxt.group(2)) - int(started.group(2))) % 60 == 30  # 30 min later
    for command in (
        "/ack",
        "/status mitigating rolled back the 3.5 upgrade",
        "/update executors recovering",
        "/resolve driver OOM in nightly ETL -- raised driver memory to 8g",
        "/timeline",
    ):
        bot.send(command)
    bot.wait_for("#incidents", "Status: 🟠 Mitigating")
    bot.wait_for("#incidents", "Update: executors recovering")
    resolved = bot.wait_for("#incidents", "Incident Resolved: Spark jobs failing on prod")
    timeline = bot.wait_for("reply", "Timeline of #1")
    assert bot.finish() == 0
    resolved = bot.matching("#incidents", "Incident Resolved")[0]
    assert "Status: ✅ Resolved" in resolved.text
    assert re.search(r"Duration: \d+ s", resolved.text)
    assert "Root Cause: driver OOM in nightly ETL" in resolved.text
    timeline = bot.matching("reply", "Timeline of #1")[0]
    for step in (
        "declared [P1]",
        "acknowledged by console",
        "investigating → mitigating",
        "executors recovering",
        "resolved: driver OOM",
    ):
        assert step in timeline.text
    assert len(bot.matching("#incidents", "Incident: Spark")) == 1


def test_stakeholders_posts_show_only_when_their_channel_is_configured(
    db_url: str, procs: list[ConsoleProc], tmp_path: Path
) -> None:
    plain = start(procs, db_url)
    plain.send("/incident p1 nobody outside hears")
    plain.wait_for("#incidents", "Incident: nobody outside hears")
    assert plain.finish() == 0
    assert plain.matching("#stakeholders", "") == []
    config = tmp_path / "pira.yaml"
    config.write_text("channels:\n  stakeholders: {slack: C0STAKE}\n")
    told = start(procs, db_url, config=config)
    told.send("/incident p1 stakeholders hear of it")
    notice = told.wait_for("#stakeholders", "Service disruption: stakeholders hear of it")
    assert "/" not in notice.text.replace("https://", "")  # no commands
    assert told.finish() == 0


def test_bad_input_keeps_the_bot_running(db_url: str, procs: list[ConsoleProc]) -> None:
    bot = start(procs, db_url)
    for line in (
        "/incident p7 x",
        "/incident",
        "/incident p1",
        "/status #99 resolved",
        "/status bogus",
        "/resolve",
        "/incident p1 " + "t" * 10_000,
        "/incident p2 \x01\x02",
        "/incidents",
    ):
        bot.send(line)
    bot.wait_for("reply", "No open incidents.")
    assert bot.finish() == 0
    replies = [p.text for p in bot.printed if p.tag == "reply"]
    assert len(replies) == 9
    assert all("\n" not in r for r in replies[:8])
    assert not [p for p in bot.printed if p.tag != "reply"]
    assert not any("Traceback" in line for line in bot.stderr)


def test_kill_9_and_restart_loses_and_doubles_nothing(
    db_url: str, procs: list[ConsoleProc]
) -> None:
    bot = start(procs, db_url)
    bot.send("/incident p2 Single team jobs failing")
    bot.send("/update looking at the scheduler")
    bot.wait_for("#incidents", "Update: looking at the scheduler")
    bot.kill9()

    # A post stored by the crashed process but never printed (the crash hit between
    # the commit and the delivery): make one, as the outbox would have stored it.
    store = Store(db_url)
    with store.transaction() as s:
        base = s.scalar(select(OutboxMessage).where(OutboxMessage.platform == "console"))
        assert base is not None
        s.add(
            OutboxMessage(
                key="crash-test@console",
                platform="console",
                destination="incident:1",
                incident_id=base.incident_id,
                body={
                    "template": "text",
                    "data": {"text": "stored before the crash"},
                    "buttons": [],
                },
                status="pending",
                attempts=0,
                created_at=base.created_at,
                next_attempt_at=base.created_at,
            )
        )
    store.dispose()

    again = start(procs, db_url)
    again.wait_for("#incident-1", "stored before the crash")
    again.send("/incidents")
    again.send("/timeline #1")
    listing = again.wait_for("reply", "Open incidents (1)")
    assert "#1 [P2] Single team jobs failing" in listing.text
    timeline = again.wait_for("reply", "Timeline of #1")
    assert "declared [P2] Single team jobs failing" in timeline.text
    assert "looking at the scheduler" in timeline.text
    assert again.finish() == 0
    # Nothing from before the crash was printed again, the stored post exactly once.
    assert len(again.matching("#incident-1", "stored before the crash")) == 1
    assert again.matching("#incidents", "Incident: Single team") == []

    third = start(procs, db_url)
    assert third.finish() == 0
    assert third.matching("#incident-1", "stored before the crash") == []


def test_as_user_has_their_roles(db_url: str, procs: list[ConsoleProc], tmp_path: Path) -> None:
    config = tmp_path / "pira.yaml"
    config.write_text("people:\n  alice: {roles: [responder]}\n  vera: {}\n")
    vera = start(procs, db_url, config=config, as_user="vera")
    vera.send("/incident p1 should not open")
    refused = vera.wait_for("reply", "needs the responder role")
    assert "vera does not have it" in refused.text
    assert vera.finish() == 0
    alice = start(procs, db_url, config=config, as_user="alice")
    alice.send("/incident p1 opened by alice")
    alice.wait_for("#incidents", "Incident: opened by alice")
    assert alice.finish() == 0
    nobody = start(procs, db_url, config=config, as_user="mallory")
    assert nobody.finish() == 2
    assert "not a configured person" in "".join(nobody.stderr)


@pytest.mark.parametrize("locale", ["C.UTF-8", "C"])
def test_a_line_of_invalid_utf8_is_answered_and_the_console_goes_on(
    db_url: str, tmp_path: Path, locale: str
) -> None:
    # Regression: the bytes below killed the console (UnicodeDecodeError in the reader
    # under a UTF-8 locale; UnicodeEncodeError from the audit insert under C's
    # surrogateescape), losing the rest of its input.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIRA_", "LC_", "LANG"))}
    config = tmp_path / "pira.yaml"
    config.write_text("people: {vera: {name: Vera}}\n")  # no roles
    env.update(
        PIRA_DATABASE_URL=db_url,
        PIRA_CONFIG=str(config),
        LC_ALL=locale,
        PIRA_LOG_FILE=str(tmp_path / "console.log"),
    )
    done = subprocess.run(
        pira_command("console", "--as", "vera"),
        input=b"/help\n/update bad\xff\xfebytes\n/oncall override @x 1h\xff\n/help\n",
        capture_output=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
    )
    out = done.stdout.decode("utf-8", errors="replace")
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    replies = [p.text for p in parse(out) if p.tag == "reply"]
    assert len(replies) == 4, out
    assert "/incident" in replies[0] and "/incident" in replies[3]  # /help, twice
    assert "needs the responder role" in replies[1]
    assert "Not a duration: '1h\ufffd'" in replies[2]
    assert "Traceback" not in done.stderr.decode(errors="replace")


def test_piped_output_is_plain_text_and_the_log_goes_to_its_file(
    db_url: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIRA_")}
    log = tmp_path / "console.log"
    env.update(PIRA_DATABASE_URL=db_url, PIRA_LOG_FILE=str(log))
    done = subprocess.run(
        pira_command("console"),
        input=b"/incident p1 jobs failing\n/update executors back\n/resolve fixed\n",
        capture_output=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
    )
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, err[-2000:]
    posts = parse(out)
    assert {p.tag for p in posts} >= {"reply", "#incidents", "#incident-1"}
    announce = next(p.text for p in posts if p.tag == "#incidents")
    assert announce.startswith("🚨 [P1] Incident: jobs failing\n")  # the tag kept, no **
    assert "**" not in out and "\x1b[" not in out  # no Markdown, no colour
    assert not any(line.startswith("{") for line in out.splitlines())  # no JSON line
    assert err == ""  # no info lines on the terminal: they are in the log file
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert "database migrated" in events
