"""The real python-telegram-bot against the fake Telegram Bot API (tests/fakes/telegram_api.py)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeChat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    MessageEntity,
    Update,
)
from telegram.error import BadRequest, Conflict, InvalidToken, NetworkError, RetryAfter, TimedOut
from telegram.ext import ApplicationBuilder, CallbackQueryHandler, CommandHandler, ContextTypes
from telegram.request import HTTPXRequest

from tests.fakes.payloads import (
    fixture,
    tg_callback_query_update,
    tg_command_update,
    tg_group_chat,
    tg_private_chat,
    tg_supergroup_chat,
    tg_user,
)
from tests.fakes.telegram_api import FakeTelegram, retry_after_seconds

ALICE = tg_user(1001, "Alice", "alice")
GROUP = tg_group_chat(-4012345678, "Platform on-call")
FORUM = tg_supergroup_chat(-1001234567890, "Incidents", is_forum=True)

# PTB 22 itself reads the deprecated int form of RetryAfter.retry_after when raising it
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*retry_after.*:telegram.warnings.PTBDeprecationWarning"
)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        fake.add_chat(tg_private_chat(ALICE))
        fake.add_chat(GROUP)
        fake.add_chat(FORUM)
        yield fake


@pytest.fixture
async def bot(tg: FakeTelegram) -> AsyncIterator[Bot]:
    b = Bot(tg.token, base_url=tg.base_url)
    async with b:
        yield b


def keyboard() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("Confirm", callback_data="confirm:c-1"),
                InlineKeyboardButton("Cancel", callback_data="cancel:c-1"),
            ]
        ]
    )


async def test_base_url_semantics_and_get_me(tg: FakeTelegram, bot: Bot) -> None:
    assert tg.base_url == f"{tg.url}/bot" and tg.url.startswith("http://127.0.0.1:")
    assert bot.base_url == f"{tg.url}/bot{tg.token}"  # PTB appends the token
    me = await bot.get_me()
    assert me.username == tg.username and me.is_bot
    call = tg.calls("getMe")[0]
    assert call.token == tg.token and call.path == f"/bot{tg.token}/getMe"


async def test_wrong_token_unauthorized(tg: FakeTelegram) -> None:
    with pytest.raises(InvalidToken):
        async with Bot("987654321:AAwrong-token-xxxxxxxxxxxx", base_url=tg.base_url):
            pass
    (call,) = tg.calls("getMe")
    assert call.status == 401
    assert call.response == {"ok": False, "error_code": 401, "description": "Unauthorized"}


async def test_send_edit_callback(tg: FakeTelegram, bot: Bot) -> None:
    m1 = await bot.send_message(
        GROUP["id"], "<b>Scale</b> executors to 20?", parse_mode="HTML", reply_markup=keyboard()
    )
    m2 = await bot.send_message(GROUP["id"], "second")
    assert m2.message_id == m1.message_id + 1
    assert m1.text == "Scale executors to 20?"
    assert m1.reply_markup == keyboard()
    assert m1.chat.id == GROUP["id"] and m1.from_user and m1.from_user.id == tg.bot_id
    call = tg.calls("sendMessage")[0]
    assert call.params["chat_id"] == GROUP["id"]
    assert call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "confirm:c-1"
    assert call.response["result"]["message_id"] == m1.message_id
    other = await bot.send_message(ALICE["id"], "dm")
    assert other.message_id == 1  # message ids are per chat

    edited = await bot.edit_message_text(
        "Scaled to 20", chat_id=GROUP["id"], message_id=m1.message_id
    )
    assert isinstance(edited, type(m1)) and edited.text == "Scaled to 20"
    assert edited.reply_markup is None and edited.edit_date is not None
    assert tg.sent_messages(GROUP["id"])[0]["text"] == "Scaled to 20"
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_text("Scaled to 20", chat_id=GROUP["id"], message_id=m1.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("x", chat_id=GROUP["id"], message_id=999)
    marked = await bot.edit_message_reply_markup(
        GROUP["id"], m2.message_id, reply_markup=keyboard()
    )
    assert not isinstance(marked, bool) and marked.reply_markup == keyboard()

    upd = tg.push_update(
        tg_callback_query_update("confirm:c-1", message=call.response["result"], from_user=ALICE)
    )
    assert await bot.answer_callback_query(upd["callback_query"]["id"], text="Done")
    assert tg.answered_callbacks[upd["callback_query"]["id"]]["text"] == "Done"
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_callback_query(upd["callback_query"]["id"])

    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await bot.send_message(-100999, "x")
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        await bot.send_message(GROUP["id"], " ")


async def test_forum_topics_commands_get_chat(tg: FakeTelegram, bot: Bot) -> None:
    topic = await bot.create_forum_topic(FORUM["id"], "#3 P1 Spark down")
    assert topic.name == "#3 P1 Spark down" and topic.message_thread_id > 0
    msg = await bot.send_message(FORUM["id"], "in topic", message_thread_id=topic.message_thread_id)
    assert msg.message_thread_id == topic.message_thread_id and msg.is_topic_message
    with pytest.raises(BadRequest, match=r"(?i)message thread not found"):
        await bot.send_message(FORUM["id"], "x", message_thread_id=424242)
    with pytest.raises(BadRequest, match=r"(?i)the chat is not a forum"):
        await bot.create_forum_topic(GROUP["id"], "nope")
    assert [m["text"] for m in tg.sent_messages(FORUM["id"], topic.message_thread_id)] == [
        "in topic"
    ]

    cmds = [BotCommand("incident", "Declare an incident"), BotCommand("ack", "Acknowledge")]
    assert await bot.set_my_commands(cmds)
    assert await bot.set_my_commands(cmds[:1], scope=BotCommandScopeChat(GROUP["id"]))
    assert tuple(await bot.get_my_commands()) == tuple(cmds)
    assert [
        c.command for c in await bot.get_my_commands(scope=BotCommandScopeChat(GROUP["id"]))
    ] == ["incident"]
    assert tg.commands_for()[1] == {"command": "ack", "description": "Acknowledge"}
    with pytest.raises(BadRequest, match=r"(?i)bot_command_invalid"):
        await bot.set_my_commands([BotCommand("Bad-Cmd", "x")])

    forum = await bot.get_chat(FORUM["id"])
    assert forum.is_forum is True
    group = await bot.get_chat(GROUP["id"])
    assert not group.is_forum


async def test_get_updates_long_poll(tg: FakeTelegram, bot: Bot) -> None:
    t0 = time.monotonic()
    assert await bot.get_updates(timeout=1) == ()
    assert 0.9 <= time.monotonic() - t0 < 3

    async def push_later() -> None:
        await asyncio.sleep(0.3)
        tg.push_update(
            tg_command_update(
                "/incident p1 spark down",
                chat=FORUM,
                from_user=ALICE,
                message_thread_id=70,
                bot_username=tg.username,
            )
        )

    pusher = asyncio.create_task(push_later())
    t0 = time.monotonic()
    updates = await bot.get_updates(timeout=10, allowed_updates=["message", "callback_query"])
    await pusher
    assert time.monotonic() - t0 < 5
    (u,) = updates
    assert isinstance(u, Update) and u.message is not None
    msg = u.message
    assert msg.text == f"/incident@{tg.username} p1 spark down"
    assert msg.message_thread_id == 70 and msg.is_topic_message
    assert msg.chat.is_forum
    ent = msg.entities[0]
    assert ent.type == MessageEntity.BOT_COMMAND and ent.offset == 0
    assert msg.parse_entity(ent) == f"/incident@{tg.username}"
    assert tg.calls("getUpdates")[-1].params["allowed_updates"] == ["message", "callback_query"]

    # not confirmed yet: served again; confirmed with offset: gone
    again = await bot.get_updates(timeout=0)
    assert [x.update_id for x in again] == [u.update_id]
    assert await bot.get_updates(offset=u.update_id + 1, timeout=0) == ()
    # a type not in allowed_updates (remembered from the last call) is not delivered
    tg.push_update({"edited_message": fixture("telegram/message_command_private.json")["message"]})
    assert await bot.get_updates(timeout=0) == ()


async def test_fixture_updates_parse_in_ptb(bot: Bot) -> None:
    for name in (
        "message_command_private",
        "message_command_group",
        "message_command_forum_topic",
        "callback_query",
    ):
        data = fixture(f"telegram/{name}.json")
        upd = Update.de_json(data, bot)
        assert upd is not None and upd.update_id == data["update_id"]
    grp = Update.de_json(fixture("telegram/message_command_group.json"), bot)
    assert grp is not None and grp.message is not None
    assert grp.message.parse_entities([MessageEntity.BOT_COMMAND]) == {
        grp.message.entities[0]: "/ack@pira_test_bot"
    }


async def test_429_raises_retry_after(tg: FakeTelegram, bot: Bot) -> None:
    tg.rate_limit("sendMessage", retry_after=5)
    with pytest.raises(RetryAfter) as exc:
        await bot.send_message(GROUP["id"], "x")
    assert retry_after_seconds(exc.value) == 5
    call = tg.calls("sendMessage")[0]
    assert call.status == 429 and call.response["parameters"] == {"retry_after": 5}
    assert tg.sent_messages(GROUP["id"]) == []
    await bot.send_message(GROUP["id"], "after")  # only one call was limited


async def test_500_and_hang(tg: FakeTelegram) -> None:
    tg.fail("sendMessage", status=500)
    req = HTTPXRequest(read_timeout=0.5, connect_timeout=2)
    async with Bot(tg.token, base_url=tg.base_url, request=req) as bot:
        with pytest.raises(NetworkError, match="Internal Server Error"):
            await bot.send_message(GROUP["id"], "x")
        tg.hang("sendMessage")
        with pytest.raises(TimedOut):
            await bot.send_message(GROUP["id"], "hung")
        assert tg.sent_messages(GROUP["id"]) == []
        tg.release()
        await tg.wait_for("sendMessage", lambda c: c.delivered, timeout=2)  # processed late
        assert [m["text"] for m in tg.sent_messages(GROUP["id"])] == ["hung"]

        tg.respond_late("sendMessage", delay=2)
        with pytest.raises(TimedOut):
            await bot.send_message(GROUP["id"], "late")
        assert [m["text"] for m in tg.sent_messages(GROUP["id"])] == ["hung", "late"]


async def test_rate_limit_enforcer(tg: FakeTelegram, bot: Bot) -> None:
    tg.enable_rate_limits()
    await bot.send_message(ALICE["id"], "1")
    with pytest.raises(RetryAfter) as exc:
        await bot.send_message(ALICE["id"], "2")
    assert retry_after_seconds(exc.value) == 1
    await bot.send_message(GROUP["id"], "other chat ok")
    await asyncio.sleep(1.05)
    await bot.send_message(ALICE["id"], "3")
    assert [m["text"] for m in tg.sent_messages(ALICE["id"])] == ["1", "3"]


async def test_group_20_per_minute(tg: FakeTelegram, bot: Bot) -> None:
    tg.enable_rate_limits()
    tg._chat_window.limit = 1000  # isolate the per-group minute window for this test
    for i in range(20):
        await bot.send_message(GROUP["id"], f"m{i}")
    with pytest.raises(RetryAfter) as exc:
        await bot.send_message(GROUP["id"], "21st")
    assert 55 <= retry_after_seconds(exc.value) <= 60


async def test_webhook_conflict_and_delivery(tg: FakeTelegram, bot: Bot) -> None:
    received: list[tuple[dict[str, Any], str | None]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(
            (await request.json(), request.headers.get("X-Telegram-Bot-Api-Secret-Token"))
        )
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/tg", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        url = f"http://127.0.0.1:{port}/tg"
        assert await bot.set_webhook(url, secret_token="s3cr3t", allowed_updates=["message"])
        info = await bot.get_webhook_info()
        assert info.url == url and info.allowed_updates == ("message",)
        with pytest.raises(Conflict):
            await bot.get_updates(timeout=0)
        upd = tg_command_update("/health", chat=GROUP, from_user=ALICE)
        status, _ = await tg.deliver_webhook(upd)
        assert status == 200
        assert received == [(upd, "s3cr3t")]
        status, _ = await asyncio.to_thread(tg.deliver_webhook_sync, upd)
        assert status == 200 and len(received) == 2
        assert await bot.delete_webhook()
        assert (await bot.get_webhook_info()).url == ""
        assert await bot.get_updates(timeout=0) == ()
        with pytest.raises(ValueError):
            await tg.deliver_webhook(upd, url="http://example.com/hook")
    finally:
        await runner.cleanup()


async def test_second_poller_conflicts_first(tg: FakeTelegram, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await tg.wait_for("getUpdates", timeout=2)
    await asyncio.sleep(0.1)
    async with Bot(tg.token, base_url=tg.base_url) as other:
        second = asyncio.create_task(other.get_updates(timeout=1))
        with pytest.raises(Conflict, match="terminated by other getUpdates"):
            await asyncio.wait_for(first, 3)
        assert await asyncio.wait_for(second, 3) == ()


async def test_application_polling_round_trip(tg: FakeTelegram) -> None:
    """A real PTB Application polls the fake, handles a command in a forum topic and a button."""
    app = ApplicationBuilder().token(tg.token).base_url(tg.base_url).build()

    async def incident(update: Update, ctx: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text(
            f"declared: {' '.join(ctx.args or [])}", reply_markup=keyboard()
        )

    async def button(update: Update, ctx: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.callback_query is not None
        await update.callback_query.answer("ok")
        await update.callback_query.edit_message_text("confirmed")

    app.add_handler(CommandHandler("incident", incident))
    app.add_handler(CallbackQueryHandler(button))
    async with app:
        assert app.updater is not None
        await app.start()
        await app.updater.start_polling(poll_interval=0, timeout=2)
        try:
            tg.add_topic(FORUM["id"], 70, "#3")
            tg.push_update(
                tg_command_update(
                    "/incident p1 spark",
                    chat=FORUM,
                    from_user=ALICE,
                    message_thread_id=70,
                    bot_username=tg.username,
                )
            )
            sent = await tg.wait_for("sendMessage", lambda c: c.delivered, timeout=5)
            assert sent.params["text"] == "declared: p1 spark"
            assert sent.params["message_thread_id"] == 70  # reply stays in the topic
            result = sent.response["result"]
            cq = tg.push_update(
                tg_callback_query_update("confirm:c-1", message=result, from_user=ALICE)
            )
            await tg.wait_for("editMessageText", lambda c: c.delivered, timeout=5)
            assert cq["callback_query"]["id"] in tg.answered_callbacks
            assert tg.sent_messages(FORUM["id"], 70)[-1]["text"] == "confirmed"
        finally:
            await app.updater.stop()
            await app.stop()


def test_in_thread_raw_http() -> None:
    with FakeTelegram.in_thread() as fake:
        fake.add_chat(GROUP)
        body = json.dumps({"chat_id": GROUP["id"], "text": "raw json"}).encode()
        req = urllib.request.Request(
            f"{fake.base_url}{fake.token}/sendMessage",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            data = json.loads(resp.read())
        assert data["ok"] and data["result"]["text"] == "raw json"
        call = fake.wait_for_sync("sendMessage", timeout=2)
        assert call.params["chat_id"] == GROUP["id"]
        fake.push_update(tg_command_update("/oncall", chat=GROUP))
        with urllib.request.urlopen(
            f"{fake.base_url}{fake.token}/getUpdates?timeout=1", timeout=5
        ) as resp:
            got = json.loads(resp.read())
        assert got["result"][0]["message"]["text"] == "/oncall"
        try:
            urllib.request.urlopen(f"{fake.url}/botnope/getMe", timeout=5)
        except urllib.error.HTTPError as err:
            assert err.code == 404
        else:  # pragma: no cover
            pytest.fail("malformed token must be 404")


async def test_send_document_and_photo_multipart_and_their_caption_edits(
    tg: FakeTelegram, bot: Bot
) -> None:
    """PTB's multipart uploads: the bytes, file name and caption reach the fake; the answer
    is a Message with a Document or PhotoSizes; a caption is edited, a text is not."""
    content = b"# Postmortem\n\nbody\n"
    doc = await bot.send_document(
        GROUP["id"],
        InputFile(content, filename="pm.md"),
        caption="<b>Postmortem</b>",
        parse_mode="HTML",
    )
    assert doc.document is not None and doc.caption == "Postmortem"
    assert doc.document.file_name == "pm.md" and doc.document.mime_type == "text/markdown"
    assert doc.document.file_size == len(content)
    (call,) = tg.calls("sendDocument")
    assert call.headers["Content-Type"].startswith("multipart/form-data")
    assert call.params["document"]["content"] == content
    assert tg.files[doc.document.file_id]["content"] == content
    png = (
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
        + (640).to_bytes(4, "big")
        + (480).to_bytes(4, "big")
        + b"\x08\x02\x00\x00\x00"
        + b"\x00" * 4
    )
    photo = await bot.send_photo(GROUP["id"], InputFile(png, filename="c.png"), caption="chart")
    assert photo.photo and (photo.photo[-1].width, photo.photo[-1].height) == (640, 480)
    assert photo.caption == "chart" and photo.text is None
    with pytest.raises(BadRequest, match="not modified"):
        await bot.edit_message_caption(GROUP["id"], photo.message_id, caption="chart")
    with pytest.raises(BadRequest, match="no text in the message"):
        await bot.edit_message_text("x", GROUP["id"], photo.message_id)
    text = await bot.send_message(GROUP["id"], "plain")
    with pytest.raises(BadRequest, match="no caption in the message"):
        await bot.edit_message_caption(GROUP["id"], text.message_id, caption="x")
    with pytest.raises(BadRequest, match="caption is too long"):
        await bot.send_document(GROUP["id"], InputFile(b"x", filename="x.txt"), caption="y" * 1025)
    again = await bot.send_document(GROUP["id"], doc.document.file_id)  # by file_id
    assert again.document is not None and again.document.file_id == doc.document.file_id
