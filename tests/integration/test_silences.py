"""Issue 16: silences from chat against the real Alertmanager (Debian package), whose
webhook reaches PIRA's real ``POST /alertmanager`` on loopback. What the silence is,
is read back from Alertmanager's own API, not from PIRA."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from bot.clock import SystemClock
from bot.store.models import TimelineEvent
from tests.support.alert_bot import TOKEN, Bot, StartBot
from tests.support.promstack import LOOPBACK, ManagedProcess, free_port, run_alertmanager

PEOPLE: dict[str, Any] = {
    "people": {
        "alice": {"name": "Alice", "roles": ["responder"]},
        "zed": {"name": "Zed"},
    }
}


@pytest.fixture
def pira_port() -> int:
    return free_port()


@pytest.fixture
def alertmanager(tmp_path: Path, pira_port: int) -> Iterator[ManagedProcess]:
    """Alertmanager sending every group to PIRA's webhook within a second."""
    token = tmp_path / "token"
    token.write_text(TOKEN)
    config = {
        "route": {
            "receiver": "pira",
            "group_by": ["alertname", "namespace"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "pira",
                "webhook_configs": [
                    {
                        "url": f"http://{LOOPBACK}:{pira_port}/alertmanager",
                        "send_resolved": True,
                        "http_config": {
                            "authorization": {"type": "Bearer", "credentials_file": str(token)}
                        },
                    }
                ],
            }
        ],
    }
    with run_alertmanager(yaml.safe_dump(config)) as am:
        yield am


