"""The Telegram adapter with a real App (SQLite/PostgreSQL) against the fake Bot API."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from bot.adapters.telegram import TelegramAdapter
from bot.app import App
from bot.messages import Button
from bot.settings import Config
from bot.store.models import Incident, OutboxMessage
from bot.store.models import Room as RoomRow
from bot.web import WebServer
from tests.fakes.payloads import (
    tg_callback_query_update,
    tg_command_update,
    tg_group_chat,
    tg_supergroup_chat,
    tg_user,
)
from tests.fakes.telegram_api import FakeTelegram, RecordedCall

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*retry_after.*:telegram.warnings.PTBDeprecationWarning"
)

ALICE = tg_user(1001, "Alice", "alice")
BOB = tg_user(1002, "Bob", "bob")
GROUP = tg_supergroup_chat(-1001111111111, "Incidents", is_forum=False)
FORUM = tg_supergroup_chat(-1002222222222, "Incidents forum", is_forum=True)
OTHER = tg_group_chat(-4099999999, "Somewhere else")


def config(chat_id: int) -> Config:
    return Config.model_validate(
        {
            "channels": {"incidents": {"telegram": chat_id}},
            "people": {
                "alice": {"name": "Alice", "telegram": 1001, "roles": ["responder"]},
                "bob": {"name": "Bob", "telegram": 1002, "roles": ["responder"]},
            },
        }
    )


@dataclass
class Bot:
    app: App
    adapter: TelegramAdapter
    tg: FakeTelegram
    port: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def running(
    make_app: Callable[..., App], tg: FakeTelegram, chat_id: int, **env: str
) -> AsyncIterator[Bot]:
    port = free_port()
    app = make_app(
        config=config(chat_id),
        env={"PIRA_TELEGRAM_TOKEN": tg.token, "PIRA_TELEGRAM_API_URL": tg.url, **env},
    )
    adapter = TelegramAdapter(app, poll_timeout=1, send_timeout=5)
    app.add_adapter(adapter)
    await app.start(scheduler=False)
    server = WebServer(app, CollectorRegistry())
    await adapter.start(server)
    await server.start("127.0.0.1", port)
    try:
        yield Bot(app, adapter, tg, port)
    finally:
        await adapter.stop()
        await server.stop()
        await app.stop()


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        for chat in (GROUP, FORUM, OTHER):
            fake.add_chat(chat)
        fake.add_private_chat(1001, "alice")
        fake.add_private_chat(1002, "bob")
        yield fake


def sent_to(chat: dict[str, Any], *, markup: bool | None = None) -> Callable[[RecordedCall], bool]:
    def match(call: RecordedCall) -> bool:
        if call.params.get("chat_id") != chat["id"] or not call.delivered:
            return False
        return markup is None or ("reply_markup" in call.params) == markup

    return match


def callback_data(call: RecordedCall) -> list[str]:
    rows = call.params.get("reply_markup", {}).get("inline_keyboard", [])
    return [b["callback_data"] for row in rows for b in row]


async def test_incident_by_polling_announces_with_keyboard_and_replies_in_chain(
    make_app: Callable[..., App], tg: FakeTelegram
) -> None:
    async with running(make_app, tg, GROUP["id"]) as bot:
        assert tg.calls("deleteWebhook"), "polling mode clears any webhook first"
        tg.push_update(
            tg_command_update("/incident p1 Spark Connect down", chat=GROUP, from_user=ALICE)
        )
        announce = await tg.wait_for(
            "sendMessage", lambda c: sent_to(GROUP)(c) and "Incident:" in c.params["text"]
        )
        assert announce.params["parse_mode"] == "HTML"
        assert "<b>[P1] Incident: Spark Connect down</b>" in announce.params["text"]
        assert callback_data(announce) == ["/ack #1"]
        # the ticket goes to incident 1's room: a reply to the announcement (no forum here)
        ticket = await tg.wait_for(
            "sendMessage",
            lambda c: (
                sent_to(GROUP)(c)
                and c is not announce
                and "reply_parameters" in c.params
                and c.params["reply_parameters"]["message_id"]
                == announce.response["result"]["message_id"]
                and "Reporter" in c.response["result"]["text"]
            ),
        )
        assert (
            ticket.response["result"]["reply_to_message"]["message_id"]
            == (announce.response["result"]["message_id"])
        )
        with bot.app.store.read() as s:
            incident = s.scalar(select(Incident))
            assert incident is not None and incident.reporter == "alice"

        # a reply to the announcement is in incident 1's room: /ack needs no #N there,
        # even with a second incident open
        tg.push_update(tg_command_update("/incident p2 Second thing", chat=GROUP, from_user=BOB))
        await tg.wait_for("sendMessage", lambda c: "Second thing" in c.params.get("text", ""))
        tg.push_update(
            tg_command_update(
                "/ack",
                chat=GROUP,
                from_user=BOB,
                reply_to_message=announce.response["result"],
            )
        )
        await tg.wait_for("sendMessage", lambda c: "#1 acknowledged by bob" in c.params["text"])
        assert bot.app.incidents.get(1).acknowledged_by == "bob"
        assert bot.app.incidents.get(2).acknowledged_by is None


async def test_forum_topic_per_incident(make_app: Callable[..., App], tg: FakeTelegram) -> None:
    async with running(make_app, tg, FORUM["id"]) as bot:
        tg.push_update(tg_command_update("/incident p1 Executors OOM", chat=FORUM, from_user=ALICE))
        topic = await tg.wait_for("createForumTopic", lambda c: c.delivered)
        assert topic.params["name"] == "incident-1 Executors OOM"
        thread = topic.response["result"]["message_thread_id"]
        await tg.wait_for("sendMessage", lambda c: c.params.get("message_thread_id") == thread)
        # the announcement stays in General (no topic)
        announce = [m for m in tg.sent_messages(FORUM["id"]) if "Incident:" in m["text"]]
        assert len(announce) == 1 and "message_thread_id" not in announce[0]
        with bot.app.store.read() as s:
            room = s.scalar(select(RoomRow))
            assert room is not None
            assert (room.incident_number, room.chat_id, room.thread_id) == (
                1,
                str(FORUM["id"]),
                str(thread),
            )

        tg.push_update(tg_command_update("/incident p2 Second", chat=FORUM, from_user=ALICE))
        second = await tg.wait_for("createForumTopic", lambda c: c.delivered, skip=1)
        assert second.params["name"] == "incident-2 Second"
        # a command in incident 1's topic applies to incident 1, and is answered there
        tg.push_update(
            tg_command_update("/ack", chat=FORUM, from_user=ALICE, message_thread_id=thread)
        )
        reply = await tg.wait_for(
            "sendMessage",
            lambda c: (
                "acknowledged by alice" in c.params["text"]
                and c.params.get("message_thread_id") == thread
            ),
        )
        assert reply.params["text"].startswith("#1 ")
        assert bot.app.incidents.get(1).acknowledged_by == "alice"
        assert len(tg.calls("createForumTopic")) == 2  # one topic per incident, not per post


async def test_commands_addressed_to_this_bot_or_none(
    make_app: Callable[..., App], tg: FakeTelegram
) -> None:
    async with running(make_app, tg, GROUP["id"]):
        tg.push_update(
            tg_command_update("/help", chat=OTHER, from_user=ALICE, bot_username="otherbot")
        )
        tg.push_update(
            tg_command_update("/oncall", chat=OTHER, from_user=ALICE, bot_username=tg.username)
        )
        await tg.wait_for("sendMessage", sent_to(OTHER))
        # commands of one chat are handled in order: /help@otherbot came first, unanswered
        (only,) = [c for c in tg.calls("sendMessage") if c.params["chat_id"] == OTHER["id"]]
        assert "/incident" not in only.params["text"]  # it is not the /help answer


async def test_callback_acknowledge_edits_announcement(
    make_app: Callable[..., App], tg: FakeTelegram
) -> None:
    async with running(make_app, tg, GROUP["id"]) as bot:
        tg.push_update(
            tg_command_update("/incident p0 Everything down", chat=GROUP, from_user=ALICE)
        )
        announce = await tg.wait_for("sendMessage", lambda c: sent_to(GROUP, markup=True)(c))
        result = announce.response["result"]
        cq = tg.push_update(tg_callback_query_update("/ack #1", message=result, from_user=BOB))
        edit = await tg.wait_for(
            "editMessageText",
            lambda c: c.params["message_id"] == result["message_id"] and c.delivered,
        )
        assert "Acknowledged by bob" in edit.params["text"]
        assert "reply_markup" not in edit.params or not callback_data(edit)
        assert cq["callback_query"]["id"] in tg.answered_callbacks
        assert bot.app.incidents.get(1).acknowledged_by == "bob"
        # the clicker's answer is posted where the button was
        await tg.wait_for("sendMessage", lambda c: "#1 acknowledged by bob" in c.params["text"])
        # a button with an unknown payload is still answered
        stale = tg.push_update(
            tg_callback_query_update("confirm:c-1", message=result, from_user=BOB)
        )
        await tg.wait_for(
            "answerCallbackQuery",
            lambda c: c.params["callback_query_id"] == stale["callback_query"]["id"],
        )
        assert tg.answered_callbacks[stale["callback_query"]["id"]].get("show_alert") is True


async def test_set_my_commands_lists_every_command(
    make_app: Callable[..., App], tg: FakeTelegram
) -> None:
    async with running(make_app, tg, GROUP["id"]) as bot:
        names = {c["command"] for c in tg.commands_for()}
        assert names == set(bot.app.router.commands) | {"confirm", "cancel"}
        assert all(c["description"] for c in tg.commands_for())


async def test_webhook_secret_checked(make_app: Callable[..., App], tg: FakeTelegram) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram"
    app = make_app(
        config=config(GROUP["id"]),
        env={
            "PIRA_TELEGRAM_TOKEN": tg.token,
            "PIRA_TELEGRAM_API_URL": tg.url,
            "PIRA_TELEGRAM_WEBHOOK_URL": url,
            "PIRA_TELEGRAM_WEBHOOK_SECRET": "s3cret-Token_1",
        },
    )
    adapter = TelegramAdapter(app, poll_timeout=1)
    app.add_adapter(adapter)
    await app.start(scheduler=False)
    server = WebServer(app, CollectorRegistry())
    await adapter.start(server)
    await server.start("127.0.0.1", port)
    try:
        assert tg.webhook is not None
        assert tg.webhook["url"] == url and tg.webhook["secret_token"] == "s3cret-Token_1"
        assert not tg.calls("getUpdates")  # no polling in webhook mode
        update = tg_command_update("/incident p1 Forged", chat=GROUP, from_user=ALICE)
        assert (await tg.deliver_webhook(update, secret_token="wrong"))[0] == 403
        async with aiohttp.ClientSession() as http, http.post(url, json=update) as resp:
            assert resp.status == 403  # no secret header at all
        assert (await tg.deliver_webhook(update, secret_token="s3cret-Token_2"))[0] == 403
        good = tg_command_update("/incident p1 Real one", chat=GROUP, from_user=ALICE)
        assert (await tg.deliver_webhook(good))[0] == 200
        await tg.wait_for("sendMessage", lambda c: "Real one" in c.params["text"])
        with app.store.read() as s:
            titles = list(s.scalars(select(Incident.title)))
        assert titles == ["Real one"]
        # Telegram retries a webhook call it thinks failed: the same update runs once
        assert (await tg.deliver_webhook(good))[0] == 200
        await tg.wait_for(
            "sendMessage",
            lambda c: "Reporter" in c.params.get("text", "") or "acknowledged" in c.params["text"],
            timeout=5,
        )
        with app.store.read() as s:
            assert s.scalar(select(func.count()).select_from(Incident)) == 1
    finally:
        await adapter.stop()
        await server.stop()
        await app.stop()


async def test_html_in_title_is_escaped(make_app: Callable[..., App], tg: FakeTelegram) -> None:
    async with running(make_app, tg, GROUP["id"]):
        title = '<b>x</b> & <a href="tg://user?id=1">everyone</a>'
        tg.push_update(tg_command_update(f"/incident p2 {title}", chat=GROUP, from_user=ALICE))
        call = await tg.wait_for("sendMessage", sent_to(GROUP, markup=True))
        assert "&lt;b&gt;x&lt;/b&gt; &amp; &lt;a href=" in call.params["text"]
        assert "<a href" not in call.params["text"]
        # what the chat shows is the literal title
        assert title in call.response["result"]["text"]


async def test_dm_reach_and_permanent_failure(
    make_app: Callable[..., App], tg: FakeTelegram
) -> None:
    from bot.messages import Destination

    async with running(make_app, tg, -100404) as bot:  # a chat the bot is not in
        adapter = bot.adapter
        assert adapter.reaches(Destination.dm("alice"))
        assert not adapter.reaches(Destination.dm("nobody"))
        tg.push_update(tg_command_update("/incident p3 Lost chat", chat=OTHER, from_user=ALICE))
        await tg.wait_for("sendMessage", lambda c: c.params["chat_id"] == -100404)
        await tg.wait_for("sendMessage", sent_to(OTHER))  # the reply still reaches alice
        for _ in range(50):
            with bot.app.store.read() as s:
                row = s.scalar(
                    select(OutboxMessage).where(OutboxMessage.key == "inc1:announce@telegram")
                )
            if row is not None and row.status == "failed":
                break
            await asyncio.sleep(0.1)
        assert row is not None and row.status == "failed"
        assert "chat not found" in (row.error or "").lower()
        assert tg.token not in (row.error or "")


async def test_confirmation_buttons_retire_after_use(
    make_app: Callable[..., App], tg: FakeTelegram
) -> None:
    from datetime import timedelta

    from telegram import Bot as PtbBot

    from bot.store.models import Confirmation

    async with running(make_app, tg, GROUP["id"]) as bot:
        now = bot.app.clock.now()
        with bot.app.store.transaction() as s:
            s.add(
                Confirmation(
                    code="ABC123",
                    actor="alice",
                    command="/scale executors 20",
                    created_at=now,
                    expires_at=now + timedelta(seconds=60),
                )
            )
        keyboard = bot.adapter._markup(
            (Button("Confirm", "/confirm ABC123"), Button("Cancel", "/cancel ABC123"))
        )
        async with PtbBot(tg.token, base_url=tg.base_url) as other:
            prompt = await other.send_message(GROUP["id"], "Scale?", reply_markup=keyboard)
        message = tg.messages[GROUP["id"]][prompt.message_id]
        # someone else's click is refused and leaves the buttons
        tg.push_update(tg_callback_query_update("/cancel ABC123", message=message, from_user=BOB))
        await tg.wait_for("sendMessage", lambda c: "Only the person" in c.params["text"])
        assert "reply_markup" in tg.messages[GROUP["id"]][prompt.message_id]
        tg.push_update(tg_callback_query_update("/cancel ABC123", message=message, from_user=ALICE))
        await tg.wait_for(
            "sendMessage", lambda c: "Cancelled: /scale executors 20" in c.params["text"]
        )
        assert "reply_markup" not in tg.messages[GROUP["id"]][prompt.message_id]
        assert len(tg.answered_callbacks) == 2
