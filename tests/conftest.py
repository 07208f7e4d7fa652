"""Shared fixtures: a fresh database per test (SQLite, or a PostgreSQL schema when
PIRA_TEST_DATABASE_URL is set) and an App factory."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from bot.app import App
from bot.clock import Clock
from bot.settings import Config, Env
from tests.support import travel

PG_URL = os.environ.get("PIRA_TEST_DATABASE_URL", "").strip()
# A database call on the event loop's thread raises in every test (and in the bot
# processes the tests start): bot/store/db.py, Store.run.
os.environ.setdefault("PIRA_STRICT_EVENT_LOOP", "1")
# Files the console adapter writes (postmortems, charts, invites) go to a folder of
# the run's, never into the working tree; tests that look at them set their own.
os.environ.setdefault("PIRA_FILES_DIR", tempfile.mkdtemp(prefix="pira-test-files-"))
_TRAVEL = pytest.StashKey[datetime]()


def pytest_configure(config: pytest.Config) -> None:
    # PIRA_TEST_TRAVEL moves the clock of the whole run (tests/support/travel.py).
    when = travel.start()
    if when is not None:
        config.stash[_TRAVEL] = when


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.stash.get(_TRAVEL, None) is None:
        return
    skip = pytest.mark.skip(reason="the run moved PIRA's clock; this test needs the real one")
    for item in items:
        if item.get_closest_marker("real_clock"):
            item.add_marker(skip)


def pytest_report_header(config: pytest.Config) -> str | None:
    when = config.stash.get(_TRAVEL, None)
    return f"clock moved: the run starts at {when.isoformat()}" if when else None


@contextlib.contextmanager
def fresh_database(folder: Path) -> Iterator[str]:
    """The URL of a database no other test uses: a SQLite file in ``folder``, or a
    PostgreSQL schema of its own (dropped afterwards) when PIRA_TEST_DATABASE_URL is set."""
    if not PG_URL:
        yield f"sqlite:///{folder / 'pira.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    """A database no other test uses."""
    with fresh_database(tmp_path) as url:
        yield url


def env_for(db_url: str, **extra: str) -> Env:
    return Env.from_environ({"PIRA_DATABASE_URL": db_url, **extra})


@pytest.fixture
def make_app(db_url: str) -> Callable[..., App]:
    """``make_app(config=Config(...), clock=FakeClock(), env={...})`` → an App (not started)."""

    def build(
        config: Config | None = None, clock: Clock | None = None, env: dict[str, Any] | None = None
    ) -> App:
        return App(config=config or Config(), env=env_for(db_url, **(env or {})), clock=clock)

    return build


@pytest.fixture
def hanging_server() -> Iterator[str]:
    """A loopback socket that accepts connections and never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()
