"""The database: one engine, short transactions, migrations applied at start."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from bot.store.writer import UrgentFirst, WriterLock

MIGRATIONS = Path(__file__).parent / "migrations"

# The PostgreSQL advisory lock held while migrating: one fixed 64-bit key ("PIRAMIGR"
# in ASCII) for every PIRA database. Advisory locks are database-wide, not per
# schema, so replicas of unrelated PIRA installations sharing one database (or
# tests, one schema each) merely take turns.
MIGRATION_LOCK_KEY = 0x5049_5241_4D49_4752

log = logging.getLogger("pira.store")

P = ParamSpec("P")
T = TypeVar("T")

# Database threads: enough for the timers, the outbox, alert batches and a burst of
# commands at once; every unit of work is short (no awaits inside a transaction).
DB_THREADS = 8
# Set in the test suite (tests/conftest.py): a database call made on the thread that
# runs the event loop raises instead of being only logged.
STRICT_ENV = "PIRA_STRICT_EVENT_LOOP"


class BlockingCallOnLoop(RuntimeError):
    """A database call was made on the event loop's thread (use ``await store.run``)."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers don't block the writer; busy_timeout: a second process waits
    # instead of failing with "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# PostgreSQL ends a session whose transaction has been idle this long (its locks go
# with it). PIRA's transactions never wait on anything but the database, so only a
# frozen process (SIGSTOP, a stalled VM) holds one open: without this, a frozen
# leader in the middle of a commit would hold the lease row and block the failover.
IDLE_IN_TRANSACTION = "5s"


def _postgres_session(dbapi_connection: Any, _record: Any) -> None:
    with dbapi_connection.cursor() as cursor:
        cursor.execute(f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}'")
    dbapi_connection.commit()


