"""Issue 17.5: contacts really reachable — ``/escalation verify`` asks the platforms
(Slack ``users.info``, Telegram ``getChat``) about everyone the escalation can page and
says who is unreachable and why; a platform that does not answer is "could not check",
never a hang."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.app import App
from bot.clock import FakeClock
from bot.settings import Config
from tests.fakes.slack_api import FakeSlack
from tests.fakes.telegram_api import FakeTelegram
from tests.support.driver import Driver
from tests.support.http import wait_healthy

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*retry_after.*:telegram.warnings.PTBDeprecationWarning"),
    pytest.mark.clock,  # who the rotation names depends on the date: the clock is driven
]

SECRET = "0123456789abcdef0123456789abcdef"
CONFIG: dict[str, Any] = {
    "oncall": {"rotation": {"members": ["alice", "bob"], "start": "2026-01-05"}},
    "channels": {"incidents": {"slack": "C0INCIDENTS"}},
    "roles": {"team_lead": "carol", "engineering_manager": "dave", "cto": "erin"},
    "people": {
        # Slack and Telegram, and she opened the bot: reachable on both.
        "alice": {"slack": "U0ALICE", "telegram": 1001, "roles": ["responder"]},
        # Never opened the bot on Telegram: getChat answers "chat not found".
        "bob": {"slack": "U0BOB", "telegram": 1002, "roles": ["responder"]},
        "carol": {"slack": "U0CAROL"},  # deactivated in Slack
        "dave": {"slack": "U0GONE"},  # not in the workspace
        "erin": {"telegram": 1005},
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def config() -> Config:
    return Config.model_validate(CONFIG)


@pytest.fixture
async def world(
    make_app: Callable[..., App], config: Config
) -> AsyncIterator[tuple[App, Driver, FakeSlack, FakeTelegram]]:
    async with FakeSlack() as slack, FakeTelegram() as tg:
        slack.add_user("U0CAROL", "carol", "Carol Example", deleted=True)
        tg.add_private_chat(1001, "alice")
        tg.add_private_chat(1005, "erin")
        port = free_port()
        app = make_app(
            config=config,
            clock=FakeClock(datetime(2026, 12, 9, 10, 0, tzinfo=UTC)),
            env={
                "PIRA_SLACK_BOT_TOKEN": slack.bot_token,
                "PIRA_SLACK_SIGNING_SECRET": SECRET,
                "PIRA_SLACK_API_URL": slack.url,
                "PIRA_TELEGRAM_TOKEN": tg.token,
                "PIRA_TELEGRAM_API_URL": tg.url,
                "PIRA_HTTP_PORT": str(port),
            },
        )
        for chat in app.chat_adapters():
            app.add_adapter(chat)
        d = Driver(app)  # the console, where the command is typed
        await app.start(scheduler=False)
        stop = asyncio.Event()
        serve = asyncio.create_task(app.serve_forever(stop))
        try:
            await wait_healthy(f"http://127.0.0.1:{port}")
            yield app, d, slack, tg
        finally:
            stop.set()
            await serve
            await app.stop()


def section(text: str, head: str) -> list[str]:
    """The ``- `` lines under the line starting with ``head``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(head))
    found = []
    for line in lines[start + 1 :]:
        if not line.startswith("- "):
            break
        found.append(line[2:])
    return found


async def test_verify_names_who_the_platforms_cannot_reach(
    world: tuple[App, Driver, FakeSlack, FakeTelegram],
) -> None:
    _app, d, slack, tg = world
    reply = await d.say("/escalation verify", "alice")
    text = d.text(reply)
    assert not reply.ok
    gaps = section(text, "❌ Escalation targets with gaps:")
    assert sorted(gaps) == [
        "@bob (the rotation): Telegram: chat not found — they never opened the bot "
        "(send /start to it)",
        "@carol (team_lead (the ack chain)): Slack: the account is deactivated",
        "@dave (engineering_manager (the ack chain)): Slack: user_not_found "
        "(no such user in this workspace: check people.dave.slack)",
    ]
    assert sorted(section(text, "Reachable:")) == [
        "@alice (the rotation): slack, telegram (the platform confirms)",
        "@bob (the rotation): slack (the platform confirms)",
        "@erin (cto (the ack chain)): telegram (the platform confirms)",
    ]
    assert "console: everyone is reachable" in text
    # The platforms were asked, with each person's own id, once each.
    assert sorted(c.params["chat_id"] for c in tg.calls("getChat")) == [1001, 1002, 1005]
    asked = sorted(c.params["user"] for c in slack.calls("users.info"))
    assert asked == ["U0ALICE", "U0BOB", "U0CAROL", "U0GONE"]


async def test_bob_opens_the_bot_and_is_reachable(
    world: tuple[App, Driver, FakeSlack, FakeTelegram],
) -> None:
    _app, d, _slack, tg = world
    tg.add_private_chat(1002, "bob")  # bob sends /start to the bot
    text = d.text(await d.say("/escalation verify", "alice"))
    assert "@bob (the rotation): slack, telegram (the platform confirms)" in text
    assert "never opened the bot" not in text


@pytest.fixture
def quick_config() -> Config:
    return Config.model_validate(
        {**CONFIG, "oncall": {**CONFIG["oncall"], "contact_timeout": "1s"}}
    )


async def test_a_platform_that_does_not_answer_is_could_not_check(
    make_app: Callable[..., App], quick_config: Config
) -> None:
    async with FakeSlack() as slack, FakeTelegram() as tg:
        tg.add_private_chat(1001, "alice")
        tg.hang("getChat", times=None)  # Telegram never answers
        slack.fail(
            "users.info",
            status=200,
            body={"ok": False, "error": "missing_scope", "needed": "users:read"},
            times=None,
        )
        app = make_app(
            config=quick_config,
            clock=FakeClock(datetime(2026, 12, 9, 10, 0, tzinfo=UTC)),
            env={
                "PIRA_SLACK_BOT_TOKEN": slack.bot_token,
                "PIRA_SLACK_SIGNING_SECRET": SECRET,
                "PIRA_SLACK_API_URL": slack.url,
                "PIRA_TELEGRAM_TOKEN": tg.token,
                "PIRA_TELEGRAM_API_URL": tg.url,
            },
        )
        for chat in app.chat_adapters():
            app.add_adapter(chat)
        d = Driver(app)
        await app.start(scheduler=False)
        try:
            reply = await d.say("/escalation verify", "alice")
            text = d.text(reply)
        finally:
            tg.release(process=False)
            await app.stop()
    unchecked = section(text, "⚠️ Could not check with the platform:")
    assert "@alice (the rotation): Telegram: could not check: timeout" in unchecked
    assert "@bob (the rotation): Telegram: could not check: timeout" in unchecked
    assert "@alice (the rotation): Slack: could not check: missing_scope (needs users:read)" in (
        unchecked
    )
    # Nobody was found unreachable: what could not be checked is not a gap.
    assert reply.ok
    assert "❌" not in text
    assert "the account is deactivated" not in text
