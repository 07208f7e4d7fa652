"""B1 (Slack ack), B2 (Telegram answers/s), B9 (alert → page): ``pira run`` against
the chat fakes, each in a process of its own, with its floor in the same run."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.fakes import FakeProcess, fake_process
from benchmarks.procs import (
    AM_TOKEN,
    SIGNING_SECRET,
    Background,
    Pira,
    Rep,
    free_port,
    fresh_database,
    migrate,
    pct,
)
from tests.fakes.payloads import (
    slack_signed_headers,
    slack_slash_command_body,
    tg_command_update,
    tg_user,
)

FIRST_USER = 2_000_001


def team_config(**more: Any) -> dict[str, Any]:
    """People on Slack, a rotation from today (alice primary), everyone a responder."""
    today = datetime.now(UTC)
    weekday = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[today.weekday()]
    config: dict[str, Any] = {
        "people": {
            "alice": {"name": "Alice", "slack": "U0ALICE"},
            "bob": {"name": "Bob", "slack": "U0BOB"},
        },
        "default_role": "responder",
        "oncall": {
            "rotation": {
                "members": ["alice", "bob"],
                "every": "7d",
                "handoff": f"{weekday} 00:00",
                "start": today.date().isoformat(),
            }
        },
        "channels": {"incidents": {"slack": "C0INCIDENTS"}},
    }
    config.update(more)
    return config


def slack_env(fake: FakeProcess) -> dict[str, str]:
    return {
        "PIRA_SLACK_BOT_TOKEN": fake.info["token"],
        "PIRA_SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "PIRA_SLACK_API_URL": fake.url,
    }


def declare(url: str, config: dict[str, Any], count: int) -> None:
    """``count`` open P3 incidents (#1…), stored before the bot starts."""
    from bot.app import App
    from bot.people import Directory
    from bot.settings import Config, Env

    migrate(url)
    app = App(
        config=Config.model_validate(config), env=Env.from_environ({"PIRA_DATABASE_URL": url})
    )
    try:
        with app.store.transaction() as s:
            for i in range(count):
                app.incidents.declare(
                    severity="P3",
                    title=f"bench incident {i + 1}",
                    by=Directory.operator_console(),
                    source="console",
                    session=s,
                )
    finally:
        app.store.dispose()


# ---- B1: the Slack slash-command ack --------------------------------------------------


async def _acks(url: str, root: str, count: int, gap: float) -> list[float]:
    """``count`` signed slash commands one after the other; each one's answer time."""
    took = []
    commands = (("/oncall", ""), ("/help", ""), ("/incident", "#1"))
    async with aiohttp.ClientSession() as http:
        for i in range(count):
            command, text = commands[i % len(commands)]
            body = slack_slash_command_body(
                command=command,
                text=text,
                response_url=f"{root}/response/commands/T0PIRA001/{i}/bench",
            )
            headers = slack_signed_headers(SIGNING_SECRET, body)
            started = time.perf_counter()
            async with http.post(url, data=body.encode(), headers=headers) as answer:
                await answer.read()
                if answer.status != 200:
                    raise RuntimeError(f"{url}: {answer.status}")
            took.append(time.perf_counter() - started)
            await asyncio.sleep(gap)
    return took


def b1(folder: Path, db: str | None, reps: int, size: dict[str, Any]) -> list[Rep]:
    count, gap = size["b1_requests"], size["b1_gap"]
    out = []
    config = team_config()
    with fake_process("slack") as slack, fresh_database(db, folder) as url:
        declare(url, config, 1)
        port = free_port()
        root = slack.info["root"]
        with (
            Pira(folder, db_url=url, config=config, env=slack_env(slack), name="b1") as pira,
            Background("bolt", str(port), slack.url, SIGNING_SECRET, folder=folder) as floor,
        ):
            pira.wait_ready()
            floor.wait_http(f"http://127.0.0.1:{port}/readyz")
            ours, bare = f"{pira.url}/slack/events", f"http://127.0.0.1:{port}/slack/events"
            asyncio.run(_acks(ours, root, 10, gap))  # warm: connections, templates
            asyncio.run(_acks(bare, root, 10, gap))
            for _ in range(reps):
                mine = asyncio.run(_acks(ours, root, count, gap))
                theirs = asyncio.run(_acks(bare, root, count, gap))
                out.append(
                    Rep(
                        pct(mine, 0.99) * 1000,
                        pct(theirs, 0.99) * 1000,
                        extra={"p50_ms": round(pct(mine, 0.5) * 1000, 2)},
                    )
                )
    return out


# ---- B2: Telegram commands answered a second ------------------------------------------


def _mix(chats: int, incidents: int) -> list[dict[str, Any]]:
    """One each of ``/oncall``, ``/incident #N``, ``/help`` from every chat."""
    updates = []
    for text_of in (lambda _: "/oncall", lambda n: f"/incident #{n}", lambda _: "/help"):
        for i in range(chats):
            uid = FIRST_USER + i
            user = tg_user(uid, f"User{uid}", f"user{uid}")
            updates.append(tg_command_update(text_of(i % incidents + 1), from_user=user))
    return updates


def _answer_rate(
    fake: FakeProcess, updates: list[dict[str, Any]], expected: int
) -> tuple[float, dict[str, Any]]:
    """Push ``updates`` at once; commands answered a second (until ``expected``
    messages were sent to private chats, or 60 s), and what went wrong if some were not."""
    since = fake.mark()
    started = time.time()
    fake.push(updates)
    sent = fake.wait_calls(
        "sendMessage", expected, since=since, timeout=60, match=lambda c: int(c["chat_id"]) > 0
    )
    last = max(c["time"] for c in sent[:expected])
    calls, _ = fake.calls("sendMessage", since)
    failed = [f"{c['outcome']}: {c['text']!r:.60}" for c in calls if not c["delivered"]]
    missing: dict[str, Any] = {
        "unanswered": expected - len(sent[:expected]),
        "failed_calls": failed[:5],
    }
    if missing["unanswered"]:  # which chats, what they got, and whether it came late
        per_chat = expected // len({u["message"]["chat"]["id"] for u in updates})
        later = fake.wait_calls(
            "sendMessage", expected, since=since, timeout=30, match=lambda c: int(c["chat_id"]) > 0
        )
        got: dict[int, list[str]] = {}
        for c in later:
            got.setdefault(int(c["chat_id"]), []).append(str(c["text"])[:40])
        short = {chat: texts for chat, texts in got.items() if len(texts) < per_chat}
        missing["short_chats"] = dict(list(short.items())[:5])
        missing["answered_within_90_s"] = len(later)
    return len(sent[:expected]) / expected * len(updates) / (last - started), missing


def _per_mix(fake: FakeProcess, incidents: int) -> int:
    """How many messages one of each command gets in answer (a long /help is split)."""
    since = fake.mark()
    fake.push(_mix(1, incidents))
    time.sleep(2)
    calls, _ = fake.calls("sendMessage", since)
    return sum(1 for c in calls if c["delivered"])


def b2(folder: Path, db: str | None, reps: int, size: dict[str, Any]) -> list[Rep]:
    chats, incidents = size["b2_chats"], 5
    config = team_config()
    out = []
    with (
        fake_process("telegram") as tg_pira,
        fake_process("telegram") as tg_floor,
        fresh_database(db, folder) as url,
    ):
        declare(url, config, incidents)
        env = {"PIRA_TELEGRAM_TOKEN": tg_pira.info["token"], "PIRA_TELEGRAM_API_URL": tg_pira.url}
        with (
            Pira(
                folder, db_url=url, config=config, env=env, lift_telegram_limits=True, name="b2"
            ) as pira,
            Background("ptb", tg_floor.url, tg_floor.info["token"], folder=folder),
        ):
            pira.wait_ready()
            tg_floor.wait_calls("getUpdates", 1, timeout=30, match=lambda c: True)
            ours, theirs = _per_mix(tg_pira, incidents), _per_mix(tg_floor, incidents)
            for _ in range(reps):
                mine, missed = _answer_rate(tg_pira, _mix(chats, incidents), ours * chats)
                bare, _ = _answer_rate(tg_floor, _mix(chats, incidents), theirs * chats)
                extra = {"messages_per_mix": [ours, theirs], **missed}
                out.append(Rep(mine, bare, ok=not missed["unanswered"], extra=extra))
    return out


# ---- B9: alert received → page delivered ----------------------------------------------


def alert_body(name: str) -> bytes:
    alert = {
        "status": "firing",
        "labels": {"alertname": name, "namespace": "spark", "severity": "critical"},
        "annotations": {"summary": f"{name} is firing"},
        "startsAt": datetime.now(UTC).isoformat(),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": name[-16:],
    }
    return json.dumps(
        {
            "version": "4",
            "groupKey": f'{{}}:{{alertname="{name}"}}',
            "receiver": "pira",
            "status": "firing",
            "alerts": [alert],
            "groupLabels": {"alertname": name},
            "commonLabels": alert["labels"],
            "commonAnnotations": alert["annotations"],
            "externalURL": "http://alertmanager:9093",
            "truncatedAlerts": 0,
        }
    ).encode()


async def _pages(pira: Pira, slack: FakeProcess, count: int, gap: float, tag: str) -> list[float]:
    took = []
    headers = {"Authorization": f"Bearer {AM_TOKEN}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        for i in range(count):
            name = f"BenchPage{tag}x{i:04d}"
            since = await asyncio.to_thread(slack.mark)
            started = time.time()
            async with http.post(
                f"{pira.url}/alertmanager", data=alert_body(name), headers=headers
            ) as answer:
                await answer.read()
            pages = await asyncio.to_thread(
                slack.wait_calls,
                "chat.postMessage",
                1,
                since=since,
                timeout=30,
                # The page: a direct message to the person on call (alice).
                match=lambda c, name=name: c["channel"] == "U0ALICE" and name in str(c["text"]),
            )
            if not pages:
                raise RuntimeError(f"no page for {name}:\n{pira.tail()}")
            took.append(pages[0]["time"] - started)
            await asyncio.sleep(gap)
    return took


def b9(folder: Path, db: str | None, reps: int, size: dict[str, Any]) -> list[Rep]:
    out = []
    with fake_process("slack") as slack, fresh_database(db, folder) as url:
        env = {**slack_env(slack), "PIRA_ALERTMANAGER_TOKEN": AM_TOKEN}
        with Pira(folder, db_url=url, config=team_config(), env=env, name="b9") as pira:
            pira.wait_ready()
            asyncio.run(_pages(pira, slack, 2, 0.5, "warm"))
            for rep in range(reps):
                took = asyncio.run(_pages(pira, slack, size["b9_alerts"], size["b9_gap"], str(rep)))
                out.append(Rep(pct(took, 0.99), extra={"p50_s": round(pct(took, 0.5), 3)}))
    return out
