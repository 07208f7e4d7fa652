"""Issue 9: hostile command lines get a short answer and change nothing; the router
never raises. Each case was reproduced on main before its fix."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy import func, select

from bot.app import App
from bot.clock import FakeClock
from bot.settings import Config
from bot.store.models import AuditEntry, Incident, Override
from tests.support.driver import Driver

# Overrides against the rotation: the clock is driven (FakeClock).
pytestmark = pytest.mark.clock

PEOPLE = {
    "alice": {"name": "Alice", "roles": ["responder"]},
    "bob": {"name": "Bob", "roles": ["responder"]},
    "vera": {"name": "Vera"},  # configured, no roles
}


@pytest.fixture
async def world(make_app: Callable[..., App]) -> AsyncIterator[tuple[App, Driver]]:
    app = make_app(
        config=Config.model_validate(
            {"people": PEOPLE, "oncall": {"rotation": {"members": ["alice", "bob"]}}}
        ),
        clock=FakeClock(),
    )
    driver = Driver(app)
    await app.start(scheduler=False)
    yield app, driver
    await app.stop()


def overrides(app: App) -> int:
    with app.store.read() as s:
        return s.scalar(select(func.count(Override.id))) or 0


def audit_rows(app: App) -> list[tuple[str, str, str]]:
    with app.store.read() as s:
        rows = s.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        return [(r.actor, r.action, r.outcome) for r in rows]


@pytest.mark.parametrize(
    ("duration", "answer"),
    [
        ("999999999w", "is too long: at most 52w2d"),
        ("9999999999999999999999h", "is too long: at most 52w2d"),
        ("1" * 60 + "s", "Not a duration"),
        ("367d", "is too long: at most 52w2d"),
        ("32d", "An override lasts between 1 minute and 31 days."),
    ],
)
async def test_override_with_an_absurd_duration_is_a_usage_error(
    world: tuple[App, Driver], duration: str, answer: str
) -> None:
    app, d = world
    reply = await d.say(f"/oncall override @bob {duration}", "alice")
    assert not reply.ok
    assert answer in d.text(reply), d.text(reply)
    assert overrides(app) == 0


async def test_override_is_role_guarded_by_the_router_and_audited(
    world: tuple[App, Driver],
) -> None:
    app, d = world
    refused = await d.say("/oncall override @bob 4h", "vera")
    assert not refused.ok
    assert "/oncall needs the responder role; vera does not have it." in d.text(refused)
    assert overrides(app) == 0
    done = await d.say("/oncall override @bob 4h", "alice")
    assert done.ok, d.text(done)
    assert "Primary: @bob" in d.text(done)
    assert overrides(app) == 1
    # Reading who is on call needs no role and is not audited.
    assert (await d.say("/oncall", "vera")).ok
    assert audit_rows(app) == [
        ("vera", "/oncall override @bob 4h", "refused"),
        ("alice", "/oncall override @bob 4h", "ok"),
    ]


@pytest.mark.parametrize("gap", ["\t", "\u00a0", "\u2003", " \t "])
async def test_arguments_split_on_any_white_space(world: tuple[App, Driver], gap: str) -> None:
    app, d = world
    reply = await d.say(f"/oncall{gap}override{gap}@bob{gap}4h", "alice")
    assert reply.ok, d.text(reply)
    assert overrides(app) == 1
    declared = await d.say(f"/incident{gap}p2{gap}disk full", "alice")
    assert declared.ok, d.text(declared)
    severity = await d.say(f"/severity{gap}#1{gap}p1", "alice")
    assert severity.ok, d.text(severity)
    with app.store.read() as s:
        assert s.scalar(select(Incident.severity)) == "P1"


async def test_c0_c1_controls_and_undecodable_bytes_never_get_in(
    world: tuple[App, Driver],
) -> None:
    app, d = world
    # U+0085 (NEL) and U+009B (CSI) are C1 controls; \udcff is a byte that was not UTF-8
    # (surrogateescape), which no database can store.
    reply = await d.say("/incident p1 disk\x85 full\x9b[31m on\x00 node\udcff", "alice")
    assert reply.ok, d.text(reply)
    with app.store.read() as s:
        assert s.scalar(select(Incident.title)) == "disk full[31m on node\ufffd"


async def test_undecodable_text_in_an_error_path_is_answered(world: tuple[App, Driver]) -> None:
    app, d = world
    # Regression: the audit insert of a refused command raised UnicodeEncodeError.
    reply = await d.say("/oncall override @bob bad\udcff\udcfebytes", "vera")
    assert not reply.ok
    reply = await d.say("/resolve #7 bad\udcffbytes", "vera")
    assert not reply.ok and "needs the responder role" in d.text(reply)
    actions = [action for _, action, _ in audit_rows(app)]
    assert actions == ["/oncall override @bob bad\ufffd\ufffdbytes", "/resolve #7 bad\ufffdbytes"]


async def test_an_overlong_line_says_the_limit(world: tuple[App, Driver]) -> None:
    _, d = world
    reply = await d.say("/update " + "x" * 5000, "alice")
    assert not reply.ok
    assert "too long (5008 characters; at most 4000)" in d.text(reply)
