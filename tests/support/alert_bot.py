"""The alert tests' bot: an App serving ``POST /alertmanager`` over real HTTP on loopback
(``App.serve_forever``) with the console adapter, and Alertmanager payloads built as
Alertmanager builds them. ``start_bot`` is a fixture of tests/integration/conftest.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from sqlalchemy import func, select

from bot.app import App
from bot.clock import FakeClock
from bot.settings import Config
from bot.store.models import Incident, OutboxMessage, TimelineEvent
from tests.support.driver import Driver
from tests.support.http import wait_healthy
from tests.support.promstack import LOOPBACK, free_port

TOKEN = "s3cret-am-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def alert(
    fp: str,
    *,
    status: str = "firing",
    severity: str | None = "p2",
    name: str = "SparkExecutorLoss",
    starts: str = "2026-11-30T08:50:00Z",
    **labels: str,
) -> dict[str, Any]:
    all_labels = {"alertname": name, "namespace": "spark", **labels}
    if severity is not None:
        all_labels["severity"] = severity
    return {
        "status": status,
        "labels": all_labels,
        "annotations": {"summary": f"{name} in spark"},
        "startsAt": starts,
        "endsAt": "2026-11-30T08:59:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": f"http://prometheus:9090/graph?g0.expr={name}",
        "fingerprint": fp,
    }


def group(alerts: list[dict[str, Any]], key: str = '{}:{alertname="SparkExecutorLoss"}'):
    firing = any(a["status"] == "firing" for a in alerts)
    return {
        "version": "4",
        "groupKey": key,
        "receiver": "pira",
        "status": "firing" if firing else "resolved",
        "alerts": alerts,
        "groupLabels": {"alertname": alerts[0]["labels"]["alertname"]},
        "commonLabels": {  # as Alertmanager computes them: shared by every alert
            k: v
            for k, v in alerts[0]["labels"].items()
            if all(a["labels"].get(k) == v for a in alerts)
        },
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "truncatedAlerts": 0,
    }


@dataclass
class Bot:
    app: App
    driver: Driver
    url: str
    http: aiohttp.ClientSession

    async def post(
        self, body: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json", **(AUTH if headers is None else headers)}
        async with self.http.post(f"{self.url}/alertmanager", data=data, headers=hdrs) as r:
            return r.status, await r.json()

    def counts(self) -> tuple[int, int, int]:
        """Incidents, timeline lines, outbox rows."""
        with self.app.store.read() as s:
            return (
                s.scalar(select(func.count(Incident.id))) or 0,
                s.scalar(select(func.count(TimelineEvent.id))) or 0,
                s.scalar(select(func.count(OutboxMessage.id))) or 0,
            )

    def posts(self, destination: str, contains: str = "") -> list[OutboxMessage]:
        with self.app.store.read() as s:
            rows = s.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.destination == destination)
                .order_by(OutboxMessage.id)
            ).all()
        return [r for r in rows if contains in json.dumps(r.body, ensure_ascii=False)]

    def incidents(self) -> list[Incident]:
        with self.app.store.read() as s:
            return list(s.scalars(select(Incident).order_by(Incident.number)))


StartBot = Callable[..., Awaitable[Bot]]


async def start_bot(make_app: Callable[..., App]) -> AsyncIterator[StartBot]:
    """Start Apps serving HTTP on loopback (several may share one database: replicas)."""
    running: list[tuple[App, asyncio.Event, asyncio.Task[None]]] = []
    http = aiohttp.ClientSession()

    async def start(
        config: dict[str, Any] | None = None,
        token: str | None = TOKEN,
        clock: Any = None,
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> Bot:
        port = port or free_port()
        env = {**(env or {}), "PIRA_HTTP_PORT": str(port), "PIRA_HTTP_HOST": LOOPBACK}
        if token:
            env["PIRA_ALERTMANAGER_TOKEN"] = token
        app = make_app(
            config=Config.model_validate(config or {}), clock=clock or FakeClock(), env=env
        )
        driver = Driver(app)
        await app.start(scheduler=False)
        stop = asyncio.Event()
        task = asyncio.create_task(app.serve_forever(stop))
        running.append((app, stop, task))
        url = f"http://{LOOPBACK}:{port}"
        await wait_healthy(url)
        return Bot(app, driver, url, http)

    yield start
    await http.close()
    for app, stop, task in running:
        stop.set()
        await task
        await app.stop()
