"""Issue 16: a maintenance window across a kill -9, with a real ``pira run`` process and
the fake Slack: alerts inside the window are announced and nobody is paged; a person's
``/incident p0`` pages at once; the bot is killed inside the window and comes back after
its end; then every open, unacknowledged incident the window held is paged once — and
the acknowledged one is not.

Real pace: a window lasts at least a minute (PIRA refuses shorter ones), so this test
waits one; it runs in the SQLite pass only (``PIRA_REAL_RATE_TESTS``)."""

from __future__ import annotations

import collections
import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import fresh_database
from tests.e2e.test_exactly_once import SECRET, outbox, posted_keys, slack_env, wait_until
from tests.fakes.payloads import slack_signed_headers, slack_slash_command_body
from tests.fakes.slack_api import FakeSlack
from tests.support.alert_bot import alert, group
from tests.support.replicas import Replicas

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("PIRA_REAL_RATE_TESTS"),
        reason="real pace (a one-minute window): PIRA_REAL_RATE_TESTS=1",
    ),
]

TOKEN = "maintenance-alertmanager-token-0123456789"
CONFIG: dict[str, Any] = {
    "severities": {"P0": {"page_after": "0s"}},
    "oncall": {
        "rotation": {"members": ["alice", "bob"], "start": "2026-11-30"},
        "chain": [{"role": "primary", "respond_within": {"P0": "1h"}}],
    },
    "people": {
        "alice": {"name": "Alice", "slack": "U0ALICE", "roles": ["responder", "operator"]},
        "bob": {"name": "Bob", "slack": "U0BOB", "roles": ["responder", "operator"]},
    },
    "channels": {"incidents": {"slack": "C0INCIDENTS"}},
}
WAIT = 60.0


def command(url: str, name: str, text: str, user: str = "U0ALICE") -> None:
    body = slack_slash_command_body(command=name, text=text, user_id=user)
    request = urllib.request.Request(
        f"{url}/slack/events",
        data=body.encode(),
        headers=slack_signed_headers(SECRET, body),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def post_alert(url: str, name: str) -> None:
    body = group(
        [alert(f"fp-{name}", name=name, severity="p0")], key=f'{{}}:{{alertname="{name}"}}'
    )
    request = urllib.request.Request(
        f"{url}/alertmanager",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def pages(db: str) -> collections.Counter[int]:
    """Page DMs stored per incident number (by the outbox key ``inc<N>:…``)."""
    found: collections.Counter[int] = collections.Counter()
    for row in outbox(db):
        if row.destination.startswith("dm:") and row.body["template"] == "page":
            found[int(row.body["data"]["number"])] += 1
    return found


def delivered_pages(slack: FakeSlack, db: str) -> collections.Counter[int]:
    """Page DMs that reached Slack, per incident number, counting doubles."""
    keys = posted_keys(slack)
    found: collections.Counter[int] = collections.Counter()
    for row in outbox(db):
        if row.destination.startswith("dm:") and row.body["template"] == "page":
            found[int(row.body["data"]["number"])] += keys.get((row.key, 0), 0)
    return found


def test_held_pages_go_out_once_after_a_kill9_inside_the_window(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    with (
        FakeSlack.in_thread() as slack,
        fresh_database(tmp_path / "db") as db,
        Replicas(
            db_url=db,
            workdir=tmp_path / "run",
            count=1,
            config=CONFIG,
            extra_env={**slack_env(slack), "PIRA_ALERTMANAGER_TOKEN": TOKEN},
        ) as bot,
    ):
        slack.add_user("U0ALICE", "alice", "Alice Example")
        slack.add_user("U0BOB", "bob", "Bob Example")
        bot.start()
        bot.wait_ready(timeout=60)
        bot.wait_leader(timeout=30)
        url = bot[0].url

        command(url, "/maintenance", "1m kernel upgrade")
        started = time.monotonic()
        wait_until(
            "the maintenance notice",
            lambda: any(
                "Maintenance until" in m.get("text", "") for m in slack.messages("C0INCIDENTS")
            ),
            WAIT,
        )
        post_alert(url, "SparkAllJobsFailing")  # #1: held, still open at the end
        post_alert(url, "SparkClusterUnavailable")  # #2: held, acknowledged inside
        command(url, "/incident", "p0 checkout is down")  # #3: a person's: paged now
        wait_until("#3 paged", lambda: delivered_pages(slack, db)[3] == 1, WAIT)
        command(url, "/ack", "#2")
        wait_until(
            "both held notices in Slack",
            lambda: (
                sum(
                    "came in during maintenance" in m.get("text", "")
                    for m in slack.messages("C0INCIDENTS")
                )
                == 2
            ),
            WAIT,
        )
        assert pages(db)[1] == pages(db)[2] == 0

        assert time.monotonic() - started < 50, "too slow to kill inside the window"
        bot.kill9(0)
        time.sleep(max(0.0, 62 - (time.monotonic() - started)))  # the window is over
        bot.start()
        bot.wait_ready(timeout=60)
        wait_until("#1 paged after the window", lambda: delivered_pages(slack, db)[1] >= 1, WAIT)
        wait_until(
            "every post delivered",
            lambda: all(r.status == "sent" for r in outbox(db)),
            WAIT,
        )
        assert pages(db) == collections.Counter({1: 1, 3: 1})
        assert delivered_pages(slack, db) == collections.Counter({1: 1, 3: 1})
        held_said = [
            m["text"] for m in slack.messages("C0INCIDENTS") if "Maintenance" in m.get("text", "")
        ]
        assert held_said, "the window was announced"
