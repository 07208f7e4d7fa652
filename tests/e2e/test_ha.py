"""High availability end to end (issue 15, part 5): two real ``pira run`` replicas on
PostgreSQL, requests sent to either one (Slack slash commands, Telegram's webhook,
Alertmanager), the
leader killed with escalations due, then a rolling restart (SIGTERM one, start it,
SIGTERM the other, start it) — every page and post goes out exactly once, none is
lost, and ``/readyz`` answers 200 on every healthy replica and says which one leads.

The chats are the fake Slack and the fake Telegram in threads of the test process;
Slack's posts are counted by the outbox key Slack keeps in each message's metadata
(exactly once); Telegram's, which has no history to look in, must all arrive (its
doubles after a kill -9 are the README's measured residual risk)."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.store.models import Timer
from tests.conftest import PG_URL, fresh_database
from tests.e2e.test_exactly_once import (
    WAIT,
    all_sent,
    bot_group,
    outbox,
    posted_keys,
    slack_env,
    slash,
    tally,
    wait_until,
)
from tests.fakes.payloads import tg_command_update, tg_supergroup_chat, tg_user
from tests.fakes.slack_api import FakeSlack
from tests.fakes.telegram_api import FakeTelegram
from tests.support.alert_bot import alert, group
from tests.support.replicas import Replicas

pytestmark = pytest.mark.slow

LEASE = 3.0
TOKEN = "ha-alertmanager-token-0123456789"
TG_SECRET = "ha-telegram-webhook-secret-0123456789"
TG_GROUP = -1001234567890
CONFIG: dict[str, Any] = {
    "leader_lease": f"{LEASE:g}s",
    "severities": {
        "P0": {
            "page_after": "0s",
            "escalate": [
                {"after": "25s", "to": "engineering_manager"},
                {"after": "50s", "to": "cto"},
            ],
        }
    },
    "oncall": {
        "rotation": {"members": ["alice", "bob"], "start": "2026-11-30"},
        "chain": [{"role": "primary", "respond_within": {"P0": "1h"}}],
    },
    "people": {
        "alice": {"name": "Alice", "slack": "U0ALICE", "telegram": 1001, "roles": ["responder"]},
        "bob": {"name": "Bob", "slack": "U0BOB", "roles": ["responder"]},
        "dave": {"name": "Dave", "slack": "U0DAVE"},
        "erin": {"name": "Erin", "slack": "U0ERIN"},
    },
    "roles": {"engineering_manager": "dave", "cto": "erin"},
    "channels": {"incidents": {"slack": "C0INCIDENTS", "telegram": TG_GROUP}},
}


def post_alerts(url: str, name: str) -> None:
    body = json.dumps(
        group([alert(f"fp-{name}", name=name, severity="p0")], key=f'{{}}:{{alertname="{name}"}}')
    ).encode()
    request = urllib.request.Request(
        f"{url}/alertmanager",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def telegram_command(url: str, text: str) -> None:
    update = tg_command_update(
        text,
        chat=tg_supergroup_chat(TG_GROUP, "Incidents", is_forum=False),
        from_user=tg_user(1001, "Alice", "alice"),
    )
    request = urllib.request.Request(
        f"{url}/telegram",
        data=json.dumps(update).encode(),
        headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": TG_SECRET},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def readyz(url: str) -> tuple[int, dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:
        return response.status, json.loads(response.read())


def fired(group_: Replicas, kind: str, target: str | None = None) -> int:
    with Session(group_.db) as s:
        query = (
            select(func.count())
            .select_from(Timer)
            .where(Timer.kind == kind, Timer.fired_at.is_not(None))
        )
        if target is not None:
            query = query.where(Timer.target == target)
        return int(s.scalar(query) or 0)


def pending(group_: Replicas, kind: str) -> int:
    with Session(group_.db) as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(Timer)
                .where(Timer.kind == kind, Timer.fired_at.is_(None), Timer.cancelled_at.is_(None))
            )
            or 0
        )


def test_either_replica_serves_and_a_kill9_and_a_rolling_restart_lose_and_double_nothing(
    tmp_path: Path,
) -> None:
    if not PG_URL:
        pytest.skip("two replicas need PostgreSQL (PIRA_TEST_DATABASE_URL)")
    with (
        FakeSlack.in_thread() as slack,
        FakeTelegram.in_thread() as tg,
        fresh_database(tmp_path / "db") as url,
        bot_group(
            url,
            tmp_path / "run",
            2,
            {
                **slack_env(slack),
                "PIRA_ALERTMANAGER_TOKEN": TOKEN,
                "PIRA_TELEGRAM_TOKEN": tg.token,
                "PIRA_TELEGRAM_API_URL": tg.url,
                "PIRA_TELEGRAM_WEBHOOK_URL": "https://pira.example.com/telegram",
                "PIRA_TELEGRAM_WEBHOOK_SECRET": TG_SECRET,
            },
            CONFIG,
        ) as replicas,
    ):
        tg.add_supergroup(TG_GROUP, "Incidents")
        tg.add_private_chat(1001, "alice", "Alice")  # she opened the bot: pages reach her
        slack.add_user("U0DAVE", "dave", "Dave Example")  # paged by the escalations
        slack.add_user("U0ERIN", "erin", "Erin Example")
        replicas.start()
        replicas.wait_ready(timeout=60)
        leader = replicas.wait_leader(timeout=30)

        # Round robin: each kind of request to each replica, leader or not.
        slash(f"{replicas[0].url}/slack/events", "p0 spark connect down")
        post_alerts(replicas[1].url, "SparkAllJobsFailing")
        slash(f"{replicas[1].url}/slack/events", "p0 all drivers OOM")
        post_alerts(replicas[0].url, "SparkClusterUnavailable")
        telegram_command(replicas[1 - leader].url, "/incident p0 telegram says spark is down")
        wait_until(
            "five announcements in Slack",
            lambda: all((f"inc{n}:announce@slack", 0) in posted_keys(slack) for n in range(1, 6)),
            WAIT,
        )
        answers = [readyz(r.url) for r in replicas]
        assert [status for status, _ in answers] == [200, 200]
        assert [body["leader"] for _, body in answers] == [i == leader for i in range(2)]

        # The leader dies with the escalations due: the standby takes over and sends
        # each of them once.
        assert pending(replicas, "escalate") == 10
        killed_at = replicas.kill9(leader)
        second = replicas.wait_leader(exclude=leader, timeout=LEASE + 15)
        took = time.monotonic() - killed_at
        assert took <= LEASE + 15
        wait_until(
            "the engineering manager's escalations",
            lambda: fired(replicas, "escalate", "engineering_manager") == 5,
            WAIT,
        )

        # A rolling restart while the CTO's escalations come due.
        replicas.start([leader])  # the killed one comes back (a new process)
        replicas.wait_ready(timeout=60, indices=[leader])
        assert replicas.terminate(second) == 0  # the leader stops cleanly: hands over
        third = replicas.wait_leader(exclude=second, timeout=LEASE + 15)
        replicas.start([second])
        replicas.wait_ready(timeout=60)
        wait_until("the CTO's escalations", lambda: fired(replicas, "escalate", "cto") == 5, WAIT)
        try:
            wait_until("every post delivered", lambda: all_sent(url, None), WAIT)
        except AssertionError:
            rows = outbox(url, None)
            left = [(r.key, r.status, r.error) for r in rows if r.status != "sent"]
            raise AssertionError(f"not delivered: {left[:10]}") from None
        assert fired(replicas, "page") == 5  # each primary page once, none lost
        to_telegram = [r for r in outbox(url, "telegram") if not r.body.get("edit_of")]
        assert to_telegram and all(r.status == "sent" for r in to_telegram)  # none lost

        posts, doubled, lost = tally(url, slack)
        print(
            f"\nHA: {posts} posts, {doubled} doubled, {lost} lost; replica {second} led "
            f"{took:.1f}s after {leader} was killed, then {third} after a SIGTERM"
        )
        assert posts > 0 and (doubled, lost) == (0, 0)
        answers = [readyz(r.url) for r in replicas]
        assert [status for status, _ in answers] == [200, 200]
        assert sum(body["leader"] for _, body in answers) == 1
