"""The database: one engine, short transactions, migrations applied at start."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"

# The PostgreSQL advisory lock held while migrating: one fixed 64-bit key ("PIRAMIGR"
# in ASCII) for every PIRA database. Advisory locks are database-wide, not per
# schema, so replicas of unrelated PIRA installations sharing one database (or
# tests, one schema each) merely take turns.
MIGRATION_LOCK_KEY = 0x5049_5241_4D49_4752

log = logging.getLogger("pira.store")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers don't block the writer; busy_timeout: a second process waits
    # instead of failing with "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Store:
    """Owns the engine; ``with store.transaction() as s:`` is one atomic unit of work."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url, pool_pre_ping=True, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

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

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


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
