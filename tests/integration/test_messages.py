"""Messages that say what to do (issue 14, part 3): each answer a new user meets when
something is missing names the limit, the reason or the fix, instead of a bare usage
line or a promise PIRA cannot keep."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from bot.app import App
from bot.settings import Config
from tests.support.driver import Driver


@pytest.fixture
async def bare(make_app: Callable[..., App]) -> AsyncIterator[Driver]:
    """The runbook's defaults: no people, no rotation, no cluster."""
    app = make_app(config=Config())
    driver = Driver(app)
    await app.start(scheduler=False)
    yield driver
    await app.stop()


async def test_a_too_long_line_says_the_limit(bare: Driver) -> None:
    reply = await bare.say("/update " + "x" * 4100)
    assert not reply.ok
    assert bare.text(reply) == "That message is too long (4108 characters; at most 4000)."


@pytest.mark.parametrize("code", ["ZZZ", "ABC123"])
async def test_an_unknown_confirmation_code_says_unknown_or_expired(
    bare: Driver, code: str
) -> None:
    reply = await bare.say(f"/confirm {code}")
    assert not reply.ok
    assert bare.text(reply) == (
        f"No pending action with code {code}: it is unknown, used already, or expired "
        "(a code lasts 60 s). Run the command again for a new one."
    )


async def test_naming_a_person_with_nobody_configured_says_how_to_add_people(
    bare: Driver,
) -> None:
    await bare.say("/incident p2 slow jobs")
    reply = await bare.say("/commander #1 @nobody")
    assert not reply.ok
    text = bare.text(reply)
    assert text.startswith("@nobody is not a configured person, and nobody is configured yet")
    assert "add people under `people:` in the configuration" in text
    owner = await bare.say("/action add #1 tune it @nobody")
    assert "nobody is configured yet" in bare.text(owner)


async def test_declaring_without_a_rotation_says_nobody_will_be_paged_and_why(
    bare: Driver, make_app: Callable[..., App]
) -> None:
    reply = await bare.say("/incident p1 jobs failing")
    assert bare.text(reply) == (
        "Declared #1 [P1] jobs failing: announced in #incidents, room #incident-1, nobody "
        "will be paged: no on-call rotation is configured (oncall.rotation)."
    )
    p3 = await bare.say("/incident p3 docs typo")
    assert bare.text(p3).endswith("no page (severity without paging).")


async def test_declaring_with_a_chain_that_starts_with_an_unassigned_role(
    make_app: Callable[..., App],
) -> None:
    app = make_app(config=Config.model_validate({"oncall": {"chain": [{"role": "team_lead"}]}}))
    d = Driver(app)
    await app.start(scheduler=False)
    try:
        reply = await d.say("/incident p0 all down")
    finally:
        await app.stop()
    assert d.text(reply).endswith(
        "nobody will be paged: nobody is configured as team_lead (roles.team_lead)."
    )


async def test_declaring_with_someone_on_call_promises_the_page(
    make_app: Callable[..., App],
) -> None:
    config = Config.model_validate(
        {
            "people": {"alice": {"roles": ["responder"]}},
            "oncall": {"rotation": {"members": ["alice"], "start": "2026-01-05"}},
        }
    )
    app = make_app(config=config)
    d = Driver(app)
    await app.start(scheduler=False)
    try:
        reply = await d.say("/incident p1 jobs failing", "alice")
    finally:
        await app.stop()
    assert d.text(reply).endswith("paging the on-call in 15m unless acknowledged.")
