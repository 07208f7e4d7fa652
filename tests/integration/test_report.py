"""Issue 12: the monthly report — /report, `pira report` and the monthly calendar post —
over a month of incidents whose times the test chose (the clock is driven), with the
expected metrics computed here by hand from those times."""

from __future__ import annotations

import asyncio
import io
import json
import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image
from sqlalchemy import select

from bot.alert_mapping import RULES_FILE, read_rule_for
from bot.app import App
from bot.clock import FakeClock
from bot.settings import Config
from bot.store.models import Incident, OutboxMessage, StoredFile, Timer
from tests.support.driver import Driver
from tests.support.http import wait_healthy
from tests.support.promstack import LOOPBACK, free_port
from tests.support.travel import pira_command

pytestmark = pytest.mark.clock

TOKEN = "report-am-token"
ROOT = Path(__file__).resolve().parents[2]
CONFIG = {
    "timezone": "Europe/Berlin",  # UTC+1 in November: local times in the flags below
    "people": {"alice": {"roles": ["responder"]}, "bob": {}},
}


def at(day: str, hhmm: str, *, month: int = 11) -> datetime:
    h, m = hhmm.split(":")
    return datetime(2025, month, int(day), int(h), int(m), tzinfo=UTC)


def alert_group(starts: datetime) -> dict[str, Any]:
    """One firing SparkJobFailureRateHigh (its shipped rule has ``for: 5m``)."""
    labels = {"alertname": "SparkJobFailureRateHigh", "namespace": "spark", "severity": "p1"}
    return {
        "version": "4",
        "groupKey": '{}:{alertname="SparkJobFailureRateHigh"}',
        "receiver": "pira",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": "Spark job failure rate high in spark"},
                "startsAt": starts.isoformat().replace("+00:00", "Z"),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": "f00dfeedf00dfeed",
            }
        ],
        "groupLabels": {"alertname": "SparkJobFailureRateHigh"},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "truncatedAlerts": 0,
    }


@pytest.fixture
async def served(
    make_app: Callable[..., App],
) -> AsyncIterator[tuple[App, Driver, FakeClock, str]]:
    clock = FakeClock(at("20", "10:00", month=10))
    port = free_port()
    env = {
        "PIRA_HTTP_PORT": str(port),
        "PIRA_HTTP_HOST": LOOPBACK,
        "PIRA_ALERTMANAGER_TOKEN": TOKEN,
    }
    app = make_app(config=Config.model_validate(CONFIG), clock=clock, env=env)
    driver = Driver(app)
    await app.start(scheduler=False)
    stop = asyncio.Event()
    task = asyncio.create_task(app.serve_forever(stop))
    url = f"http://{LOOPBACK}:{port}"
    await wait_healthy(url)
    yield app, driver, clock, url
    stop.set()
    await task
    await app.stop()


async def say(d: Driver, clock: FakeClock, when: datetime, text: str, **kw: Any) -> str:
    clock.set(when)
    reply = await d.say(text, "alice", **kw)
    assert reply.ok, d.text(reply)
    return d.text(reply)


def metric_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("- ")]


