"""Alert storm: 10,000 alerts in webhook batches against PIRA's real HTTP endpoint.

Run by hand (prints numbers, asserts nothing about speed)::

    python benchmarks/bench_alert_storm.py                     # 200 groups x 50 alerts
    python benchmarks/bench_alert_storm.py --groups 1000 --per-group 10 --senders 2
    python benchmarks/bench_alert_storm.py --database-url postgresql+psycopg://...  # a
        # throwaway database: the storm's incidents stay in it

Each group is posted by ``--senders`` Alertmanagers (HA peers), then re-sent once
more by each (repeat_interval), ``--concurrency`` requests in flight. Reported:
requests/s, p50/p99/max answer time, event-loop lag during the storm (does the
bot stall?), incidents, announcements stored and delivered to the (counting) chat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.app import App
from bot.messages import Destination
from bot.outbox import Outbound
from bot.settings import Config, Env
from bot.store.models import Incident, OutboxMessage
from tests.support.promstack import LOOPBACK, free_port

TOKEN = "bench-token"


class CountingChat:
    """A chat adapter that reaches everything and counts what it is given."""

    name = "console"  # rendered as the console would

    def __init__(self) -> None:
        self.delivered: dict[str, int] = {}

    def reaches(self, destination: Destination) -> bool:
        return True

    async def deliver(self, message: Outbound) -> dict[str, Any] | None:
        self.delivered[message.template] = self.delivered.get(message.template, 0) + 1
        return None


def payload(group: int, per_group: int) -> bytes:
    alerts = [
        {
            "status": "firing",
            "labels": {
                "alertname": f"StormAlert{group}",
                "namespace": "spark",
                "pod": f"pod-{i}",
                "severity": ("p0", "p1", "p2", "p3")[group % 4],
            },
            "annotations": {"summary": f"Storm alert {group}"},
            "startsAt": "2026-11-29T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": f"http://prometheus:9090/graph?g0.expr=storm{group}",
            "fingerprint": f"{group:06x}{i:06x}",
        }
        for i in range(per_group)
    ]
    return json.dumps(
        {
            "version": "4",
            "groupKey": f'{{}}:{{alertname="StormAlert{group}"}}',
            "receiver": "pira",
            "status": "firing",
            "alerts": alerts,
            "groupLabels": {"alertname": f"StormAlert{group}"},
            "commonLabels": {"alertname": f"StormAlert{group}", "namespace": "spark"},
            "commonAnnotations": {"summary": f"Storm alert {group}"},
            "externalURL": "http://alertmanager:9093",
            "truncatedAlerts": 0,
        }
    ).encode()


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="pira-bench-"))
    port = free_port()
    env = Env.from_environ(
        {
            "PIRA_DATABASE_URL": args.database_url or f"sqlite:///{tmp / 'pira.db'}",
            "PIRA_HTTP_PORT": str(port),
            "PIRA_ALERTMANAGER_TOKEN": TOKEN,
        }
    )
    app = App(config=Config(), env=env)
    chat = CountingChat()
    if not args.no_chat:
        app.add_adapter(chat)
    await app.start(scheduler=False)
    stop = asyncio.Event()
    server = asyncio.create_task(app.serve_forever(stop))
    url = f"http://{LOOPBACK}:{port}/alertmanager"
    bodies = [payload(g, args.per_group) for g in range(args.groups)]
    # Every sender posts every group; then every sender re-sends every group.
    sends = [b for _ in range(2) for b in bodies for _ in range(args.senders)]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lag = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal lag
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            lag = max(lag, now - last - 0.01)
            last = now

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=args.concurrency)
    ) as http:
        for _ in range(50):
            try:
                async with http.get(f"http://{LOOPBACK}:{port}/healthz"):
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for body in sends:
            queue.put_nowait(body)

        async def sender() -> None:
            headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
            while not queue.empty():
                body = queue.get_nowait()
                started = time.perf_counter()
                async with http.post(url, data=body, headers=headers) as answer:
                    await answer.read()
                    statuses[answer.status] = statuses.get(answer.status, 0) + 1
                latencies.append(time.perf_counter() - started)

        tick = asyncio.create_task(ticker())
        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - started
        done.set()
        await tick
    # Let the outbox deliver what the storm enqueued.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with app.store.read() as s:
            pending = s.scalar(
                select(func.count(OutboxMessage.id)).where(OutboxMessage.status == "pending")
            )
        if not pending:
            break
        await asyncio.sleep(0.2)
    with app.store.read() as s:
        incidents = s.scalar(select(func.count(Incident.id))) or 0
        announcements = (
            s.scalar(
                select(func.count(OutboxMessage.id)).where(
                    OutboxMessage.destination == "incidents",
                    OutboxMessage.key.like("%:announce@%"),
                )
            )
            or 0
        )
    stop.set()
    await server
    await app.stop()

    latencies.sort()
    total_alerts = args.groups * args.per_group
    print(f"database           {app.store.dialect}")
    print(f"alerts             {total_alerts} in {args.groups} groups, {args.senders} sender(s)")
    print(f"requests           {len(sends)} ({statuses})")
    print(f"elapsed            {elapsed:.2f} s")
    print(f"requests/s         {len(sends) / elapsed:.1f}")
    print(f"alerts/s           {len(sends) * args.per_group / elapsed:.0f}")
    print(f"answer p50         {statistics.median(latencies) * 1000:.1f} ms")
    print(f"answer p99         {latencies[int(len(latencies) * 0.99) - 1] * 1000:.1f} ms")
    print(f"answer max         {latencies[-1] * 1000:.1f} ms")
    print(f"event-loop lag max {lag * 1000:.1f} ms")
    print(f"incidents          {incidents}")
    print(
        f"announcements      {announcements} stored, {chat.delivered.get('announce', 0)} delivered"
    )
    print(f"chat posts         {sum(chat.delivered.values())} delivered ({chat.delivered})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--per-group", type=int, default=50)
    parser.add_argument("--senders", type=int, default=2, help="HA Alertmanagers")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--no-chat", action="store_true", help="no chat adapter: no posts")
    parser.add_argument("--parse-inline", type=int, default=None, help="bytes; test knob")
    parsed = parser.parse_args()
    if parsed.parse_inline is not None:
        import bot.alerts

        bot.alerts.PARSE_INLINE = parsed.parse_inline
    asyncio.run(main(parsed))
