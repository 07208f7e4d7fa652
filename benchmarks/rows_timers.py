"""B4 (timer lateness), B5 (restart with pending timers), B8 (failover), and the
start-up time and idle memory of ``pira run``."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.procs import Pira, Rep, fresh_database, migrate, rss_mb
from benchmarks.rows_load import inproc

# ---- B4: timer lateness (the App in a process of its own) ------------------------------


def b4(folder: Path, db: str | None, reps: int, size: dict[str, Any]) -> list[Rep]:
    out = []
    for _ in range(reps):
        with fresh_database(db, folder) as url:
            found = inproc(
                "b4",
                "--db",
                url,
                "--steady",
                str(size["b4_steady"]),
                "--over",
                str(size["b4_over"]),
                "--burst",
                str(size["b4_burst"]),
            )
        out.append(Rep(found["steady_p99_ms"], found["floor_p99_ms"], extra=found))
    return out


# ---- B5: restart with pending timers ---------------------------------------------------


def plan(url: str, pending: int, overdue: int, *, spacing: timedelta | None = None) -> None:
    """One open P3 incident (no page) with ``pending`` reminders due in an hour and
    more, and ``overdue`` due a minute ago; with ``spacing``, the pending ones are due
    from now on, one every ``spacing`` (B8)."""
    from bot.app import App
    from bot.people import Directory
    from bot.settings import Config, Env
    from bot.store.models import Timer

    migrate(url)
    app = App(config=Config(), env=Env.from_environ({"PIRA_DATABASE_URL": url}))
    now = datetime.now(UTC)
    try:
        with app.store.transaction() as s:
            incident = app.incidents.declare(
                severity="P3",
                title="bench timers",
                by=Directory.operator_console(),
                source="console",
                session=s,
            )
            s.flush()
            step = spacing or timedelta(seconds=1)
            start = now if spacing else now + timedelta(hours=1)
            s.add_all(
                Timer(
                    key=f"bench:pending:{i}",
                    incident_id=incident.id,
                    kind="reminder",
                    due_at=start + step * i,
                )
                for i in range(pending)
            )
            s.add_all(
                Timer(
                    key=f"bench:overdue:{i}",
                    incident_id=incident.id,
                    kind="reminder",
                    due_at=now - timedelta(minutes=1),
                )
                for i in range(overdue)
            )
    finally:
        app.store.dispose()


def fired(url: str, prefix: str) -> list[datetime]:
    from sqlalchemy import select

    from bot.store import Store
    from bot.store.models import Timer

    store = Store(url)
    try:
        with store.read() as s:
            return list(
                s.scalars(
                    select(Timer.fired_at).where(
                        Timer.key.like(f"{prefix}%"), Timer.fired_at.is_not(None)
                    )
                )
            )
    finally:
        store.dispose()


def logged_fired(pira: Pira, prefix: str) -> list[str]:
    """The keys of the "timer fired" log lines of ``pira`` starting with ``prefix``."""
    keys = []
    for line in pira.log.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict) or event.get("event") != "timer fired":
            continue
        if str(event.get("key", "")).startswith(prefix):
            keys.append(str(event["key"]))
    return keys


def b5(folder: Path, db: str | None, reps: int, size: dict[str, Any]) -> dict[str, list[Rep]]:
    """B5a start → ready and B5b start → first overdue fired with ``b5_timers``
    pending; floor: start → ready on an empty (migrated) database. Then a second
    start of the same database: nothing fires twice. S1: start → ready on a new
    database (migrations included); S2: RSS after ``idle`` seconds idle."""
    pending, overdue = size["b5_timers"], size["b5_overdue"]
    rows: dict[str, list[Rep]] = {"B5a": [], "B5b": [], "S1": [], "S2": []}
    for _ in range(reps):
        with fresh_database(db, folder) as empty:
            migrate(empty)
            with Pira(folder, db_url=empty, name="b5-empty") as pira:
                floor = pira.wait_ready()
        with fresh_database(db, folder) as new, Pira(folder, db_url=new, name="s1") as pira:
            first_start = pira.wait_ready()
            time.sleep(size["idle"])
            idle = rss_mb(pira.pid)
        with fresh_database(db, folder) as url:
            plan(url, pending, overdue)
            with Pira(folder, db_url=url, name="b5") as pira:
                ready = pira.wait_ready()
                deadline = time.monotonic() + 60
                while len(done := fired(url, "bench:overdue:")) < overdue:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.02)
                first = (min(done).timestamp() - pira.started_wall) if done else float("nan")
                missed = overdue - len(done)
                keys = logged_fired(pira, "bench:")
            with Pira(folder, db_url=url, name="b5-again") as again:
                again.wait_ready()
                time.sleep(2)  # the start-up pass and a poll: anything to fire again would
                keys += logged_fired(again, "bench:")
            doubled = len(keys) - len(set(keys))
            early = len([k for k in keys if k.startswith("bench:pending:")])
        ok = missed == 0 and doubled == 0 and early == 0
        extra = {"missed": missed, "doubled": doubled, "fired_early": early}
        rows["B5a"].append(Rep(ready, floor, ok=ok, extra=extra))
        rows["B5b"].append(Rep(first, floor, ok=ok, extra=extra))
        rows["S1"].append(Rep(first_start))
        rows["S2"].append(Rep(idle))
    return rows


# ---- B8: failover on PostgreSQL ---------------------------------------------------------


def b8(folder: Path, db: str | None, reps: int, size: dict[str, Any]) -> list[Rep]:
    """Two replicas; timers due every 100 ms; the leader killed (SIGKILL) once it fires
    them: seconds from the kill to the first timer fired after it (by the other)."""
    from tests.support.replicas import Replicas

    lease = float(size["b8_lease"])
    out = []
    for rep in range(reps):
        with fresh_database(db, folder) as url:
            plan(url, 1200, 0, spacing=timedelta(milliseconds=100))
            config = {"leader_lease": f"{lease:g}s"}
            with Replicas(db_url=url, workdir=folder / f"b8-{rep}", config=config) as group:
                group.start()
                group.wait_ready(timeout=60)
                leader = group.wait_leader(timeout=30)
                deadline = time.monotonic() + 30
                while not fired(url, "bench:pending:") and time.monotonic() < deadline:
                    time.sleep(0.05)
                killed = time.time()
                group.kill9(leader)
                deadline = time.monotonic() + lease * 4 + 30
                after: list[datetime] = []
                while not after and time.monotonic() < deadline:
                    after = [f for f in fired(url, "bench:pending:") if f.timestamp() > killed]
                    time.sleep(0.05)
                took = min(after).timestamp() - killed if after else float("nan")
                new = group.leader()
        out.append(Rep(took, lease, ok=bool(after), extra={"new_leader": new}))
    return out
