"""Timers planned on another replica wake the leader at once (PostgreSQL).

A commit that plans a timer wakes this process's scheduler (bot/timer_wake.py). A
replica that does not lead plans timers too (a command it served, an alert it
received); without more, the leader would see them on its next poll. On PostgreSQL the
planning transaction also sends ``NOTIFY`` with the earliest due time it planned, on
the installation's channel (``pira_timers:<schema>``: installations or test runs
sharing a database do not hear each other). PostgreSQL delivers it at the commit, and
never for a transaction rolled back. The leader ``LISTEN``s on a connection of its own
and moves its wake-up as for its own plans; its own notifications come back too and
change nothing (the wake-up is already there).

A lost listening connection is opened again with back-off; meanwhile the poll is the
safety net, as on SQLite (one replica: nothing to tell).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from bot.timer_wake import earliest_planned

log = logging.getLogger("pira.timers")

CHANNEL = "pira_timers"
MAX_BACKOFF = 30.0


def announce_plans(sessions: Any) -> None:
    """Every transaction of ``sessions`` (a PostgreSQL store's sessionmaker) that plans a
    timer notifies the leader."""
    event.listen(sessions, "after_flush", _notify)


def _notify(session: Session, _context: Any) -> None:
    due = earliest_planned(session)
    if due is None:
        return
    # On the transaction's connection (no autoflush: this runs inside a flush).
    session.connection().exec_driver_sql(
        "SELECT pg_notify(%s || current_schema(), %s)", (f"{CHANNEL}:", due.isoformat())
    )


def conninfo(url: URL) -> str:
    """A libpq URI for psycopg from the store's SQLAlchemy URL (options kept)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class PlanListener:
    """The leader's side: ``on_due(due)`` for every timer another transaction planned."""

    def __init__(self, url: URL, on_due: Callable[[datetime], Awaitable[None]]) -> None:
        self._conninfo = conninfo(url)
        self._on_due = on_due
        self.listening = asyncio.Event()  # set while LISTEN is in force (tests wait on it)

    async def run(self) -> None:
        backoff = 1.0
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: the poll covers meanwhile
                if self.listening.is_set():
                    backoff = 1.0  # it had worked: the first retry comes soon
                log.warning(
                    "timer notifications interrupted; listening again",
                    extra={"error": type(exc).__name__, "retry_in_s": backoff},
                )
            self.listening.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _listen(self) -> None:
        async with await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True) as conn:
            row = await (await conn.execute("SELECT current_schema()")).fetchone()
            channel = f"{CHANNEL}:{row[0] if row else 'public'}"
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            self.listening.set()
            async for note in conn.notifies():
                try:
                    due = datetime.fromisoformat(note.payload)
                except ValueError:
                    continue  # not ours
                await self._on_due(due)
