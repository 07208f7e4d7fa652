"""Pages to one person that pile up in their DM go out as one message (bot/delivery_fold.py),
through the real outbox worker and Slack adapter against the fake Slack: each page once,
in order, with its own Acknowledge button; a fold whose fate was lost in a restart is
found, or sent again, with exactly the same pages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.adapters.telegram import TelegramAdapter
from bot.app import App
from bot.clock import FakeClock
from bot.messages import Button, Destination
from bot.outbox import enqueue
from bot.settings import Config
from bot.store.models import OutboxMessage
from tests.fakes.slack_api import FakeSlack
from tests.fakes.telegram_api import FakeTelegram
from tests.integration.test_slack_delivery import started  # alice is U0ALICE there


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(rate_limits=False) as fake:
        fake.add_user("U0ALICE", "alice")
        yield fake


def page(n: int) -> dict[str, Any]:
    return {
        "number": n,
        "title": f"storm incident {n}",
        "severity": "P0",
        "status_label": "🟡 Investigating",
        "started": "2026-12-02T03:00:00+00:00",
        "impact": None,
        "bridge_url": None,
        "reason": "you are on call",
        "late": None,
        "person": "alice",
    }


def enqueue_posts(
    app: App, posts: list[int | str], destination: Destination, prefix: str = "post"
) -> None:
    """Pages (an int: the incident's number) and plain texts (a str), in this order."""
    with app.store.transaction() as s:
        for i, post in enumerate(posts):
            if isinstance(post, int):
                template, data = "page", page(post)
                buttons: tuple[Button, ...] = (Button("Acknowledge", f"/ack #{post}", "primary"),)
            else:
                template, data, buttons = "text", {"text": post}, ()
            enqueue(
                s,
                adapters=app.adapters.values(),
                destination=destination,
                template=template,
                data=data,
                key=f"{prefix}:{i}",
                now=app.clock.now(),
                buttons=buttons,
            )


def rows(app: App) -> dict[str, OutboxMessage]:
    with app.store.read() as s:
        return {r.key: r for r in s.scalars(select(OutboxMessage))}


def dm(slack: FakeSlack) -> list[dict[str, Any]]:
    channels = [c for c in slack.channels.values() if c.is_im]
    assert len(channels) <= 1
    return slack.messages(channels[0].id) if channels else []


def paged(message: dict[str, Any]) -> list[int]:
    """The incidents a DM pages, in the order of its text."""
    return [
        int(line.split("#")[1].split()[0])
        for line in message["text"].splitlines()
        if line.startswith("🔔 *Page:")
    ]


def buttons(message: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for block in message.get("blocks") or []:
        if block["type"] == "actions":
            out += [(e["text"]["text"], e["value"]) for e in block["elements"]]
    return out


async def test_pages_waiting_in_a_dm_go_as_one_message_each_with_its_button(
    make_app: Callable[..., App], slack: FakeSlack
) -> None:
    app = await started(make_app, slack, FakeClock())
    enqueue_posts(app, [1, 2, 3, "not a page", 4, 5], Destination.dm("alice"))
    try:
        assert await app.outbox.deliver_due() == 6
    finally:
        app.store.dispose()
    got = dm(slack)
    # In order; a post that is not a page goes alone and between the folds.
    assert [paged(m) for m in got] == [[1, 2, 3], [], [4, 5]]
    assert got[1]["text"] == "not a page"
    assert got[0]["text"].startswith("🔔 3 pages: #1, #2, #3")
    assert [label for label, _ in buttons(got[0])] == [
        "Acknowledge #1",
        "Acknowledge #2",
        "Acknowledge #3",
    ]
    assert ["/ack #1" in v for _, v in buttons(got[0])] == [True, False, False]
    assert got[0]["metadata"]["event_payload"]["key"] == "post:0@slack"
    stored = rows(app)
    assert {r.status for r in stored.values()} == {"sent"}
    refs = [stored[f"post:{i}@slack"].remote_ref for i in range(6)]
    assert refs[0] == refs[1] == refs[2] and refs[4] == refs[5] and refs[0] != refs[4]
    assert [stored[f"post:{i}@slack"].fold_of for i in range(6)] == [
        "post:0@slack",
        "post:0@slack",
        "post:0@slack",
        None,
        "post:4@slack",
        "post:4@slack",
    ]


async def test_at_most_ten_pages_a_message_and_rooms_never_fold(
    make_app: Callable[..., App], slack: FakeSlack
) -> None:
    app = await started(make_app, slack, FakeClock())
    enqueue_posts(app, list(range(1, 24)), Destination.dm("alice"))
    try:
        assert await app.outbox.deliver_due() == 23
        with app.store.transaction() as s:  # pages in a room are each a post of their own
            for r in s.scalars(select(OutboxMessage)):
                r.key = "old:" + r.key
        enqueue_posts(app, [1, 2, 3], Destination.incidents())
        assert await app.outbox.deliver_due() == 3
    finally:
        app.store.dispose()
    assert [paged(m) for m in dm(slack)] == [
        list(range(1, 11)),
        list(range(11, 21)),
        [21, 22, 23],
    ]
    assert [paged(m) for m in slack.messages("C0INCIDENTS")] == [[1], [2], [3]]


@pytest.mark.parametrize("lost", ["answer", "request"])
async def test_a_fold_in_doubt_after_a_restart_goes_once_with_the_same_pages(
    make_app: Callable[..., App], slack: FakeSlack, lost: str
) -> None:
    """The first process attempts a fold of pages 1-3 and never hears back: Slack stored it
    and the answer was lost ("answer"), or it never arrived ("request"). Page 4 arrives
    meanwhile. The next process finds the fold by its key, or sends it again, with the
    same three pages, and page 4 after it: each page in exactly one message."""
    clock = FakeClock()
    first = await started(make_app, slack, clock)
    enqueue_posts(first, [1, 2, 3], Destination.dm("alice"))
    if lost == "answer":
        slack.respond_late("chat.postMessage", delay=2.0)
    else:
        slack.hang("chat.postMessage")
    try:
        assert await first.outbox.deliver_due() == 0  # timed out: its fate unknown
    finally:
        first.store.dispose()
    slack.release(process=False)  # a request held is dropped, never processed
    assert len(dm(slack)) == (1 if lost == "answer" else 0)
    calls = len(slack.calls("chat.postMessage"))

    second = await started(make_app, slack, clock)
    in_doubt = rows(second)
    assert {k: r.fold_of for k, r in in_doubt.items()} == dict.fromkeys(
        ["post:0@slack", "post:1@slack", "post:2@slack"], "post:0@slack"
    )
    assert all(r.attempted_at is not None and r.status == "pending" for r in in_doubt.values())
    enqueue_posts(second, [4], Destination.dm("alice"), prefix="later")
    clock.advance(timedelta(minutes=10))  # past the back-off
    try:
        assert await second.outbox.deliver_due() == 4
    finally:
        second.store.dispose()
    assert [paged(m) for m in dm(slack)] == [[1, 2, 3], [4]]
    # Found by its key (answer lost) or sent again (request lost); page 4 alone after it.
    assert len(slack.calls("chat.postMessage")) - calls == (1 if lost == "answer" else 2)
    stored = rows(second)
    assert {r.status for r in stored.values()} == {"sent"}
    assert stored["post:0@slack"].remote_ref == stored["post:2@slack"].remote_ref
    assert stored["later:0@slack"].fold_of is None


async def test_a_fold_refused_for_good_goes_again_one_page_at_a_time(
    make_app: Callable[..., App], slack: FakeSlack
) -> None:
    app = await started(make_app, slack, FakeClock())
    enqueue_posts(app, [1, 2, 3], Destination.dm("alice"))
    slack.fail("chat.postMessage", status=200, body={"ok": False, "error": "invalid_blocks"})
    try:
        await app.outbox.deliver_due()
        await app.outbox.deliver_due()
    finally:
        app.store.dispose()
    assert [paged(m) for m in dm(slack)] == [[1], [2], [3]]
    assert {r.status for r in rows(app).values()} == {"sent"}


async def test_a_fold_on_telegram_is_one_message_with_a_button_for_each_page(
    make_app: Callable[..., App],
) -> None:
    async with FakeTelegram() as tg:
        tg.add_private_chat(1001, "alice")
        app = make_app(
            config=Config.model_validate({"people": {"alice": {"name": "A", "telegram": 1001}}}),
            clock=FakeClock(),
            env={"PIRA_TELEGRAM_TOKEN": tg.token, "PIRA_TELEGRAM_API_URL": tg.url},
        )
        adapter = TelegramAdapter(app.chat_deps())
        app.add_adapter(adapter)
        await adapter.bot.initialize()
        await asyncio.to_thread(app.store.migrate)
        enqueue_posts(app, [7, 8, 9], Destination.dm("alice"))
        try:
            assert await app.outbox.deliver_due() == 3
        finally:
            app.store.dispose()
            await adapter.bot.shutdown()
        (message,) = tg.sent_messages(1001)
    text = message["text"]
    assert text.startswith("🔔 3 pages: #7, #8, #9")
    assert [text.index(f"storm incident {n}") for n in (7, 8, 9)] == sorted(
        text.index(f"storm incident {n}") for n in (7, 8, 9)
    )
    keyboard = message["reply_markup"]["inline_keyboard"]
    assert [(b["text"], b["callback_data"]) for row in keyboard for b in row] == [
        ("Acknowledge #7", "/ack #7"),
        ("Acknowledge #8", "/ack #8"),
        ("Acknowledge #9", "/ack #9"),
    ]
