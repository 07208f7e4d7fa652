"""Diagnosed on arrival (issue 17, part 1): an incident declared from an Alertmanager
notification gets, in its room, /health scoped to the alert's labels — the runbook pattern
with its evidence, the Warning events, the pods' last error lines and the guarded mitigation
buttons — after its announcement and its page, as its own post.

The whole path is real: Alertmanager's POST over loopback HTTP, the batch worker, the outbox
and the Slack adapter against the fake Slack, the timers (the page) under leadership, and
the Kubernetes client against the fake API server seeded with the Spark platform."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import App
from bot.clock import FakeClock
from bot.settings import Config
from tests.fakes.kube_api import FakeKubeApi
from tests.fakes.slack_api import FakeSlack, RecordedCall
from tests.support.alert_bot import AUTH, alert, group
from tests.support.http import wait_healthy
from tests.support.promstack import LOOPBACK, free_port

pytestmark = pytest.mark.clock  # the page goes to whoever is on call: the clock is driven

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
CONFIG = Config.model_validate(
    {
        "severities": {"P1": {"page_after": "0s"}},  # paged at once: the page is in the race
        "oncall": {"rotation": {"members": ["alice"], "start": "2026-01-05"}},
        "channels": {"incidents": {"slack": "C0INCIDENTS"}},
        "people": {
            "alice": {"name": "Alice", "slack": "U0ALICE", "roles": ["responder", "operator"]},
        },
    }
)
OOM_LOG = (
    "INFO SparkContext: Running Spark version 3.5.1\n"
    "INFO DAGScheduler: Submitting 200 missing tasks from ResultStage 3\n"
    "ERROR Utils: Uncaught exception in thread driver-heartbeater\n"
    "java.lang.OutOfMemoryError: Java heap space\n"
    "ERROR SparkContext: Error initializing SparkContext (GC overhead limit exceeded)\n"
)


@pytest.fixture
async def bot(
    make_app: Callable[..., App], kube_api: FakeKubeApi, tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    """Start the bot (Slack + Kubernetes unless ``kube=False``); yields a starter that
    returns (app, fake Slack, URL of POST /alertmanager)."""
    started: list[tuple[App, asyncio.Event, asyncio.Task[None]]] = []
    async with FakeSlack() as slack:

        async def start(kube: bool = True) -> tuple[App, FakeSlack, str]:
            port = free_port()
            env = {
                "PIRA_SLACK_BOT_TOKEN": slack.bot_token,
                "PIRA_SLACK_SIGNING_SECRET": "0123456789abcdef0123456789abcdef",
                "PIRA_SLACK_API_URL": slack.url,
                "PIRA_HTTP_PORT": str(port),
                "PIRA_HTTP_HOST": LOOPBACK,
                "PIRA_ALERTMANAGER_TOKEN": AUTH["Authorization"].split()[1],
            }
            if kube:
                env["KUBECONFIG"] = str(kube_api.write_kubeconfig(tmp_path / "kubeconfig"))
            app = make_app(config=CONFIG, clock=FakeClock(NOW), env=env)
            for chat in app.chat_adapters():
                app.add_adapter(chat)
            await app.start()  # leadership: the timers page, the outbox delivers
            stop = asyncio.Event()
            task = asyncio.create_task(app.serve_forever(stop))
            started.append((app, stop, task))
            url = f"http://{LOOPBACK}:{port}"
            await wait_healthy(url)
            return app, slack, url

        try:
            yield start
        finally:
            for app, stop, task in started:
                stop.set()
                await task
                await app.stop()


async def post_alert(url: str, payload: dict[str, Any]) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/alertmanager", json=payload, headers=AUTH) as r,
    ):
        assert r.status == 200
        answer: dict[str, Any] = await r.json()
        return answer


def posted(channel: str | None = None, contains: str = "") -> Callable[[RecordedCall], bool]:
    def match(c: RecordedCall) -> bool:
        return bool(
            c.delivered
            and c.response
            and (channel is None or c.response.get("channel") == channel)
            and contains in str(c.params.get("text", ""))
        )

    return match


def button_labels(call: RecordedCall) -> list[str]:
    return [
        e["text"]["text"]
        for b in call.params.get("blocks") or []
        if b["type"] == "actions"
        for e in b["elements"]
    ]


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_an_oom_alert_gets_its_diagnosis_in_the_room_after_the_announcement_and_page(
    bot: Callable[..., Any], kube_api: FakeKubeApi, caplog: pytest.LogCaptureFixture
) -> None:
    # The seeded platform: etl-nightly-driver crash-looping, last ended OOMKilled, with a
    # BackOff event; add the node's OOM kill and the driver's log.
    kube_api.add_event(
        "OOMKilling",
        "Memory cgroup out of memory: Killed process 4242 (java) in etl-nightly-driver",
        kind="Node",
        name="node-1",
        at=NOW,
    )
    kube_api.set_logs("etl-nightly-driver", OOM_LOG)
    app, slack, url = await bot()
    payload = group(
        [alert("oom1", name="SparkDriverOOMKilled", severity="p1", pod="etl-nightly-driver")],
        key='{}:{alertname="SparkDriverOOMKilled"}',
    )

    sent_at = time.time()  # the fake records its calls on the same clock
    answer = await post_alert(url, payload)
    assert answer["status"] == "declared" and answer["incident"] == 1
    snapshot = await slack.wait_for(
        "chat.postMessage", posted(contains="#1 diagnosed on arrival"), timeout=30
    )

    # Within 5 s of the alert, as /health answers.
    assert snapshot.time - sent_at < 5.0
    text = str(snapshot.params["text"])
    # The runbook pattern with its evidence
    assert "**Driver OOM**" in text or "*Driver OOM*" in text
    assert "driver pod(s) killed for memory: etl-nightly-driver" in text
    # scoped to the alert's pod: the platform's other troubled pods are not in it
    assert "for the alert's namespace spark, pod etl-nightly-driver" in text
    assert "report-driver" not in text and "spark-connect-executor-9" not in text
    # the events: the pod's and the node's OOM kill
    assert "BackOff ×1: Pod etl-nightly-driver: Back-off restarting failed container" in text
    assert "OOMKilling ×1: Node node-1: Memory cgroup out of memory" in text
    # the last error lines of the pod
    assert "java.lang.OutOfMemoryError: Java heap space" in text
    assert "ERROR SparkContext: Error initializing SparkContext" in text
    assert "Running Spark version" not in text  # not an error line
    # the guarded mitigation: kill (restart) the driver; /kill asks to confirm when clicked
    labels = button_labels(snapshot)
    assert "Kill driver etl-nightly-driver" in labels
    assert "Whole platform: /health" in labels

    # In the incident's room, after the announcement and the page.
    ticket = next(c for c in slack.calls("chat.postMessage") if posted(contains="*Incident #1:")(c))
    assert snapshot.response["channel"] == ticket.response["channel"] != "C0INCIDENTS"
    announcement = next(
        c
        for c in slack.calls("chat.postMessage")
        if posted("C0INCIDENTS", "SparkDriverOOMKilled")(c)
    )
    page = next(c for c in slack.calls("chat.postMessage") if posted(None, "Page: [P1] #1")(c))
    assert page.params["channel"] == "U0ALICE"
    order = slack.calls("chat.postMessage")
    assert order.index(announcement) < order.index(snapshot)
    assert order.index(page) < order.index(snapshot)
    assert float(announcement.response["ts"]) < float(snapshot.response["ts"])
    assert float(page.response["ts"]) < float(snapshot.response["ts"])

    # Kept for the root cause's category, as /health in the room does.
    assert (app.incidents.get(1).details or {}).get("seen_category") == "driver-oom"
    assert errors_logged(caplog) == []


@pytest.mark.parametrize(
    ("labels", "where"),
    [
        ({"pod": "no-such-pod-7"}, "namespace spark, pod no-such-pod-7"),
        ({"namespace": "nowhere"}, "namespace nowhere, the platform's pods"),
    ],
)
async def test_an_alert_naming_nothing_in_the_cluster_gets_one_line_and_its_announcement(
    bot: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    labels: dict[str, str],
    where: str,
) -> None:
    app, slack, url = await bot()
    payload = group(
        [alert("gone1", name="KubePodCrashLooping", severity="p1", **labels)],
        key='{}:{alertname="KubePodCrashLooping"}',
    )
    assert (await post_alert(url, payload))["status"] == "declared"
    line = await slack.wait_for(
        "chat.postMessage", posted(contains="#1: nothing in the cluster matches"), timeout=30
    )
    assert f"({where}): no such pods" in str(line.params["text"])
    assert not any("diagnosed on arrival" in str(c.params) for c in slack.calls())
    calls = slack.calls("chat.postMessage")
    announcement = next(c for c in calls if posted("C0INCIDENTS", "KubePodCrashLooping")(c))
    assert calls.index(announcement) < calls.index(line)
    assert errors_logged(caplog) == []
    assert app.arrival.busy == 0


async def test_without_a_cluster_an_alert_is_announced_and_nothing_is_diagnosed(
    bot: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    app, slack, url = await bot(kube=False)
    payload = group([alert("x1", severity="p1")])
    assert (await post_alert(url, payload))["status"] == "declared"
    # Told synchronously after the commit: nothing was started for it.
    assert app.arrival.busy == 0
    await slack.wait_for("chat.postMessage", posted("C0INCIDENTS", "SparkExecutorLoss"), timeout=30)
    await slack.wait_for("chat.postMessage", posted(None, "Page: [P1] #1"), timeout=30)
    assert not any("diagnosed on arrival" in str(c.params) for c in slack.calls())
    assert not any("🩺" in str(c.params) for c in slack.calls())
    assert errors_logged(caplog) == []
