"""Client-side rate limiting for the Telegram Bot API: Telegram's documented limits as
sliding windows, checked before every send so that the bot rarely meets a 429."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from bot.outbox import DeliveryError


@dataclass(frozen=True)
class Limits:
    """Telegram's documented limits: ~1 message/s per chat, 20/min per group, 30/s in all."""

    per_chat: tuple[int, float] = (1, 1.0)
    per_group: tuple[int, float] = (20, 60.0)
    overall: tuple[int, float] = (30, 1.0)
    # Added to every window: requests reach Telegram a little later or closer together
    # than they left here, and a 429 costs far more than this.
    margin: float = 0.05


class RateLimiter:
    """Sliding windows per chat, per group and overall, checked before every send."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._events: dict[tuple[str, Any], deque[float]] = {}

    def _windows(self, chat_id: int) -> list[tuple[tuple[str, Any], int, float]]:
        windows = [
            (("all", None), *self.limits.overall),
            (("chat", chat_id), *self.limits.per_chat),
        ]
        if chat_id < 0:  # groups, supergroups and channels have negative ids
            windows.append((("group", chat_id), *self.limits.per_group))
        return windows

    def wait(self, chat_id: int, now: float) -> float:
        """Seconds until one more message to ``chat_id`` fits; 0 reserves the slot."""
        longest = 0.0
        windows = self._windows(chat_id)
        for key, limit, span in windows:
            q = self._events.setdefault(key, deque())
            while q and q[0] <= now - span:
                q.popleft()
            if len(q) >= limit:
                longest = max(longest, q[len(q) - limit] + span - now)
        if longest <= 0:
            for key, _limit, _span in windows:
                self._events[key].append(now)
        return longest

    async def acquire(self, chat_id: int, max_wait: float) -> float:
        """Wait for a slot; a longer wait than ``max_wait`` postpones the post instead
        (the outbox keeps the room's order and retries after ``retry_after``).
        Returns the slot's time, for :meth:`done`."""
        while True:
            now = time.monotonic()
            wait = self.wait(chat_id, now)
            if wait <= 0:
                return now
            if wait > max_wait:
                raise DeliveryError("rate limit (client side)", retry_after=wait)
            await asyncio.sleep(wait)

    def done(self, chat_id: int, slot: float) -> None:
        """Move a slot to when the request finished. Telegram saw it somewhere between
        start and finish; counting from the finish keeps two messages of one chat a
        full window apart however long the first one took to get there."""
        now = time.monotonic()
        for key, _limit, _span in self._windows(chat_id):
            q = self._events.get(key)
            if not q:
                continue
            for i in range(len(q) - 1, -1, -1):
                if q[i] == slot:
                    q[i] = now
                    break
            if any(q[i] > q[i + 1] for i in range(len(q) - 1)):
                self._events[key] = deque(sorted(q))
