"""Issue 6: ``POST /alertmanager`` over real HTTP against the App's own aiohttp server
(``App.serve_forever``), with real payload fixtures, a real database and the console
adapter collecting what the chat would see."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.clock import FakeClock
from bot.store.models import TimelineEvent, Timer
from tests.support.alert_bot import AUTH, TOKEN, StartBot, alert, group

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "alertmanager"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


# ---- refusals: nothing stored, the bot fine -------------------------------------------


async def test_missing_and_wrong_token_are_401_and_store_nothing(start_bot: StartBot) -> None:
    bot = await start_bot()
    body = fixture("am-0.25-driver-oom-firing.json")
    for headers, reason in [
        ({}, "missing bearer token"),
        ({"Authorization": "Bearer nope"}, "wrong bearer token"),
        ({"Authorization": f"Basic {TOKEN}"}, "missing bearer token"),
        ({"Authorization": f"Bearer {TOKEN}x"}, "wrong bearer token"),
    ]:
        status, answer = await bot.post(body, headers)
        assert (status, answer["error"]) == (401, reason)
    assert bot.counts() == (0, 0, 0)
    assert (await bot.post(body))[0] == 200  # the right token still works
    assert bot.counts()[0] == 1


async def test_no_token_configured_refuses_everything(start_bot: StartBot) -> None:
    bot = await start_bot(token=None)
    status, answer = await bot.post(fixture("am-0.25-driver-oom-firing.json"))
    assert status == 403
    assert "PIRA_ALERTMANAGER_TOKEN is not set" in answer["error"]
    assert bot.counts() == (0, 0, 0)


async def test_no_token_but_explicitly_opened(start_bot: StartBot) -> None:
    bot = await start_bot(token=None, config={"alertmanager": {"allow_unauthenticated": True}})
    status, answer = await bot.post(fixture("am-0.25-driver-oom-firing.json"), headers={})
    assert (status, answer["status"]) == (200, "declared")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"version": "4", "groupKey": ', "malformed JSON"),
        (b"[1, 2]", "payload must be a JSON object"),
        (
            json.dumps({**fixture("am-0.25-driver-oom-firing.json"), "version": "3"}).encode(),
            "unsupported payload version '3'",
        ),
        (
            json.dumps(
                {"version": "4", "receiver": "x", "status": "firing", "alerts": []}
            ).encode(),
            "missing field groupKey",
        ),
    ],
)
async def test_bad_payloads_are_400_with_the_reason(
    start_bot: StartBot, body: bytes, reason: str
) -> None:
    bot = await start_bot()
    status, answer = await bot.post(body)
    assert status == 400
    assert answer["error"].startswith(reason)
    assert bot.counts() == (0, 0, 0)
    async with bot.http.get(f"{bot.url}/healthz") as r:
        assert r.status == 200


async def test_20_mb_body_is_413_with_and_without_content_length(start_bot: StartBot) -> None:
    bot = await start_bot()
    big = b'{"version": "4", "pad": "' + b"x" * (20 * 1024 * 1024) + b'"}'
    status, answer = await bot.post(big)
    assert status == 413
    assert "over 5242880 bytes" in answer["error"]

    async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length to look at
        for i in range(0, len(big), 1024 * 1024):
            yield big[i : i + 1024 * 1024]

    async with bot.http.post(f"{bot.url}/alertmanager", data=chunks(), headers=AUTH) as r:
        assert r.status == 413
        assert "over 5242880 bytes" in (await r.json())["error"]
    assert bot.counts() == (0, 0, 0)
    assert (await bot.post(fixture("am-0.25-driver-oom-firing.json")))[0] == 200


async def test_metrics_count_received_accepted_rejected(start_bot: StartBot) -> None:
    bot = await start_bot()
    await bot.post(fixture("am-0.25-driver-oom-firing.json"))
    await bot.post(b"nope")
    await bot.post(fixture("am-0.25-driver-oom-firing.json"), headers={})
    async with bot.http.get(f"{bot.url}/metrics") as r:
        text = await r.text()
    assert 'pira_alertmanager_requests_total{outcome="accepted"} 1.0' in text
    assert 'pira_alertmanager_requests_total{outcome="invalid"} 1.0' in text
    assert 'pira_alertmanager_requests_total{outcome="unauthorized"} 1.0' in text
    assert 'pira_alertmanager_alerts_received_total{status="firing"} 1.0' in text
    assert "pira_alertmanager_alerts_accepted_total 1.0" in text


# ---- alerts to incidents ----------------------------------------------------------------


async def test_unknown_fields_ignored_and_ticket_has_links_and_labels(start_bot: StartBot) -> None:
    bot = await start_bot()
    status, answer = await bot.post(fixture("mixed-group-critical.json"))  # someFutureField
    assert (status, answer) == (200, {"status": "declared", "incident": 1, "severity": "P0"})
    [incident] = bot.incidents()
    assert incident.title == "KubePodCrashLooping"  # the first firing alert has no summary
    assert incident.source == "alertmanager" and incident.reporter == "alertmanager"
    # The earliest startsAt (09:40:12+01:00), not the time PIRA heard of it.
    assert incident.started_at == datetime(2026, 11, 29, 8, 40, 12, tzinfo=UTC)
    assert (
        incident.alert_group_key is not None and "KubePodCrashLooping" in incident.alert_group_key
    )
    posts = await bot.driver.posts()
    ticket = next(p.text for p in posts if p.tag == "#incident-1" and "Incident #1" in p.text)
    assert (
        "http://prometheus-k8s-0:9090/graph?g0.expr=kube_pod_container_status_restarts_total"
        in ticket
    )
    assert "https://runbooks.example.com/KubePodCrashLooping" in ticket
    assert "namespace=spark" in ticket and "alertname=KubePodCrashLooping" in ticket
    assert [p.tag for p in posts].count("#incidents") == 1


async def test_missing_severity_label_gets_the_default(start_bot: StartBot) -> None:
    bot = await start_bot(config={"alertmanager": {"default_severity": "p3"}})
    status, answer = await bot.post(fixture("no-severity-no-summary.json"))
    assert (status, answer["severity"]) == (200, "P3")
    assert bot.incidents()[0].title == "SparkConnectSlowQueries"  # no summary: the alert name


async def test_configured_severity_map(start_bot: StartBot) -> None:
    bot = await start_bot(config={"alertmanager": {"severity_map": {"warning": "p1"}}})
    status, answer = await bot.post(group([alert("a", severity="warning")]))
    assert (status, answer["severity"]) == (200, "P1")


# ---- no noise ---------------------------------------------------------------------------


async def test_resent_and_concurrent_posts_make_one_incident(start_bot: StartBot) -> None:
    bot = await start_bot()
    body = fixture("am-0.25-driver-oom-firing.json")
    # Two Alertmanagers at the same instant, several times over.
    answers = await asyncio.gather(*(bot.post(body) for _ in range(8)))
    assert all(status == 200 for status, _ in answers)
    assert sorted(a["status"] for _, a in answers) == ["declared"] + ["unchanged"] * 7
    after_first = bot.counts()
    for _ in range(3):  # group_interval / repeat_interval re-sends
        assert (await bot.post(body))[1] == {"status": "unchanged", "incident": 1}
    assert bot.counts() == after_first
    assert len(bot.incidents()) == 1
    assert len(bot.posts("incidents", '"template": "announce"')) == 1


async def test_two_replicas_on_one_database_make_one_incident(start_bot: StartBot) -> None:
    one = await start_bot()
    two = await start_bot()  # same database (make_app's db_url)
    body = fixture("mixed-group-critical.json")
    for _ in range(3):
        answers = await asyncio.gather(*(b.post(body) for b in (one, two, one, two)))
        assert all(status == 200 for status, _ in answers)
    assert len(one.incidents()) == 1
    assert len(one.posts("incidents", '"template": "announce"')) == 1


async def test_new_alert_adds_one_timeline_line(start_bot: StartBot) -> None:
    bot = await start_bot()
    await bot.post(group([alert("a", pod="p1")]))
    _, lines, _ = bot.counts()
    body = group([alert("a", pod="p1"), alert("b", pod="p2")])
    status, answer = await bot.post(body)
    assert (status, answer["status"], answer["new"]) == (200, "updated", 1)
    await bot.post(body)  # re-sent: nothing more
    with bot.app.store.read() as s:
        added = s.scalars(
            select(TimelineEvent.text)
            .where(TimelineEvent.kind == "alert")
            .order_by(TimelineEvent.id)
        ).all()
    assert bot.counts()[1] == lines + 1
    assert added[-1] == "new alert: SparkExecutorLoss in spark (pod=p2)"
    assert len(bot.posts("incident:1", "new alert in the group")) == 1


async def test_higher_severity_raises_and_replans_timers(start_bot: StartBot) -> None:
    clock = FakeClock()
    bot = await start_bot(clock=clock)
    await bot.post(group([alert("a", severity="p2")]))
    [incident] = bot.incidents()
    assert incident.severity == "P2"

    def first_page() -> datetime:
        with bot.app.store.read() as s:
            row = s.scalar(select(Timer).where(Timer.key == f"inc{incident.id}:page:0"))
            assert row is not None and row.cancelled_at is None
            return row.due_at

    assert first_page() == incident.detected_at + timedelta(hours=1)  # P2 pages after 1 h
    clock.advance(timedelta(minutes=5))
    status, _ = await bot.post(group([alert("a", severity="p2"), alert("b", severity="critical")]))
    assert status == 200
    assert bot.incidents()[0].severity == "P0"
    assert first_page() == incident.detected_at  # P0 pages at once
    assert len(bot.posts("incidents", "Severity raised from P2 to P0")) == 1
    # A lower severity later does not lower it.
    await bot.post(group([alert("a", severity="p3"), alert("b", severity="p3")]))
    assert bot.incidents()[0].severity == "P0"


async def test_resolved_alert_posted_once_and_resolve_proposed(start_bot: StartBot) -> None:
    bot = await start_bot()
    await bot.post(fixture("am-0.25-driver-oom-firing.json"))
    resolved = fixture("am-0.25-driver-oom-resolved.json")
    for _ in range(3):
        assert (await bot.post(resolved))[0] == 200
    [post] = bot.posts("incident:1", "alert resolved")
    assert post.body["buttons"] == [
        {"label": "Resolve", "command": "/resolve #1 alerts resolved", "style": "primary"}
    ]
    assert "/resolve #1 <root cause>" in post.body["data"]["text"]
    assert bot.incidents()[0].status == "investigating"  # P2: no automatic resolution


async def test_partial_resolution_does_not_propose_resolve(start_bot: StartBot) -> None:
    bot = await start_bot()
    await bot.post(group([alert("a", pod="p1"), alert("b", pod="p2")]))
    await bot.post(group([alert("a", pod="p1", status="resolved"), alert("b", pod="p2")]))
    [post] = bot.posts("incident:1", "alert resolved")
    assert post.body["buttons"] == []
    assert "pod=p1" in post.body["data"]["text"]


async def test_group_firing_again_after_resolution(start_bot: StartBot) -> None:
    bot = await start_bot()
    body = group([alert("a")])
    await bot.post(body)
    reply = await bot.driver.say("/resolve #1 executor node drained")
    assert reply.ok
    # The same alerts still firing (a repeat): the humans decided; no new incident.
    assert (await bot.post(body))[1] == {"status": "unchanged", "incident": 1}
    assert len(bot.incidents()) == 1
    # A new episode (later startsAt): a new incident takes the group key.
    again = group([alert("a", starts="2026-11-30T09:30:00Z")])
    status, answer = await bot.post(again)
    assert (status, answer["status"], answer["incident"]) == (200, "declared", 2)
    old, new = bot.incidents()
    assert old.alert_group_key is None and old.details["alert_group_key"] == body["groupKey"]
    assert new.alert_group_key == body["groupKey"] and new.details["repeat_of"] == 1
    assert (await bot.post(again))[1]["status"] == "unchanged"


async def test_resolved_for_unknown_group_is_ignored(start_bot: StartBot) -> None:
    bot = await start_bot()
    status, answer = await bot.post(fixture("am-0.25-driver-oom-resolved.json"))
    assert (status, answer["status"]) == (200, "ignored")
    assert bot.counts() == (0, 0, 0)


async def test_storm_batches_into_one_announcement_per_incident(start_bot: StartBot) -> None:
    bot = await start_bot()
    bodies = []
    for g in range(20):
        alerts = [alert(f"{g}-{i}", pod=f"p{i}") for i in range(50)]
        bodies.append(group(alerts, key=f"storm-{g}"))
    sent = [copy.deepcopy(b) for b in bodies] * 2  # two Alertmanagers
    answers = await asyncio.gather(*(bot.post(b) for b in sent))
    assert all(status == 200 for status, _ in answers)
    assert len(bot.incidents()) == 20
    assert len(bot.posts("incidents", '"template": "announce"')) == 20


async def test_the_category_comes_from_what_the_alert_saw_when_the_root_cause_says_none(
    start_bot: StartBot,
) -> None:
    bot = await start_bot()
    await bot.post(fixture("am-0.25-driver-oom-firing.json"))
    await bot.post(group([alert("a", name="SparkExecutorLoss")]))
    # Root causes naming no pattern: the alerts' patterns are recorded.
    assert (await bot.driver.say("/resolve #1 restarted the nightly job")).ok
    assert (await bot.driver.say("/resolve #2 fixed")).ok
    # A root cause that names one wins over the alert.
    await bot.post(group([alert("b", name="SparkHighLoad")], key='{}:{alertname="X"}'))
    assert (await bot.driver.say("/resolve #3 disk full on the shuffle volume")).ok
    assert [i.category for i in bot.incidents()] == [
        "driver-oom",
        "executor-loss",
        "storage-issue",
    ]
