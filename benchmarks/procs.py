"""What every row of ``make bench`` uses: real ``pira run`` processes, fresh databases,
free ports, percentiles, and one repetition's result.

``python -m benchmarks.procs run`` is ``pira run`` with the Telegram adapter's
client-side rate limits lifted (Telegram's documented 30 msg/s, 1/s a chat): B2
measures how fast the bot answers "with limits lifted", which ``pira run`` itself
cannot be told (its limits are Telegram's, on purpose). Nothing else changes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
SIGNING_SECRET = "bench-signing-secret-0123456789abcdef"
AM_TOKEN = "bench-alertmanager-token"


@dataclass
class Rep:
    """One repetition of a row: its figure, its floor, and what else was seen."""

    figure: float
    floor: float | None = None
    ok: bool = True  # the correctness part of the target (0 lost, 0 doubled, …)
    extra: dict[str, Any] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def http_status(url: str, timeout: float = 2) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def fresh_database(pg_url: str | None, folder: Path) -> Iterator[str]:
    """A SQLite file in ``folder``, or a PostgreSQL schema of its own (dropped after)."""
    if not pg_url:
        yield f"sqlite:///{folder / f'bench-{uuid.uuid4().hex[:8]}.db'}"
        return
    from sqlalchemy import create_engine, text

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in pg_url else "?"
    try:
        yield f"{pg_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def migrate(url: str) -> None:
    """Create the schema (as ``pira run`` would at its start)."""
    from bot.store import Store

    store = Store(url)
    try:
        store.migrate()
    finally:
        store.dispose()


def rss_mb(pid: int) -> float:
    """Resident memory of a process now, in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Pira:
    """One ``pira run`` process (HTTP only: stdin is not a terminal), logs in ``folder``."""

    def __init__(
        self,
        folder: Path,
        *,
        db_url: str,
        config: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        lift_telegram_limits: bool = False,
        port: int | None = None,
        name: str = "pira",
    ) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.log = folder / f"{name}-{uuid.uuid4().hex[:6]}.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("PIRA_", "SLACK_"))}
        environ.update(
            PIRA_DATABASE_URL=db_url,
            PIRA_HTTP_HOST=LOOPBACK,
            PIRA_HTTP_PORT=str(self.port),
            PIRA_FILES_DIR=str(folder / "files"),
            PYTHONUNBUFFERED="1",
        )
        if config is not None:
            path = folder / f"{name}.yaml"
            path.write_text(yaml.safe_dump(dict(config)))
            environ["PIRA_CONFIG"] = str(path)
        environ.update(env or {})
        module = "benchmarks.procs" if lift_telegram_limits else "bot"
        if lift_telegram_limits:
            environ["PYTHONPATH"] = str(ROOT)
        self._out = self.log.open("wb")
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "run"],
            cwd=ROOT,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        self.profiler = self._profile(name)

    def _profile(self, name: str) -> subprocess.Popen[bytes] | None:
        """With ``PIRA_BENCH_PROFILE=DIR`` (``run.py --profile DIR``): py-spy samples the
        process for its whole life, into ``DIR/<name>-<pid>.speedscope.json``."""
        folder = os.environ.get("PIRA_BENCH_PROFILE")
        if not folder:
            return None
        spy = Path(sys.executable).parent / "py-spy"
        out = Path(folder) / f"{name}-{self.proc.pid}.speedscope.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        command = [str(spy), "record", "--pid", str(self.proc.pid), "--format", "speedscope"]
        return subprocess.Popen(
            [*command, "--rate", "200", "--nonblocking", "--output", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 60) -> float:
        """Seconds from the process's start to its first ``/readyz`` 200."""
        deadline = time.monotonic() + timeout
        while True:
            if http_status(f"{self.url}/readyz", timeout=1) == 200:
                return time.monotonic() - self.started
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pira run did not become ready:\n{self.tail()}")
            time.sleep(0.01)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self, *, kill: bool = False) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        if self.profiler is not None:  # py-spy writes its file once the process is gone
            try:
                self.profiler.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.profiler.terminate()

    def __enter__(self) -> Pira:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


class Background:
    """A floor's server as a process of its own (``python -m benchmarks.floors …``)."""

    def __init__(self, *args: str, folder: Path) -> None:
        self.log = folder / f"floor-{args[0]}-{uuid.uuid4().hex[:6]}.log"
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.floors", *args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def wait_http(self, url: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while http_status(url, timeout=1) is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"floor did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()

    def __enter__(self) -> Background:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="pira-bench-"))


def _run_unlimited() -> int:
    """``pira run`` with the Telegram limiter's windows opened wide (see the docstring)."""
    import bot.adapters.telegram as telegram
    from bot.adapters.telegram_limits import Limits

    wide = Limits(overall=(1_000_000, 1.0), per_chat=(1_000_000, 1.0), per_group=(1_000_000, 1.0))
    telegram.Limits = lambda: wide  # type: ignore[assignment,misc]
    from bot.cli import main

    return main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(_run_unlimited())
