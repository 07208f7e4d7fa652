"""Every Slack post exactly once across kill -9 and a leader paused past its lease
(issue 11), with real ``pira run`` processes (tests/support/replicas.py) and the fake
Slack in a thread of the test process, which stores every post with its metadata and
answers ``conversations.history`` / ``conversations.replies`` with what it stored.

* kill -9 while Slack holds the answer to a ``chat.postMessage`` it has already
  stored (a slow API, an answer lost): SQLite with one replica restarted, PostgreSQL
  with two (the standby takes over);
* the leader frozen (SIGSTOP) past its lease while it paces a burst of posts, the
  standby takes over, the old leader resumes (PostgreSQL, two replicas).

Then every outbox row is delivered and every post is in Slack once: no post doubled,
none lost. ``PIRA_DELIVERY_RUNS`` (default 2) runs each scenario that many times;
the README's reliability table gives the counts of a 50-run pass
(``PIRA_DELIVERY_RUNS=50 pytest tests/e2e/test_exactly_once.py -s``).
"""

from __future__ import annotations

import collections
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from bot.adapters.slack_format import metadata_key
from bot.store.models import OutboxMessage
from tests.conftest import PG_URL, fresh_database
from tests.fakes.payloads import slack_signed_headers, slack_slash_command_body
from tests.fakes.slack_api import FakeSlack
from tests.fakes.telegram_api import FakeTelegram
from tests.support.replicas import Replicas

pytestmark = pytest.mark.slow

RUNS = int(os.environ.get("PIRA_DELIVERY_RUNS", "2"))
SECRET = "exactly-once-signing-secret-0123456789"
LEASE = 3.0
CONFIG = {
    "leader_lease": f"{LEASE:g}s",
    "people": {
        "alice": {"name": "Alice", "slack": "U0ALICE", "roles": ["responder"]},
        "bob": {"name": "Bob", "slack": "U0BOB", "roles": ["responder"]},
    },
    "channels": {"incidents": {"slack": "C0INCIDENTS"}},
}
WAIT = 60.0  # seconds for every post to be delivered after the fault (a busy 2-core box)


@dataclass
class Count:
    runs: int = 0
    posts: int = 0
    doubled: int = 0
    lost: int = 0

    def add(self, posts: int, doubled: int, lost: int) -> None:
        self.runs, self.posts = self.runs + 1, self.posts + posts
        self.doubled, self.lost = self.doubled + doubled, self.lost + lost


