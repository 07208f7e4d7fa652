"""The console adapter: one command a line from stdin, every post to stdout tagged
with its destination. It doubles as the driver of end-to-end tests.

A post with a file (a postmortem, a chart) writes the file into ``PIRA_FILES_DIR``
(default ``pira-files`` in the working directory) and prints its absolute path after
the post. The file's name is the post's file name with a digest of its outbox key, so
a post delivered again overwrites its own file instead of leaving a second copy.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from bot.adapters.console_term import Commands, Screen
from bot.messages import Destination, Message, Reply, Room
from bot.outbox import Attachment, Outbound
from bot.people import Actor
from bot.settings_env import Env

log = logging.getLogger("pira.console")


class ConsoleAdapter:
    name = "console"

    def __init__(
        self,
        out: IO[str] | None = None,
        *,
        files_dir: str | Path | None = None,
        stakeholders: bool = True,
        style: str = "markdown",
    ) -> None:
        """``files_dir``: where files of posts are written (None: ``PIRA_FILES_DIR`` of the
        environment, read when the first file is written). ``stakeholders``: whether
        the stakeholders channel's posts are shown (``pira console``: only when
        ``channels.stakeholders`` is configured, as on the chat platforms).
        ``style``: how posts are shown (bot/adapters/console_term.py: ``markdown`` as
        rendered, ``plain`` for a pipe, ``terminal`` with colour under the prompt).
        Without ``out``, stdout as it is at each write (under the prompt, its proxy)."""
        self._out = out
        self._files_dir = Path(files_dir) if files_dir is not None else None
        self.stakeholders = stakeholders
        self.screen = Screen(out, style)

    @property
    def out(self) -> IO[str]:
        return self._out or sys.stdout

    def reaches(self, destination: Destination) -> bool:
        if destination.kind == "stakeholders":
            return self.stakeholders
        return destination.kind in ("incidents", "incident", "dm")  # not a phone's

    async def unreachable(self, person: str) -> str | None:
        """Everyone is reachable here: the console prints every page (bot/outbox.py)."""
        return None

    def write(self, tag: str, text: str) -> None:
        # One write per message, so concurrent posts never interleave mid-message.
        self.screen.write(tag, text, self.out)

    async def deliver(self, message: Outbound) -> dict[str, Any] | None:
        if message.edit_of is not None:
            return None  # a terminal cannot edit what it printed; the room has the news
        if message.file is None:
            self.write(message.destination.label(), message.text)
            return None
        path = await asyncio.to_thread(self._keep, message.key, message.file)
        self.write(message.destination.label(), f"{message.text}\n📎 {path}")
        return {"path": str(path)}

    def files_dir(self) -> Path:
        if self._files_dir is None:
            self._files_dir = Path(Env.from_environ().files_dir)
        self._files_dir = self._files_dir.absolute()  # fixed at first use
        return self._files_dir

    def _keep(self, key: str, file: Attachment) -> Path:
        """Write the file (atomically: a reader never sees half of it); its path."""
        folder = self.files_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / _file_name(key, file.name)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(file.content)
        os.replace(partial, path)
        return path


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _file_name(key: str, name: str) -> str:
    """``postmortem-3.md`` of post ``key`` → ``postmortem-3.<digest of key>.md``: the same
    for every delivery of the post, different for two posts of files of the same name."""
    base = _UNSAFE.sub("_", Path(name.replace("\\", "/")).name).strip("._") or "file"
    stem, dot, ext = base.rpartition(".")
    if not stem:
        stem, dot, ext = ext, "", ""
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return f"{stem[:100]}.{digest}{dot}{ext[:20]}"


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
        await handle_line(app, adapter, actor, line)
    await _deliver(app)


async def run_terminal(app: Any, adapter: ConsoleAdapter, actor: Actor, intro: str) -> None:
    """The console on a terminal: the banner, then a prompt with line editing, history
    and completion until Ctrl-D; posts arriving meanwhile are printed above the line."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.patch_stdout import patch_stdout

    # No cursor-position requests: a terminal (or a test's pty) that does not answer them
    # would make the prompt wait, and swallow what is typed meanwhile.
    os.environ.setdefault("PROMPT_TOOLKIT_NO_CPR", "1")
    numbers: list[int] = []
    completer = Commands(app.router.commands, app.config.people, lambda: numbers)
    session: PromptSession[str] = PromptSession(completer=completer, complete_while_typing=False)
    sys.stdout.write(intro + "\n")
    sys.stdout.flush()
    with patch_stdout(raw=True):
        while True:
            try:  # for completion only: the database away must not end the console
                numbers[:] = await app.store.run(app.incidents.open_numbers)
            except Exception as exc:
                log.warning("open incidents not read", extra={"error": type(exc).__name__})
            try:
                line = await session.prompt_async("pira> ")
            except KeyboardInterrupt:
                continue  # Ctrl-C drops the line being typed, as in a shell
            except EOFError:
                break
            await handle_line(app, adapter, actor, line)
        await _deliver(app)


async def handle_line(app: Any, adapter: ConsoleAdapter, actor: Actor, line: str) -> None:
    """One line of input: the command's reply, then what it posted."""
    text = line.strip()
    if not text or text.startswith("#"):
        return
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


async def _deliver(app: Any) -> None:
    """Print what is due now; a failure (the database away) leaves it for the worker."""
    try:
        await app.outbox.deliver_due()
    except Exception:
        log.exception("console delivery failed")
