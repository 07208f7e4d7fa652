"""Issue 18: pages that reach a phone — ntfy, PagerDuty, a signed webhook — as lanes of
the outbox, and acknowledgements coming back. The App runs with the real Slack and
Telegram adapters against their fakes, the notifiers against theirs (tests/fakes/
phones.py), its real HTTP server on loopback; the clock is driven."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from sqlalchemy import select

from bot.app import App
from bot.clock import FakeClock
from bot.settings import Config
from bot.store.models import AuditEntry, Incident
from tests.fakes.payloads import tg_supergroup_chat
from tests.fakes.phones import (
    FakeNtfy,
    FakePagerDuty,
    FakeWebhookReceiver,
    pagerduty_webhook,
    webhook_signature_ok,
)
from tests.fakes.slack_api import FakeSlack
from tests.fakes.telegram_api import FakeTelegram
from tests.support.driver import Driver
from tests.support.http import wait_healthy
from tests.support.promstack import free_port

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*retry_after.*:telegram.warnings.PTBDeprecationWarning"),
    pytest.mark.clock,  # who is on call depends on the week: the clock is driven
]

ROOT = Path(__file__).resolve().parents[2]
SECRET = "0123456789abcdef0123456789abcdef"
HOOK_SECRET = "webhook-signing-secret-0123456789"
PD_HOOK_SECRET = "pagerduty-webhook-secret-0123456789"
GROUP = tg_supergroup_chat(-1001111111111, "Incidents", is_forum=False)
ALICES_WEEK = datetime(2026, 12, 9, 10, 0, tzinfo=UTC)  # rotation from 2026-01-05: alice
CONFIG: dict[str, Any] = {
    "severities": {"P0": {"page_after": "0s", "escalate": [], "notify_also": ["ntfy"]}},
    "oncall": {
        "rotation": {"members": ["alice", "bob"], "start": "2026-01-05"},
        "chain": [
            {"role": "primary", "respond_within": {"P0": "15m"}},
            {"role": "secondary", "respond_within": {"P0": "15m"}},
            {"role": "team_lead"},
        ],
    },
    "channels": {"incidents": {"slack": "C0INCIDENTS", "telegram": GROUP["id"]}},
    "people": {
        "alice": {
            "name": "Alice",
            "slack": "U0ALICE",
            "telegram": 1001,
            "roles": ["responder"],
            "notify": ["chat", "ntfy", "pagerduty"],
            "ntfy_topic": "alice-pages",
            "pagerduty_user": "PALICE",
        },
        "bob": {
            "name": "Bob",
            "slack": "U0BOB",
            "roles": ["responder"],
            "notify": ["chat", "webhook"],
            "ntfy_topic": "bob-pages",
        },
        "carol": {"name": "Carol", "roles": ["responder"], "notify": ["pagerduty"]},
    },
    "roles": {"team_lead": "carol"},
}


@dataclass
class World:
    app: App
    driver: Driver
    clock: FakeClock
    url: str
    slack: FakeSlack
    tg: FakeTelegram
    ntfy: FakeNtfy
    pd: FakePagerDuty
    hook: FakeWebhookReceiver

    async def tick(self, delta: timedelta = timedelta(0)) -> None:
        self.clock.advance(delta)
        await self.app.timers.fire_due()
        await self.app.outbox.deliver_due()

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.url + path, data=body, headers=headers) as answer,
        ):
            return answer.status, await answer.json()

    def incident(self, number: int = 1) -> Incident:
        with self.app.store.read() as s:
            found = s.scalar(select(Incident).where(Incident.number == number))
            assert found is not None
            return found

    def audit(self) -> list[tuple[str, str, str]]:
        with self.app.store.read() as s:
            rows = s.scalars(select(AuditEntry).where(AuditEntry.action == "ack-back"))
            return [(r.source, r.outcome, r.detail) for r in rows]


@pytest.fixture
async def world(make_app: Callable[..., App]) -> AsyncIterator[World]:
    async with (
        FakeSlack() as slack,
        FakeTelegram() as tg,
        FakeNtfy() as ntfy,
        FakePagerDuty() as pd,
        FakeWebhookReceiver() as hook,
    ):
        tg.add_chat(GROUP)
        tg.add_private_chat(1001, "alice")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        clock = FakeClock(ALICES_WEEK)
        app = make_app(
            config=Config.model_validate(CONFIG),
            clock=clock,
            env={
                "PIRA_SLACK_BOT_TOKEN": slack.bot_token,
                "PIRA_SLACK_SIGNING_SECRET": SECRET,
                "PIRA_SLACK_API_URL": slack.url,
                "PIRA_TELEGRAM_TOKEN": tg.token,
                "PIRA_TELEGRAM_API_URL": tg.url,
                "PIRA_HTTP_PORT": str(port),
                "PIRA_NTFY_URL": ntfy.url,
                "PIRA_NTFY_TOKEN": ntfy.token,
                "PIRA_PUBLIC_URL": url,
                "PIRA_PAGERDUTY_ROUTING_KEY": pd.routing_key,
                "PIRA_PAGERDUTY_URL": pd.url,
                "PIRA_PAGERDUTY_WEBHOOK_SECRET": PD_HOOK_SECRET,
                "PIRA_WEBHOOK_URL": hook.url,
                "PIRA_WEBHOOK_SECRET": HOOK_SECRET,
            },
        )
        for chat in app.chat_adapters():
            app.add_adapter(chat)
        await app.start(scheduler=False)
        stop = asyncio.Event()
        serve = asyncio.create_task(app.serve_forever(stop))
        try:
            await wait_healthy(url)
            yield World(app, Driver(app), clock, url, slack, tg, ntfy, pd, hook)
        finally:
            stop.set()
            await serve
            await app.stop()


async def declare(w: World) -> None:
    reply = await w.driver.say("/incident p0 spark connect down", "carol")
    assert reply.ok, w.driver.text(reply)
    await w.tick()


def ack_action(message: dict[str, Any]) -> tuple[str, bytes, dict[str, str]]:
    """The "Acknowledge" button of an ntfy message: what the ntfy app sends."""
    [action] = message["actions"]
    assert (action["action"], action["label"], action["method"]) == ("http", "Acknowledge", "POST")
    return action["url"], action["body"].encode(), action["headers"]


async def test_each_step_reaches_its_notifiers_in_order(world: World) -> None:
    w = world
    await declare(w)
    # Step 1, alice (primary): chat on both platforms, her ntfy topic, PagerDuty.
    [first] = w.ntfy.on_topic("alice-pages")
    assert first["priority"] == 5 and first["title"].startswith("[P0] #1 spark connect down")
    assert [e["event_action"] for e in w.pd.events] == ["trigger"]
    assert w.pd.events[0]["dedup_key"] == "pira-incident-1"
    assert w.pd.events[0]["payload"]["severity"] == "critical"
    assert w.hook.calls("hook") == []
    # Step 2, bob (secondary) after 15 min: his webhook, and ntfy (P0's notify_also).
    await w.tick(timedelta(minutes=14, seconds=59))
    assert w.ntfy.on_topic("bob-pages") == []
    await w.tick(timedelta(seconds=1))
    [hooked] = w.hook.calls("hook")
    assert webhook_signature_ok(HOOK_SECRET, hooked.body, hooked.headers)
    assert (hooked.params["incident"], hooked.params["person"]) == (1, "bob")
    assert hooked.headers["X-PIRA-Delivery"].endswith("@webhook")
    assert len(w.ntfy.on_topic("bob-pages")) == 1
    # Step 3, carol (team lead): PagerDuty only; the same dedup_key folds into one incident.
    await w.tick(timedelta(minutes=15))
    assert [e["event_action"] for e in w.pd.events] == ["trigger", "trigger"]
    assert list(w.pd.incidents) == ["pira-incident-1"]
    assert w.pd.incidents["pira-incident-1"].status == "triggered"
    # In order: alice's before bob's before carol's.
    times = [
        w.ntfy.calls("publish")[0].time,
        w.hook.calls("hook")[0].time,
        w.pd.calls("enqueue")[1].time,
    ]
    assert times == sorted(times)


async def test_the_ntfy_acknowledge_stops_the_chain_like_ack(world: World) -> None:
    w = world
    await declare(w)
    [message] = w.ntfy.on_topic("alice-pages")
    url, body, headers = ack_action(message)
    assert url == f"{w.url}/ntfy/ack"
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
        assert r.status == 200, await r.text()
    await w.app.outbox.deliver_due()
    incident = w.incident()
    assert incident.acknowledged_at is not None and incident.commander == "alice"
    # On both chats, and to PagerDuty under the incident's dedup_key.
    await w.slack.wait_for("chat.postMessage", lambda c: "acknowledged" in str(c.params).lower())
    await w.tg.wait_for("sendMessage", lambda c: "acknowledged" in str(c.params).lower())
    assert [e["event_action"] for e in w.pd.events] == ["trigger", "acknowledge"]
    assert w.pd.incidents["pira-incident-1"].status == "acknowledged"
    # The chain stopped: nobody else paged.
    await w.tick(timedelta(hours=1))
    assert w.hook.calls("hook") == [] and w.ntfy.on_topic("bob-pages") == []
    # Replayed, forged: 401, nothing changed, audited.
    assert (await w.post("/ntfy/ack", body, headers))[0] == 401
    forged = json.dumps({"token": "x" * 32}).encode()
    assert (await w.post("/ntfy/ack", forged, headers))[0] == 401
    assert w.audit() == [
        ("ntfy", "ok", "acknowledge #1"),
        ("ntfy", "refused", "token already used"),
        ("ntfy", "refused", "unknown token"),
    ]


async def test_a_pagerduty_acknowledgement_counts_as_theirs(world: World) -> None:
    w = world
    await declare(w)
    body, headers = pagerduty_webhook(
        PD_HOOK_SECRET, incident_key="pira-incident-1", agent_id="PALICE", occurred_at=w.clock.now()
    )
    status, answer = await w.post("/pagerduty", body, headers)
    assert (status, answer["status"]) == (200, "acknowledged")
    incident = w.incident()
    assert incident.acknowledged_at is not None and incident.commander == "alice"
    # Replayed; signed with another secret; too old; and a resolved one: refused.
    assert (await w.post("/pagerduty", body, headers))[0] == 401
    forged, forged_headers = pagerduty_webhook(
        "not-the-secret", incident_key="pira-incident-1", occurred_at=w.clock.now()
    )
    assert (await w.post("/pagerduty", forged, forged_headers))[0] == 401
    old, old_headers = pagerduty_webhook(
        PD_HOOK_SECRET,
        incident_key="pira-incident-1",
        occurred_at=w.clock.now() - timedelta(hours=1),
    )
    assert (await w.post("/pagerduty", old, old_headers))[0] == 401
    assert [(s, o) for s, o, _ in w.audit()] == [("pagerduty", "refused")] * 3
    other, other_headers = pagerduty_webhook(
        PD_HOOK_SECRET, incident_key="not-ours-42", occurred_at=w.clock.now()
    )
    assert (await w.post("/pagerduty", other, other_headers))[1]["status"] == "ignored"


async def test_an_ack_and_a_resolution_in_chat_reach_pagerduty_and_end_the_links(
    world: World,
) -> None:
    w = world
    await declare(w)
    [message] = w.ntfy.on_topic("alice-pages")
    _, body, headers = ack_action(message)
    assert (await w.driver.say("/ack #1", "alice")).ok
    await w.app.outbox.deliver_due()
    assert [e["event_action"] for e in w.pd.events] == ["trigger", "acknowledge"]
    # The page no longer stands: its link has expired.
    status, answer = await w.post("/ntfy/ack", body, headers)
    assert (status, answer["error"]) == (401, "token expired: the page no longer stands")
    assert (await w.driver.say("/resolve #1 connect restarted", "alice")).ok
    await w.app.outbox.deliver_due()
    assert [e["event_action"] for e in w.pd.events] == ["trigger", "acknowledge", "resolve"]
    assert w.pd.incidents["pira-incident-1"].status == "resolved"
    assert {e["dedup_key"] for e in w.pd.events} == {"pira-incident-1"}


async def test_notifiers_retry_a_failing_service(world: World) -> None:
    w = world
    w.pd.fail("enqueue", status=503, times=1)
    w.ntfy.rate_limit("publish", retry_after=1, times=1)
    await declare(w)
    await w.tick(timedelta(seconds=70))  # past the back-off
    assert [e["event_action"] for e in w.pd.events] == ["trigger"]
    assert len(w.ntfy.on_topic("alice-pages")) == 1


def test_config_check_names_the_missing_variable(tmp_path: Path) -> None:
    path = tmp_path / "pira.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "people": {"alice": {"notify": ["chat", "ntfy", "pagerduty"], "ntfy_topic": "a"}},
                "severities": {"P0": {"notify_also": ["webhook"]}},
            }
        )
    )
    env = {"PATH": "/usr/bin:/bin", "PIRA_PUBLIC_URL": "https://pira.example.com"}
    done = subprocess.run(
        [sys.executable, "-m", "bot", "config", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "people.alice.notify: names ntfy, but PIRA_NTFY_URL is not set" in done.stderr
    assert "people.alice.notify: names pagerduty, but PIRA_PAGERDUTY_ROUTING_KEY is not set" in (
        done.stderr
    )
    assert "severities.P0.notify_also: names webhook, but PIRA_WEBHOOK_URL is not set" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr
