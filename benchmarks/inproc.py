"""The rows measured on the App in a process of their own (started by the driver),
printing their result as one JSON line:

    python -m benchmarks.inproc b4 --db URL [--steady 2000 --over 10 --burst 10000]
    python -m benchmarks.inproc b7 --db URL --kubeconfig FILE [--runs 10]

B4 (timer lateness) plans its timers from inside the process that fires them: a
timer planned by another process is seen on the next poll (1 s), which would measure
the poll, not the scheduler (see benchmarks/README.md). It reuses
benchmarks/bench_timer_lateness.py; its floor, bare APScheduler date jobs, runs in the
same process, and so does a burst floor: the same number of date jobs due at once.
B7 (/health) needs the command's answer time without a chat platform around it;
its Kubernetes API (the fake, answering late) is another process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import threading
import time
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from benchmarks.bench_timer_lateness import burst, floor, percentile, steady
from benchmarks.bench_timers import Sink


def burst_floor(count: int) -> float:
    """Seconds from adding ``count`` APScheduler date jobs due now to the last one run."""
    left = [count]
    lock = threading.Lock()
    done = threading.Event()

    def job() -> None:
        with lock:
            left[0] -= 1
            if not left[0]:
                done.set()

    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.start()
    started = time.perf_counter()
    now = datetime.now(UTC)
    for _ in range(count):
        scheduler.add_job(job, "date", run_date=now, misfire_grace_time=None)
    done.wait(timeout=120)
    took = time.perf_counter() - started
    scheduler.shutdown(wait=False)
    return took


async def b4(args: argparse.Namespace) -> dict[str, Any]:
    from bot.app import App
    from bot.cli import settle_heap
    from bot.settings import Config, Env

    app = App(config=Config(), env=Env.from_environ({"PIRA_DATABASE_URL": args.db}))
    app.add_adapter(Sink())
    await app.start()
    settle_heap()  # as `pira run` does once started (bot/cli.py)
    try:
        lateness, dues = await steady(app, args.steady, args.over)
        took, missing = await burst(app, args.burst)
    finally:
        await app.stop()
    bare = floor(dues)
    return {
        "steady_p99_ms": percentile(lateness, 0.99) * 1000,
        "steady_p50_ms": percentile(lateness, 0.5) * 1000,
        "steady_fired": len(lateness),
        "floor_p99_ms": percentile(bare, 0.99) * 1000,
        "burst_s": took,
        "burst_missing": missing,
        "burst_floor_s": burst_floor(args.burst),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


async def b7(args: argparse.Namespace) -> dict[str, Any]:
    import statistics

    from bot.app import App
    from bot.messages import Message, Room
    from bot.settings import Env
    from tests.support.cluster_app import cluster_config

    env = Env.from_environ({"PIRA_DATABASE_URL": args.db, "KUBECONFIG": args.kubeconfig})
    app = App(config=cluster_config(), env=env)
    await app.start(scheduler=False)
    try:
        actor = app.directory.person_actor("bob")
        message = Message("console", "bob", "/health", Room("console", "tty"))
        cluster = await app.diagnostics.cluster()
        await cluster.pods()  # connections opened, models loaded
        await app.router.handle(message, actor)
        bare, health = [], []
        for _ in range(args.runs):
            started = time.perf_counter()
            await cluster.pods()
            bare.append(time.perf_counter() - started)
            started = time.perf_counter()
            reply = await app.router.handle(message, actor)
            health.append(time.perf_counter() - started)
            if not reply.ok:
                raise RuntimeError(f"/health failed: {reply}")
    finally:
        await app.stop()
    return {
        "health_ms": statistics.median(health) * 1000,
        "floor_ms": statistics.median(bare) * 1000,
        "health_max_ms": max(health) * 1000,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("row", choices=["b4", "b7"])
    parser.add_argument("--db", required=True)
    parser.add_argument("--steady", type=int, default=2000)
    parser.add_argument("--over", type=float, default=10.0)
    parser.add_argument("--burst", type=int, default=10000)
    parser.add_argument("--kubeconfig")
    parser.add_argument("--runs", type=int, default=10)
    parsed = parser.parse_args()
    run = b4 if parsed.row == "b4" else b7
    print(json.dumps(asyncio.run(run(parsed))), flush=True)
