"""The neutral types every layer speaks: Message in, Reply out, Post to the outbox."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Room:
    """Where a message was written. ``incident`` is set when the room (channel,
    thread or topic) belongs to incident N, so ``#N`` may be left out there."""

    platform: str
    chat_id: str = ""
    thread_id: str | None = None
    incident: int | None = None


@dataclass(frozen=True)
class Message:
    """One command as a user typed (or clicked) it, whatever the platform."""

    platform: str
    user_id: str
    text: str
    room: Room
    user_name: str = ""
    # For a button click: the platform's reference to the clicked message, so the
    # adapter can update it in place.
    clicked: dict[str, Any] | None = None


@dataclass(frozen=True)
class Button:
    """A click runs ``command`` as if the clicker typed it. With ``prompt``, the
    platform first asks the clicker for text (a Slack modal, a Telegram reply) and
    runs ``command`` followed by that text."""

    label: str
    command: str
    style: str = "default"  # default | primary | danger
    prompt: str | None = None

    def to_json(self) -> dict[str, str]:
        data = {"label": self.label, "command": self.command, "style": self.style}
        if self.prompt:
            data["prompt"] = self.prompt
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Button:
        return cls(
            label=data["label"],
            command=data["command"],
            style=data.get("style", "default"),
            prompt=data.get("prompt"),
        )


@dataclass(frozen=True)
class Reply:
    """The answer to the person who sent a command (not a post in a room).

    ``template`` and ``data`` are rendered per platform; ``plain`` replies use
    the ``text`` template. ``ok`` is False for usage errors and refusals.
    """

    template: str
    data: dict[str, Any] = field(default_factory=dict)
    buttons: tuple[Button, ...] = ()
    ok: bool = True
    # For the audit log: what happened, when it is not plain ok/rejected (e.g. "failed":
    # the platform's API refused an action).
    outcome: str | None = None

    @classmethod
    def plain(cls, text: str, *, ok: bool = True, buttons: tuple[Button, ...] = ()) -> Reply:
        return cls(template="text", data={"text": text}, ok=ok, buttons=buttons)

    @classmethod
    def error(cls, text: str, *, outcome: str | None = None) -> Reply:
        return cls(template="text", data={"text": text}, ok=False, outcome=outcome)


@dataclass(frozen=True)
class Destination:
    """Where a post goes, platform-neutral: ``incidents``, ``incident:N`` or ``dm:<person>``."""

    value: str

    @classmethod
    def incidents(cls) -> Destination:
        return cls("incidents")

    @classmethod
    def incident(cls, number: int) -> Destination:
        return cls(f"incident:{number}")

    @classmethod
    def stakeholders(cls) -> Destination:
        """``channels.stakeholders``: plain-language news for people outside the response."""
        return cls("stakeholders")

    @classmethod
    def dm(cls, person: str) -> Destination:
        return cls(f"dm:{person}")

    @property
    def kind(self) -> str:
        return self.value.partition(":")[0]

    @property
    def arg(self) -> str:
        return self.value.partition(":")[2]

    def label(self) -> str:
        """The console's tag: ``#incidents``, ``#incident-3``, ``DM @alice``."""
        if self.kind == "incident":
            return f"#incident-{self.arg}"
        if self.kind == "dm":
            return f"DM @{self.arg}"
        return f"#{self.value}"
