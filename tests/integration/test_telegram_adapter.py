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
    tg_reply_update,
    tg_supergroup_chat,
    tg_user,
)
from tests.fakes.telegram_api import FakeTelegram, RecordedCall

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*retry_after.*:telegram.warnings.PTBDeprecationWarning"
)

ALICE = tg_user(1001, "Alice", "alice")
BOB = tg_user(1002, "Bob", "bob")
CAROL = tg_user(1003, "Carol", "carol")  # not configured: no role
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
    adapter = TelegramAdapter(app.chat_deps(), poll_timeout=1, send_timeout=5)
    app.add_adapter(adapter)
    await app.start(scheduler=False)
    server = WebServer(CollectorRegistry(), ping=app.store.reachable)
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
        assert callback_data(announce) == ["/ack #1", "p:/update #1", "p:/resolve #1"]
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
        # Acknowledge is gone; Post update and Resolve stay while the incident is open
        assert callback_data(edit) == ["p:/update #1", "p:/resolve #1"]
        # The click's answer and the edit go out side by side: wait for the answer.
        qid = cq["callback_query"]["id"]
        await tg.wait_for("answerCallbackQuery", lambda c: c.params["callback_query_id"] == qid)
        assert qid in tg.answered_callbacks
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
    adapter = TelegramAdapter(app.chat_deps(), poll_timeout=1)
    app.add_adapter(adapter)
    await app.start(scheduler=False)
    server = WebServer(CollectorRegistry(), ping=app.store.reachable)
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
        keyboard = await bot.adapter.buttons.markup(
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


# ---- buttons that ask for text (Post update, Resolve) -----------------------------------


def force_reply_to(chat: dict[str, Any], command: str) -> Callable[[RecordedCall], bool]:
    """A delivered prompt asking for the text of ``command`` in ``chat``."""

    def match(call: RecordedCall) -> bool:
        return (
            sent_to(chat)(call)
            and "force_reply" in call.params.get("reply_markup", {})
            and call.response["result"]["text"].startswith(f"✍️ {command} — ")
        )

    return match


async def declare(tg: FakeTelegram, chat: dict[str, Any]) -> dict[str, Any]:
    """Declare incident 1 in ``chat`` as alice; the announcement as Telegram holds it."""
    tg.push_update(tg_command_update("/incident p1 Executors OOM", chat=chat, from_user=ALICE))
    call = await tg.wait_for(
        "sendMessage", lambda c: sent_to(chat, markup=True)(c) and "Incident:" in c.params["text"]
    )
    return dict(call.response["result"])


async def test_post_update_button_asks_then_the_reply_posts_the_update(
    make_app: Callable[..., App], tg: FakeTelegram
) -> None:
    async with running(make_app, tg, GROUP["id"]) as bot:
        announce = await declare(tg, GROUP)
        cq = tg.push_update(
            tg_callback_query_update("p:/update #1", message=announce, from_user=BOB)
        )
        ask = await tg.wait_for("sendMessage", force_reply_to(GROUP, "/update #1"))
        assert cq["callback_query"]["id"] in tg.answered_callbacks
        assert ask.params["reply_markup"] == {
            "force_reply": True,
            "selective": True,
            "input_field_placeholder": "What's new on #1?",
        }
        assert "message_thread_id" not in ask.params  # where the button was: no topic
        assert 'href="tg://user?id=1002"' in ask.params["text"]  # selective: bob's field
        prompt = ask.response["result"]
        assert prompt["text"].startswith("✍️ /update #1 — What's new on #1?")
        # nothing ran on the click alone
        assert not [c for c in tg.calls("sendMessage") if "Incident Update" in c.params["text"]]

        reply = tg_reply_update("executors recovering", reply_to=prompt, from_user=BOB)
        tg.push_update(reply)
        posted = await tg.wait_for(
            "sendMessage",
            lambda c: sent_to(GROUP)(c) and "Incident Update: Executors OOM" in c.params["text"],
        )
        assert "executors recovering" in posted.params["text"]
        done = await tg.wait_for(
            "sendMessage", lambda c: "Update for #1 posted." in c.params["text"]
        )
        assert done.params["reply_parameters"]["message_id"] == reply["message"]["message_id"]
        incident = bot.app.incidents.get(1)
        assert any("executors recovering" in e.text for e in incident.timeline)


async def test_resolve_button_in_a_forum_topic_resolves_and_clears_the_buttons(
    make_app: Callable[..., App], tg: FakeTelegram
) -> None:
    async with running(make_app, tg, FORUM["id"]) as bot:
        announce = await declare(tg, FORUM)
        topic = await tg.wait_for("createForumTopic", lambda c: c.delivered)
        thread = topic.response["result"]["message_thread_id"]
        ticket = await tg.wait_for(
            "sendMessage",
            lambda c: c.params.get("message_thread_id") == thread and "reply_markup" in c.params,
        )
        assert callback_data(ticket)[-1] == "p:/resolve #1"
        # the ticket's Resolve button, clicked in incident 1's topic: asked there
        tg.push_update(
            tg_callback_query_update(
                "p:/resolve #1", message=ticket.response["result"], from_user=ALICE
            )
        )
        ask = await tg.wait_for("sendMessage", force_reply_to(FORUM, "/resolve #1"))
        assert ask.params["message_thread_id"] == thread
        assert ask.params["reply_markup"]["input_field_placeholder"] == "Root cause of #1"
        prompt = ask.response["result"]
        assert prompt["message_thread_id"] == thread and prompt["is_topic_message"]

        tg.push_update(
            tg_reply_update("driver OOM -- raised memory", reply_to=prompt, from_user=ALICE)
        )
        edit = await tg.wait_for(
            "editMessageText",
            lambda c: (
                c.delivered
                and c.params["message_id"] == announce["message_id"]
                and "reply_markup" not in c.response["result"]
            ),
        )
        assert not callback_data(edit)  # a resolved incident offers nothing
        done = await tg.wait_for(
            "sendMessage",
            lambda c: (
                "#1" in c.params["text"]
                and (
                    c.params.get("message_thread_id") == thread
                    and c.params.get("reply_parameters") is not None
                    and "force_reply" not in c.params.get("reply_markup", {})
                )
            ),
        )
        assert done.params["chat_id"] == FORUM["id"]
        incident = bot.app.incidents.get(1)
        assert incident.status == "resolved"
        assert (incident.root_cause, incident.resolution) == ("driver OOM", "raised memory")


async def test_only_answers_to_the_bots_own_prompt_count(
    make_app: Callable[..., App], tg: FakeTelegram
) -> None:
    async with running(make_app, tg, GROUP["id"]) as bot:
        announce = await declare(tg, GROUP)
        tg.push_update(tg_callback_query_update("p:/update #1", message=announce, from_user=BOB))
        ask = await tg.wait_for("sendMessage", force_reply_to(GROUP, "/update #1"))
        prompt = ask.response["result"]

        # a person's message with the very same words is not a prompt
        forged = {**prompt, "from": BOB, "message_id": prompt["message_id"] + 500}
        tg.push_update(tg_reply_update("forged update", reply_to=forged, from_user=ALICE))
        # a reply without text is asked again, in reply to it
        empty = tg_reply_update(None, reply_to=prompt, from_user=BOB)
        sent_before = len(tg.calls("sendMessage"))
        tg.push_update(empty)
        again = await tg.wait_for(
            "sendMessage", force_reply_to(GROUP, "/update #1"), skip=sent_before
        )
        assert again.params["reply_parameters"]["message_id"] == empty["message"]["message_id"]
        assert "What's new on #1?" in again.params["text"]
        # someone without the responder role answering is refused by the router
        carol = tg_reply_update("all fine now", reply_to=prompt, from_user=CAROL)
        tg.push_update(carol)
        refused = await tg.wait_for(
            "sendMessage",
            lambda c: (
                c.params.get("reply_parameters", {}).get("message_id")
                == carol["message"]["message_id"]
            ),
        )
        assert "responder" in refused.params["text"]
        # updates are handled in order per chat: the forged and empty ones came first
        texts = [c.params["text"] for c in tg.calls("sendMessage")]
        assert not any("forged update" in t or "all fine now" in t for t in texts)
        assert not any("Incident Update" in t for t in texts)
        assert not [e for e in bot.app.incidents.get(1).timeline if "update" in e.kind]


async def test_long_prompted_button_is_hashed_and_still_asks(
    make_app: Callable[..., App], tg: FakeTelegram
) -> None:
    from telegram import Bot as PtbBot

    async with running(make_app, tg, GROUP["id"]) as bot:
        await declare(tg, GROUP)
        command = "/impact #1 " + "customers of the eu-west spark cluster: " * 2
        long_prompt = "Which jobs fail, and since when? " * 4
        keyboard = await bot.adapter.buttons.markup(
            (Button("Impact", command.strip(), prompt=long_prompt),)
        )
        assert keyboard is not None
        (data,) = [b.callback_data for row in keyboard.inline_keyboard for b in row]
        assert isinstance(data, str) and data.startswith("h:") and len(data.encode()) <= 64
        async with PtbBot(tg.token, base_url=tg.base_url) as other:
            sent = await other.send_message(GROUP["id"], "Impact?", reply_markup=keyboard)
        message = tg.messages[GROUP["id"]][sent.message_id]
        tg.push_update(tg_callback_query_update(data, message=message, from_user=ALICE))
        ask = await tg.wait_for("sendMessage", force_reply_to(GROUP, command.strip()))
        placeholder = ask.params["reply_markup"]["input_field_placeholder"]
        assert 1 <= len(placeholder) <= 64
        answer = tg_reply_update("jobs time out", reply_to=ask.response["result"], from_user=ALICE)
        tg.push_update(answer)
        done = await tg.wait_for(
            "sendMessage",
            lambda c: (
                c.params.get("reply_parameters", {}).get("message_id")
                == answer["message"]["message_id"]
            ),
        )
        assert done.params["text"].startswith("#1 "), done.params["text"]
        assert bot.app.incidents.get(1).impact == command.strip()[len("/impact #1 ") :] + (
            " jobs time out"
        )
