"""Telegram's rate limits on the bot's side (bot/adapters/telegram_limits.py): the
windows on a driven clock, and ChatSender against the fake Bot API enforcing them.
Counts and order only: nothing here asserts how long anything took."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from telegram import Bot
from telegram.request import HTTPXRequest

from bot.adapters.telegram_limits import Limits, RateLimiter
from bot.adapters.telegram_send import ChatSender
from bot.outbox import DeliveryError
from tests.fakes.telegram_api import FakeTelegram

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*retry_after.*:telegram.warnings.PTBDeprecationWarning"
)

GROUP_ID = -1001111111111
ALICE_ID = 1001


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def send(limiter: RateLimiter, clock: Clock, chat_id: int, answered_after: float = 0.0) -> None:
    """One request to ``chat_id`` leaving now, answered ``answered_after`` seconds later."""
    slot = limiter.take(chat_id)
    slot.go()
    limiter.done(slot, clock.now + answered_after)


def test_windows_per_chat_per_group_and_overall() -> None:
    clock = Clock()
    limiter = RateLimiter(Limits(margin=0), clock=clock)
    for _ in range(3):  # a private chat: a short burst, then about one a second
        assert limiter.chat_wait(5, clock.now) == 0
        send(limiter, clock, 5)
    assert limiter.chat_wait(5, 0.0) == pytest.approx(1.0)
    clock.now = 1.0
    send(limiter, clock, 5)
    assert limiter.chat_wait(5, 1.0) == pytest.approx(1.0)
    assert limiter.chat_wait(5, 4.0) == 0  # quiet for long enough: a burst again
    assert limiter.chat_wait(6, 0.0) == 0  # another chat is not held back

    for t in range(20):  # a group: 20 a minute
        clock.now = float(t)
        assert limiter.chat_wait(-100, clock.now) == 0
        send(limiter, clock, -100)
    assert limiter.chat_wait(-100, 20.0) == pytest.approx(40.0)
    assert limiter.chat_wait(7, 20.0) == 0  # a private chat has no group window

    clock.now = 100.0
    for chat in range(1000, 1030):  # the bot: 30 a second, whichever the chats
        assert limiter.overall_wait(clock.now) == 0
        send(limiter, clock, chat)
    assert limiter.overall_wait(100.0) == pytest.approx(1.0)
    assert limiter.overall_wait(100.4) == pytest.approx(0.6)


def test_counted_when_telegram_can_have_seen_it() -> None:
    clock = Clock()
    limiter = RateLimiter(Limits(margin=0), clock=clock)
    slots = [limiter.take(chat) for chat in range(1000, 1030)]
    for slot in slots:
        slot.go()
    # in flight: each may be reaching Telegram right now
    assert limiter.overall_wait(0.5) == pytest.approx(1.0)
    for slot in slots:
        limiter.done(slot, 0.2)  # answered after a 200 ms round trip
    # seen at the latest 110 ms after leaving (the way back takes half the shortest
    # round trip, less 10 ms of slack): the window frees up at 1.11 s, not at 1.0 (when
    # they left) nor at 1.2 (when the answers came back)
    assert limiter.overall_wait(0.3) == pytest.approx(0.81)


def test_nothing_assumed_of_the_way_back_when_round_trips_vary() -> None:
    clock = Clock()
    limiter = RateLimiter(Limits(margin=0), clock=clock)
    for i, chat in enumerate(range(1000, 1030)):
        send(limiter, clock, chat, answered_after=0.05 if i % 3 == 0 else 0.3)
    assert limiter.one_way() == 0
    # each counted at its answer: the first ten answered at 0.05 s free the window
    assert limiter.overall_wait(0.31) == pytest.approx(0.05 + 1.0 - 0.31)


def test_unused_slot_is_given_back_and_a_429_pauses_one_chat() -> None:
    clock = Clock()
    limiter = RateLimiter(Limits(margin=0, per_chat=(1, 1.0)), clock=clock)
    slot = limiter.take(5)
    limiter.done(slot, 0.0)  # never sent (the admission was fenced)
    assert limiter.chat_wait(5, 0.0) == 0 and limiter.overall_wait(0.0) == 0
    limiter.backoff(5, 2.0)
    assert limiter.chat_wait(5, 0.5) == pytest.approx(1.5)
    assert limiter.chat_wait(6, 0.5) == 0


def test_a_429_ends_the_chats_bursts() -> None:
    clock = Clock()
    limiter = RateLimiter(Limits(margin=0), clock=clock)
    send(limiter, clock, 5)
    assert limiter.chat_wait(5, 0.0) == 0  # a burst allowed
    limiter.backoff(5, 1.0)
    clock.now = 1.0
    send(limiter, clock, 5)
    assert limiter.chat_wait(5, 1.0) == pytest.approx(1.0)  # one a second from now on
    assert limiter.chat_wait(6, 1.0) == 0


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(rate_limits=True, chat_limit=(3, 1.0)) as fake:
        fake.add_private_chat(ALICE_ID, "alice")
        fake.add_supergroup(GROUP_ID, "Incidents")
        for user in range(2000, 2100):
            fake.add_private_chat(user, f"user{user}")
        yield fake


@pytest.fixture
async def bot(tg: FakeTelegram) -> AsyncIterator[Bot]:
    request = HTTPXRequest(connection_pool_size=40, read_timeout=5)
    async with Bot(tg.token, base_url=tg.base_url, request=request) as b:
        yield b


async def test_100_private_chats_answered_without_a_429_storm(tg: FakeTelegram, bot: Bot) -> None:
    sender = ChatSender(bot, RateLimiter(), send_timeout=5)
    users = range(2000, 2100)

    async def answer(user: int) -> None:  # as Answers.send_now: a 429 is waited out
        for _attempt in range(3):
            try:
                await sender.send(user, f"hello {user}", max_wait=10)
                return
            except DeliveryError as exc:
                await asyncio.sleep(exc.retry_after or 1)

    await asyncio.gather(*(answer(u) for u in users))
    for user in users:
        assert [m["text"] for m in tg.sent_messages(user)] == [f"hello {user}"]
    limited = [c for c in tg.calls("sendMessage") if c.outcome == "ratelimited"]
    assert len(limited) <= 3  # Telegram's 30/s respected (the fake enforces it)


async def test_a_long_wait_is_handed_back_and_holds_no_other_chat(
    tg: FakeTelegram, bot: Bot
) -> None:
    sender = ChatSender(bot, RateLimiter(Limits(per_group=(2, 60.0))), send_timeout=5)
    await sender.send(GROUP_ID, "one")
    await sender.send(GROUP_ID, "two")
    with pytest.raises(DeliveryError) as exc:
        await sender.send(GROUP_ID, "three", max_wait=1.0)
    assert exc.value.retry_after is not None and exc.value.retry_after > 1.0
    await sender.send(ALICE_ID, "a private chat goes on")
    assert [m["text"] for m in tg.sent_messages(GROUP_ID)] == ["one", "two"]
    assert len(tg.calls("sendMessage")) == 3  # "three" never left the bot
    assert [m["text"] for m in tg.sent_messages(ALICE_ID)] == ["a private chat goes on"]


async def test_429_is_honoured_for_that_chat_only(tg: FakeTelegram, bot: Bot) -> None:
    sender = ChatSender(bot, RateLimiter(), send_timeout=5)
    tg.rate_limit("sendMessage", retry_after=5)
    with pytest.raises(DeliveryError) as exc:
        await sender.send(ALICE_ID, "first")
    assert exc.value.retry_after == 5
    with pytest.raises(DeliveryError) as again:  # not asked again before retry_after
        await sender.send(ALICE_ID, "second", max_wait=1.0)
    assert again.value.retry_after is not None and again.value.retry_after > 1.0
    await sender.send(GROUP_ID, "another chat goes on")
    assert [c.params["chat_id"] for c in tg.calls("sendMessage")] == [ALICE_ID, GROUP_ID]
    assert [m["text"] for m in tg.sent_messages(GROUP_ID)] == ["another chat goes on"]
