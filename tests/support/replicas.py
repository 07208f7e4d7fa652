"""Several real ``pira run`` processes on one PostgreSQL database, for tests of what
replicas do together (migrations, leadership, delivery, deployment).

Each replica is ``python -m bot run`` started from the repository root with:

* stdin from ``/dev/null`` and no chat credentials, so ``pira run`` serves HTTP
  only (health, metrics, webhooks) instead of the console (see ``bot/cli.py``);
* the environment of the test run minus every inherited ``PIRA_*`` variable, plus
  ``PIRA_DATABASE_URL`` (one database for all), ``PIRA_HTTP_PORT`` (a free loopback
  port of its own, kept across restarts), ``PIRA_CONFIG`` (when a configuration is
  given) and ``extra_env`` (e.g. ``PIRA_SLACK_API_URL`` of a protocol fake);
* on PostgreSQL, ``application_name=pira-<group>-r<i>`` added to the database URL,
  so a replica's sessions can be told apart in ``pg_stat_activity``;
* stdout and stderr (JSON log lines) in files under ``workdir``, one pair per
  process started: ``replica0-run1.stderr.log``, ``replica0-run2.stderr.log`` after
  a restart, and so on.

Which replica leads is read from the database: the ``leases`` row written by
``bot/leader.py`` names its holder ``host:pid:nonce``, and the pid is the pid of the
process this harness started (no shell in between), so :meth:`Replicas.leader`
maps it to a replica index.

Every wait polls for an event with a deadline; none sleeps a fixed time.

Example::

    def test_failover(replicas: ReplicaFactory) -> None:
        group = replicas(2, config={"leader_lease": "3s"}).start()
        group.wait_ready()
        first = group.wait_leader()
        killed_at = group.kill9(first)
        second = group.wait_leader(exclude=first, timeout=10)
        ...

Use it through the ``replicas`` fixture (``from tests.support.replicas import
ReplicaFactory, replicas``), which skips without PostgreSQL
(``PIRA_TEST_DATABASE_URL``; SQLite is single-replica), gives every test a schema
of its own (the ``db_url`` fixture) and kills every process at teardown; or as a
context manager, ``with Replicas(db_url=..., workdir=...) as group:``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pytest
import yaml
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from bot.leader import LEASE
from bot.store.models import Lease
from tests.support.travel import pira_command

ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("PIRA_TEST_DATABASE_URL", "").strip()
POLL = 0.05  # seconds between two looks at a process, its logs or the database


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Run:
    """One process started for a replica (a restart is a new run)."""

    number: int
    proc: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    started: float  # time.monotonic() when it was started
    _files: list[IO[bytes]] = field(default_factory=list, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close_files(self) -> None:
        for f in self._files:
            f.close()
        self._files.clear()


def read_events(path: Path) -> list[dict[str, Any]]:
    """The log lines of a file as dicts. A line that is not JSON (e.g. ``pira: cannot
    start: ...`` printed by the CLI) is ``{"event": <line>, "raw": True}``."""
    events: list[dict[str, Any]] = []
    if not path.exists():
        return events
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            parsed = json.loads(line)
        except ValueError:
            parsed = None
        events.append(parsed if isinstance(parsed, dict) else {"event": line, "raw": True})
    return events


@dataclass(eq=False)  # compared (and hashed) by identity
class Replica:
    index: int
    port: int
    runs: list[Run] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def run(self) -> Run:
        """The newest process of this replica."""
        if not self.runs:
            raise AssertionError(f"replica {self.index} was never started")
        return self.runs[-1]

    @property
    def pid(self) -> int:
        return self.run.pid

    @property
    def alive(self) -> bool:
        return bool(self.runs) and self.run.proc.poll() is None

    def events(self, event: str | None = None, *, all_runs: bool = False) -> list[dict[str, Any]]:
        """Log lines of the newest process (every process with ``all_runs``), optionally
        only those whose ``event`` is exactly ``event``."""
        found: list[dict[str, Any]] = []
        for run in self.runs if all_runs else self.runs[-1:]:
            found += read_events(run.stderr)
        return [e for e in found if event is None or e.get("event") == event]

    def tail(self, chars: int = 3000) -> str:
        """The end of the newest process's stderr, for failure messages."""
        if not self.runs or not self.run.stderr.exists():
            return ""
        return self.run.stderr.read_text(errors="replace")[-chars:]


@dataclass(frozen=True)
class LeaseRow:
    holder: str
    expires_at: datetime  # aware UTC
    replica: int | None  # the replica whose current process is the holder


