"""Timer lateness with the real scheduler (issue 13, B4), run by hand:

    PYTHONPATH=. .venv/bin/python benchmarks/bench_timer_lateness.py [--db URL]
        [--steady 2000 --over 10] [--burst 10000]

1. Steady load: ``--steady`` next-update reminders of open incidents, due evenly over
   ``--over`` seconds, fired by a running App (its APScheduler, its wake-ups); the
   lateness of each is ``fired_at - due_at`` from the database. Floor, same run: a
   bare APScheduler BackgroundScheduler running date jobs at the same due times
   (lateness: when the job ran minus its run date).
2. Burst: ``--burst`` timers due at once (one commit plans them all): from that
   commit to the last one fired, read from the database.
Also the process's peak RSS. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import func, select

from benchmarks.bench_timers import Sink
from bot.app import App
from bot.people import Directory
from bot.settings import Config, Env
from bot.store.models import Incident, Timer


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def summary(name: str, lateness: list[float]) -> str:
    ms = [v * 1000 for v in lateness]
    return (
        f"{name}: n={len(ms)} p50 {statistics.median(ms):.1f} ms, "
        f"p99 {percentile(ms, 0.99):.1f} ms, max {max(ms):.1f} ms"
    )


def floor(dues: list[datetime]) -> list[float]:
    """Bare APScheduler date jobs at the same spacing (from 2 s ahead): how late each ran."""
    shift = datetime.now(UTC) + timedelta(seconds=2) - dues[0]
    dues = [d + shift for d in dues]
    ran: list[float] = []
    lock = threading.Lock()
    done = threading.Event()

    def job(due: datetime) -> None:
        late = (datetime.now(UTC) - due).total_seconds()
        with lock:
            ran.append(late)
            if len(ran) == len(dues):
                done.set()

    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.start()
    for due in dues:
        scheduler.add_job(job, "date", run_date=due, args=[due], misfire_grace_time=None)
    done.wait(timeout=(dues[-1] - datetime.now(UTC)).total_seconds() + 30)
    scheduler.shutdown(wait=False)
    return ran


async def steady(app: App, count: int, over: float) -> tuple[list[float], list[datetime]]:
    actor = Directory.operator_console()
    start = datetime.now(UTC) + timedelta(seconds=2)
    dues = [start + timedelta(seconds=over * i / count) for i in range(count)]

    def plan() -> list[int]:
        with app.store.transaction() as s:
            incidents = [
                app.incidents.declare(
                    severity="P3",
                    title=f"bench {i}",
                    by=actor,
                    source="console",
                    session=s,
                )
                for i in range(min(count, 200))
            ]
            s.flush()
            s.add_all(
                Timer(
                    key=f"bench:steady:{i}",
                    incident_id=incidents[i % len(incidents)].id,
                    kind="reminder",
                    due_at=due,
                )
                for i, due in enumerate(dues)
            )
            return [i.id for i in incidents]

    await app.store.run(plan)
    await asyncio.sleep(over + 4)

    def read() -> list[float]:
        with app.store.read() as s:
            rows = s.execute(
                select(Timer.due_at, Timer.fired_at).where(Timer.key.like("bench:steady:%"))
            ).all()
        return [(f - d).total_seconds() for d, f in rows if f is not None]

    return await app.store.run(read), dues


async def burst(app: App, count: int) -> tuple[float, int]:
    def plan() -> datetime:
        with app.store.transaction() as s:
            incident_ids = list(s.scalars(select(Incident.id).limit(200)))
            now = datetime.now(UTC)
            s.add_all(
                Timer(
                    key=f"bench:burst:{i}",
                    incident_id=incident_ids[i % len(incident_ids)],
                    kind="reminder",
                    due_at=now,
                )
                for i in range(count)
            )
        return now

    def left() -> int:
        with app.store.read() as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(Timer)
                    .where(Timer.key.like("bench:burst:%"), Timer.fired_at.is_(None))
                )
                or 0
            )

    committed = await app.store.run(plan)
    deadline = time.monotonic() + 120
    while await app.store.run(left) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)

    def last() -> datetime | None:
        with app.store.read() as s:
            return s.scalar(select(func.max(Timer.fired_at)).where(Timer.key.like("bench:burst:%")))

    finished = await app.store.run(last)
    took = (finished - committed).total_seconds() if finished else float("nan")
    return took, await app.store.run(left)


async def main(db: str | None, count: int, over: float, burst_count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = db or f"sqlite:///{Path(tmp) / 'pira.db'}"
        app = App(config=Config(), env=Env.from_environ({"PIRA_DATABASE_URL": url}))
        app.add_adapter(Sink())
        await app.start()
        try:
            lateness, dues = await steady(app, count, over)
            print(f"database {url.split(':')[0]}")
            print(summary("PIRA timers, steady load", lateness))
            print(summary("floor: APScheduler date jobs", floor(dues)))
            took, missing = await burst(app, burst_count)
            print(
                f"burst: {burst_count} due at once, last fired {took:.2f} s after the commit"
                f" ({missing} not fired)"
            )
        finally:
            await app.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=None, help="a throwaway database (default: SQLite)")
    parser.add_argument("--steady", type=int, default=2000)
    parser.add_argument("--over", type=float, default=10.0)
    parser.add_argument("--burst", type=int, default=10000)
    args = parser.parse_args()
    asyncio.run(main(args.db, args.steady, args.over, args.burst))