def slash(url: str, text: str) -> None:
    body = slack_slash_command_body(command="/incident", text=text, user_id="U0ALICE")
    request = urllib.request.Request(
        url, data=body.encode(), headers=slack_signed_headers(SECRET, body), method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def wait_until(what: str, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def posted_keys(slack: FakeSlack) -> collections.Counter[tuple[str, int]]:
    """(outbox key, part) of every message in every channel of the fake, DMs included."""
    found: collections.Counter[tuple[str, int]] = collections.Counter()
    for channel in list(slack.history):
        for message in slack.messages(channel):
            mark = metadata_key(message)
            if mark is not None:
                found[mark] += 1
    return found


def outbox(url: str, platform: str | None = "slack") -> list[OutboxMessage]:
    """The outbox's rows (of ``platform``; every platform's with None)."""
    query = select(OutboxMessage)
    if platform is not None:
        query = query.where(OutboxMessage.platform == platform)
    engine = create_engine(url)
    try:
        with Session(engine) as s:
            return list(s.scalars(query))
    finally:
        engine.dispose()


def all_sent(url: str, platform: str | None = "slack") -> bool:
    rows = outbox(url, platform)
    return bool(rows) and all(r.status == "sent" for r in rows)


def tally(url: str, slack: FakeSlack) -> tuple[int, int, int]:
    """(posts, doubled, lost): every outbox post (edits aside) against Slack's copies. A
    page that went in a fold (bot/delivery_fold.py) is the message of its fold's key,
    and that message must show it (its incident's page)."""
    found = posted_keys(slack)
    texts: collections.defaultdict[str, str] = collections.defaultdict(str)
    for channel in list(slack.history):
        for message in slack.messages(channel):
            if (mark := metadata_key(message)) is not None:  # every part of a long fold
                texts[mark[0]] += str(message.get("text", "")) + "\n"
    posts = doubled = lost = 0
    for row in outbox(url):
        if row.body.get("edit_of"):
            continue
        posts += 1
        key = row.fold_of or row.key
        copies = found.get((key, 0), 0)
        if row.fold_of and f"#{row.body['data']['number']} " not in texts[key]:
            print(f"folded: {row.key} not in the message of {key}")
            copies = 0
        if copies > 1:
            times = [
                m["ts"]
                for c in list(slack.history)
                for m in slack.messages(c)
                if metadata_key(m) == (key, 0)
            ]
            print(f"doubled: {row.key} ×{copies} at {times}")
        doubled += max(0, copies - 1)
        lost += copies == 0
    return posts, doubled, lost


def bot_group(
    url: str, workdir: Path, count: int, env: dict[str, str], config: dict[str, Any] | None = None
) -> Replicas:
    """``count`` ``pira run`` processes on ``url`` (kill them by leaving the ``with``),
    with ``config`` (else the one above) and the chat platforms' variables ``env``."""
    return Replicas(
        db_url=url, workdir=workdir, count=count, config=config or CONFIG, extra_env=env
    )


def slack_env(slack: FakeSlack) -> dict[str, str]:
    return {
        "PIRA_SLACK_BOT_TOKEN": slack.bot_token,
        "PIRA_SLACK_SIGNING_SECRET": SECRET,
        "PIRA_SLACK_API_URL": slack.url,
    }


Scenario = Callable[[Replicas, FakeSlack, str, int], tuple[int, int, int]]


def runs(tmp_path: Path, count: int, scenario: Scenario) -> Count:
    """``scenario`` RUNS times, each on a database, a fake Slack and processes of its
    own (the processes end before their database does)."""
    total = Count()
    for run in range(RUNS):
        (tmp_path / f"db{run}").mkdir()
        with (
            FakeSlack.in_thread() as slack,
            fresh_database(tmp_path / f"db{run}") as url,
            bot_group(url, tmp_path / f"run{run}", count, slack_env(slack)) as group,
        ):
            total.add(*scenario(group, slack, url, run))
    return total


def kill_run(group: Replicas, slack: FakeSlack, url: str, run: int) -> tuple[int, int, int]:
    count = len(group)
    group.start()
    group.wait_ready(timeout=60)
    leader = group.wait_leader(timeout=30)
    # Every post lands in Slack at once; its answer comes 30 s later.
    slack.respond_late("chat.postMessage", 30, times=None)
    slash(f"{group[run % count].url}/slack/events", f"p1 run {run} spark down")
    wait_until(
        "the announcement stored in Slack",
        lambda: ("inc1:announce@slack", 0) in posted_keys(slack),
        WAIT,
    )
    group.kill9(leader)
    slack.clear_faults()
    if count == 1:
        group.restart(leader)
    else:
        group.wait_leader(exclude=leader, timeout=LEASE + 15)
    wait_until("every post delivered", lambda: all_sent(url), WAIT)
    return tally(url, slack)


def pause_run(group: Replicas, slack: FakeSlack, url: str, run: int) -> tuple[int, int, int]:
    group.start()
    group.wait_ready(timeout=60)
    old = group.wait_leader(timeout=30)
    # A burst: the incidents channel is paced at one post a second, so the leader is
    # in the middle of it when it freezes.
    for n in range(4):
        slash(f"{group[1 - old].url}/slack/events", f"p2 run {run} burst {n}")
    wait_until(
        "the first announcement in Slack",
        lambda: ("inc1:announce@slack", 0) in posted_keys(slack),
        WAIT,
    )
    group.sigstop(old)
    new = group.wait_leader(exclude=old, timeout=LEASE + 15)
    before = sum(posted_keys(slack).values())
    wait_until(  # the new leader delivers some of what the old one held
        "a post by the new leader",
        lambda: sum(posted_keys(slack).values()) > before,
        WAIT,
    )
    group.sigcont(old)
    # The resumed replica finds its lease gone and stops its workers; whatever it
    # would still have sent, it would have sent by then.
    group.wait_event(old, "leadership lost: standing by", timeout=LEASE + 15)
    wait_until("every post delivered", lambda: all_sent(url), WAIT)
    assert group.leader() == new
    return tally(url, slack)


@pytest.mark.parametrize("replicas", [1, 2])
def test_kill9_while_slack_holds_the_answer_of_a_stored_post(replicas: int, tmp_path: Path) -> None:
    if replicas == 2 and not PG_URL:
        pytest.skip("two replicas need PostgreSQL (PIRA_TEST_DATABASE_URL)")
    count = runs(tmp_path, replicas, kill_run)
    print(f"\nkill -9, {replicas} replica(s): {count}")
    assert count.runs == RUNS and count.posts > 0
    assert (count.doubled, count.lost) == (0, 0), count


def test_a_leader_paused_past_its_lease_sends_nothing_twice(tmp_path: Path) -> None:
    if not PG_URL:
        pytest.skip("two replicas need PostgreSQL (PIRA_TEST_DATABASE_URL)")
    count = runs(tmp_path, 2, pause_run)
    print(f"\nSIGSTOP past the lease, 2 replicas: {count}")
    assert count.runs == RUNS and count.posts > 0
    assert (count.doubled, count.lost) == (0, 0), count


TELEGRAM_GROUP = -1001234567890


def telegram_texts(tg: FakeTelegram) -> collections.Counter[str]:
    with tg._lock:
        return collections.Counter(
            str(m.get("text", "")) for m in tg.messages.get(TELEGRAM_GROUP, {}).values()
        )


def test_kill9_while_telegram_holds_the_answer_measured(tmp_path: Path) -> None:
    """Telegram has no history to look in: a post whose answer was lost to a kill -9
    is sent again after the restart. Measured, not hidden: every post arrives (none
    lost), and the doubles are counted and printed (the README gives a 50-run count)."""
    posts = doubled = lost = 0
    config = {
        **CONFIG,
        "channels": {"incidents": {"slack": "C0INCIDENTS", "telegram": str(TELEGRAM_GROUP)}},
    }
    for run in range(RUNS):
        (tmp_path / f"db{run}").mkdir()
        with (
            FakeSlack.in_thread() as slack,
            FakeTelegram.in_thread() as tg,
            fresh_database(tmp_path / f"db{run}") as url,
            bot_group(
                url,
                tmp_path / f"run{run}",
                1,
                {
                    **slack_env(slack),
                    "PIRA_TELEGRAM_TOKEN": tg.token,
                    "PIRA_TELEGRAM_API_URL": tg.url,
                },
                config=config,
            ) as group,
        ):
            tg.add_supergroup(TELEGRAM_GROUP, "Incidents")
            group.start()
            group.wait_ready(timeout=60)
            tg.respond_late("sendMessage", 30, times=None)
            slash(f"{group[0].url}/slack/events", f"p1 run {run} spark down")
            wait_until(
                "the announcement stored by Telegram",
                lambda: any("spark down" in t for t in telegram_texts(tg)),
                WAIT,
            )
            group.kill9(0)
            tg.clear_faults()
            group.restart(0)
            wait_until("every post delivered", lambda: all_sent(url, None), WAIT)
            texts = telegram_texts(tg)
            rows = outbox(url, "telegram")
            rows = [r for r in rows if not r.body.get("edit_of")]
            posts += len(rows)
            doubled += sum(n - 1 for n in texts.values() if n > 1)
            lost += max(0, len(rows) - len(texts))
            assert tally(url, slack)[1:] == (0, 0)  # Slack, in the same runs: exactly once
    print(f"\nkill -9, Telegram: {RUNS} runs, {posts} posts, {doubled} doubled, {lost} lost")
    assert posts > 0 and lost == 0
    assert doubled <= RUNS * 2  # at most the posts in flight at the kill, once each
