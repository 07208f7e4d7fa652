"""B3 (alert storm), B6 (Slack delivery at the limit), B7 (/health): ``pira run`` or
the App against fakes in processes of their own, with the floor in the same run."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.bench_alert_storm import payload
from benchmarks.fakes import fake_process
from benchmarks.procs import (
    AM_TOKEN,
    ROOT,
    Background,
    Pira,
    Rep,
    free_port,
    fresh_database,
    migrate,
)
from benchmarks.rows_chat import slack_env, team_config

# ---- B3: the alert storm --------------------------------------------------------------


async def _storm(
    url: str, bodies: list[bytes], senders: int, sent: dict[int, float] | None = None
) -> tuple[float, dict[int, int]]:
    """Every body posted once, ``senders`` at a time; seconds taken, answers by status.
    ``sent``: filled with each body's (by index) wall-clock time of sending."""
    queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    for item in enumerate(bodies):
        queue.put_nowait(item)
    statuses: dict[int, int] = {}
    headers = {"Authorization": f"Bearer {AM_TOKEN}", "Content-Type": "application/json"}

    async def sender(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            index, body = queue.get_nowait()
            if sent is not None:
                sent[index] = time.time()
            async with http.post(url, data=body, headers=headers) as answer:
                await answer.read()
                statuses[answer.status] = statuses.get(answer.status, 0) + 1

    connector = aiohttp.TCPConnector(limit=senders)
    async with aiohttp.ClientSession(connector=connector) as http:
        started = time.perf_counter()
        await asyncio.gather(*(sender(http) for _ in range(senders)))
        return time.perf_counter() - started, statuses


def _accepted(metrics_url: str) -> float:
    """``pira_alertmanager_alerts_accepted`` summed over its labels, from /metrics."""
    import urllib.request

    with urllib.request.urlopen(metrics_url, timeout=10) as answer:
        text = answer.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("pira_alertmanager_alerts_accepted") and not line.startswith("#"):
            name = line.split()[0]
            if not name.endswith("_created"):
                total += float(line.split()[-1])
    return total


def _incidents(url: str) -> int:
    from sqlalchemy import func, select

    from bot.store import Store
    from bot.store.models import Incident

    store = Store(url)
    try:
        with store.read() as s:
            return int(s.scalar(select(func.count(Incident.id))) or 0)
    finally:
        store.dispose()


def b3(folder: Path, db: str | None, reps: int, size: dict[str, Any]) -> list[Rep]:
    groups, per_group, senders = size["b3_groups"], size["b3_per_group"], size["b3_senders"]
    bodies = [payload(g, per_group) for g in range(groups)]
    alerts = groups * per_group
    out = []
    port = free_port()
    floor_url = f"http://127.0.0.1:{port}"
    with Background("drop", str(port), folder=folder) as floor:
        floor.wait_http(f"{floor_url}/readyz")
        asyncio.run(_storm(f"{floor_url}/alertmanager", bodies[:20], senders))  # warm
        for _ in range(reps):
            with fresh_database(db, folder) as url:
                migrate(url)
                env = {"PIRA_ALERTMANAGER_TOKEN": AM_TOKEN}
                with Pira(folder, db_url=url, env=env, name="b3") as pira:
                    pira.wait_ready()
                    started = time.perf_counter()
                    took, statuses = asyncio.run(
                        _storm(f"{pira.url}/alertmanager", bodies, senders)
                    )
                    if _incidents(url) < groups:  # answered before stored: wait for them
                        deadline = time.monotonic() + 60
                        while _incidents(url) < groups and time.monotonic() < deadline:
                            time.sleep(0.05)
                        took = time.perf_counter() - started
                    accepted = _accepted(f"{pira.url}/metrics")
                incidents = _incidents(url)
            bare, _ = asyncio.run(_storm(f"{floor_url}/alertmanager", bodies, senders))
            refused = sum(n for code, n in statuses.items() if not 200 <= code < 300)
            lost = int(alerts - accepted) + refused
            out.append(
                Rep(
                    alerts / took,
                    alerts / bare,
                    ok=incidents == groups and lost == 0,
                    extra={"incidents": incidents, "lost": lost, "statuses": statuses},
                )
            )
    return out


def b3p(folder: Path, db: str | None, reps: int, size: dict[str, Any]) -> list[Rep]:
    """P0 pages during the storm: B3's storm with Slack on (the fake, its own process,
    1 post a second per channel like Slack); for every P0 group (one in four), from its
    notification's POST to its page, a direct message to the person on call."""
    groups, per_group, senders = size["b3_groups"], size["b3_per_group"], size["b3_senders"]
    bodies = [payload(g, per_group) for g in range(groups)]
    p0 = [g for g in range(groups) if g % 4 == 0]  # payload(): severity p0 for these
    out = []
    for _ in range(reps):
        with fake_process("slack") as slack, fresh_database(db, folder) as url:
            migrate(url)
            env = {**slack_env(slack), "PIRA_ALERTMANAGER_TOKEN": AM_TOKEN}
            with Pira(folder, db_url=url, config=team_config(), env=env, name="b3p") as pira:
                pira.wait_ready()
                since = slack.mark()
                sent: dict[int, float] = {}
                asyncio.run(_storm(f"{pira.url}/alertmanager", bodies, senders, sent))
                late = []
                for g in p0:
                    named = re.compile(rf"(StormAlert|Storm alert ){g}(?!\d)")
                    pages = slack.wait_calls(
                        "chat.postMessage",
                        1,
                        since=since,
                        timeout=300,
                        match=lambda c, named=named: (
                            c["channel"] == "U0ALICE" and named.search(str(c["text"])) is not None
                        ),
                    )
                    if not pages:
                        raise RuntimeError(f"no page for group {g}:\n{pira.tail()}")
                    late.append(pages[0]["time"] - sent[g])
        late.sort()
        out.append(
            Rep(
                late[-1],
                extra={
                    "pages": len(late),
                    "first_s": round(late[0], 3),
                    "p50_s": round(late[len(late) // 2], 3),
                    "within_10_s": sum(1 for t in late if t <= 10),
                },
            )
        )
    return out


# ---- B6: Slack delivery at 1 msg/s per room --------------------------------------------

ROOMS_CONFIG = {"channels": {"incidents": {"slack": "C0INCIDENTS"}}}


def _fill(url: str, env: dict[str, str], rooms: list[str], posts: int) -> None:
    """``posts`` posts pending for each room (incident N's channel is ``rooms[N-1]``)."""
    from bot.adapters.slack import SlackAdapter
    from bot.app import App
    from bot.messages import Destination
    from bot.outbox import enqueue
    from bot.settings import Config, Env

    migrate(url)
    config = Config.model_validate(ROOMS_CONFIG)
    app = App(config=config, env=Env.from_environ({"PIRA_DATABASE_URL": url, **env}))
    adapter = SlackAdapter(app.chat_deps())
    app.add_adapter(adapter)

    async def fill() -> None:
        with app.store.transaction() as s:
            for n in range(1, len(rooms) + 1):
                for i in range(posts):
                    enqueue(
                        s,
                        adapters=app.adapters.values(),
                        destination=Destination.incident(n),
                        template="text",
                        data={"text": f"room {n} post {i:03d}"},
                        key=f"room{n}:{i}",
                        now=app.clock.now(),
                    )
        for n, channel in enumerate(rooms, start=1):
            await adapter.sender.save_room(n, channel, None)

    try:
        asyncio.run(fill())
    finally:
        app.store.dispose()


def b6(folder: Path, db: str | None, reps: int, size: dict[str, Any]) -> list[Rep]:
    rooms_n, posts = size["b6_rooms"], size["b6_posts"]
    out = []
    for _ in range(reps):
        with (
            fake_process("slack", "--rate-limits", "--rooms", str(rooms_n)) as slack,
            fresh_database(db, folder) as url,
        ):
            rooms: list[str] = slack.info["rooms"]
            _fill(url, slack_env(slack), rooms, posts)
            with Pira(folder, db_url=url, config=ROOMS_CONFIG, env=slack_env(slack), name="b6"):
                sent = slack.wait_calls(
                    "chat.postMessage",
                    rooms_n * posts,
                    timeout=posts * 4 + 30,
                    match=lambda c, rooms=rooms: c["channel"] in rooms,
                )
            calls, _ = slack.calls("chat.postMessage")
        limited = sum(1 for c in calls if c["outcome"] == "ratelimited")
        times = [c["time"] for c in sent]
        took = max(times) - min(times)
        in_order = all(
            [c["text"] for c in sent if c["channel"] == room]
            == [f"room {n} post {i:03d}" for i in range(posts)]
            for n, room in enumerate(rooms, start=1)
        )
        best = posts - 1  # n posts in a room at 1/s: (n - 1) s from the first to the last
        out.append(
            Rep(
                best / took,
                1.0,
                ok=len(sent) == rooms_n * posts and in_order,
                extra={"seconds": round(took, 2), "429s": limited, "in_order": in_order},
            )
        )
    return out


# ---- B7: /health against a distant Kubernetes API --------------------------------------


def b7(folder: Path, db: str | None, reps: int, size: dict[str, Any]) -> list[Rep]:
    """The App in a process of the driver's (benchmarks/inproc.py), the fake Kubernetes
    API in one of its own, answering ``b7_latency`` s late."""
    out = []
    with fake_process("kube", "--latency", str(size["b7_latency"]), folder=folder) as kube:
        for _ in range(reps):
            with fresh_database(db, folder) as url:
                found = inproc(
                    "b7",
                    "--db",
                    url,
                    "--kubeconfig",
                    kube.info["kubeconfig"],
                    "--runs",
                    str(size["b7_runs"]),
                )
            out.append(Rep(found["health_ms"], found["floor_ms"], extra=found))
    return out


def inproc(*args: str) -> dict[str, Any]:
    """Run ``python -m benchmarks.inproc ARGS``; the JSON of its last line."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.inproc", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        raise RuntimeError(f"benchmarks.inproc {args[0]} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result
