"""Drive an App in-process the way the console does: commands in, posts out."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

from bot.adapters.console import ConsoleAdapter
from bot.app import App
from bot.messages import Message, Reply, Room
from bot.people import Actor, Directory

_BLOCK = re.compile(r"^\[([^\]]+)\] ", re.MULTILINE)


@dataclass(frozen=True)
class Post:
    tag: str
    text: str


class Driver:
    """Sends commands through the real router and collects what the console prints."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.out = io.StringIO()
        self.adapter = ConsoleAdapter(self.out)
        app.add_adapter(self.adapter)
        self._read = 0

    def actor(self, who: str | None) -> Actor:
        return Directory.operator_console() if who is None else self.app.directory.person_actor(who)

    async def say(self, text: str, who: str | None = None, *, room: int | None = None) -> Reply:
        actor = self.actor(who)
        message = Message(
            platform="console",
            user_id=actor.key,
            text=text,
            room=Room(platform="console", incident=room),
        )
        reply = await self.app.router.handle(message, actor)
        await self.app.outbox.deliver_due()
        return reply

    def text(self, reply: Reply) -> str:
        return self.app.renderer.render("console", reply.template, reply.data)

    async def posts(self) -> list[Post]:
        """Posts printed since the last call."""
        await self.app.outbox.deliver_due()
        value = self.out.getvalue()
        new, self._read = value[self._read :], len(value)
        return parse(new)


def parse(output: str) -> list[Post]:
    starts = [(m.start(), m.group(1), m.end()) for m in _BLOCK.finditer(output)]
    posts = []
    for i, (_, tag, body_start) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(output)
        posts.append(Post(tag, output[body_start:end].strip()))
    return posts
