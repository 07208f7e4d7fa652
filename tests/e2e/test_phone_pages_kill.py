"""Issue 18: phone pages across a kill -9, with a real ``pira run`` and the ntfy and
PagerDuty fakes in threads of the test process.

Each run declares a P0 whose primary is paged on ntfy and PagerDuty; both services
store the page at once and hold their answer 30 s (a slow network, a lost answer); the
bot is killed with the answers outstanding, restarted, and delivers what was pending.

- PagerDuty: every event reaches it (none lost); a repeated trigger carries the same
  ``dedup_key`` and folds into the one PagerDuty incident, as PagerDuty does.
- ntfy: no idempotency key; before sending again, PIRA looks for the page in the
  topic's cache by its tag. The doubles that remain are counted and printed.

``PIRA_PHONE_RUNS`` (default 2) runs it that many times; the README's reliability
table gives the counts of a 50-run pass
(``PIRA_PHONE_RUNS=50 pytest tests/e2e/test_phone_pages_kill.py -s``).
"""

from __future__ import annotations

import collections
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import fresh_database
from tests.e2e.test_exactly_once import outbox, slack_env, slash, wait_until
from tests.fakes.phones import FakeNtfy, FakePagerDuty
from tests.fakes.slack_api import FakeSlack
from tests.support.replicas import Replicas

pytestmark = pytest.mark.slow

RUNS = int(os.environ.get("PIRA_PHONE_RUNS", "2"))
WAIT = 60.0
CONFIG: dict[str, Any] = {
    "severities": {"P0": {"page_after": "0s", "escalate": []}},
    "oncall": {
        "rotation": {"members": ["alice", "bob"], "start": "2026-11-30", "every": "1d"},
        "chain": [{"role": "primary", "respond_within": {"P0": "1h"}}],
    },
    "people": {
        name: {
            "name": name.title(),
            "slack": f"U0{name.upper()}",
            "roles": ["responder"],
            "notify": ["chat", "ntfy", "pagerduty"],
            "ntfy_topic": f"{name}-pages",
        }
        for name in ("alice", "bob")
    },
    "channels": {"incidents": {"slack": "C0INCIDENTS"}},
}


def test_a_kill9_with_phone_pages_in_flight(tmp_path: Path) -> None:
    lost = doubled_pd = doubled_ntfy = pages = 0
    for run in range(RUNS):
        (tmp_path / f"db{run}").mkdir()
        with (
            FakeSlack.in_thread() as slack,
            FakeNtfy.in_thread() as ntfy,
            FakePagerDuty.in_thread() as pd,
            fresh_database(tmp_path / f"db{run}") as db,
            Replicas(
                db_url=db,
                workdir=tmp_path / f"run{run}",
                count=1,
                config=CONFIG,
                extra_env={
                    **slack_env(slack),
                    "PIRA_NTFY_URL": ntfy.url,
                    "PIRA_NTFY_TOKEN": ntfy.token,
                    "PIRA_PUBLIC_URL": "https://pira.example.com",
                    "PIRA_PAGERDUTY_ROUTING_KEY": pd.routing_key,
                    "PIRA_PAGERDUTY_URL": pd.url,
                },
            ) as bot,
        ):
            bot.start()
            bot.wait_ready(timeout=60)
            bot.wait_leader(timeout=30)
            # Stored at once, answered 30 s later: the bot dies waiting.
            ntfy.respond_late("publish", 30, times=None)
            pd.respond_late("enqueue", 30, times=None)
            slash(f"{bot[0].url}/slack/events", f"p0 run {run}: spark connect down")
            wait_until(
                "the page stored by ntfy and PagerDuty",
                lambda: ntfy.messages and pd.events,
                WAIT,
            )
            bot.kill9(0)
            ntfy.clear_faults()
            pd.clear_faults()
            bot.start()
            bot.wait_ready(timeout=60)
            wait_until(
                "every phone page delivered",
                lambda: all(
                    r.status == "sent"
                    for r in outbox(db, None)
                    if r.platform in ("ntfy", "pagerduty")
                ),
                WAIT,
            )
            rows = [r for r in outbox(db, None) if r.platform in ("ntfy", "pagerduty")]
            assert {r.platform for r in rows} == {"ntfy", "pagerduty"}
            pages += 1
            # PagerDuty: nothing lost, any repeat folded into the incident's one.
            triggers = [e for e in pd.events if e["event_action"] == "trigger"]
            lost += not triggers
            doubled_pd += max(0, len(triggers) - 1)
            assert set(pd.incidents) == {"pira-incident-1"}
            assert pd.incidents["pira-incident-1"].status == "triggered"
            # ntfy: the same page (same tag) more than once is a double.
            tags = collections.Counter(
                t for m in ntfy.messages for t in m.get("tags", []) if t.startswith("pira-")
            )
            lost += not tags
            doubled_ntfy += sum(n - 1 for n in tags.values())
            # The page attempted before the kill was looked for, not sent blind.
            assert ntfy.calls("poll"), "the restarted bot did not look in the topic's cache"
    print(
        f"\nphone pages over {RUNS} kill -9 runs: {pages} pages, {lost} lost, "
        f"PagerDuty repeats {doubled_pd} (folded by dedup_key), ntfy doubles {doubled_ntfy}"
    )
    assert lost == 0
    assert doubled_ntfy == 0  # the cache look-up finds the page sent before the kill
