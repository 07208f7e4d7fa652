"""Issue 6 end to end: exporter → real Prometheus (rules) → real Alertmanager → PIRA's
``POST /alertmanager`` (bearer token) → incident, page, and the resolved notification.

Prometheus evaluates a *test copy* of deploy/prometheus/rules.yaml: the recording
rules with their 5-minute windows shortened to 10 s, and SparkAllJobsFailing (P0)
with ``for: 1s``; Alertmanager runs deploy/alertmanager/alertmanager.yaml with the
webhook pointed at PIRA on loopback and its waits shortened to 1 s. PIRA runs with
the real clock, its scheduler (for the page) and the console adapter.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import App
from bot.clock import SystemClock
from bot.settings import Config
from bot.store.models import Incident, OutboxMessage
from tests.support.driver import Driver
from tests.support.promstack import (
    LOOPBACK,
    Exporter,
    alertmanager_config_for_test,
    free_port,
    require_binaries,
    rules_for_test,
    run_alertmanager,
    run_prometheus,
    wait_for_data,
)
from tests.support.travel import rotation_from_today

# Prometheus and Alertmanager keep the real time, and so must PIRA here; who is on
# call is computed from now (alice's shift began today), so any date will do.
pytestmark = [pytest.mark.slow, pytest.mark.real_clock]

ALERT = "SparkAllJobsFailing"
TOKEN = "e2e-token-7d2a"
PEOPLE = {"alice": {"name": "Alice", "roles": ["responder"]}, "bob": {"name": "Bob"}}


async def eventually(what: str, check: Callable[[], Any], timeout: float, log: Callable[[], str]):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout:g}s\n{log()}")
        await asyncio.sleep(0.2)


async def test_failing_jobs_page_and_resolve_through_the_real_stack(
    make_app: Callable[..., App], tmp_path: Path
) -> None:
    require_binaries("prometheus", "alertmanager")
    port = free_port()
    # PIRA dates an alert's start by the rule's ``for``: the rules Prometheus runs here.
    rules = rules_for_test(tmp_path / "rules.yaml", ALERT, window="10s")
    app = make_app(
        config=Config.model_validate(
            {
                "people": PEOPLE,
                "oncall": {"rotation": rotation_from_today("alice", "bob")},
                "alertmanager": {"rules_file": str(rules)},
            }
        ),
        clock=SystemClock(),
        env={"PIRA_HTTP_PORT": str(port), "PIRA_ALERTMANAGER_TOKEN": TOKEN},
    )
    driver = Driver(app)
    await app.start()
    stop = asyncio.Event()
    server = asyncio.create_task(app.serve_forever(stop))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    hook = f"http://{LOOPBACK}:{port}/alertmanager"
    try:
        with (
            Exporter() as exporter,
            run_alertmanager(alertmanager_config_for_test(hook, token_file)) as alertmanager,
            run_prometheus(
                [exporter.target],
                rule_files=[rules],
                alertmanager=alertmanager.url,
            ) as prometheus,
        ):

            def logs() -> str:
                return (
                    f"alertmanager:\n{alertmanager.log_tail()}\nprometheus:\n"
                    f"{prometheus.log_tail()}\nconsole:\n{driver.out.getvalue()[-3000:]}"
                )

            # Every finished job fails: the ratio is 1, above the P0 threshold.
            before = datetime.now(UTC)
            exporter.set_rate("spark_job_total", 2.0)
            exporter.set_rate("spark_job_failed_total", 2.0)
            await asyncio.to_thread(
                wait_for_data,
                prometheus.url,
                f'ALERTS{{alertname="{ALERT}",alertstate="firing"}}',
                lambda v: v == [1.0],
                45,
            )

            def incident() -> Incident | None:
                with app.store.read() as s:
                    return s.scalar(select(Incident).where(Incident.number == 1))

            found = await eventually("an incident", incident, 30, logs)
            assert found.severity == "P0"
            assert found.source == "alertmanager"
            assert found.title == "All Spark jobs failing in spark"
            # The start is startsAt minus the rule's ``for`` (1 s here): after the failures
            # began, before PIRA knew.
            assert before - timedelta(seconds=2) <= found.started_at <= found.detected_at
            links = found.details["links"]
            assert any(link.startswith(prometheus.url + "/graph?g0.expr=") for link in links)

            # The on-call (alice, the rotation's primary) is paged by DM.
            await eventually(
                "the page",
                lambda: re.search(r"^\[DM @alice\] .*#1", driver.out.getvalue(), re.M),
                20,
                logs,
            )

            # Recovery: one last failure, then none; jobs keep succeeding.
            value = exporter.registry.get_sample_value(
                "spark_job_failed_total", {"namespace": "spark"}
            )
            assert value is not None
            exporter.set("spark_job_failed_total", value + 1)

            def resolved_post() -> list[OutboxMessage]:
                with app.store.read() as s:
                    rows = s.scalars(
                        select(OutboxMessage).where(OutboxMessage.destination == "incident:1")
                    ).all()
                return [r for r in rows if "alert resolved" in r.body["data"].get("text", "")]

            [post] = await eventually("the resolved notification", resolved_post, 45, logs)
            assert "All alerts of the group are resolved" in post.body["data"]["text"]
            await eventually(
                "the resolved post in the room",
                lambda: "[#incident-1] ✅ #1 alert resolved" in driver.out.getvalue(),
                10,
                logs,
            )
            with app.store.read() as s:
                assert len(s.scalars(select(Incident)).all()) == 1
                announcements = s.scalars(
                    select(OutboxMessage).where(OutboxMessage.destination == "incidents")
                ).all()
            assert sum(1 for r in announcements if r.body["template"] == "announce") == 1
    finally:
        stop.set()
        await server
        await app.stop()
