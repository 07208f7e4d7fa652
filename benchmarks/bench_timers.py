"""Timers at scale: 10,000 open incidents with their timers (run by hand).

    .venv/bin/python benchmarks/bench_timers.py [--incidents 10000] [--db URL]

Prints: declaration rate in batches (one commit per batch, every timer planned in
it), the cost of one scheduler tick with nothing due, of a tick that fires a batch,
and the latency of commands while all of them are open.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from bot.app import App
from bot.clock import FakeClock
from bot.messages import Message, Room
from bot.outbox import Outbound
from bot.people import Directory
from bot.settings import Config, Env
from bot.store.models import Timer


class Sink:
    """An adapter that reaches everything and keeps nothing (delivery is not measured)."""

    name = "console"

    def reaches(self, destination: object) -> bool:
        return True

    async def deliver(self, message: Outbound) -> None:
        return None


async def main(incidents: int, db: str | None, batch: int) -> None:
    url = db or f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    clock = FakeClock()
    config = Config.model_validate(
        {
            "oncall": {"rotation": {"members": ["alice", "bob"], "start": "2026-11-30"}},
            "people": {"alice": {"roles": ["responder"]}, "bob": {"roles": ["responder"]}},
            "roles": {"team_lead": "alice", "engineering_manager": "bob", "cto": "alice"},
        }
    )
    app = App(config=config, env=Env.from_environ({"PIRA_DATABASE_URL": url}), clock=clock)
    app.add_adapter(Sink())
    await app.start(scheduler=False)
    actor = Directory.operator_console()
    try:
        t = time.perf_counter()
        for start in range(0, incidents, batch):
            with app.store.transaction() as s:
                for i in range(start, min(incidents, start + batch)):
                    app.incidents.declare(
                        severity=("P1", "P2", "P3")[i % 3],
                        title=f"bench incident {i}",
                        by=actor,
                        source="bench",
                        session=s,
                    )
        took = time.perf_counter() - t
        with app.store.read() as s:
            timers = s.scalar(select(func.count(Timer.id))) or 0
        print(
            f"declared {incidents} incidents with {timers} timers in {took:.2f}s "
            f"({incidents / took:.0f} incidents/s, {timers / took:.0f} timers/s, "
            f"one commit per {batch})"
        )

        ticks = []
        for _ in range(20):
            t = time.perf_counter()
            await app.timers.fire_due()
            ticks.append(time.perf_counter() - t)
        print(
            f"tick with nothing due: median {statistics.median(ticks) * 1000:.2f} ms, "
            f"max {max(ticks) * 1000:.2f} ms"
        )

        latencies = []
        for n in range(1, 201):
            message = Message(
                platform="console",
                user_id="console",
                text=f"/update #{n} still looking",
                room=Room("console"),
            )
            t = time.perf_counter()
            reply = await app.router.handle(message, actor)
            latencies.append(time.perf_counter() - t)
            assert reply.ok, reply
        latencies.sort()
        print(
            f"/update with {incidents} open: p50 {latencies[100] * 1000:.2f} ms, "
            f"p99 {latencies[197] * 1000:.2f} ms"
        )

        clock.advance(timedelta(minutes=16))  # every P1's first page comes due
        t = time.perf_counter()
        fired = 0
        while True:
            n = await app.timers.fire_due()
            if not n:
                break
            fired += n
        took = time.perf_counter() - t
        print(f"fired {fired} due timers in {took:.2f}s ({fired / took:.0f}/s)")
    finally:
        await app.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--incidents", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--db", default=None)
    args = parser.parse_args()
    asyncio.run(main(args.incidents, args.db, args.batch))
