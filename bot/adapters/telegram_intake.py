"""Telegram updates in: long polling (the leader only: two pollers would take turns
with 409 Conflict) or ``POST /telegram`` with the secret token checked in constant
time. Each update is handled once (a redelivered webhook call is dropped), and one
chat's updates in the order they were written."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from aiohttp import web
from telegram import Bot as PtbBot
from telegram import Update
from telegram.error import Conflict, InvalidToken, TelegramError

log = logging.getLogger("pira.telegram")

ALLOWED_UPDATES = ["message", "callback_query"]


class Intake:
    def __init__(
        self,
        *,
        bot: PtbBot,
        poll_timeout: int,
        leading: Callable[[], bool],
        process: Callable[[Update], Awaitable[None]],
    ) -> None:
        self.bot = bot
        self.poll_timeout = poll_timeout
        self.leading = leading
        self._process = process
        self.webhook_secret = ""
        self._chat_locks: dict[int, asyncio.Lock] = {}  # processing order per chat
        self._seen_updates: deque[int] = deque(maxlen=2000)
        self._tasks: set[asyncio.Task[None]] = set()
        self._poller: asyncio.Task[None] | None = None
        self._offset: int | None = None

    async def settle(self) -> None:
        """Wait until the updates being handled are done."""
        while self._tasks:
            await asyncio.wait(set(self._tasks), timeout=30)

    def start_polling(self) -> None:
        self._poller = asyncio.create_task(self._poll(), name="telegram-poll")

    async def stop(self, *, confirm: bool) -> None:
        """Stop polling, let updates being handled finish (briefly), and confirm to
        Telegram what was handled, so a restart does not run those commands again."""
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None
        if self._tasks:
            _done, late = await asyncio.wait(set(self._tasks), timeout=10)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._offset is not None and confirm:
            with contextlib.suppress(TelegramError):
                await self.bot.get_updates(offset=self._offset, timeout=0, limit=1)

    async def _poll(self) -> None:
        backoff = 1.0
        while True:
            if not self.leading():
                await asyncio.sleep(1.0)
                continue
            try:
                updates = await self.bot.get_updates(
                    offset=self._offset,
                    timeout=self.poll_timeout,
                    allowed_updates=ALLOWED_UPDATES,
                )
                backoff = 1.0
            except asyncio.CancelledError:
                raise
            except Conflict as exc:
                log.warning("telegram getUpdates conflict", extra={"error": str(exc)[:200]})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            except InvalidToken:
                log.error("telegram token refused; polling paused")
                await asyncio.sleep(60)
                continue
            except Exception as exc:  # network down, 5xx, timeouts: keep polling
                log.warning("telegram getUpdates failed", extra={"error": type(exc).__name__})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            for update in updates:
                self._offset = update.update_id + 1
                self._dispatch(update)

    async def webhook(self, request: web.Request) -> web.Response:
        given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        # Bytes that are not UTF-8 arrive as surrogate escapes: compare the bytes as sent.
        sent = given.encode("utf-8", "surrogateescape")
        if not self.webhook_secret or not hmac.compare_digest(sent, self.webhook_secret.encode()):
            log.warning("telegram webhook refused: bad secret token")
            return web.Response(status=403, text="forbidden")
        try:
            update = Update.de_json(await request.json(), self.bot)
        except Exception:
            return web.Response(status=400, text="not a Telegram update")
        if update is not None:
            self._dispatch(update)
        # Answered at once; the work continues (Telegram redelivers slow answers).
        return web.Response(text="ok")

    def _dispatch(self, update: Update) -> None:
        if update.update_id in self._seen_updates:
            return  # a redelivered webhook call
        self._seen_updates.append(update.update_id)
        task = asyncio.create_task(self._in_order(update))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _in_order(self, update: Update) -> None:
        # A malformed update (no readable chat, an id that is not a number) shares one
        # queue instead of crashing its task.
        try:
            chat = update.effective_chat
            key = chat.id if chat is not None and isinstance(chat.id, int) else 0
        except Exception:
            key = 0
        lock = self._chat_locks.setdefault(key, asyncio.Lock())
        async with lock:  # commands of one chat run in the order they were written
            try:
                await self._process(update)
            except Exception:
                log.exception("telegram update failed", extra={"update_id": update.update_id})
