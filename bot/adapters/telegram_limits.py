"""Client-side rate limiting for the Telegram Bot API: Telegram's documented limits and
no tighter, so that the bot rarely meets a 429 and never waits for nothing.

Telegram documents (Bots FAQ): about 30 messages a second for a bot; in one chat about
one a second, "short bursts" tolerated; in a group 20 a minute. For the bot and for a
group that is a sliding window here (at most N in any T seconds); for a chat a bucket
(one a second, three at once after a quiet spell: a reply split in three goes out
together, and a message after a burst waits a second, not three).

- **Per chat and per group** a send waits for its chat's windows first. A wait longer
  than the caller's ``max_wait`` is not waited out: it raises ``DeliveryError`` with
  ``retry_after`` (the outbox retries then; a lane holds nothing meanwhile).
- **The bot's 30 a second** is shared by every chat: the send then waits its turn,
  first come first served (only the first in line sleeps; no thundering herd).
- **Counted when Telegram saw it**, which the bot does not see: a request left at
  ``sent``, its answer was back at ``done``, Telegram saw it in between. An answered
  request counts at ``done`` less the shortest way back an answer takes (about half
  the shortest round trip, when round trips agree: ``RateLimiter.one_way``), one in
  flight at "now", a new one at when it leaves. Counting every request until its
  answer, as before, held each place a whole round trip too long (30 per 1.1 s at
  100 ms: 25.8 msg/s measured); counting from when it left (aiolimiter's way) is not
  safe: a busy event loop sends one burst late, the next on time, and Telegram sees
  31 in a second (11 429s answering 100 chats against the fake, measured).
- **In flight** at most ``Limits.in_flight`` requests (a burst's worth): when Telegram
  is slow, sends wait here rather than in the HTTP pool (sized from it).
- **A 429** pauses that chat for its ``retry_after`` (``backoff``) and ends its
  bursts (Telegram does not say how short a tolerated burst is); other chats go on.

Why not python-telegram-bot's ``AIORateLimiter`` (aiolimiter's ``AsyncLimiter``):
it needs ``ExtBot`` and runs inside each request, where nothing can come between
admission and request (the outbox's ``admitted`` hook must); it always waits, however
long (no ``max_wait``: ``AsyncLimiter`` cannot say how long a wait will be); it has no
per-chat pacing for private chats; a 429 anywhere halts every chat; and its leaky
bucket of N per T admits up to 2N in one period (a full bucket, then the drip): 40
posts in a group's first minute, which Telegram refuses (PTB issue #3772).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bot.outbox import DeliveryError

PRUNE_AT = 1024  # chats with a window before idle ones are forgotten
POLL = 0.05  # the first in line looks again this often while requests are in flight
SLACK = 0.01  # seconds kept of the one-way estimate (see RateLimiter.one_way)


@dataclass(frozen=True)
class Limits:
    """Telegram's documented limits: windows of (messages, seconds), per chat a bucket."""

    overall: tuple[int, float] = (30, 1.0)
    # Per chat a bucket, not a window: (burst, seconds per message). About one a
    # second, and three at once (a reply split in three) when the chat was quiet.
    per_chat: tuple[int, float] = (3, 1.0)
    per_group: tuple[int, float] = (20, 60.0)
    # Added to every window (seconds). None needed against Telegram: a request counts
    # at the latest Telegram can have seen it (see RateLimiter); tests scale it.
    margin: float = 0.0
    in_flight: int = 30  # requests at once; the HTTP pool is sized from it


class Slot:
    """One request's place in its windows: taken when admitted, ``go()`` right before
    the request leaves; a slot left without ``go()`` is given back."""

    __slots__ = ("chat_id", "done_at", "limiter", "sent_at")

    def __init__(self, limiter: RateLimiter, chat_id: int) -> None:
        self.limiter = limiter
        self.chat_id = chat_id
        self.sent_at: float | None = None
        self.done_at: float | None = None

    def go(self) -> None:
        """The request leaves now."""
        self.sent_at = self.limiter.clock()

    def seen_at(self, now: float, one_way: float) -> float:
        """The latest time Telegram can have seen the request ("now" in flight)."""
        if self.done_at is None or self.sent_at is None:
            return now
        return max(self.sent_at, self.done_at - one_way)


class Window:
    """At most ``limit`` requests in any ``span`` seconds, at Telegram."""

    __slots__ = ("limit", "slots", "span")

    def __init__(self, limit: int, span: float) -> None:
        self.limit = limit
        self.span = span
        self.slots: list[Slot] = []

    def wait(self, now: float, one_way: float) -> float:
        """Seconds until one more request leaving then fits (0: now). Slots in flight
        count as "now": while any are among those that decide, look again soon."""
        seen = [(s.seen_at(now, one_way), s) for s in self.slots]
        self.slots = [s for at, s in seen if at > now - self.span]
        if len(self.slots) < self.limit:
            return 0.0
        times = sorted(at for at, _ in seen if at > now - self.span)
        return times[-self.limit] + self.span - now

    def idle(self, now: float) -> bool:
        self.wait(now, 0.0)  # forgets what is past
        return not self.slots


