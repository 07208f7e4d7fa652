"""The dead-man's switch at its real pace: the shipped Watchdog rule, evaluated by a real
Prometheus, reaches a loopback webhook through a real Alertmanager running the shipped
deploy/alertmanager/alertmanager.yaml, and is repeated there every minute.

Nothing of the Watchdog is shortened: the rule is rules.yaml's own (copied unchanged
into a file of its own, so that no other alert of rules.yaml joins in), and
Alertmanager runs the shipped routes with their shipped timings; only the webhook's
URL and its credentials file point at this test. PIRA's ``alerts.watchdog`` declares
"Monitoring is blind" after 10 minutes without one: this is the proof that the shipped
files send one a minute.

Alertmanager checks a group's repeat_interval on its group_interval ticks (1m here):
with repeat_interval 1m the tick a minute after a notification finds the repeat not
quite due, and it comes every 2 minutes (measured with Alertmanager 0.25, Debian 12);
the shipped 50s makes it every minute. The first arrives about 60 s after the alert (in
spite of group_wait: 0s). About two minutes and a half in all: run only with
PIRA_REAL_RATE_TESTS=1 (CI's SQLite pass sets it).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.promstack import (
    DEPLOY_ALERTMANAGER,
    DEPLOY_RULES,
    alertmanager_config_for_test,
    require_binaries,
    run_alertmanager,
    run_prometheus,
    webhook_receiver,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("PIRA_REAL_RATE_TESTS"),
        reason="two to three minutes at Alertmanager's real pace; set PIRA_REAL_RATE_TESTS=1",
    ),
]

WATCHDOG = "Watchdog"
TOKEN = "watchdog-token-3e9b"
FIRST_TIMEOUT = 150.0  # Prometheus' start, its first evaluation, the group's first flush
SECOND_TIMEOUT = 150.0  # after the first: repeat_interval 50s on 1m group_interval ticks
# Where the second may arrive after the first: a repeat is due 50 s after the last one
# and sent on the next group_interval tick, a minute after the first flush.
REPEAT_WINDOW = (50.0, 75.0)


@dataclass
class Notification:
    arrived: float  # time.monotonic() when the request came in
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class WatchdogReceiver:
    """A loopback webhook recording Alertmanager's Watchdog notifications (answers 200)."""

    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    notifications: list[Notification] = field(default_factory=list)
    others: int = 0  # requests that were not a Watchdog notification
    first: threading.Event = field(default_factory=threading.Event)
    second: threading.Event = field(default_factory=threading.Event)

    def record(self, arrived: float, headers: dict[str, str], raw: bytes) -> None:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with self.lock:
            if not isinstance(body, dict) or body.get("groupLabels") != {"alertname": WATCHDOG}:
                self.others += 1
                return
            self.notifications.append(Notification(arrived, headers, body))
            count = len(self.notifications)
        if count >= 1:
            self.first.set()
        if count >= 2:
            self.second.set()

    def snapshot(self) -> list[Notification]:
        with self.lock:
            return list(self.notifications)


@pytest.fixture
def receiver() -> Iterator[WatchdogReceiver]:
    state = WatchdogReceiver()

    def record(_path: str, headers: dict[str, str], body: bytes) -> None:
        state.record(time.monotonic(), headers, body)

    with webhook_receiver(record) as url:
        state.url = url
        yield state


def shipped_watchdog_rule(dest: Path) -> Path:
    """rules.yaml's Watchdog rule, unchanged, alone in a rule file."""
    groups = yaml.safe_load(DEPLOY_RULES.read_text())["groups"]
    found = [
        (group, rule)
        for group in groups
        for rule in group["rules"]
        if rule.get("alert") == WATCHDOG
    ]
    assert len(found) == 1, "rules.yaml must have exactly one Watchdog rule"
    group, rule = found[0]
    dest.write_text(yaml.safe_dump({"groups": [{"name": group["name"], "rules": [rule]}]}))
    return dest


def watchdog_route(config: dict[str, Any]) -> dict[str, Any]:
    routes = [
        r for r in config["route"]["routes"] if r.get("matchers") == [f'alertname = "{WATCHDOG}"']
    ]
    assert len(routes) == 1
    return routes[0]


def test_the_shipped_watchdog_reaches_the_webhook_every_minute(
    receiver: WatchdogReceiver, tmp_path: Path
) -> None:
    require_binaries("prometheus", "alertmanager")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    config_text = alertmanager_config_for_test(receiver.url, token_file, shorten_waits=False)
    # The route Alertmanager runs is the shipped one, timings and all.
    shipped = yaml.safe_load(DEPLOY_ALERTMANAGER.read_text())
    assert watchdog_route(yaml.safe_load(config_text)) == watchdog_route(shipped)
    assert watchdog_route(shipped)["repeat_interval"] == "50s"
    rules = shipped_watchdog_rule(tmp_path / "watchdog.yaml")

    with (
        run_alertmanager(config_text) as alertmanager,
        run_prometheus([], rule_files=[rules], alertmanager=alertmanager.url) as prometheus,
    ):

        def logs() -> str:
            return (
                f"{len(receiver.snapshot())} Watchdog notification(s), {receiver.others} other"
                f" request(s)\nalertmanager:\n{alertmanager.log_tail()}\n"
                f"prometheus:\n{prometheus.log_tail()}"
            )

        assert receiver.first.wait(FIRST_TIMEOUT), f"no Watchdog notification\n{logs()}"
        assert receiver.second.wait(SECOND_TIMEOUT), f"the Watchdog was not repeated\n{logs()}"

    first, second = receiver.snapshot()[:2]
    gap = second.arrived - first.arrived
    low, high = REPEAT_WINDOW
    assert low <= gap <= high, f"second Watchdog notification {gap:.1f}s after the first"
    for note in (first, second):
        assert note.headers.get("Authorization") == f"Bearer {TOKEN}"
        body = note.body
        assert body["version"] == "4"
        assert body["receiver"] == "pira"
        assert body["status"] == "firing"
        assert body["groupLabels"] == {"alertname": WATCHDOG}
        (alert,) = body["alerts"]
        assert alert["status"] == "firing"
        assert alert["labels"] == {"alertname": WATCHDOG, "severity": "none"}
        assert "dead-man's switch" in alert["annotations"]["description"]
    # A repeat of the same group and the same firing alert, not a new one.
    assert first.body["groupKey"] == second.body["groupKey"]
    assert first.body["alerts"][0]["startsAt"] == second.body["alerts"][0]["startsAt"]
    assert first.body["alerts"][0]["fingerprint"] == second.body["alerts"][0]["fingerprint"]
