"""The console adapter: one command a line from stdin, every post to stdout tagged
with its destination. It doubles as the driver of end-to-end tests."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Iterator
from typing import IO, Any

from bot.messages import Destination, Message, Reply, Room
from bot.outbox import Outbound
from bot.people import Actor

log = logging.getLogger("pira.console")


class ConsoleAdapter:
    name = "console"

    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out or sys.stdout

    def reaches(self, destination: Destination) -> bool:
        return True

    def write(self, tag: str, text: str) -> None:
        # One write per message, so concurrent posts never interleave mid-message.
        self.out.write(f"[{tag}] {text}\n\n")
        self.out.flush()

    async def deliver(self, message: Outbound) -> dict[str, Any] | None:
        if message.edit_of is not None:
            return None  # a terminal cannot edit what it printed; the room has the news
        self.write(message.destination.label(), message.text)
        return None


def _decoded(stream: IO[str]) -> Iterator[str]:
    """Lines of text; bytes that are not UTF-8 become U+FFFD instead of ending the input."""
    raw = getattr(stream, "buffer", None)
    if raw is None:
        yield from stream
        return
    for line in raw:
        yield line.decode("utf-8", errors="replace")


async def _lines(stream: IO[str]) -> asyncio.Queue[str | None]:
    """Read lines in a thread (works for a terminal, a pipe and a file alike)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def pump() -> None:
        try:
            for line in _decoded(stream):
                loop.call_soon_threadsafe(queue.put_nowait, line)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=pump, name="console-stdin", daemon=True).start()
    return queue


async def run_console(app: Any, adapter: ConsoleAdapter, actor: Actor, stream: IO[str]) -> None:
    """Serve commands until end of input, then deliver what is still pending."""
    queue = await _lines(stream)
    while True:
        line = await queue.get()
        if line is None:
            break
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        message = Message(
            platform="console",
            user_id=actor.key,
            text=text,
            room=Room(platform="console"),
            user_name=actor.name,
        )
        reply: Reply = await app.router.handle(message, actor)  # never raises
        try:
            text = app.renderer.render("console", reply.template, reply.data)
        except Exception:
            log.exception("reply could not be rendered", extra={"template": reply.template})
            text = "PIRA could not show its answer; the error is in the bot's log."
        adapter.write("reply", text)
        await _deliver(app)
    await _deliver(app)


async def _deliver(app: Any) -> None:
    """Print what is due now; a failure (the database away) leaves it for the worker."""
    try:
        await app.outbox.deliver_due()
    except Exception:
        log.exception("console delivery failed")
