"""The durable outbox: every post is stored first, in the transaction of the change
that caused it, then delivered by a worker.

A crash between the change and the post cannot lose the post (it is in the
same commit), and a post is marked sent right after its platform accepted it,
so a restart delivers what was pending, once. Each row has a unique delivery
key: planning the same post twice (a timer run twice) stores it once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.clock import Clock
from bot.messages import Button, Destination
from bot.store.models import OutboxMessage

if TYPE_CHECKING:
    from bot.web import WebServer

log = logging.getLogger("pira.outbox")


@dataclass(frozen=True)
class Attachment:
    """A file that goes with a post (bot/files.py): the post's text is its caption."""

    name: str
    mime: str
    content: bytes


@dataclass(frozen=True)
class Outbound:
    """A rendered post handed to an adapter."""

    key: str
    destination: Destination
    text: str
    buttons: tuple[Button, ...]
    incident: int | None
    template: str
    data: dict[str, Any]
    # An edit of an earlier post (its key without the platform suffix) and that
    # post's platform reference (what ``deliver`` returned for it).
    edit_of: str | None = None
    original_ref: dict[str, Any] | None = None
    # When an earlier attempt at this post was made (by this process or another,
    # before a restart or a change of leader): it may have arrived, so the adapter
    # looks for it before sending again. None: never attempted.
    attempted_at: datetime | None = None
    # The adapter awaits this once the platform's rate limiter admits the post,
    # right before the first request that could post it: the attempt is recorded
    # durably (and the replica's lease checked). It raises Fenced: do not send.
    admitted: Callable[[], Awaitable[None]] | None = None
    # A file posted with the text (a postmortem, an invite, a chart): Slack uploads it
    # unshared and shares it by the post, Telegram sends a document or photo, the
    # console writes it and prints its path.
    file: Attachment | None = None


class FenceCheck(Protocol):
    """The lease the leader's work runs under (bot/leader.py's Fence): ``valid`` on this
    process's clock, ``check`` in the transaction that commits the work."""

    def valid(self) -> bool: ...
    def check(self, s: Session) -> None: ...


# The lease of the post being delivered (set by the delivery engine around an
# adapter's deliver): an adapter's HTTP client checks it again once its connection is
# ready, right before the request is written (a replica frozen in between wakes fenced).
SENDING: ContextVar[FenceCheck | None] = ContextVar("pira_sending_under", default=None)


def still_leading() -> None:
    """Raise :class:`Fenced` when the post being delivered was admitted under a lease
    this replica no longer holds."""
    lease = SENDING.get()
    if lease is not None and not lease.valid():
        raise Fenced("the lease lapsed on this replica")


class Fenced(Exception):
    """This replica no longer holds the lease it started the work with: stop, send
    nothing, mark nothing (the new leader does it)."""


class DeliveryError(Exception):
    """An adapter could not deliver now. ``retry_after`` (seconds) when the platform
    said so; ``permanent`` when retrying cannot help (the row is marked failed)."""

    def __init__(self, reason: str, *, retry_after: float | None = None, permanent: bool = False):
        super().__init__(reason)
        self.retry_after = retry_after
        self.permanent = permanent


@runtime_checkable
class Adapter(Protocol):
    name: str

    def reaches(self, destination: Destination) -> bool:
        """Whether this platform has an address for the destination (a DM needs an id)."""
        ...

    async def deliver(self, message: Outbound) -> dict[str, Any] | None:
        """Send; return the platform's reference to the message (for later edits)."""
        ...


class CheckFailed(Exception):
    """A platform could not say whether a person is reachable (an error that is not its
    answer about the person: a missing scope, a 5xx). The message is shown as is."""


@runtime_checkable
class Contacts(Protocol):
    """A platform that can say whether it could message a person now (``/escalation
    verify``, bot/contacts.py): Slack asks ``users.info``, Telegram ``getChat``."""

    name: str

    def reaches(self, destination: Destination) -> bool: ...

    async def unreachable(self, person: str) -> str | None:
        """Why this platform cannot message ``person`` (a configured person key it has
        an id for), e.g. ``"the account is deactivated"``; None: it can.
        Raises :class:`CheckFailed` (or any error) when it cannot tell."""
        ...


@runtime_checkable
class ChatAdapter(Adapter, Protocol):
    """A chat platform: delivers posts and, once started, receives commands (webhook
    routes on the bot's HTTP server, long polling or a socket of its own)."""

    async def start(self, web: WebServer) -> None: ...

    async def stop(self) -> None: ...

    async def settle(self) -> None:
        """Wait until the commands being handled are answered."""
        ...


def enqueue(
    session: Session,
    *,
    adapters: Iterable[Adapter],
    destination: Destination,
    template: str,
    data: dict[str, Any],
    key: str,
    now: datetime,
    buttons: Sequence[Button] = (),
    incident_id: int | None = None,
    edit_of: str | None = None,
    fresh: bool = False,
    file: int | None = None,
) -> list[str]:
    """Store one post for every adapter that reaches the destination (``file``: the id
    of a stored file posted with it, bot/files.py).

    Returns the platforms it was stored for (empty: nobody can be reached, the
    caller must say so somewhere). A key already stored is not stored again;
    ``fresh``: the caller knows the key is new (skips the look-up).
    """
    stored: list[str] = []
    for adapter in adapters:
        if not adapter.reaches(destination):
            continue
        row_key = f"{key}@{adapter.name}"
        exists = (
            None
            if fresh
            else session.scalar(select(OutboxMessage.id).where(OutboxMessage.key == row_key))
        )
        stored.append(adapter.name)
        if exists is not None:
            continue
        session.add(
            OutboxMessage(
                key=row_key,
                platform=adapter.name,
                destination=destination.value,
                incident_id=incident_id,
                body={
                    "template": template,
                    "data": data,
                    "buttons": [b.to_json() for b in buttons],
                    "edit_of": edit_of,
                    **({"file": file} if file is not None else {}),
                },
                status="pending",
                attempts=0,
                created_at=now,
                next_attempt_at=now,
            )
        )
    return stored


class Poster:
    """Enqueues posts in a caller's transaction, for every platform running now.

    What services use to post: they never see the adapters, only which platforms a
    post was stored for (none: nobody could be reached, and the caller says so)."""

    def __init__(self, *, adapters: Callable[[], Sequence[Adapter]], clock: Clock) -> None:
        self._adapters = adapters
        self.clock = clock

    def platforms(self) -> list[str]:
        return [a.name for a in self._adapters()]

    def post(
        self,
        session: Session,
        incident_id: int | None,
        destination: Destination,
        template: str,
        data: dict[str, Any],
        key: str,
        buttons: Sequence[Button] = (),
        edit_of: str | None = None,
        fresh: bool = False,
        file: int | None = None,
    ) -> list[str]:
        """Store one post; returns the platforms it goes to. ``edit_of``: the key of an
        earlier post this one replaces in place; ``fresh``: the key is known to be new;
        ``file``: a stored file posted with it (bot/files.py)."""
        return enqueue(
            session,
            adapters=self._adapters(),
            destination=destination,
            template=template,
            data=data,
            key=key,
            now=self.clock.now(),
            buttons=buttons,
            incident_id=incident_id,
            edit_of=edit_of,
            fresh=fresh,
            file=file,
        )
