"""The room store: where each incident lives on each chat platform, for both platforms.

An incident's room (a Slack channel or thread, a Telegram forum topic or reply
chain), the messages PIRA posted for it (a reply to one is about that incident),
the codes of buttons too long for a platform's payload, the state of an
incident's announcement (to thread under it) and what the incident still offers.
Adapters ask here and never touch a table. Every method runs its database work on
the store's threads (``Store.run``): callable from the event loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.clock import Clock
from bot.store import Store
from bot.store.models import ButtonCode, Incident, OutboxMessage, Room, RoomMessage
from bot.views import IncidentViews


@dataclass(frozen=True)
class Place:
    """A room: a chat and, where the platform has them, a thread or topic in it."""

    chat_id: str
    thread_id: str | None


@dataclass(frozen=True)
class Posted:
    """An outbox post's delivery state and its platform reference (once sent)."""

    status: str
    ref: dict[str, Any] | None


@dataclass(frozen=True)
class IncidentFacts:
    """What an adapter may know of an incident to name, fill and update its room."""

    number: int
    title: str
    detected_at: datetime
    involved: frozenset[str]  # people keys: the commander and the reporter
    offered: frozenset[str]  # the commands of the buttons it offers in its state now


class Rooms:
    def __init__(self, *, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    # ---- an incident's room ----------------------------------------------------------

    async def of(self, platform: str, number: int) -> Place | None:
        return await self.store.run(self._of, platform, number)

    def _of(self, platform: str, number: int) -> Place | None:
        with self.store.read() as s:
            row = s.scalar(
                select(Room).where(Room.platform == platform, Room.incident_number == number)
            )
            return None if row is None else Place(row.chat_id, row.thread_id)

    async def save(self, platform: str, number: int, place: Place) -> Place:
        """Record incident N's room; when another process recorded one first, that
        one is the room (returned), so every post goes to one place."""
        return await self.store.run(self._save, platform, number, place)

    def _save(self, platform: str, number: int, place: Place) -> Place:
        try:
            with self.store.transaction() as s:
                s.add(
                    Room(
                        platform=platform,
                        incident_number=number,
                        chat_id=place.chat_id,
                        thread_id=place.thread_id,
                        created_at=self.clock.now(),
                    )
                )
        except IntegrityError:
            return self._of(platform, number) or place
        return place

    async def incident_at(self, platform: str, place: Place) -> int | None:
        """The incident whose room is exactly ``place`` (a thread, or a whole chat)."""
        return await self.store.run(self._incident_at, platform, place)

    def _incident_at(self, platform: str, place: Place) -> int | None:
        query = select(Room.incident_number).where(
            Room.platform == platform, Room.chat_id == place.chat_id
        )
        query = query.where(
            Room.thread_id == place.thread_id if place.thread_id else Room.thread_id.is_(None)
        )
        with self.store.read() as s:
            number = s.scalar(query.limit(1))
        return None if number is None else int(number)

    # ---- messages posted for an incident -----------------------------------------------

    async def remember(
        self, platform: str, chat_id: str, message_ids: Iterable[str], incident_id: int
    ) -> None:
        """Messages PIRA posted for an incident (by its row id, as the outbox holds it);
        a delivery repeated records nothing new."""
        await self.store.run(self._remember, platform, chat_id, list(message_ids), incident_id)

    def _remember(
        self, platform: str, chat_id: str, message_ids: list[str], incident_id: int
    ) -> None:
        try:
            with self.store.transaction() as s:
                incident = s.get(Incident, incident_id)
                if incident is None:
                    return
                for mid in message_ids:
                    if s.get(RoomMessage, (platform, chat_id, mid)) is None:
                        s.add(
                            RoomMessage(
                                platform=platform,
                                chat_id=chat_id,
                                message_id=mid,
                                incident_number=incident.number,
                            )
                        )
        except IntegrityError:
            pass  # the same delivery recorded meanwhile on another replica: the same rows

    async def incident_of_message(self, platform: str, chat_id: str, message_id: str) -> int | None:
        return await self.store.run(self._incident_of_message, platform, chat_id, message_id)

    def _incident_of_message(self, platform: str, chat_id: str, message_id: str) -> int | None:
        with self.store.read() as s:
            row = s.get(RoomMessage, (platform, chat_id, message_id))
            return None if row is None else row.incident_number

    # ---- buttons too long for the platform -------------------------------------------

    async def keep_button(self, code: str, command: str, prompt: str | None) -> None:
        await self.store.run(self._keep_button, code, command, prompt)

    def _keep_button(self, code: str, command: str, prompt: str | None) -> None:
        try:
            with self.store.transaction() as s:
                if s.get(ButtonCode, code) is None:
                    s.add(ButtonCode(code=code, command=command, prompt=prompt))
        except IntegrityError:
            pass  # the same code is the same command (a hash of it)

    async def button(self, code: str) -> tuple[str, str | None] | None:
        """The command (and question) behind a button code, or None."""
        return await self.store.run(self._button, code)

    def _button(self, code: str) -> tuple[str, str | None] | None:
        with self.store.read() as s:
            row = s.get(ButtonCode, code)
            return None if row is None else (row.command, row.prompt)

    # ---- the incident's posts and state ---------------------------------------------

    async def posted(self, platform: str, number: int, post: str) -> Posted | None:
        """Incident N's post (``announce``, ``ticket``) on ``platform``: delivered yet?"""
        return await self.store.run(self._posted, platform, number, post)

    def _posted(self, platform: str, number: int, post: str) -> Posted | None:
        with self.store.read() as s:
            row = s.scalar(
                select(OutboxMessage).where(OutboxMessage.key == f"inc{number}:{post}@{platform}")
            )
            return None if row is None else Posted(row.status, row.remote_ref)

    async def facts(self, number: int) -> IncidentFacts | None:
        return await self.store.run(self._facts, number)

    def _facts(self, number: int) -> IncidentFacts | None:
        with self.store.read() as s:
            incident = s.scalar(select(Incident).where(Incident.number == number))
            if incident is None:
                return None
            return IncidentFacts(
                number=incident.number,
                title=incident.title,
                detected_at=incident.detected_at,
                involved=frozenset(p for p in (incident.commander, incident.reporter) if p),
                offered=frozenset(b.command for b in IncidentViews.buttons(incident)),
            )