class Store:
    """Owns the engine; ``with store.transaction() as s:`` is one atomic unit of work."""

    def __init__(self, url: str) -> None:
        self.url = url
        # Connections kept open: one for each database thread, the lease's, the
        # scheduler's firing thread and a spare. SQLAlchemy's default keeps 5 and closes
        # whatever it opened beyond them on return: under load every transaction past
        # the fifth connected anew (a new server process on PostgreSQL each time).
        self.engine: Engine = create_engine(
            url, pool_pre_ping=True, pool_size=DB_THREADS + 3, max_overflow=10, future=True
        )
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        elif self.engine.dialect.name == "postgresql":
            event.listen(self.engine, "connect", _postgres_session)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Who goes first (bot/store/writer.py). SQLite: this process's writers take
        # turns, not by polling SQLite's lock, the urgent first. PostgreSQL: side by
        # side, but nothing begins while an urgent one (a timer batch) runs.
        self._turns: WriterLock | UrgentFirst = (
            WriterLock() if self.engine.dialect.name == "sqlite" else UrgentFirst()
        )
        self._threads = ThreadPoolExecutor(DB_THREADS, thread_name_prefix="pira-db")
        # The leader's lease on a thread of its own: renewing it must not queue behind a
        # burst of work on the shared threads (10,000 timers due at once put thousands of
        # calls ahead of it, the lease lapsed and the leader stood down mid-burst).
        self._lease_thread = ThreadPoolExecutor(1, thread_name_prefix="pira-db-lease")
        self.strict = os.environ.get(STRICT_ENV, "") == "1"
        # Calls caught on the event loop's thread (strict or not): tests assert none.
        self.calls_on_loop: list[str] = []
        event.listen(self.engine, "before_cursor_execute", self._off_the_loop)

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """The one way to database work from async code: ``fn`` (whole transactions,
        synchronous) runs on one of the store's threads while the event loop goes on
        serving other messages. Context variables travel with it."""
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._threads, call)

    async def run_lease(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """:meth:`run` on the lease's own thread (bot/leader.py), never behind other work."""
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._lease_thread, call)

    def _off_the_loop(self, _conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # not the event loop's thread: a database thread, a CLI, a test
        caller = _product_caller()
        if caller is None:
            return  # a test reading the database itself: not the bot's doing
        what = statement.split(None, 1)[0] if statement.strip() else "?"
        self.calls_on_loop.append(f"{what} from {caller}")
        log.error(
            "database call on the event loop",
            extra={
                "statement": what,
                "caller": caller,
                "on_thread": threading.current_thread().name,
            },
        )
        if self.strict:
            raise BlockingCallOnLoop(f"{what} on the event loop's thread, from {caller}")

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent).

        Safe when several replicas start at once: the first takes a database lock and
        upgrades in one transaction; the others wait for it, then find the schema at
        head and change nothing. Logs ``database migrated`` (with ``from_revision``
        and ``to_revision``) or ``database already at head``.
        """
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        head = ScriptDirectory.from_config(cfg).get_current_head()
        with self.engine.begin() as connection:
            waited = _lock_for_migration(connection)
            # Read under the lock: what a replica that migrated before us left.
            before = MigrationContext.configure(connection).get_current_revision()
            if before == head:
                log.info(
                    "database already at head",
                    extra={"revision": head, "lock_wait_s": round(waited, 3)},
                )
                return
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
            after = MigrationContext.configure(connection).get_current_revision()
        log.info(
            "database migrated",
            extra={
                "from_revision": before,
                "to_revision": after,
                "lock_wait_s": round(waited, 3),
            },
        )

    @property
    def sessions(self) -> sessionmaker[Session]:
        """The session factory (for session events, e.g. bot/timer_wake.py's)."""
        return self._sessions

    @contextmanager
    def transaction(self, *, urgent: bool = False) -> Iterator[Session]:
        """One atomic unit of work. ``urgent`` (a timer batch): on SQLite, it goes before
        the other writers of this process waiting for the database; on PostgreSQL, no
        other transaction or read of this process begins while it runs
        (bot/store/writer.py)."""
        with self._turns.held(urgent=urgent), self._sessions.begin() as session:
            yield session

    @contextmanager
    def lease_transaction(self) -> Iterator[Session]:
        """The leader's lease (bot/leader.py): first in line for SQLite's writer lock; on
        PostgreSQL it neither waits for a timer batch nor holds anything back (a takeover
        may wait seconds for a frozen leader's transactions: this replica's commands
        must not wait with it)."""
        if isinstance(self._turns, UrgentFirst):
            with self._sessions.begin() as session:
                yield session
            return
        with self.transaction(urgent=True) as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        # PostgreSQL: reads, too, wait for an urgent transaction (SQLite's don't block).
        waits = isinstance(self._turns, UrgentFirst)
        with self._turns.held() if waits else nullcontext(), self._sessions() as session:
            yield session

    def ping(self) -> None:
        """One round trip to the database (raises when it cannot be reached)."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    async def reachable(self) -> None:
        await self.run(self.ping)

    def dispose(self) -> None:
        self._threads.shutdown(wait=True, cancel_futures=False)
        self._lease_thread.shutdown(wait=True, cancel_futures=False)
        self.engine.dispose()


_PRODUCT = Path(__file__).resolve().parents[2]
_HERE = Path(__file__).resolve()


def _product_caller() -> str | None:
    """``file:line`` of PIRA's own code (bot/, handlers/) that made this database call
    on the event loop, or None when a test did: a test's own synchronous call (to the
    store, or to a service's synchronous method) is the test's business; a call from
    inside PIRA's coroutines or callbacks is the bot blocking its loop."""
    frame = sys._getframe(2)
    innermost: str | None = None
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        try:
            inside = path.resolve().relative_to(_PRODUCT)
        except ValueError:
            inside = None  # the standard library, SQLAlchemy, any library: look further
        top = inside.parts[0] if inside is not None else ""
        if top in ("bot", "handlers") and path != _HERE:
            innermost = innermost or f"{inside.as_posix()}:{frame.f_lineno}"  # type: ignore[union-attr]
            if frame.f_code.co_flags & (inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR):
                return innermost
        elif top in ("tests", "benchmarks"):
            return None
        frame = frame.f_back  # type: ignore[assignment]
    return innermost


def _lock_for_migration(connection: Connection) -> float:
    """Take the migration lock for the rest of ``connection``'s transaction; the
    seconds spent waiting for it.

    PostgreSQL: a transaction-level advisory lock, released by the commit (or
    rollback) of the migration itself, so a replica that dies mid-way frees it.
    SQLite: ``BEGIN IMMEDIATE`` takes the database's write lock before anything is
    read, so a second process on the same file waits (``busy_timeout``) instead of
    failing on a table the first one has just created.
    """
    started = time.monotonic()
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    elif dialect == "sqlite":
        # pysqlite opens transactions lazily (and never for DDL): open it here.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    return time.monotonic() - started