def fire(am: ManagedProcess, **labels: str) -> None:
    """Post one firing alert to Alertmanager's API, as Prometheus does."""
    body = json.dumps(
        [{"labels": labels, "annotations": {"summary": f"{labels['alertname']} fires"}}]
    ).encode()
    request = urllib.request.Request(
        f"{am.url}/api/v2/alerts", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 200


def silences(am: ManagedProcess) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = am.get_json("/api/v2/silences")
    return found


async def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def start(start_bot: StartBot, am: ManagedProcess | None, port: int) -> Bot:
    env = {"PIRA_ALERTMANAGER_URL": am.url} if am else {}
    # Alertmanager lives in real time: so does this bot.
    return await start_bot(config=PEOPLE, env=env, port=port, clock=SystemClock())


async def test_silence_by_matchers_list_and_expire(
    start_bot: StartBot, alertmanager: ManagedProcess, pira_port: int
) -> None:
    bot = await start(start_bot, alertmanager, pira_port)
    before = datetime.now(UTC)
    reply = await bot.driver.say(
        "/silence 30m alertname=SparkDiskPressure namespace=spark node drain tonight", "alice"
    )
    text = bot.driver.text(reply)
    assert reply.ok, text
    [made] = silences(alertmanager)
    assert made["status"]["state"] == "active"
    assert f"Silence {made['id']} until" in text
    assert sorted(
        (m["name"], m["value"], m["isRegex"], m["isEqual"]) for m in made["matchers"]
    ) == [
        ("alertname", "SparkDiskPressure", False, True),
        ("namespace", "spark", False, True),
    ]
    assert (made["createdBy"], made["comment"]) == ("alice", "node drain tonight")
    starts = datetime.fromisoformat(made["startsAt"].replace("Z", "+00:00"))
    ends = datetime.fromisoformat(made["endsAt"].replace("Z", "+00:00"))
    # Alertmanager moves a start a moment in its past to its own now.
    assert timedelta(minutes=30) - timedelta(seconds=1) < ends - starts <= timedelta(minutes=30)
    assert before - timedelta(seconds=5) <= starts <= datetime.now(UTC)

    # Silenced: Alertmanager suppresses it and PIRA opens nothing; another alert, sent
    # after it, comes through.
    fire(alertmanager, alertname="SparkDiskPressure", namespace="spark", severity="p1")
    fire(alertmanager, alertname="SparkExecutorLoss", namespace="spark", severity="p2")
    await wait_for(lambda: len(bot.incidents()) == 1)
    [incident] = bot.incidents()
    assert incident.details["labels"]["alertname"] == "SparkExecutorLoss"
    alerts = alertmanager.get_json("/api/v2/alerts", {"filter": 'alertname="SparkDiskPressure"'})
    assert [a["status"]["silencedBy"] for a in alerts] == [[made["id"]]]

    listed = bot.driver.text(await bot.driver.say("/silences", "zed"))  # anyone may look
    assert made["id"] in listed and "alertname=SparkDiskPressure" in listed and "alice" in listed

    reply = await bot.driver.say(f"/unsilence {made['id']}", "alice")
    assert reply.ok, bot.driver.text(reply)
    [after] = silences(alertmanager)
    assert after["status"]["state"] == "expired"
    reply = await bot.driver.say(f"/unsilence {made['id']}", "alice")
    assert not reply.ok and "No active silence" in bot.driver.text(reply)
    assert "No active silences" in bot.driver.text(await bot.driver.say("/silences"))


async def test_silence_an_incidents_alerts(
    start_bot: StartBot, alertmanager: ManagedProcess, pira_port: int
) -> None:
    bot = await start(start_bot, alertmanager, pira_port)
    fire(alertmanager, alertname="SparkDriverOOMKilled", namespace="spark", severity="p1")
    await wait_for(lambda: len(bot.incidents()) == 1)
    reply = await bot.driver.say("/silence 1h #1 tuning memory", "alice")
    assert reply.ok, bot.driver.text(reply)
    [made] = silences(alertmanager)
    assert {(m["name"], m["value"]) for m in made["matchers"]} == {
        ("alertname", "SparkDriverOOMKilled"),
        ("namespace", "spark"),
    }
    with bot.app.store.read() as s:
        lines = [e.text for e in s.query(TimelineEvent).filter_by(kind="silence")]
    assert lines == [
        f"alerts silenced for 1h ({made['id']}): alertname=SparkDriverOOMKilled, namespace=spark"
    ]
    # In the incident's room, no #N is needed.
    reply = await bot.driver.say("/silence 2h", "alice", room=1)
    assert reply.ok, bot.driver.text(reply)
    assert len(silences(alertmanager)) == 2


async def test_refusals_change_nothing(
    start_bot: StartBot, alertmanager: ManagedProcess, pira_port: int
) -> None:
    bot = await start(start_bot, alertmanager, pira_port)
    for who, command, why in [
        ("zed", "/silence 30m alertname=X", "responder"),
        ("alice", "/silence 30m", "say what to silence"),
        ("alice", "/silence soon alertname=X", "duration"),
        ("alice", "/silence 30d alertname=X", "between 1m and 7d"),
        ("alice", "/silence 30m alertname=", "matches nothing"),
        ("alice", "/silence 30m alertname=Watchdog", "dead-man's switch"),
        ("alice", "/unsilence not/an/id", "not a silence id"),
    ]:
        reply = await bot.driver.say(command, who)
        assert not reply.ok, command
        assert why.lower() in bot.driver.text(reply).lower(), (command, bot.driver.text(reply))
    assert silences(alertmanager) == []


async def test_without_the_url_the_commands_say_how_to_configure(start_bot: StartBot) -> None:
    bot = await start(start_bot, None, free_port())
    for command in ("/silence 30m alertname=X", "/silences", "/unsilence abc"):
        reply = await bot.driver.say(command, "alice")
        assert not reply.ok
        assert "set PIRA_ALERTMANAGER_URL" in bot.driver.text(reply)


async def test_alertmanager_away_is_a_short_answer(start_bot: StartBot) -> None:
    bot = await start_bot(
        config=PEOPLE, env={"PIRA_ALERTMANAGER_URL": f"http://{LOOPBACK}:{free_port()}"}
    )
    reply = await bot.driver.say("/silences", "alice")
    assert not reply.ok
    assert "Cannot reach Alertmanager at http://127.0.0.1:" in bot.driver.text(reply)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ('[{"id": "x", "matchers": [{"nom": "a"}], "startsAt": 3}]', "not a list of silences"),
        ('{"error": "something else answers here"}', "not a list of silences"),
        ("<html><body>a login page</body></html>", "is not JSON: is it Alertmanager?"),
    ],
)
async def test_an_answer_that_is_not_silences_is_a_short_answer(
    start_bot: StartBot, body: str, said: str
) -> None:
    """An Alertmanager (or something else at its URL) answering what is not API v2's
    silences: one line in the chat, no traceback."""

    async def odd(_request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/v2/silences", odd)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, LOOPBACK, port).start()
    try:
        bot = await start_bot(
            config=PEOPLE, env={"PIRA_ALERTMANAGER_URL": f"http://{LOOPBACK}:{port}"}
        )
        for command in ("/silences", "/unsilence abc"):
            reply = await bot.driver.say(command, "alice")
            assert not reply.ok
            assert said in bot.driver.text(reply), command
    finally:
        await runner.cleanup()
