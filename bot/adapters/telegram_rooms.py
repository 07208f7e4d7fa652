"""Where a Telegram post goes and which incident a message is about.

An incident's room is its forum topic when the incidents chat is a forum (created on
first use and recorded at once in the room store, so a restart finds it), else the
reply chain under its announcement. A message in a topic, or answering one of the
incident's posts, is about that incident.
"""

from __future__ import annotations

import asyncio
import logging

from telegram import Bot as PtbBot
from telegram.error import TelegramError

from bot.adapters.telegram_send import ChatSender, as_delivery_error
from bot.messages import Destination
from bot.outbox import DeliveryError, Outbound
from bot.people import Directory
from bot.rooms import Place, Rooms

log = logging.getLogger("pira.telegram")

PLATFORM = "telegram"
ANNOUNCEMENT_WAIT = 3.0  # seconds a post waits for its announcement to reply to


class TelegramRooms:
    def __init__(
        self,
        *,
        bot: PtbBot,
        sender: ChatSender,
        rooms: Rooms,
        directory: Directory,
        incidents_chat: int | str | None,
        stakeholders_chat: int | str | None = None,
    ) -> None:
        self.bot = bot
        self.sender = sender
        self.rooms = rooms
        self.directory = directory
        self.incidents_chat = incidents_chat
        self.stakeholders_chat = stakeholders_chat
        self._forum: dict[int, bool] = {}
        self._topic_locks: dict[int, asyncio.Lock] = {}

    async def incident_of(
        self, chat_id: int, thread: int | None, reply_to: int | None
    ) -> int | None:
        """Incident N when the message is in N's forum topic or answers one of N's posts."""
        if thread:
            number = await self.rooms.incident_at(PLATFORM, Place(str(chat_id), str(thread)))
            if number is not None:
                return number
        if not reply_to:
            return None
        return await self.rooms.incident_of_message(PLATFORM, str(chat_id), str(reply_to))

    async def remember(self, chat_id: int, message_ids: list[int], message: Outbound) -> None:
        """The messages just posted for an incident. Never raises: the post is out, and
        failing here would send it again."""
        if message.incident is None:
            return
        try:
            await self.rooms.remember(
                PLATFORM, str(chat_id), [str(m) for m in message_ids], message.incident
            )
        except Exception as exc:
            log.warning("telegram: posted message not recorded", extra={"error": str(exc)[:200]})

    def reaches(self, destination: Destination) -> bool:
        if destination.kind in ("incidents", "incident"):
            return self.incidents_chat is not None
        if destination.kind == "stakeholders":
            return self.stakeholders_chat is not None
        if destination.kind == "dm":
            pid = self.directory.platform_id(destination.arg, PLATFORM)
            return pid is not None and pid.lstrip("-").isdigit()
        return False

    async def address(self, message: Outbound) -> tuple[int, int | None, int | None]:
        """(chat, forum topic, message to reply to) of a destination."""
        dest = message.destination
        if dest.kind == "dm":
            pid = self.directory.platform_id(dest.arg, PLATFORM)
            if pid is None:
                raise DeliveryError(f"{dest.arg} has no Telegram id", permanent=True)
            return int(pid), None, None
        if dest.kind == "stakeholders":  # its own chat, never an incident's topic
            if self.stakeholders_chat is None:
                raise DeliveryError(
                    "channels.stakeholders.telegram is not configured", permanent=True
                )
            return int(self.stakeholders_chat), None, None
        if self.incidents_chat is None:
            raise DeliveryError("channels.incidents.telegram is not configured", permanent=True)
        chat = int(self.incidents_chat)
        if dest.kind == "incidents":
            return chat, None, None
        number = int(dest.arg)
        if await self._is_forum(chat):
            title = str(message.data.get("title") or "")
            if not title:
                facts = await self.rooms.facts(number)
                title = facts.title if facts is not None else ""
            return chat, await self._topic(chat, number, title), None
        return chat, None, await self._announcement(number)

    async def _announcement(self, number: int) -> int | None:
        """The announcement's message id to reply under; lanes run concurrently, so a
        post waits (briefly) for its announcement to go out first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ANNOUNCEMENT_WAIT
        while True:
            posted = await self.rooms.posted(PLATFORM, number, "announce")
            if posted is None or posted.status != "pending":
                break
            if loop.time() >= deadline:
                raise DeliveryError("waiting for the announcement to reply to", retry_after=1)
            await asyncio.sleep(0.1)
        ref = posted.ref if posted is not None else None
        return int(ref["message_id"]) if ref and ref.get("message_id") else None

    async def _is_forum(self, chat_id: int) -> bool:
        if chat_id not in self._forum:
            try:
                chat = await self.bot.get_chat(chat_id)
            except TelegramError as exc:
                raise as_delivery_error(exc, "getChat") from exc
            self._forum[chat_id] = bool(chat.is_forum)
        return self._forum[chat_id]

    async def _topic(self, chat_id: int, number: int, title: str) -> int:
        """Incident N's forum topic, created on first use and recorded at once, so a
        restart finds it instead of creating a second one."""
        async with self._topic_locks.setdefault(number, asyncio.Lock()):
            known = await self.rooms.of(PLATFORM, number)
            if known is not None and known.thread_id:
                return int(known.thread_id)
            name = f"incident-{number} {title}".strip()[:128]
            try:
                topic = await self.bot.create_forum_topic(chat_id, name)
            except TelegramError as exc:
                # A lost answer here may leave an extra empty topic behind: the Bot API
                # cannot list topics. Residual risk, see the report.
                raise as_delivery_error(exc, "createForumTopic") from exc
            self.sender.saw(chat_id, topic.message_thread_id)
            # Recorded meanwhile (another replica): that one is the room.
            place = await self.rooms.save(
                PLATFORM, number, Place(str(chat_id), str(topic.message_thread_id))
            )
            log.info("telegram topic created", extra={"incident": number, "chat_id": chat_id})
            return int(place.thread_id or topic.message_thread_id)
