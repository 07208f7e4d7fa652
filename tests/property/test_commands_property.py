"""Generated command lines through the console adapter and the real router.

Whatever a person types — any Unicode, control characters, huge numbers, ``#N``
forms, template and mention syntax — PIRA answers it, nothing escapes the router,
no answer is an internal error, and a refused command stores nothing (an audit row
excepted: refusals of guarded commands are audited by design).

Size: ``EXAMPLES`` lines per test, four tests (see the README's testing section).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot.app import App
from bot.clock import FakeClock
from bot.messages import Reply
from bot.settings import Config, Env
from bot.store.models import Confirmation, Incident, OutboxMessage, Override, TimelineEvent, Timer
from tests.support.driver import Driver

EXAMPLES = int(os.environ.get("PIRA_PROPERTY_EXAMPLES", "5000"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PEOPLE = {
    "alice": {"name": "Alice", "roles": ["responder", "operator", "admin"]},
    "bob": {"name": "Bob", "roles": ["responder"]},
    "vera": {"name": "Vera"},  # no roles
}
INTERNAL_ERRORS = ("could not handle that message", "failed on PIRA's side")
COMMANDS = (
    "incident", "ack", "status", "update", "severity", "commander", "impact", "resolve",
    "started", "timeline", "incidents", "oncall", "page", "handoff", "escalation", "health",
    "pods", "logs", "top", "runbook", "scale", "restart", "kill", "restore", "help",
    "confirm", "cancel", "affected", "category", "pir", "postmortem", "action", "report",
    "silence", "unsilence", "maintenance", "rollback", "nosuch",
)  # fmt: skip


@dataclass
class World:
    app: App
    driver: Driver
    loop: asyncio.AbstractEventLoop
    errors: list[logging.LogRecord]
    last: tuple[int, ...] = ()

    def say(self, text: str, who: str | None) -> Reply:
        return self.loop.run_until_complete(self.driver.say(text, who))

    def stored(self) -> tuple[int, ...]:
        """Rows of every table a command may write (the audit log aside), in one query."""
        tables = (Incident, TimelineEvent, OutboxMessage, Timer, Override, Confirmation)
        counts = select(*(select(func.count()).select_from(t).scalar_subquery() for t in tables))
        with self.app.store.read() as s:
            return tuple(s.execute(counts).one())


class _Errors(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.ERROR)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from tests.conftest import PG_URL

    if PG_URL:
        pytest.skip("generated input runs on SQLite; PostgreSQL's text rules are in the unit cases")
    path: Path = tmp_path_factory.mktemp("prop") / "pira.db"
    config = Config.model_validate(
        {"people": PEOPLE, "oncall": {"rotation": {"members": ["alice", "bob"]}}}
    )
    app = App(
        config=config,
        env=Env.from_environ({"PIRA_DATABASE_URL": f"sqlite:///{path}"}),
        clock=FakeClock(),
    )
    loop = asyncio.new_event_loop()
    loop.run_until_complete(asyncio.to_thread(app.store.migrate))
    errors: list[logging.LogRecord] = []
    handler = _Errors(errors)
    logging.getLogger("pira").addHandler(handler)
    driver = Driver(app)
    # A few incidents so that #N, /ack and /update have something to act on.
    for title in ("disk full", "jobs failing", "api slow"):
        reply = loop.run_until_complete(driver.say(f"/incident p2 {title}", "alice"))
        assert reply.ok
    try:
        yield World(app, driver, loop, errors)
    finally:
        logging.getLogger("pira").removeHandler(handler)
        loop.run_until_complete(app.stop())
        loop.close()


# ---- strategies ----------------------------------------------------------------------

controls = st.sampled_from(
    ["\x00", "\x07", "\x1b[31m", "\x7f", "\x85", "\x9b", "\u200b", "\u202e", "\u2028", "\r"]
)
spaces = st.sampled_from([" ", "  ", "\t", "\u00a0", "\u2003", " \t", "\n"])
huge = st.integers(min_value=-(10**40), max_value=10**40).map(str)
numbers = st.one_of(
    st.integers(min_value=-5, max_value=12).map(str),
    huge,
    st.sampled_from(["1e9", "0x10", "1.5", "-0", "٣", "²", "NaN", "inf"]),
)
incident_refs = st.one_of(
    numbers.map(lambda n: f"#{n}"),
    st.sampled_from(["#", "##1", "#1a", "#-1", "#999999999", "#1000000000"]),
)
durations = st.one_of(
    st.tuples(numbers, st.sampled_from(list("smhdwx"))).map("".join),
    st.sampled_from(["1h30m", "0m", "10m ago", "9999999999999999999999h", "1w1w1w", "m"]),
)
specials = st.sampled_from(
    [
        "{{ 7*7 }}", "{% for x in range(10**9) %}", "{{ config }}", "${jndi:ldap://x}",
        "<!channel>", "<!here>", "<@U0ALICE>", "<@U0ALICE|alice>", "@alice", "@", "@@bob",
        "<b>bold</b>", "**bold**", "`code`", "--", "-- fixed it", "p0", "P3", "p9",
        "investigating", "resolved", "executors", "spark-connect", "override", "verify",
        "../../etc/passwd", "/etc/passwd", "primary", "cto", "\ufffd", "\udcff",
    ]
)  # fmt: skip
word = st.one_of(
    specials, numbers, incident_refs, durations, controls, st.text(min_size=1, max_size=12)
)
arguments = st.lists(st.tuples(spaces, word), max_size=8).map(
    lambda parts: "".join(gap + w for gap, w in parts)
)
command_names = st.one_of(
    st.sampled_from(COMMANDS),
    st.sampled_from(COMMANDS).map(str.upper),
    st.sampled_from(COMMANDS).map(lambda c: f"{c}@pira_bot"),
    st.text(min_size=0, max_size=8),
)
command_lines = st.tuples(command_names, arguments).map(lambda t: f"/{t[0]}{t[1]}")
anything = st.text(max_size=300)
long_lines = st.tuples(command_names, st.integers(3990, 4100)).map(
    lambda t: f"/{t[0]} " + "x" * t[1]
)
who = st.sampled_from([None, "alice", "bob", "vera"])


# What each test threw and how it was answered; written to $PIRA_PROPERTY_REPORT (JSON)
# when set, for the README's reliability table.
TALLY: Counter[tuple[str, str]] = Counter()


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    path = os.environ.get("PIRA_PROPERTY_REPORT")
    if path:
        rows = [{"test": t, "answer": a, "count": n} for (t, a), n in sorted(TALLY.items())]
        Path(path).write_text(json.dumps(rows, indent=1))


def answer_kind(reply: Reply, text: str) -> str:
    if reply.ok:
        return "done (or a confirmation prompt)"
    if "needs the" in text and "role" in text:
        return "refused: role"
    return "usage or input error"


def check(world: World, line: str, person: str | None) -> None:
    # Examples run one after the other: what the last one left is what this one finds.
    before = world.last or world.stored()
    errors = len(world.errors)
    reply = world.say(line, person)
    text = world.driver.text(reply)
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").split("::")[-1].split(" ")[0]
    TALLY[(test, answer_kind(reply, text))] += 1
    assert text.strip(), f"no answer to {line!r}"
    assert not any(e in text for e in INTERNAL_ERRORS), f"{line!r} → {text}"
    assert len(world.errors) == errors, f"{line!r} logged {world.errors[-1].getMessage()}"
    world.last = world.stored()
    if not reply.ok:
        assert world.last == before, f"refused {line!r} stored something: {text}"


@SETTINGS
@given(line=command_lines, person=who)
def test_generated_command_lines(world: World, line: str, person: str | None) -> None:
    check(world, line, person)


@SETTINGS
@given(line=anything, person=who)
def test_any_text(world: World, line: str, person: str | None) -> None:
    check(world, line, person)


@SETTINGS
@given(
    name=st.sampled_from(COMMANDS),
    ref=incident_refs,
    rest=arguments,
    person=who,
)
def test_commands_on_incidents(
    world: World, name: str, ref: str, rest: str, person: str | None
) -> None:
    check(world, f"/{name} {ref}{rest}", person)


@SETTINGS
@given(line=st.one_of(long_lines, command_lines.map(lambda c: c * 3)), person=who)
def test_long_and_repeated_lines(world: World, line: str, person: str | None) -> None:
    check(world, line, person)
