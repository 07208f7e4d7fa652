"""Outbox → Telegram under rate limits, 5xx, hangs and answers that come too late."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import select

from bot.adapters.telegram import TelegramAdapter
from bot.adapters.telegram_send import Limits, split_text
from bot.app import App
from bot.messages import Destination
from bot.outbox import Fenced, Outbound, enqueue
from bot.settings import Config
from bot.store.models import OutboxMessage
from tests.fakes.slack_api import SlidingWindow
from tests.fakes.telegram_api import Bucket, FakeTelegram

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*retry_after.*:telegram.warnings.PTBDeprecationWarning"
)

ALICE_ID = 1001
# Telegram's limits scaled down 50x so that 300 posts take seconds, not five minutes;
# the adapter is told the same limits it would use against Telegram, scaled alike.
FAST = Limits(per_chat=(1, 0.02), per_group=(20, 1.2), overall=(30, 0.02), margin=0.01)


def config() -> Config:
    return Config.model_validate(
        {
            "channels": {"incidents": {"telegram": -1001111111111}},
            "people": {"alice": {"name": "Alice", "telegram": ALICE_ID}},
        }
    )


@asynccontextmanager
async def delivering(
    make_app: Callable[..., App], tg: FakeTelegram, *, send_timeout: float = 0.5
) -> AsyncIterator[tuple[App, TelegramAdapter]]:
    app = make_app(
        config=config(), env={"PIRA_TELEGRAM_TOKEN": tg.token, "PIRA_TELEGRAM_API_URL": tg.url}
    )
    adapter = TelegramAdapter(app.chat_deps(), limits=FAST, send_timeout=send_timeout)
    app.add_adapter(adapter)
    await adapter.bot.initialize()
    await app.start(scheduler=False)
    try:
        yield app, adapter
    finally:
        await app.stop()
        await adapter.bot.shutdown()


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        fake.add_private_chat(ALICE_ID, "alice")
        fake.add_supergroup(-1001111111111, "Incidents")
        fake._chat_window = Bucket(*FAST.per_chat)
        fake._group_window = SlidingWindow(*FAST.per_group)
        fake._global_window = SlidingWindow(*FAST.overall)
        fake.enable_rate_limits()
        yield fake


def post(app: App, texts: list[str], destination: Destination, prefix: str = "p") -> None:
    with app.store.transaction() as s:
        for i, text in enumerate(texts):
            enqueue(
                s,
                adapters=list(app.adapters.values()),
                destination=destination,
                template="text",
                data={"text": text},
                key=f"{prefix}:{i}",
                now=app.clock.now(),
            )
    app.outbox.notify()


async def all_sent(app: App, count: int, timeout: float) -> list[OutboxMessage]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        with app.store.read() as s:
            rows = list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        if len(rows) == count and all(r.status != "pending" for r in rows):
            return rows
        if asyncio.get_running_loop().time() > deadline:
            pending = [r.key for r in rows if r.status == "pending"]
            raise AssertionError(f"{len(pending)} posts still pending: {pending[:5]}")
        await asyncio.sleep(0.05)


async def test_300_posts_once_and_in_order_through_limits_errors_and_hangs(
    make_app: Callable[..., App], tg: FakeTelegram
) -> None:
    rng = random.Random(4)
    texts = [f"post {i:03d}" for i in range(300)]
    async with delivering(make_app, tg) as (app, _adapter):

        async def chaos() -> None:
            faults = ["500", "429", "late", "hang", "500", "late", "429", "500"]
            marks = sorted(rng.sample(range(10, 290), len(faults)))
            for mark, fault in zip(marks, faults, strict=True):
                while len(tg.sent_messages(ALICE_ID)) < mark:
                    await asyncio.sleep(0.01)
                if fault == "500":
                    tg.fail("sendMessage", status=rng.choice([500, 502, 503]))
                elif fault == "429":
                    tg.rate_limit("sendMessage", retry_after=1)
                elif fault == "late":
                    tg.respond_late("sendMessage", delay=1.5)  # processed, answer lost
                else:
                    tg.hang("sendMessage")  # never processed; the client gives up
                    await tg.wait_for("sendMessage", lambda c: c.outcome == "hung")
                    before = len(tg.sent_messages(ALICE_ID))
                    while len(tg.sent_messages(ALICE_ID)) <= before:
                        await asyncio.sleep(0.01)
                    tg.release("sendMessage", process=False)

        chaos_task = asyncio.create_task(chaos())
        post(app, texts, Destination.dm("alice"))
        rows = await all_sent(app, 300, timeout=120)
        await chaos_task

    assert [m["text"] for m in tg.sent_messages(ALICE_ID)] == texts  # once each, in order
    assert all(r.status == "sent" for r in rows)
    ids = [r.remote_ref["message_id"] for r in rows if r.remote_ref]
    assert ids == sorted(ids) and len(set(ids)) == 300
    outcomes = [c.outcome for c in tg.calls("sendMessage")]
    for seen in ("failed", "late", "aborted"):
        assert seen in outcomes, f"the fault {seen!r} never happened"
    assert outcomes.count("ratelimited") >= 2
    # the late answers were found by probing, not sent twice. On a busy machine an
    # ordinary answer can also outlast the client's 0.5 s timeout and be probed for:
    # every late one must have been probed, and every probe found a post sent once.
    late = {c.params["text"] for c in tg.calls("sendMessage") if c.outcome == "late"}
    probed = [
        c.params["text"] for c in tg.calls("editMessageText") if "not modified" in str(c.response)
    ]
    assert late and late <= set(probed)
    assert len(probed) == len(set(probed)) and set(probed) <= set(texts)


async def test_late_answer_is_not_resent(make_app: Callable[..., App], tg: FakeTelegram) -> None:
    async with delivering(make_app, tg) as (app, _adapter):
        post(app, ["first"], Destination.dm("alice"), prefix="a")
        await all_sent(app, 1, timeout=10)
        tg.respond_late("sendMessage", delay=1.5)
        post(app, ["second", "third"], Destination.dm("alice"), prefix="b")
        rows = await all_sent(app, 3, timeout=20)
    assert [m["text"] for m in tg.sent_messages(ALICE_ID)] == ["first", "second", "third"]
    late = [c for c in tg.calls("sendMessage") if c.outcome == "late"]
    assert len(late) == 1 and late[0].params["text"] == "second"
    assert rows[1].remote_ref is not None
    assert rows[1].remote_ref["message_id"] == late[0].response["result"]["message_id"]


async def test_lost_request_is_resent_once(make_app: Callable[..., App], tg: FakeTelegram) -> None:
    async with delivering(make_app, tg) as (app, _adapter):
        post(app, ["first"], Destination.dm("alice"), prefix="a")
        await all_sent(app, 1, timeout=10)
        tg.hang("sendMessage")
        post(app, ["second"], Destination.dm("alice"), prefix="b")
        await all_sent(app, 2, timeout=20)
        tg.release("sendMessage", process=False)
    assert [m["text"] for m in tg.sent_messages(ALICE_ID)] == ["first", "second"]


async def test_long_post_split_on_lines_in_order(
    make_app: Callable[..., App], tg: FakeTelegram
) -> None:
    lines = [f"line {i:04d} " + "x" * 80 for i in range(120)]  # ~11 000 characters
    async with delivering(make_app, tg) as (app, _adapter):
        post(app, ["\n".join(lines)], Destination.dm("alice"))
        (row,) = await all_sent(app, 1, timeout=20)
    got = [m["text"] for m in tg.sent_messages(ALICE_ID)]
    assert len(got) == 3 and all(len(t) <= 4096 for t in got)
    assert "\n".join(got).split("\n") == lines  # nothing lost, cut between lines
    assert row.remote_ref is not None and len(row.remote_ref["message_ids"]) == 3


def test_split_text_never_cuts_a_tag_or_entity() -> None:
    long_line = ("<b>bold</b> &amp; word " * 400).strip()
    parts = split_text(long_line, limit=100)
    assert "".join(p + " " for p in parts).split() == long_line.split()
    for part in parts:
        assert len(part) <= 100
        assert part.count("<b>") == part.count("</b>")
        assert not part.endswith("&amp") and not part.endswith("<b")
    assert split_text("short") == ["short"]


def outbound(key: str, text: str, **extra: Any) -> Outbound:
    return Outbound(
        key=key,
        destination=Destination.dm("alice"),
        text=text,
        buttons=(),
        incident=None,
        template="text",
        data={"text": text},
        **extra,
    )


async def test_fenced_admission_sends_nothing(
    make_app: Callable[..., App], tg: FakeTelegram
) -> None:
    async def fenced() -> None:
        raise Fenced("another replica holds the lease")

    async with delivering(make_app, tg) as (_app, adapter):
        with pytest.raises(Fenced):
            await adapter.deliver(outbound("f:1@telegram", "never", admitted=fenced))
        assert tg.calls("sendMessage") == []
        # nothing is left half-done: the next post goes out as usual
        ref = await adapter.deliver(outbound("f:2@telegram", "after"))
    assert [m["text"] for m in tg.sent_messages(ALICE_ID)] == ["after"]
    assert ref is not None and len(ref["message_ids"]) == 1


async def test_admitted_once_before_the_first_send_and_not_for_edits(
    make_app: Callable[..., App], tg: FakeTelegram
) -> None:
    long_text = "\n".join(f"line {i:04d} " + "x" * 80 for i in range(120))  # three parts
    seen: list[int] = []

    async def admitted() -> None:
        seen.append(len(tg.calls("sendMessage")))  # requests made before this moment

    async def never() -> None:
        raise AssertionError("an edit is idempotent: no admission to record")

    async with delivering(make_app, tg) as (_app, adapter):
        ref = await adapter.deliver(outbound("a:1@telegram", long_text, admitted=admitted))
        assert ref is not None
        edit = outbound("a:2@telegram", "edited", edit_of="a:1", original_ref=ref, admitted=never)
        await adapter.deliver(edit)
    assert seen == [0]  # once, before the first of the three sendMessage
    assert len(tg.calls("sendMessage")) == 3
    assert tg.sent_messages(ALICE_ID)[0]["text"] == "edited"


async def test_outbox_records_the_attempt_of_each_post(
    make_app: Callable[..., App], tg: FakeTelegram
) -> None:
    async with delivering(make_app, tg) as (app, _adapter):
        post(app, ["one", "two", "three"], Destination.dm("alice"))
        rows = await all_sent(app, 3, timeout=20)
    assert [m["text"] for m in tg.sent_messages(ALICE_ID)] == ["one", "two", "three"]
    assert all(r.status == "sent" and r.attempted_at is not None for r in rows)