class Replicas:
    """N ``pira run`` processes on one database; see the module's docstring."""

    def __init__(
        self,
        *,
        db_url: str,
        workdir: Path,
        count: int = 2,
        config: Mapping[str, Any] | Path | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        """``config``: a YAML file (``PIRA_CONFIG``), or a mapping written to one in
        ``workdir``; ``extra_env``: added to every replica's environment."""
        self.db_url = db_url
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        if isinstance(config, Mapping):
            path = self.workdir / "pira.yaml"
            path.write_text(yaml.safe_dump(dict(config)))
            config = path
        self.config = config
        self.extra_env = dict(extra_env or {})
        self.replicas = [Replica(index=i, port=free_port()) for i in range(count)]
        self._token = uuid.uuid4().hex[:8]
        self._engine: Engine | None = None

    # ---- processes ---------------------------------------------------------------

    def __enter__(self) -> Replicas:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __getitem__(self, index: int) -> Replica:
        return self.replicas[index]

    def __len__(self) -> int:
        return len(self.replicas)

    def __iter__(self) -> Iterator[Replica]:
        return iter(self.replicas)

    def application_name(self, index: int) -> str:
        """The PostgreSQL ``application_name`` of the replica's connections: its
        sessions in ``pg_stat_activity`` (see :meth:`sessions`)."""
        return f"pira-{self._token}-r{index}"

    def database_url(self, index: int) -> str:
        """The replica's ``PIRA_DATABASE_URL``: the group's, with the replica's
        ``application_name`` on PostgreSQL."""
        if not self.db_url.startswith("postgresql"):
            return self.db_url
        sep = "&" if "?" in self.db_url else "?"
        return f"{self.db_url}{sep}application_name={self.application_name(index)}"

    def env(self, replica: Replica) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIRA_")}
        env.update(
            PIRA_DATABASE_URL=self.database_url(replica.index),
            PIRA_HTTP_HOST="127.0.0.1",
            PIRA_HTTP_PORT=str(replica.port),
            PYTHONUNBUFFERED="1",
        )
        if self.config is not None:
            env["PIRA_CONFIG"] = str(self.config)
        env.update(self.extra_env)
        return env

    def start(self, indices: Iterable[int] | None = None) -> Replicas:
        """Start every replica (or those of ``indices``) that is not running, back to
        back with nothing in between, so they start as nearly at once as the machine
        allows. Returns at once; see :meth:`wait_ready`."""
        for i in self._indices(indices):
            if not self.replicas[i].alive:
                self._launch(self.replicas[i])
        return self

    def _launch(self, replica: Replica) -> None:
        number = len(replica.runs) + 1
        stem = self.workdir / f"replica{replica.index}-run{number}"
        out_path, err_path = Path(f"{stem}.stdout.log"), Path(f"{stem}.stderr.log")
        out, err = out_path.open("wb"), err_path.open("wb")
        proc = subprocess.Popen(
            pira_command("run"),
            cwd=ROOT,
            env=self.env(replica),
            stdin=subprocess.DEVNULL,  # not a terminal: HTTP only, never the console
            stdout=out,
            stderr=err,
        )
        replica.runs.append(Run(number, proc, out_path, err_path, time.monotonic(), [out, err]))

    def wait_ready(self, timeout: float = 30, indices: Iterable[int] | None = None) -> None:
        """Wait until ``GET /readyz`` answers 200 on every replica (or those of
        ``indices``). Fails at once, with its log, when a replica's process exits."""
        deadline = time.monotonic() + timeout
        waiting = {self.replicas[i] for i in self._indices(indices)}
        while waiting:
            for replica in list(waiting):
                code = replica.run.proc.poll()
                if code is not None:
                    raise AssertionError(
                        f"replica {replica.index} exited with {code} before it was ready:\n"
                        f"{replica.tail()}"
                    )
                if _get_status(f"{replica.url}/readyz") == 200:
                    waiting.discard(replica)
            if not waiting:
                return
            if time.monotonic() > deadline:
                names = sorted(r.index for r in waiting)
                tails = "\n".join(f"--- replica {r.index}:\n{r.tail()}" for r in waiting)
                raise AssertionError(f"replicas {names} not ready after {timeout}s\n{tails}")
            time.sleep(POLL)

    def kill9(self, index: int) -> float:
        """SIGKILL the replica's process and reap it; the ``time.monotonic()`` of the
        kill. (Reaping matters: a zombie still answers ``kill(pid, 0)``, which
        ``bot/leader.py`` uses to see that a holder on this host is gone.)"""
        run = self.replicas[index].run
        run.proc.send_signal(signal.SIGKILL)
        at = time.monotonic()
        run.proc.wait(timeout=10)
        run.close_files()
        return at

    def sigstop(self, index: int) -> float:
        """Freeze the replica (a long GC pause, a stalled VM); the monotonic time."""
        self.replicas[index].run.proc.send_signal(signal.SIGSTOP)
        return time.monotonic()

    def sigcont(self, index: int) -> float:
        """Let a frozen replica carry on; the monotonic time."""
        self.replicas[index].run.proc.send_signal(signal.SIGCONT)
        return time.monotonic()

    def terminate(self, index: int, timeout: float = 20) -> int:
        """SIGTERM (a clean stop: the leader hands over its lease) and wait for the exit;
        its exit code. Fails when the process does not exit within ``timeout``."""
        run = self.replicas[index].run
        if run.proc.poll() is None:
            run.proc.send_signal(signal.SIGCONT)  # a frozen process could not stop
            run.proc.terminate()
        try:
            code = run.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"replica {index} did not stop within {timeout}s of SIGTERM:\n"
                f"{self.replicas[index].tail()}"
            ) from None
        run.close_files()
        return code

    def restart(self, index: int) -> None:
        """Stop the replica cleanly if it still runs, and start a new process on the
        same port (new log files). Returns at once; see :meth:`wait_ready`."""
        if self.replicas[index].alive:
            self.terminate(index)
        self._launch(self.replicas[index])

    def close(self) -> None:
        """Kill every process (frozen ones too) and forget the database engine."""
        for replica in self.replicas:
            for run in replica.runs:
                if run.proc.poll() is None:
                    run.proc.kill()
                    # Carry on with the others even if one is slow to die.
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        run.proc.wait(timeout=10)
                run.close_files()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # ---- logs ----------------------------------------------------------------------

    def wait_event(
        self, index: int, event: str, timeout: float = 10, *, count: int = 1
    ) -> dict[str, Any]:
        """The ``count``-th log line of the replica's newest process whose ``event`` is
        ``event``, as soon as it is written."""
        replica = self.replicas[index]
        deadline = time.monotonic() + timeout
        while True:
            found = replica.events(event)
            if len(found) >= count:
                return found[count - 1]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"replica {index} did not log {event!r} (×{count}) in {timeout}s:\n"
                    f"{replica.tail()}"
                )
            time.sleep(POLL)

    # ---- the database -------------------------------------------------------------

    @property
    def db(self) -> Engine:
        """An engine on the replicas' database (the test's schema), for assertions."""
        if self._engine is None:
            self._engine = create_engine(self.db_url, pool_pre_ping=True)
        return self._engine

    def lease(self) -> LeaseRow | None:
        """The leader lease as stored, whatever its state (None before anyone took it)."""
        with Session(self.db) as s:
            row = s.get(Lease, LEASE)
            if row is None:
                return None
            return LeaseRow(row.holder, row.expires_at, self._replica_of(row.holder))

    def sessions(self) -> list[dict[str, Any]]:
        """The replicas' open PostgreSQL sessions: ``replica``, ``pid``, ``state``,
        ``wait_event_type``, ``wait_event``, ``query`` (e.g. to see who waits for a lock)."""
        names = {self.application_name(r.index): r.index for r in self.replicas}
        with self.db.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT application_name, pid, state, wait_event_type, wait_event, query"
                    " FROM pg_stat_activity WHERE application_name = ANY(:names)"
                ),
                {"names": list(names)},
            ).mappings()
            return [{"replica": names[r["application_name"]], **r} for r in rows]

    def leader(self) -> int | None:
        """The replica whose current process holds an unexpired lease; None when the
        lease is absent, expired or released (a clean stop sets it expired), or held by
        a process that is no replica's current one (e.g. a run before a restart)."""
        row = self.lease()
        if row is None or row.expires_at <= datetime.now(UTC):
            return None
        return row.replica

    def wait_leader(self, timeout: float = 15, *, exclude: int | None = None) -> int:
        """Wait until some replica (other than ``exclude``) leads; its index."""
        deadline = time.monotonic() + timeout
        while True:
            leader = self.leader()
            if leader is not None and leader != exclude:
                return leader
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no leader other than {exclude} after {timeout}s; lease: {self.lease()}\n"
                    + self.summary()
                )
            time.sleep(POLL)

    def summary(self) -> str:
        """Every replica's migration and leadership log lines, and what the CLI printed
        (e.g. ``pira: cannot start: ...``), for failure messages."""
        lines = []
        for replica in self.replicas:
            for e in replica.events(all_runs=True):
                if e.get("logger") in ("pira.store", "pira.leader", "pira.app") or e.get("raw"):
                    lines.append(f"replica {replica.index}: {e.get('ts')} {e.get('event')}")
        return "\n".join(lines)

    def _replica_of(self, holder: str) -> int | None:
        host, _, rest = holder.partition(":")
        pid = rest.partition(":")[0]
        if host != socket.gethostname() or not pid.isdigit():
            return None
        for replica in self.replicas:
            if replica.runs and replica.pid == int(pid):
                return replica.index
        return None

    def _indices(self, indices: Iterable[int] | None) -> list[int]:
        return list(range(len(self.replicas))) if indices is None else list(indices)


def _get_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None  # not listening yet, reset, timed out


ReplicaFactory = Callable[..., Replicas]


@pytest.fixture
def replicas(db_url: str, tmp_path: Path) -> Iterator[ReplicaFactory]:
    """``replicas(count=2, config={...} | Path, extra_env={...})`` → :class:`Replicas`
    (not started) on this test's PostgreSQL schema; every process is killed at
    teardown, before the schema is dropped."""
    if not PG_URL:
        pytest.skip(
            "several replicas need PostgreSQL: set PIRA_TEST_DATABASE_URL "
            "(SQLite is the single-replica store)"
        )
    made: list[Replicas] = []

    def make(
        count: int = 2,
        *,
        config: Mapping[str, Any] | Path | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> Replicas:
        group = Replicas(
            db_url=db_url,
            workdir=tmp_path / f"replicas{len(made) + 1}",
            count=count,
            config=config,
            extra_env=extra_env,
        )
        made.append(group)
        return group

    try:
        yield make
    finally:
        for group in made:
            group.close()