class Bucket:
    """About one request every ``interval`` seconds, ``burst`` at once after a quiet
    spell (a token bucket, checked as GCRA over the requests' times at Telegram)."""

    __slots__ = ("burst", "interval", "slots")

    def __init__(self, burst: int, interval: float) -> None:
        self.burst = burst
        self.interval = interval
        self.slots: list[Slot] = []

    def wait(self, now: float, one_way: float) -> float:
        """Seconds until one more request leaving then fits (0: now)."""
        seen = sorted((s.seen_at(now, one_way), i, s) for i, s in enumerate(self.slots))
        due = float("-inf")  # when the bucket is full again
        for at, _i, _slot in seen:
            due = max(due, at) + self.interval
        if due <= now:  # full again: the past no longer matters
            self.slots = []
            return 0.0
        return max(0.0, due - (self.burst - 1) * self.interval - now)

    def idle(self, now: float) -> bool:
        self.wait(now, 0.0)  # forgets what is past
        return not self.slots


class RateLimiter:
    """Telegram's limits per chat, per group and overall (see the module docstring)."""

    def __init__(
        self, limits: Limits | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits or Limits()
        self.clock = clock
        limit, span = self.limits.overall
        self.overall = Window(limit, span + self.limits.margin)
        self._chats: dict[int, list[Window | Bucket]] = {}
        self._paused: dict[int, float] = {}  # chat → no sends before (a 429's retry_after)
        self._trips: deque[float] = deque(maxlen=64)  # recent round trips, seconds
        self._flying = asyncio.Semaphore(self.limits.in_flight)
        self._turn = asyncio.Lock()  # the bot's window: first come, first served

    def one_way(self) -> float:
        """The shortest way back an answer takes: half the shortest recent round trip,
        less how much round trips vary (half the median's excess over the shortest)
        and ``SLACK``; 0 before any (counted at the answer). A busy event loop (or a
        queue at Telegram) delays some requests on the way out and not their answers,
        so one answer's way back can be shorter than half the shortest round trip by
        about that much; when round trips vary that much, nothing is assumed."""
        if not self._trips:
            return 0.0
        shortest = min(self._trips)
        median = sorted(self._trips)[len(self._trips) // 2]
        return max(0.0, shortest / 2 - (median - shortest) / 2 - SLACK)

    def _windows(self, chat_id: int) -> list[Window | Bucket]:
        found = self._chats.get(chat_id)
        if found is None:
            if len(self._chats) >= PRUNE_AT:
                self._prune()
            margin = self.limits.margin
            burst, interval = self.limits.per_chat
            found = [Bucket(burst, interval + margin)]
            if chat_id < 0:  # groups, supergroups and channels have negative ids
                limit, span = self.limits.per_group
                found.append(Window(limit, span + margin))
            self._chats[chat_id] = found
        return found

    def _prune(self) -> None:
        now = self.clock()
        for chat_id, windows in list(self._chats.items()):
            if all(w.idle(now) for w in windows):
                del self._chats[chat_id]
        for chat_id, until in list(self._paused.items()):
            if until <= now:
                del self._paused[chat_id]

    def chat_wait(self, chat_id: int, now: float) -> float:
        """Seconds until one more message to ``chat_id`` fits its chat's (and group's)
        windows and any 429 pause; the bot's overall window is not counted."""
        one_way = self.one_way()
        wait = self._paused.get(chat_id, now) - now
        for window in self._windows(chat_id):
            wait = max(wait, window.wait(now, one_way))
        return wait

    def overall_wait(self, now: float) -> float:
        return self.overall.wait(now, self.one_way())

    def take(self, chat_id: int) -> Slot:
        """Count one request to ``chat_id`` in every window it belongs to."""
        slot = Slot(self, chat_id)
        for window in (self.overall, *self._windows(chat_id)):
            window.slots.append(slot)
        return slot

    def done(self, slot: Slot, now: float) -> None:
        """The request is over (whatever the answer); a slot never used is given back."""
        if slot.sent_at is None:
            for window in (self.overall, *self._windows(slot.chat_id)):
                if slot in window.slots:
                    window.slots.remove(slot)
            return
        slot.done_at = now
        self._trips.append(now - slot.sent_at)

    def backoff(self, chat_id: int, seconds: float) -> None:
        """Telegram answered 429 for ``chat_id``: nothing more to it for ``seconds``,
        and no more bursts to it (until the chat is forgotten, idle)."""
        until = self.clock() + seconds
        self._paused[chat_id] = max(until, self._paused.get(chat_id, 0.0))
        for window in self._windows(chat_id):
            if isinstance(window, Bucket):
                window.burst = 1

    @asynccontextmanager
    async def slot(self, chat_id: int, max_wait: float) -> AsyncIterator[Slot]:
        """Wait for a place for one request to ``chat_id``; call ``go()`` on it right
        before the request. A wait longer than ``max_wait`` for the chat (or group)
        raises ``DeliveryError(retry_after=...)`` instead; the bot's window is waited
        for in turn, however long. One request per chat at a time (the caller's lock)."""
        while (wait := self.chat_wait(chat_id, self.clock())) > 0:
            if wait > max_wait:
                raise DeliveryError("rate limit (client side)", retry_after=wait)
            await asyncio.sleep(wait)
        async with self._flying:
            async with self._turn:
                while (wait := self.overall_wait(self.clock())) > 0:
                    await asyncio.sleep(min(wait, POLL))
                slot = self.take(chat_id)
            try:
                yield slot
            finally:
                self.done(slot, self.clock())
