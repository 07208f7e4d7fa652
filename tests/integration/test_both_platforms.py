"""Issue 4: Slack and Telegram at once — one incident shows on both, an ack on either
shows on both, and the ack chain's pages arrive as direct messages on both."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from bot.app import App
from bot.clock import FakeClock
from bot.settings import Config
from tests.fakes.payloads import (
    slack_block_actions,
    slack_interactive_body,
    slack_signed_headers,
    tg_callback_query_update,
    tg_command_update,
    tg_supergroup_chat,
    tg_user,
)
from tests.fakes.slack_api import FakeSlack, RecordedCall
from tests.fakes.telegram_api import FakeTelegram
from tests.support.http import wait_healthy

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*retry_after.*:telegram.warnings.PTBDeprecationWarning"),
    # Who is primary depends on the week: the clock is driven (a Monday of alice's shift).
    pytest.mark.clock,
]

SECRET = "0123456789abcdef0123456789abcdef"
GROUP = tg_supergroup_chat(-1001111111111, "Incidents", is_forum=False)
ALICE_TG = tg_user(1001, "Alice", "alice")
# The rotation starts 2026-01-05 with alice; 2026-11-30 is 47 weeks later: bob's week.
ALICES_WEEK = datetime(2026, 12, 9, 10, 0, tzinfo=UTC)  # Wednesday, 48 weeks in
CONFIG = Config.model_validate(
    {
        "severities": {"P0": {"page_after": "0s"}},
        "oncall": {"rotation": {"members": ["alice", "bob"], "start": "2026-01-05"}},
        "channels": {"incidents": {"slack": "C0INCIDENTS", "telegram": GROUP["id"]}},
        "people": {
            "alice": {
                "name": "Alice",
                "slack": "U0ALICE",
                "telegram": 1001,
                "roles": ["responder"],
            },
            "bob": {"name": "Bob", "slack": "U0BOB", "telegram": 1002, "roles": ["responder"]},
        },
    }
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def world(
    make_app: Callable[..., App],
) -> AsyncIterator[tuple[App, FakeSlack, FakeTelegram, int]]:
    async with FakeSlack() as slack, FakeTelegram() as tg:
        tg.add_chat(GROUP)
        tg.add_private_chat(1001, "alice")
        tg.add_private_chat(1002, "bob")
        port = free_port()
        app = make_app(
            config=CONFIG,
            clock=FakeClock(ALICES_WEEK),
            env={
                "PIRA_SLACK_BOT_TOKEN": slack.bot_token,
                "PIRA_SLACK_SIGNING_SECRET": SECRET,
                "PIRA_SLACK_API_URL": slack.url,
                "PIRA_TELEGRAM_TOKEN": tg.token,
                "PIRA_TELEGRAM_API_URL": tg.url,
                "PIRA_HTTP_PORT": str(port),
            },
        )
        chats = app.chat_adapters()  # the real selection from the environment
        assert sorted(type(c).__name__ for c in chats) == ["SlackAdapter", "TelegramAdapter"]
        for chat in chats:
            app.add_adapter(chat)
        await app.start(scheduler=False)
        stop = asyncio.Event()
        serve = asyncio.create_task(app.serve_forever(stop))
        try:
            await wait_healthy(f"http://127.0.0.1:{port}")
            yield app, slack, tg, port
        finally:
            stop.set()
            await serve
            await app.stop()


def slack_post(channel: str, contains: str) -> Callable[[RecordedCall], bool]:
    def match(c: RecordedCall) -> bool:
        return bool(
            c.delivered
            and c.response
            and c.response.get("channel") == channel
            and contains in str(c.params.get("text", ""))
        )

    return match


def tg_post(chat_id: int, contains: str) -> Callable[[RecordedCall], bool]:
    def match(c: RecordedCall) -> bool:
        return bool(
            c.delivered
            and c.params.get("chat_id") == chat_id
            and contains in str(c.params.get("text", ""))
        )

    return match


async def click_slack(port: int, message: dict[str, Any], label: str, user: str) -> None:
    buttons = next(b for b in message["blocks"] if b["type"] == "actions")["elements"]
    button = next(b for b in buttons if b["text"]["text"] == label)
    payload = slack_block_actions(
        button["action_id"],
        button["value"],
        block_id="pira-actions",
        user_id=user,
        user_name="bob",
        channel_id=message["channel"],
        message_ts=message["ts"],
        message=message,
        button_text=label,
    )
    body = slack_interactive_body(payload)
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"http://127.0.0.1:{port}/slack/events",
            data=body.encode(),
            headers=slack_signed_headers(SECRET, body),
        ) as r,
    ):
        assert r.status == 200


async def test_one_incident_on_both_and_an_ack_on_either_shows_on_both(
    world: tuple[App, FakeSlack, FakeTelegram, int],
) -> None:
    app, slack, tg, port = world
    tg.push_update(tg_command_update("/incident p0 cluster down", chat=GROUP, from_user=ALICE_TG))
    on_slack = await slack.wait_for(
        "chat.postMessage", slack_post("C0INCIDENTS", "Incident: cluster down"), timeout=10
    )
    on_tg = await tg.wait_for(
        "sendMessage", tg_post(GROUP["id"], "Incident: cluster down"), timeout=10
    )
    assert "<b>[P0] Incident: cluster down</b>" in on_tg.params["text"]
    assert "*[P0] Incident: cluster down*" in on_slack.params["text"]

    # Pages of the ack chain: direct messages on both platforms.
    await app.timers.fire_due()
    dm_slack = await slack.wait_for(
        "chat.postMessage",
        lambda c: c.delivered and "Page: [P0] #1" in str(c.params.get("text", "")),
        timeout=10,
    )
    assert dm_slack.params["channel"] == "U0ALICE"  # the primary's own DM
    await tg.wait_for("sendMessage", tg_post(1001, "Page: [P0] #1"), timeout=10)

    # Bob acknowledges with the button on Slack; Telegram's announcement follows.
    message = {
        **on_slack.response["message"],
        "channel": on_slack.response["channel"],
        "ts": on_slack.response["ts"],
    }
    await click_slack(port, message, "Acknowledge", "U0BOB")
    for _ in range(100):
        if app.incidents.get(1).acknowledged_by == "bob":
            break
        await asyncio.sleep(0.05)
    assert app.incidents.get(1).acknowledged_by == "bob"
    edited_slack = await slack.wait_for(
        "chat.update",
        lambda c: c.delivered and c.params.get("ts") == on_slack.response["ts"],
        timeout=10,
    )
    assert "Acknowledged by bob" in str(edited_slack.params.get("text", ""))
    edited_tg = await tg.wait_for(
        "editMessageText",
        lambda c: (
            c.delivered and c.params.get("message_id") == on_tg.response["result"]["message_id"]
        ),
        timeout=10,
    )
    assert "Acknowledged by bob" in edited_tg.params["text"]
    labels = [
        b["text"]
        for row in edited_tg.params.get("reply_markup", {}).get("inline_keyboard", [])
        for b in row
    ]
    assert "Acknowledge" not in labels


async def test_an_ack_on_telegram_shows_on_slack(
    world: tuple[App, FakeSlack, FakeTelegram, int],
) -> None:
    app, slack, tg, _ = world
    app.incidents.declare(
        severity="P1", title="jobs slow", by=app.directory.person_actor("bob"), source="slack"
    )
    on_slack = await slack.wait_for(
        "chat.postMessage", slack_post("C0INCIDENTS", "Incident: jobs slow"), timeout=10
    )
    on_tg = await tg.wait_for(
        "sendMessage", tg_post(GROUP["id"], "Incident: jobs slow"), timeout=10
    )
    rows = on_tg.params["reply_markup"]["inline_keyboard"]
    ack = next(b for row in rows for b in row if b["text"] == "Acknowledge")
    message = on_tg.response["result"]
    tg.push_update(
        tg_callback_query_update(ack["callback_data"], message=message, from_user=ALICE_TG)
    )
    await slack.wait_for(
        "chat.update",
        lambda c: (
            c.delivered
            and c.params.get("ts") == on_slack.response["ts"]
            and "Acknowledged by alice" in str(c.params.get("text", ""))
        ),
        timeout=10,
    )
    assert app.incidents.get(1).acknowledged_by == "alice"