async def test_a_month_of_incidents_reported_three_ways(
    served: tuple[App, Driver, FakeClock, str], db_url: str, tmp_path: Path
) -> None:
    app, d, clock, url = served

    # October: #1, a driver OOM resolved on Oct 20 11:00 (not in November's counts).
    await say(d, clock, at("20", "10:00", month=10), "/incident p2 driver restarts")
    await say(d, clock, at("20", "11:00", month=10), "/resolve #1 driver OOM: java heap space")

    # #2 P0, declared 10:00 UTC; --started 10:52 Berlin = 09:52 UTC; resolved 10:45.
    # A repeat across the month boundary: driver OOM again, 13 days after #1 resolved.
    await say(
        d, clock, at("03", "10:00"), "/incident p0 all jobs failing --started 2025-11-03 10:52"
    )
    await say(d, clock, at("03", "10:45"), "/resolve #2 driver OOM after a bad deploy")

    # #3 P1 from Alertmanager at 12:00: startsAt 11:57, rule "for: 5m" → start 11:52.
    clock.set(at("10", "12:00"))
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{url}/alertmanager",
            data=json.dumps(alert_group(at("10", "11:57"))),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        ) as r,
    ):
        assert r.status == 200, await r.text()
        assert (await r.json())["status"] == "declared"
    await say(d, clock, at("10", "13:30"), "/resolve #3 network timeout to the metastore")

    # #4 P1, start unknown; 08:00 → 10:00; network timeout again: a repeat of #3.
    await say(d, clock, at("12", "08:00"), "/incident p1 jobs slow")
    await say(d, clock, at("12", "10:00"), "/resolve #4 network timeout again")

    # #5 P0, --started 4m ago at 15:00; resolved 15:20; storage: no repeat.
    await say(d, clock, at("20", "15:00"), "/incident p0 shuffle writes failing --started 4m ago")
    await say(d, clock, at("20", "15:20"), "/resolve #5 disk full on the shuffle volume")

    # #6 P2, start unknown, category "other" (counted among the categorized, never a repeat).
    await say(d, clock, at("25", "09:00"), "/incident p2 a job misbehaves")
    await say(d, clock, at("25", "09:30"), "/resolve #6 a typo in the job config")
    await d.posts()

    with app.store.read() as s:
        inc = {i.number: i for i in s.scalars(select(Incident))}
    assert inc[2].started_at == at("03", "09:52") and inc[2].details["start_known"] is True
    assert inc[3].started_at == at("10", "11:57") - timedelta(minutes=5)
    assert inc[3].details["start_known"] is True
    assert inc[5].started_at == at("20", "14:56") and inc[5].details["start_known"] is True
    assert not inc[4].details.get("start_known") and not inc[6].details.get("start_known")

    # By hand, from the times above.
    mttd = (
        (at("03", "10:00") - at("03", "09:52"))
        + (at("10", "12:00") - (at("10", "11:57") - timedelta(minutes=5)))
        + (at("20", "15:00") - (at("20", "15:00") - timedelta(minutes=4)))
    ) / 3
    assert mttd == timedelta(minutes=6, seconds=40)  # ≥ 5 min: ❌
    mttr_p0 = (
        (at("03", "10:45") - at("03", "10:00")) + (at("20", "15:20") - at("20", "15:00"))
    ) / 2
    assert mttr_p0 == timedelta(minutes=32, seconds=30)  # ≥ 30 min: ❌
    mttr_p1 = (
        (at("10", "13:30") - at("10", "12:00")) + (at("12", "10:00") - at("12", "08:00"))
    ) / 2
    assert mttr_p1 == timedelta(hours=1, minutes=45)  # < 2 h: ✅
    repeats, categorized = len([2, 4]), len([2, 3, 4, 5, 6])
    assert repeats / categorized == 0.4  # ≥ 10 %: ❌
    expected = [
        "- MTTD: 6 min 40 s (target < 5 min) ❌",
        "- MTTR P0: 32 min 30 s (target < 30 min) ❌",
        "- MTTR P1: 1 h 45 min (target < 2 h) ✅",
        "- P0 count: 2 (target < 5) ✅",
        "- P1 count: 2 (target < 10) ✅",
        "- Repeat incidents: 40 % (2 of 5) (target < 10 %) ❌",
        "- start unknown: 2",
    ]

    # /report in #incidents during the month: this month so far.
    text = await say(d, clock, at("28", "12:00"), "/report")
    assert text.startswith("📊 **Incident report 2025-11** (so far)")
    assert metric_lines(text) == expected
    # /report 2025-11 from #incident-5's room, on Dec 1 before the monthly post.
    app.timers.plan_calendar()  # planned from Nov 28: the next monthly post is Dec 1
    text = await say(d, clock, at("01", "07:00", month=12), "/report 2025-11", room=5)
    assert text.startswith("📊 **Incident report 2025-11**\n") and metric_lines(text) == expected
    posts = await d.posts()
    assert [p.tag for p in posts] == ["#incidents", "#incident-5"]
    assert metric_lines(posts[1].text)[: len(expected)] == expected  # the chart's caption
    with app.store.read() as s:
        charts = list(s.scalars(select(StoredFile).where(StoredFile.kind == "report-chart")))
        rows = list(
            s.scalars(select(OutboxMessage).where(OutboxMessage.destination == "incident:5"))
        )
    assert len(charts) == 2 and charts[1].name == "pira-report-2025-11.png"
    assert charts[1].mime == "image/png" and charts[1].created_by == "alice"
    assert [r.body["file"] for r in rows if r.body["template"] == "report"] == [charts[1].id]
    with Image.open(io.BytesIO(charts[1].content)) as png:
        assert (png.format, png.size) == ("PNG", (1200, 600))

    # Nothing month-like still to come, nor a bad month.
    bad = await d.say("/report 2025-13", "bob")
    assert not bad.ok and "'2025-13' is not a month" in d.text(bad)
    later = await d.say("/report 2026-01", "bob")
    assert not later.ok and "2026-01 is still to come" in d.text(later)

    # `pira report` as a process: the same table, the chart written.
    out = tmp_path / "x.png"
    env = {**os.environ, "PIRA_DATABASE_URL": db_url, "PIRA_CONFIG": ""}
    config = tmp_path / "pira.yaml"
    config.write_text(json.dumps(CONFIG))
    proc = await asyncio.create_subprocess_exec(
        *pira_command("report", "--month", "2025-11", "--out", str(out), "--config", str(config)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    assert stdout.decode().strip() == text
    with Image.open(out) as png:
        assert (png.format, png.size) == ("PNG", (1200, 600))
    proc = await asyncio.create_subprocess_exec(
        *pira_command("report", "--month", "11-2025", "--out", str(out)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 2 and stdout == b""
    assert "pira: --month: '11-2025' is not a month" in stderr.decode()

    # The monthly calendar post (Dec 1 09:00 Berlin = 08:00 UTC): this report, and its chart.
    clock.set(at("01", "08:00", month=12) + timedelta(seconds=1))
    await app.timers.fire_due()
    monthly = [p for p in await d.posts() if "Monthly incident summary" in p.text]
    assert [p.tag for p in monthly] == ["#incidents"]
    assert monthly[0].text.startswith("📊 **Monthly incident summary 2025-11**")
    assert metric_lines(monthly[0].text)[: len(expected)] == expected
    with app.store.read() as s:
        chart = s.scalars(
            select(StoredFile).where(StoredFile.kind == "report-chart").order_by(StoredFile.id)
        ).all()[-1]
        row = s.scalar(
            select(OutboxMessage).where(OutboxMessage.body["template"].as_string() == "monthly")
        )
    assert row is not None and row.body["file"] == chart.id
    assert chart.name == "pira-report-2025-11.png" and chart.created_by == "pira"
    with Image.open(io.BytesIO(chart.content)) as png:
        assert png.size == (1200, 600)

    # The quarterly retrospective reminder: planned for Jan 1 10:00 Berlin, fired once.
    with app.store.read() as s:
        quarterly = s.scalar(
            select(Timer).where(Timer.kind == "quarterly-retro", Timer.fired_at.is_(None))
        )
    assert quarterly is not None and quarterly.due_at == datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    clock.set(datetime(2026, 1, 1, 8, 59, 59, tzinfo=UTC))
    await app.timers.fire_due()
    assert [p for p in await d.posts() if "Quarterly" in p.text] == []
    clock.set(datetime(2026, 1, 1, 9, 0, 1, tzinfo=UTC))
    await app.timers.fire_due()
    await app.timers.fire_due()
    retro = [p for p in await d.posts() if "Quarterly" in p.text]
    assert len(retro) == 1 and retro[0].tag == "#incidents"
    assert "2025-Q4" in retro[0].text
    named = [line for line in retro[0].text.splitlines() if line.startswith("- #")]
    assert [line.split(" ", 3)[1:3] for line in named] == [
        ["#2", "[P0]"],
        ["#3", "[P1]"],
        ["#4", "[P1]"],
        ["#5", "[P0]"],
    ]
    assert "detected 2025-11-03 11:00 CET: driver OOM after a bad deploy" in named[0]
    with app.store.read() as s:
        nxt = s.scalar(
            select(Timer).where(Timer.kind == "quarterly-retro", Timer.fired_at.is_(None))
        )
    assert nxt is not None and nxt.due_at == datetime(2026, 4, 1, 8, 0, tzinfo=UTC)  # CEST


async def test_alert_start_is_startsat_less_for_where_the_for_is_known(
    served: tuple[App, Driver, FakeClock, str], tmp_path: Path
) -> None:
    app, _d, clock, url = served
    clock.set(at("10", "12:00"))
    starts = at("10", "11:57")
    annotated = alert_group(starts)
    annotated["groupKey"] = "annotated"
    annotated["alerts"][0]["labels"]["alertname"] = "CustomRule"
    annotated["alerts"][0]["annotations"]["for"] = "3m"
    unknown = alert_group(starts)
    unknown["groupKey"] = "unknown"
    unknown["alerts"][0]["labels"]["alertname"] = "CustomRule"
    async with aiohttp.ClientSession() as http:
        for body in (alert_group(starts), annotated, unknown):
            async with http.post(
                f"{url}/alertmanager",
                data=json.dumps(body),
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            ) as r:
                assert r.status == 200, await r.text()
    with app.store.read() as s:
        found = {i.number: i for i in s.scalars(select(Incident))}
    # the shipped rule's for (5m), the alert's own annotation (3m), neither: startsAt.
    assert found[1].started_at == starts - timedelta(minutes=5) and found[1].details["start_known"]
    assert found[2].started_at == starts - timedelta(minutes=3) and found[2].details["start_known"]
    assert found[3].started_at == starts and "start_known" not in found[3].details
    # Without the rules file (an image without deploy/): only annotations are known.
    assert read_rule_for(tmp_path / "missing.yaml") == {}
    assert read_rule_for(RULES_FILE)["SparkJobFailureRateHigh"] == timedelta(minutes=5)


async def test_incident_started_flag_errors_change_nothing(make_app: Callable[..., App]) -> None:
    clock = FakeClock(at("03", "10:00"))
    app = make_app(config=Config.model_validate(CONFIG), clock=clock)
    d = Driver(app)
    await app.start(scheduler=False)
    try:
        for text, error in [
            ("/incident p1 jobs failing --started", "--started needs a time"),
            ("/incident p1 jobs failing --started soon", "Not a time: 'soon'"),
            ("/incident p1 jobs failing --started 2025-11-03 12:00", "is still to come"),
            ("/incident p1 --started 5m ago", "The title is missing"),
        ]:
            reply = await d.say(text, "alice")
            assert not reply.ok and error in d.text(reply), d.text(reply)
        with app.store.read() as s:
            assert s.scalar(select(Incident)) is None
        reply = await d.say("/incident p1 jobs failing --started 10:45", "alice")  # Berlin
        assert reply.ok
        with app.store.read() as s:
            made = s.scalars(select(Incident)).one()
        assert made.title == "jobs failing" and made.started_at == at("03", "09:45")
    finally:
        await app.stop()
