"""Issue 11: the bot's own series on ``GET /metrics`` (PRODUCT.md §7), fetched over real
HTTP from ``App.serve_forever`` after each step of an incident, on a driven clock.

The apps here are not started with a worker: the test delivers (``outbox.deliver_due``)
and fires timers (``timers.fire_due``) itself, so what is pending is known at each scrape.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import func, select
from telegram.error import BadRequest, Forbidden, NetworkError

from bot.adapters.slack import SlackAdapter
from bot.adapters.telegram_errors import as_delivery_error
from bot.app import App
from bot.clock import FakeClock
from bot.messages import Message, Reply, Room
from bot.metrics import BotMetrics, failure_reason
from bot.settings import Config
from bot.store import Store
from bot.store.models import OutboxMessage
from tests.fakes.slack_api import FakeSlack
from tests.support.driver import Driver
from tests.support.http import wait_healthy

# Who is on call decides who is paged: the clock is driven (FakeClock).
pytestmark = pytest.mark.clock

LOOPBACK = "127.0.0.1"

RAW: dict[str, Any] = {
    "severities": {
        "P1": {
            "page_after": "0s",
            "update_every": "1h",
            "escalate": [{"after": "10m", "to": "engineering_manager"}],
        }
    },
    "oncall": {
        "rotation": {"members": ["alice", "bob"], "start": "2026-11-30"},
        "chain": [{"role": "primary", "respond_within": {"P1": "5m"}}, {"role": "secondary"}],
    },
    "people": {
        "alice": {"name": "Alice", "roles": ["responder"]},
        "bob": {"name": "Bob", "roles": ["responder"]},
        "dave": {"name": "Dave"},
    },
    "roles": {"engineering_manager": "dave"},
    "leader_lease": "15s",
}
CONFIG = Config.model_validate(RAW)

# PRODUCT.md §7: family name (as the parser names it) → type, label names.
CONTRACT: dict[str, tuple[str, set[str]]] = {
    "pira_incidents_declared": ("counter", {"severity", "source"}),
    "pira_incidents_open": ("gauge", {"severity"}),
    "pira_pages": ("counter", {"step"}),
    "pira_escalations": ("counter", {"to"}),
    "pira_timer_lateness_seconds": ("histogram", {"kind"}),
    "pira_outbox_pending": ("gauge", {"platform"}),
    "pira_delivery_failures": ("counter", {"platform", "reason"}),
    "pira_command_duration_seconds": ("histogram", {"command"}),
    "pira_leader": ("gauge", set()),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@dataclass
class Scrape:
    families: dict[str, Any]

    def samples(self) -> list[Sample]:
        return [s for f in self.families.values() for s in f.samples]

    def value(self, name: str, **labels: str) -> float | None:
        found = [s.value for s in self.samples() if s.name == name and s.labels == labels]
        assert len(found) <= 1, f"{name}{labels} twice"
        return found[0] if found else None

    def labels(self, name: str, label: str) -> set[str]:
        return {s.labels[label] for s in self.samples() if s.name == name}


@dataclass
class Bot:
    app: App
    url: str
    http: aiohttp.ClientSession

    async def scrape(self) -> Scrape:
        async with self.http.get(f"{self.url}/metrics") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain")
            text = await r.text()
        return Scrape({f.name: f for f in text_string_to_metric_families(text)})


@asynccontextmanager
async def serving(app: App) -> AsyncIterator[Bot]:
    """``app``'s HTTP server on loopback (the app's own port), until the block ends."""
    stop = asyncio.Event()
    task = asyncio.create_task(app.serve_forever(stop))
    url = f"http://{LOOPBACK}:{app.env.http_port}"
    try:
        await wait_healthy(url)
        async with aiohttp.ClientSession() as http:
            yield Bot(app, url, http)
    finally:
        stop.set()
        await task


def http_env() -> dict[str, str]:
    return {"PIRA_HTTP_PORT": str(free_port()), "PIRA_HTTP_HOST": LOOPBACK}


async def command(app: App, text: str, who: str) -> Reply:
    """A console command through the real router, its posts left in the outbox."""
    actor = app.directory.person_actor(who)
    message = Message(
        platform="console", user_id=actor.key, text=text, room=Room(platform="console")
    )
    return await app.router.handle(message, actor)


def outbox_rows(app: App, platform: str, status: str) -> int:
    with app.store.read() as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.platform == platform, OutboxMessage.status == status)
            )
            or 0
        )


async def test_series_follow_an_incident(make_app: Callable[..., App]) -> None:
    clock = FakeClock()  # Monday 2026-11-30 09:00 UTC: alice is primary, bob secondary
    app = make_app(config=CONFIG, clock=clock, env=http_env())
    Driver(app)  # the console platform
    await app.store.run(app.store.migrate)
    try:
        async with serving(app) as bot:
            m = await bot.scrape()
            assert m.value("pira_leader") == 0  # no leadership: not the leader
            assert m.value("pira_incidents_declared_total", severity="P1", source="console") == 0
            assert m.value("pira_incidents_open", severity="P1") == 0
            assert m.value("pira_outbox_pending", platform="console") == 0
            assert m.value("pira_pages_total", step="primary") == 0
            assert m.labels("pira_command_duration_seconds_count", "command") == set()

            # Declared: counted by severity and source; open; its posts pending.
            reply = await command(app, "/incident p1 spark jobs failing", "alice")
            assert reply.ok
            m = await bot.scrape()
            assert m.value("pira_incidents_declared_total", severity="P1", source="console") == 1
            assert m.value("pira_incidents_declared_total", severity="P0", source="console") == 0
            assert m.value("pira_incidents_open", severity="P1") == 1
            assert m.value("pira_command_duration_seconds_count", command="incident") == 1
            pending = outbox_rows(app, "console", "pending")
            assert pending >= 2  # the announcement and the ticket
            assert m.value("pira_outbox_pending", platform="console") == pending
            assert m.value("pira_pages_total", step="primary") == 0  # not fired yet

            await app.outbox.deliver_due()
            m = await bot.scrape()
            assert m.value("pira_outbox_pending", platform="console") == 0

            # The ack chain's first step, on time.
            assert await app.timers.fire_due() == 1
            m = await bot.scrape()
            assert m.value("pira_pages_total", step="primary") == 1
            assert m.value("pira_pages_total", step="secondary") == 0
            assert m.value("pira_timer_lateness_seconds_count", kind="page") == 1
            assert m.value("pira_timer_lateness_seconds_sum", kind="page") == 0
            assert m.value("pira_outbox_pending", platform="console") == outbox_rows(
                app, "console", "pending"
            )
            await app.outbox.deliver_due()

            # Nobody acknowledged in 5 min: the secondary, fired 3 s late.
            clock.advance(timedelta(minutes=5, seconds=3))
            assert await app.timers.fire_due() == 1
            await app.outbox.deliver_due()
            m = await bot.scrape()
            assert m.value("pira_pages_total", step="secondary") == 1
            assert m.value("pira_timer_lateness_seconds_count", kind="page") == 2
            assert m.value("pira_timer_lateness_seconds_sum", kind="page") == 3
            assert m.value("pira_timer_lateness_seconds_bucket", kind="page", le="2.0") == 1
            assert m.value("pira_timer_lateness_seconds_bucket", kind="page", le="5.0") == 2
            assert m.value("pira_timer_lateness_seconds_bucket", kind="page", le="+Inf") == 2

            # A page by hand.
            assert (await command(app, "/page engineering_manager look at #1", "alice")).ok
            m = await bot.scrape()
            assert m.value("pira_pages_total", step="manual") == 1
            assert m.value("pira_command_duration_seconds_count", command="page") == 1

            # 10 min after the declaration, still unresolved: the escalation trigger.
            clock.advance(timedelta(minutes=4, seconds=57))
            assert await app.timers.fire_due() == 1
            m = await bot.scrape()
            assert m.value("pira_escalations_total", to="engineering_manager") == 1
            assert m.value("pira_timer_lateness_seconds_count", kind="escalate") == 1
            assert m.value("pira_pages_total", step="engineering_manager") == 0  # a trigger

            # Acknowledged: still open. Resolved: closed; the declaration still counted.
            assert (await command(app, "/ack #1", "alice")).ok
            m = await bot.scrape()
            assert m.value("pira_incidents_open", severity="P1") == 1
            assert m.value("pira_command_duration_seconds_count", command="ack") == 1
            assert (await command(app, "/resolve #1 executors restarted", "alice")).ok
            assert not (await command(app, "/frobnicate now", "alice")).ok
            await app.outbox.deliver_due()
            m = await bot.scrape()
            assert m.value("pira_incidents_open", severity="P1") == 0
            assert m.value("pira_incidents_declared_total", severity="P1", source="console") == 1
            assert m.value("pira_command_duration_seconds_count", command="resolve") == 1
            assert m.value("pira_outbox_pending", platform="console") == 0
            assert m.value("pira_delivery_failures_total", platform="console", reason="other") == 0
            assert m.labels("pira_command_duration_seconds_count", "command") == {
                "incident",
                "page",
                "ack",
                "resolve",
            }  # an unknown command never runs: no label of its own
            assert_contract(m)
            assert "pira_alertmanager_requests" in m.families  # the same registry
    finally:
        await app.stop()


def assert_contract(m: Scrape) -> None:
    """Every series of PRODUCT.md §7, with exactly its type and labels."""
    for name, (kind, labels) in CONTRACT.items():
        family = m.families.get(name)
        assert family is not None, f"{name} missing"
        assert family.type == kind, name
        assert family.samples, f"{name} has no samples"
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == labels, sample
    assert m.labels("pira_incidents_declared_total", "source") <= {
        "console",
        "slack",
        "telegram",
        "alertmanager",
        "other",
    }
    assert m.labels("pira_pages_total", "step") <= {
        "primary",
        "secondary",
        "team_lead",
        "engineering_manager",
        "cto",
        "manual",
        "other",
    }


async def test_leader_gauge_follows_the_lease(make_app: Callable[..., App]) -> None:
    clock = FakeClock()
    first = make_app(config=CONFIG, clock=clock, env=http_env())
    second = make_app(config=CONFIG, clock=clock, env=http_env())
    await first.start()
    await second.start()
    try:
        async with serving(first) as one, serving(second) as two:
            assert (await one.scrape()).value("pira_leader") == 1
            assert (await two.scrape()).value("pira_leader") == 0
            # The leader stops renewing; after its lease the standby takes over.
            assert first.leadership is not None and second.leadership is not None
            clock.advance(timedelta(seconds=16))
            assert await second.leadership.step()
            assert not await first.leadership.step()
            assert (await one.scrape()).value("pira_leader") == 0
            assert (await two.scrape()).value("pira_leader") == 1
            # Both replicas read the same database: the same counters.
            assert (await one.scrape()).value("pira_incidents_open", severity="P1") == (
                await two.scrape()
            ).value("pira_incidents_open", severity="P1")
    finally:
        await second.stop()
        await first.stop()


async def test_slack_backlog_and_posts_given_up(make_app: Callable[..., App]) -> None:
    """The real Slack adapter against the fake Web API: a 429 keeps posts pending; a
    permanent refusal (``is_archived``) gives them up, counted as unreachable."""
    clock = FakeClock()
    config = Config.model_validate({**RAW, "channels": {"incidents": {"slack": "C0INCIDENTS"}}})
    async with FakeSlack() as slack:
        env = {
            **http_env(),
            "PIRA_SLACK_BOT_TOKEN": slack.bot_token,
            "PIRA_SLACK_SIGNING_SECRET": "s3cr3t",
            "PIRA_SLACK_API_URL": slack.url,
        }
        app = make_app(config=config, clock=clock, env=env)
        (adapter,) = app.chat_adapters()
        assert isinstance(adapter, SlackAdapter)
        app.add_adapter(adapter)
        Driver(app)
        await app.store.run(app.store.migrate)
        try:
            async with serving(app) as bot:
                slack.rate_limit("chat.postMessage", retry_after=1, times=None)
                assert (await command(app, "/incident p1 spark jobs failing", "alice")).ok
                await app.outbox.deliver_due()
                m = await bot.scrape()
                waiting = outbox_rows(app, "slack", "pending")
                assert waiting >= 2  # the announcement and the room's ticket
                assert m.value("pira_outbox_pending", platform="slack") == waiting
                assert m.value("pira_outbox_pending", platform="console") == 0
                assert (
                    m.value("pira_delivery_failures_total", platform="slack", reason="unreachable")
                    == 0
                )

                slack.clear_faults()
                refused = {"ok": False, "error": "is_archived"}
                slack.fail("chat.postMessage", status=200, body=refused, times=None)
                clock.advance(timedelta(minutes=1))  # past the 429's retry_after
                await app.outbox.deliver_due()
                m = await bot.scrape()
                given_up = outbox_rows(app, "slack", "failed")
                assert given_up == waiting  # every post refused: none left waiting
                assert (
                    m.value("pira_delivery_failures_total", platform="slack", reason="unreachable")
                    == given_up
                )
                assert (
                    m.value("pira_delivery_failures_total", platform="slack", reason="rejected")
                    == 0
                )
                assert m.value("pira_outbox_pending", platform="slack") == 0
        finally:
            await app.stop()


async def test_served_again_by_a_new_server(make_app: Callable[..., App]) -> None:
    """The registry is the App's: a second HTTP server (a restart of serve_forever)
    registers its own series again without a clash and serves the same counters."""
    app = make_app(config=CONFIG, clock=FakeClock(), env=http_env())
    Driver(app)
    await app.store.run(app.store.migrate)
    try:
        async with serving(app) as bot:
            assert (await command(app, "/incident p1 spark jobs failing", "alice")).ok
            first = await bot.scrape()
        async with serving(app) as bot:
            again = await bot.scrape()
        for m in (first, again):
            assert m.value("pira_incidents_declared_total", severity="P1", source="console") == 1
            assert m.value("pira_command_duration_seconds_count", command="incident") == 1
            assert "pira_http_connections_cut" in m.families
    finally:
        await app.stop()


def test_without_the_database_the_rest_is_served(caplog: pytest.LogCaptureFixture) -> None:
    """A scrape while the database is down: the database's series are left out (one
    warning), the process's own are served."""
    store = Store("postgresql+psycopg://pira@127.0.0.1:1/none?connect_timeout=2")
    registry = CollectorRegistry()
    BotMetrics(
        registry=registry,
        store=store,
        config=CONFIG,
        leading=lambda: True,
        platforms=lambda: ["console"],
        commands=["incident"],
    ).observe_command("incident", 0.2)
    try:
        with caplog.at_level(logging.WARNING, logger="pira.metrics"):
            families = {f.name for f in registry.collect() if f.samples}
            list(registry.collect())  # a second scrape within the minute: no second warning
    finally:
        store.dispose()
    assert families == {"pira_leader", "pira_command_duration_seconds"}
    assert registry.get_sample_value("pira_leader") == 1
    assert [r.getMessage() for r in caplog.records] == ["metrics: database unavailable"]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (as_delivery_error(BadRequest("Chat not found"), "send"), "unreachable"),
        (as_delivery_error(Forbidden("bot was blocked by the user"), "send"), "unreachable"),
        (as_delivery_error(BadRequest("Can't parse entities"), "send"), "rejected"),
        (as_delivery_error(NetworkError("boom"), "send"), "other"),
    ],
)
def test_reason_of_a_telegram_refusal(error: Exception, reason: str) -> None:
    assert failure_reason(str(error)) == reason


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ("slack refused: is_archived", "unreachable"),
        ("slack refused: user_not_found", "unreachable"),
        ("no slack id for dave", "unreachable"),
        ("channels.incidents.slack is not configured", "unreachable"),
        ("slack refused: msg_too_long", "rejected"),
        ("slack refused: invalid_blocks", "rejected"),
        (None, "other"),
    ],
)
def test_reason_of_a_slack_refusal(error: str | None, reason: str) -> None:
    assert failure_reason(error) == reason
