"""Posts with a file (bot/files.py → ``Poster.post(..., file=id)`` → Outbound.file): the
console writes the file and prints its path, Slack uploads it unshared and shares it by
the post (once, even when the post's answer is lost), Telegram sends a photo or a
document with the text as its caption; and the stakeholders channel as a destination."""

from __future__ import annotations

import asyncio
import io
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot import files
from bot.adapters.console import ConsoleAdapter
from bot.adapters.slack import SlackAdapter
from bot.adapters.telegram import TelegramAdapter
from bot.adapters.telegram_send import Limits
from bot.app import App
from bot.clock import FakeClock
from bot.messages import Destination
from bot.outbox import Attachment, Outbound
from bot.settings import Config
from bot.store.models import OutboxMessage
from tests.fakes.slack_api import FakeSlack
from tests.fakes.telegram_api import FakeTelegram

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*retry_after.*:telegram.warnings.PTBDeprecationWarning"
)

MARKDOWN = "# Postmortem #3\n\nThe cluster ran out of executors. Ünïcödé ✓\n".encode()
STAKEHOLDERS_TG = -1002222222222
INCIDENTS_TG = -1001111111111


def png(width: int = 3, height: int = 2) -> bytes:
    """A real (tiny) PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def config(*, slack: bool = True, telegram: bool = True) -> Config:
    return Config.model_validate(
        {
            "channels": {
                "incidents": {"slack": "C0INCIDENTS", "telegram": INCIDENTS_TG},
                "stakeholders": {
                    "slack": "C0STAKE" if slack else None,
                    "telegram": STAKEHOLDERS_TG if telegram else None,
                },
            },
        }
    )


async def post_file(
    app: App,
    *,
    key: str,
    text: str,
    name: str,
    mime: str,
    content: bytes,
    destination: Destination | None = None,
) -> list[str]:
    """Keep the file and post it in one transaction, as a service does."""

    def work() -> list[str]:
        with app.store.transaction() as s:
            stored = files.keep(
                s,
                incident_id=None,
                kind="postmortem",
                name=name,
                mime=mime,
                content=content,
                by="alice",
                now=app.clock.now(),
            )
            return app.poster.post(
                s,
                None,
                destination or Destination.stakeholders(),
                "text",
                {"text": text},
                key=key,
                file=stored.id,
            )

    platforms = await app.store.run(work)
    app.outbox.notify()
    return platforms


def rows(app: App) -> list[OutboxMessage]:
    with app.store.read() as s:
        return list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


async def drain(app: App, clock: FakeClock, limit: int = 50) -> list[OutboxMessage]:
    """Deliver until nothing is pending, the fake clock jumping past each back-off."""
    for _ in range(limit):
        if all(r.status != "pending" for r in rows(app)):
            return rows(app)
        await app.outbox.deliver_due()
        clock.advance(timedelta(minutes=10))
    raise AssertionError(f"still pending: {[(r.key, r.error) for r in rows(app)]}")


# ---- console ---------------------------------------------------------------------------


async def test_console_writes_the_file_and_prints_its_path(
    make_app: Callable[..., App], tmp_path: Path
) -> None:
    clock = FakeClock()
    app = make_app(config=config(), clock=clock)
    out = io.StringIO()
    folder = tmp_path / "out" / "files"  # created on first use
    console = ConsoleAdapter(out, files_dir=folder)
    app.add_adapter(console)
    await asyncio.to_thread(app.store.migrate)
    try:
        assert console.reaches(Destination.stakeholders())
        platforms = await post_file(
            app,
            key="pm:3",
            text="Postmortem of #3 published",
            name="postmortem-3.md",
            mime="text/markdown",
            content=MARKDOWN,
        )
        assert platforms == ["console"]
        await drain(app, clock)
    finally:
        app.store.dispose()
    printed = out.getvalue()
    head, _, last = printed.strip().rpartition("\n")
    assert head == "[#stakeholders] Postmortem of #3 published"
    assert last.startswith("📎 /")
    path = Path(last.removeprefix("📎 "))
    assert path.is_absolute() and path.parent == folder
    assert path.name.startswith("postmortem-3.") and path.name.endswith(".md")
    assert path.read_bytes() == MARKDOWN


async def test_console_delivering_a_post_again_overwrites_its_own_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default folder is ``pira-files`` in the working directory; PIRA_FILES_DIR moves it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PIRA_FILES_DIR", raising=False)  # the suite's own, tests/conftest.py
    out = io.StringIO()
    console = ConsoleAdapter(out)

    def outbound(key: str, content: bytes) -> Outbound:
        return Outbound(
            key=key,
            destination=Destination.stakeholders(),
            text="chart",
            buttons=(),
            incident=None,
            template="text",
            data={},
            file=Attachment("chart.png", "image/png", content),
        )

    first = await console.deliver(outbound("chart:1@console", b"one"))
    again = await console.deliver(outbound("chart:1@console", b"one, retried"))
    other = await console.deliver(outbound("chart:2@console", b"two"))
    assert first is not None and again is not None and other is not None
    assert first["path"] == again["path"] != other["path"]
    assert Path(first["path"]).parent == tmp_path / "pira-files"
    assert sorted(p.name for p in (tmp_path / "pira-files").iterdir()) == sorted(
        Path(r["path"]).name for r in (first, other)
    )
    assert Path(first["path"]).read_bytes() == b"one, retried"
    assert Path(other["path"]).read_bytes() == b"two"
    assert out.getvalue().count("[#stakeholders] chart\n📎 ") == 3

    monkeypatch.setenv("PIRA_FILES_DIR", str(tmp_path / "elsewhere"))
    moved = await ConsoleAdapter(io.StringIO()).deliver(outbound("chart:3@console", b"3"))
    assert moved is not None and Path(moved["path"]).parent == tmp_path / "elsewhere"


# ---- Slack -----------------------------------------------------------------------------


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        fake.add_channel("stakeholders", "C0STAKE")
        yield fake


async def slack_app(
    make_app: Callable[..., App], slack: FakeSlack, clock: FakeClock, cfg: Config
) -> tuple[App, SlackAdapter]:
    app = make_app(
        config=cfg,
        clock=clock,
        env={"PIRA_SLACK_BOT_TOKEN": slack.bot_token, "PIRA_SLACK_API_URL": slack.url},
    )
    adapter = SlackAdapter(app.chat_deps(), timeout=1.0)  # a late answer is given up after 1 s
    adapter.sender.interval = 0.0
    app.add_adapter(adapter)
    await asyncio.to_thread(app.store.migrate)
    return app, adapter


async def test_slack_uploads_unshared_and_the_post_shares_it_in_the_stakeholders_channel(
    make_app: Callable[..., App], slack: FakeSlack
) -> None:
    clock = FakeClock()
    app, _adapter = await slack_app(make_app, slack, clock, config())
    try:
        text = "Postmortem of #3 published"
        assert await post_file(
            app,
            key="pm:3",
            text=text,
            name="postmortem-3.md",
            mime="text/markdown",
            content=MARKDOWN,
        ) == ["slack"]
        (row,) = await drain(app, clock)
    finally:
        app.store.dispose()
    (asked,) = slack.calls("files.getUploadURLExternal")
    assert asked.params["filename"] == "postmortem-3.md"
    assert int(asked.params["length"]) == len(MARKDOWN)
    (upload,) = slack.calls("upload")
    assert upload.path == f"/upload/{asked.response['file_id']}" and upload.body == MARKDOWN
    (completed,) = slack.calls("files.completeUploadExternal")
    assert "channel_id" not in completed.params and "channels" not in completed.params
    file_id = asked.response["file_id"]
    assert completed.params["files"] == [{"id": file_id, "title": "postmortem-3.md"}]
    stored = slack.files[file_id]
    assert stored.content == MARKDOWN and stored.completed
    (message,) = slack.messages("C0STAKE")
    assert message["text"] == f"{text}\n📎 <{stored.permalink}|postmortem-3.md>"
    assert slack.shared(file_id) == [("C0STAKE", message["ts"])]
    assert slack.messages("C0INCIDENTS") == []  # never the incidents channel
    assert row.status == "sent" and row.remote_ref is not None
    assert row.remote_ref["channel"] == "C0STAKE"


async def test_slack_lost_answer_the_file_is_shared_by_one_message_uploaded_once(
    make_app: Callable[..., App], slack: FakeSlack
) -> None:
    """chat.postMessage takes effect but its answer comes after the client gave up; the
    process is then replaced (a restart: nothing of it in memory). The new one finds the
    post in the channel (metadata key) and neither posts nor uploads again."""
    clock = FakeClock()
    app, _adapter = await slack_app(make_app, slack, clock, config())
    slack.respond_late("chat.postMessage", delay=2.0)
    try:
        await post_file(
            app,
            key="pm:4",
            text="Postmortem of #4",
            name="pm-4.md",
            mime="text/markdown",
            content=MARKDOWN,
        )
        assert await app.outbox.deliver_due() == 0  # the answer was lost
    finally:
        app.store.dispose()
    restarted, _adapter = await slack_app(make_app, slack, clock, config())
    try:
        (row,) = await drain(restarted, clock)
    finally:
        restarted.store.dispose()
    assert [c.outcome for c in slack.calls("chat.postMessage")] == ["late"]  # posted once
    assert slack.calls("conversations.history")  # looked before sending again
    assert len(slack.calls("files.getUploadURLExternal")) == 1
    (file_id,) = slack.files
    (message,) = slack.messages("C0STAKE")
    assert slack.shared(file_id) == [("C0STAKE", message["ts"])]
    assert row.status == "sent" and row.attempts == 2
    assert row.remote_ref is not None and row.remote_ref["ts"] == message["ts"]


async def test_slack_post_refused_then_retried_reuses_the_upload(
    make_app: Callable[..., App], slack: FakeSlack
) -> None:
    """The upload went through, the post did not (a 500): the retry in the same process
    posts the same file, uploaded once, shared once."""
    clock = FakeClock()
    app, _adapter = await slack_app(make_app, slack, clock, config())
    slack.fail("chat.postMessage", status=500)
    try:
        await post_file(
            app,
            key="pm:9",
            text="Postmortem of #9",
            name="pm-9.md",
            mime="text/markdown",
            content=MARKDOWN,
        )
        (row,) = await drain(app, clock)
    finally:
        app.store.dispose()
    assert [c.outcome for c in slack.calls("chat.postMessage")] == ["failed", "ok"]
    assert len(slack.calls("files.getUploadURLExternal")) == 1
    (file_id,) = slack.files
    (message,) = slack.messages("C0STAKE")
    assert slack.shared(file_id) == [("C0STAKE", message["ts"])]
    assert row.status == "sent"


async def test_slack_a_failed_upload_is_retried_and_the_file_still_shared_once(
    make_app: Callable[..., App], slack: FakeSlack
) -> None:
    clock = FakeClock()
    app, _adapter = await slack_app(make_app, slack, clock, config())
    slack.fail("upload", status=503)
    try:
        await post_file(
            app,
            key="pm:5",
            text="Postmortem of #5",
            name="pm-5.md",
            mime="text/markdown",
            content=MARKDOWN,
        )
        (row,) = await drain(app, clock)
    finally:
        app.store.dispose()
    assert [c.outcome for c in slack.calls("upload")] == ["failed", "ok"]
    shared = {fid: slack.shared(fid) for fid in slack.files}
    (message,) = slack.messages("C0STAKE")
    assert sorted(shared.values()) == [[], [("C0STAKE", message["ts"])]]  # one orphan, unshared
    assert row.status == "sent"


async def test_slack_stakeholders_not_reached_when_not_configured(
    make_app: Callable[..., App], slack: FakeSlack
) -> None:
    clock = FakeClock()
    app, adapter = await slack_app(make_app, slack, clock, config(slack=False))
    try:
        assert not adapter.reaches(Destination.stakeholders())
        assert adapter.reaches(Destination.incidents())
        assert (
            await post_file(
                app, key="pm:6", text="x", name="a.md", mime="text/markdown", content=b"x"
            )
            == []
        )
        assert rows(app) == []
    finally:
        app.store.dispose()
    assert slack.calls("files.getUploadURLExternal") == []


# ---- Telegram --------------------------------------------------------------------------


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        fake.add_supergroup(INCIDENTS_TG, "Incidents")
        fake.add_supergroup(STAKEHOLDERS_TG, "Stakeholders")
        yield fake


@asynccontextmanager
async def telegram_app(
    make_app: Callable[..., App], tg: FakeTelegram, cfg: Config
) -> AsyncIterator[tuple[App, TelegramAdapter]]:
    app = make_app(
        config=cfg, env={"PIRA_TELEGRAM_TOKEN": tg.token, "PIRA_TELEGRAM_API_URL": tg.url}
    )
    fast = Limits(per_chat=(1, 0.02), per_group=(20, 1.2), overall=(30, 0.02), margin=0.01)
    adapter = TelegramAdapter(app.chat_deps(), limits=fast, send_timeout=0.5)
    app.add_adapter(adapter)
    await adapter.bot.initialize()
    await app.start(scheduler=False)
    try:
        yield app, adapter
    finally:
        await app.stop()
        await adapter.bot.shutdown()


async def all_sent(app: App, count: int, timeout: float = 15.0) -> list[OutboxMessage]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await app.store.run(rows, app)
        if len(found) == count and all(r.status != "pending" for r in found):
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still pending: {[(r.key, r.error) for r in found]}")
        await asyncio.sleep(0.05)


async def test_telegram_png_as_a_photo_markdown_as_a_document_with_their_captions(
    make_app: Callable[..., App], tg: FakeTelegram
) -> None:
    chart = png(3, 2)
    async with telegram_app(make_app, tg, config()) as (app, _adapter):
        assert await post_file(
            app,
            key="chart:1",
            text="Incidents this month",
            name="chart.png",
            mime="image/png",
            content=chart,
        ) == ["telegram"]
        await post_file(
            app,
            key="pm:3",
            text="Postmortem of #3",
            name="postmortem-3.md",
            mime="text/markdown",
            content=MARKDOWN,
        )
        sent = await all_sent(app, 2)
    photo, document = tg.sent_messages(STAKEHOLDERS_TG)
    assert photo["caption"] == "Incidents this month" and "text" not in photo
    assert photo["photo"][-1]["width"] == 3 and photo["photo"][-1]["height"] == 2
    assert document["caption"] == "Postmortem of #3"
    assert document["document"]["file_name"] == "postmortem-3.md"
    assert document["document"]["mime_type"] == "text/markdown"
    assert document["document"]["file_size"] == len(MARKDOWN)
    assert tg.files[document["document"]["file_id"]]["content"] == MARKDOWN
    (photo_call,) = tg.calls("sendPhoto")
    assert photo_call.params["photo"]["content"] == chart
    assert photo_call.params["photo"]["filename"] == "chart.png"
    assert len(tg.calls("sendDocument")) == 1 and tg.calls("sendMessage") == []
    assert tg.sent_messages(INCIDENTS_TG) == []
    assert [r.remote_ref["message_id"] for r in sent if r.remote_ref] == [
        photo["message_id"],
        document["message_id"],
    ]


async def test_telegram_text_too_long_for_a_caption_goes_first_then_the_file(
    make_app: Callable[..., App], tg: FakeTelegram
) -> None:
    text = "\n".join(f"line {i:03d} of the summary" for i in range(80))  # ~1 900 characters
    async with telegram_app(make_app, tg, config()) as (app, _adapter):
        await post_file(
            app,
            key="pm:7",
            text=text,
            name="postmortem-7.md",
            mime="text/markdown",
            content=MARKDOWN,
        )
        (row,) = await all_sent(app, 1)
    message, document = tg.sent_messages(STAKEHOLDERS_TG)
    assert message["text"] == text
    assert document["caption"] == "📎 postmortem-7.md"
    assert tg.files[document["document"]["file_id"]]["content"] == MARKDOWN
    assert row.remote_ref is not None
    assert row.remote_ref["message_ids"] == [message["message_id"], document["message_id"]]


async def test_telegram_lost_answer_of_a_document_is_not_sent_twice(
    make_app: Callable[..., App], tg: FakeTelegram
) -> None:
    """sendDocument takes effect, its answer comes after the client gave up: the probe
    (editMessageCaption with the same caption: "not modified") finds it."""
    async with telegram_app(make_app, tg, config()) as (app, _adapter):
        await post_file(app, key="a", text="first", name="a.md", mime="text/markdown", content=b"a")
        await all_sent(app, 1)
        tg.respond_late("sendDocument", delay=1.5)
        await post_file(
            app,
            key="pm:8",
            text="Postmortem of #8",
            name="pm-8.md",
            mime="text/markdown",
            content=MARKDOWN,
        )
        second = (await all_sent(app, 2))[1]
    documents = tg.sent_messages(STAKEHOLDERS_TG)
    assert [d["caption"] for d in documents] == ["first", "Postmortem of #8"]
    assert [c.outcome for c in tg.calls("sendDocument")] == ["ok", "late"]
    assert tg.calls("editMessageCaption")
    assert second.remote_ref is not None
    assert second.remote_ref["message_id"] == documents[1]["message_id"]


async def test_telegram_stakeholders_not_reached_when_not_configured(
    make_app: Callable[..., App], tg: FakeTelegram
) -> None:
    async with telegram_app(make_app, tg, config(telegram=False)) as (app, adapter):
        assert not adapter.reaches(Destination.stakeholders())
        assert adapter.reaches(Destination.incidents())
        platforms = await post_file(
            app, key="x", text="x", name="x.md", mime="text/markdown", content=b"x"
        )
        assert platforms == [] and await app.store.run(rows, app) == []
        # an incidents post with a file goes to the incidents chat
        await post_file(
            app,
            key="y",
            text="chart",
            name="c.png",
            mime="image/png",
            content=png(),
            destination=Destination.incidents(),
        )
        await all_sent(app, 1)
    assert [m["caption"] for m in tg.sent_messages(INCIDENTS_TG)] == ["chart"]
    assert tg.sent_messages(STAKEHOLDERS_TG) == []
