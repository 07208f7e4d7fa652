"""Hostile HTTP input against the bot's one server (bot/web.py), with the three webhooks
registered (Slack over HTTP, Telegram in webhook mode, Alertmanager), a real database and
real sockets on loopback.

Each refusal is checked to store nothing. Requests with bytes that aiohttp's client would
not send (non-ASCII or invalid UTF-8 header values) go over a raw socket.

The slow-client tests run a WebServer with short deadlines (constructor arguments) and
measure from the moment the connection was opened, with generous margins: they check
that a deadline exists and is roughly right, not the scheduler's precision.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from bot import web as web_module
from bot.app import App
from bot.clock import FakeClock
from bot.settings import Config
from bot.store.models import AuditEntry, Incident, OutboxMessage, TimelineEvent
from bot.web import WebServer
from tests.fakes.payloads import (
    slack_signature,
    slack_slash_command_body,
    tg_command_update,
    tg_supergroup_chat,
    tg_user,
)
from tests.fakes.slack_api import FakeSlack
from tests.fakes.telegram_api import FakeTelegram
from tests.support.promstack import LOOPBACK, free_port
from tests.support.webhooks import serving_webhooks, webhook_env

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*retry_after.*:telegram.warnings.PTBDeprecationWarning"
)

AM_TOKEN = "am-hostile-token-1"
SLACK_SECRET = "0123456789abcdef0123456789abcdef"
TG_SECRET = "tg-Hostile_secret-1"
GROUP = tg_supergroup_chat(-1001111111111, "Incidents", is_forum=False)
ALICE = tg_user(1001, "Alice", "alice")
CONFIG = {
    "people": {
        "alice": {"name": "Alice", "slack": "U0ALICE", "telegram": 1001, "roles": ["responder"]}
    },
    "channels": {"incidents": {"slack": "C0INCIDENTS", "telegram": GROUP["id"]}},
}
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@dataclass
class Served:
    app: App
    server: WebServer
    port: int
    clock: FakeClock
    slack: FakeSlack

    def counts(self) -> tuple[int, int, int, int]:
        """Rows a request could write: incidents, timeline, audit, outbox."""
        with self.app.store.read() as s:
            return (
                s.scalar(select(func.count(Incident.id))) or 0,
                s.scalar(select(func.count(TimelineEvent.id))) or 0,
                s.scalar(select(func.count(AuditEntry.id))) or 0,
                s.scalar(select(func.count(OutboxMessage.id))) or 0,
            )

    def incidents(self) -> list[Incident]:
        with self.app.store.read() as s:
            return list(s.scalars(select(Incident).order_by(Incident.number)))

    async def post(
        self, path: str, headers: Sequence[tuple[str | bytes, str | bytes]], body: bytes = b""
    ) -> tuple[int, bytes]:
        return await raw_request(self.port, path, headers, body)

    async def alert(self, payload: Any) -> tuple[int, dict[str, Any]]:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        status, answer = await self.post(
            "/alertmanager",
            [("Authorization", f"Bearer {AM_TOKEN}"), ("Content-Type", "application/json")],
            body,
        )
        return status, json.loads(answer)


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.exc_info]


def _b(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


async def raw_request(
    port: int,
    path: str,
    headers: Sequence[tuple[str | bytes, str | bytes]],
    body: bytes = b"",
    method: str = "POST",
) -> tuple[int, bytes]:
    """One request over a fresh socket, header bytes exactly as given; (status, body)."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        head = f"{method} {path} HTTP/1.1\r\nHost: {LOOPBACK}\r\nConnection: close\r\n".encode()
        head += b"Content-Length: %d\r\n" % len(body)
        for name, value in headers:
            head += _b(name) + b": " + _b(value) + b"\r\n"
        writer.write(head + b"\r\n" + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    status_line, _, rest = data.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split(b" ")[1]), payload


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one response with a Content-Length off a kept-alive connection; its status."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await asyncio.wait_for(reader.readexactly(length), 10)
    return int(head.split(b" ")[1])


@asynccontextmanager
async def serving(make_app: Callable[..., App], **limits: Any) -> AsyncIterator[Served]:
    """An App with all three webhooks on a WebServer (``limits``: its constructor options)."""
    port = free_port()
    clock = FakeClock(NOW)
    async with FakeSlack() as slack, FakeTelegram() as tg:
        tg.add_chat(GROUP)
        app = make_app(
            config=Config.model_validate(CONFIG),
            clock=clock,
            env=webhook_env(
                slack, tg, port, am_token=AM_TOKEN, slack_secret=SLACK_SECRET, tg_secret=TG_SECRET
            ),
        )
        async with serving_webhooks(app, port, **limits) as (server, _chats):
            yield Served(app, server, port, clock, slack)


def slack_headers(body: bytes, timestamp: str | bytes, signature: str | bytes | None = None):
    ts = _b(timestamp)
    if signature is None:
        signature = slack_signature(SLACK_SECRET, ts.decode("utf-8", "replace"), body)
    return [
        ("Content-Type", "application/x-www-form-urlencoded"),
        (b"X-Slack-Request-Timestamp", ts),
        (b"X-Slack-Signature", _b(signature)),
    ]


def alert_group(key: str = '{}:{alertname="SparkExecutorLoss"}', **alert: Any) -> dict[str, Any]:
    one = {
        "status": "firing",
        "labels": {"alertname": "SparkExecutorLoss", "severity": "p2"},
        "annotations": {"summary": "executors lost"},
        "startsAt": "2026-11-30T08:50:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": "f1",
        **alert,
    }
    return {
        "version": "4",
        "groupKey": key,
        "receiver": "pira",
        "status": "firing",
        "alerts": [one],
        "groupLabels": {"alertname": "SparkExecutorLoss"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "truncatedAlerts": 0,
    }


# ---- 1. Slack: a timestamp that is not a number is a forgery (401) ------------------------


@pytest.mark.parametrize(
    "timestamp",
    [b"abc", b"", b"1.5", b"1e9", b"-1", "\uff11\uff17\uff10\uff10".encode(), b"9" * 5000, b"\xff"],
    ids=["letters", "empty", "decimal", "exponent", "negative", "fullwidth", "5000-digits", "0xff"],
)
async def test_slack_timestamp_not_a_number_is_401(
    make_app: Callable[..., App], timestamp: bytes
) -> None:
    async with serving(make_app) as srv:
        body = slack_slash_command_body(command="/incident", text="p1 forged").encode()
        before = srv.counts()
        status, _ = await srv.post("/slack/events", slack_headers(body, timestamp), body)
        assert status == 401
        assert srv.counts() == before


@pytest.mark.parametrize(
    "signature",
    ["v0=\u00e9".encode(), b"v0=\xff\xfe", b"", b"v1=" + b"0" * 64],
    ids=["non-ascii", "not-utf8", "empty", "other-version"],
)
async def test_slack_odd_signature_is_401(make_app: Callable[..., App], signature: bytes) -> None:
    async with serving(make_app) as srv:
        body = slack_slash_command_body(command="/incident", text="p1 forged").encode()
        headers = slack_headers(body, str(int(time.time())), signature)
        before = srv.counts()
        assert (await srv.post("/slack/events", headers, body))[0] == 401
        assert srv.counts() == before


async def test_slack_signed_body_in_another_charset_or_not_utf8(
    make_app: Callable[..., App],
) -> None:
    """Slack sends UTF-8; a declared charset PIRA cannot decode with changes nothing, and a
    body that is not UTF-8 at all is refused (400) rather than crashing."""
    async with serving(make_app) as srv:
        ts = str(int(time.time()))
        body = slack_slash_command_body(command="/help", text="").encode()
        headers = slack_headers(body, ts)
        headers[0] = ("Content-Type", "application/x-www-form-urlencoded; charset=no-such")
        assert (await srv.post("/slack/events", headers, body))[0] == 200
        bad = b"command=%2Fhelp&text=\xff\xfe"
        before = srv.counts()
        assert (await srv.post("/slack/events", slack_headers(bad, ts), bad))[0] == 400
        assert srv.counts() == before


async def test_slack_ids_with_nul_are_cleaned_before_the_database(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    """Found by the property test on PostgreSQL: a channel id holding NUL made the room
    look-up fail after the ack (PostgreSQL refuses NUL even in a query). Slack's ids are
    ASCII: control characters are dropped, and the command runs as the person it names."""
    async with serving(make_app) as srv:
        url = srv.slack.response_url()
        body = slack_slash_command_body(
            command="/incident",
            text="p2 Driver OOM",
            user_id="U0ALICE\u0000",
            user_name="ali\u0000ce",
            channel_id="C0\u0000GENERAL",
            response_url=url,
        ).encode()
        status, _ = await srv.post(
            "/slack/events", slack_headers(body, str(int(time.time()))), body
        )
        assert status == 200
        path = url.removeprefix(srv.slack.root_url)
        await srv.slack.wait_for("response_url", lambda c: c.path == path, timeout=10)
        assert [i.title for i in srv.incidents()] == ["Driver OOM"]
        with srv.app.store.read() as s:
            actors = list(s.scalars(select(AuditEntry.actor)))
        assert actors and not any("\x00" in a for a in actors)
    assert tracebacks(caplog) == []


# ---- 2. Telegram: a secret token that is not ASCII is simply wrong (403) ------------------


@pytest.mark.parametrize(
    "token",
    [b"\xff\xfe", "s\u00e9cret".encode(), TG_SECRET.encode() + b"\x80", b"\xc3("],
    ids=["not-utf8", "non-ascii", "right-plus-byte", "broken-utf8"],
)
async def test_telegram_non_ascii_secret_is_403(make_app: Callable[..., App], token: bytes) -> None:
    async with serving(make_app) as srv:
        update = tg_command_update("/incident p1 Forged", chat=GROUP, from_user=ALICE)
        body = json.dumps(update).encode()
        before = srv.counts()
        headers: list[tuple[str | bytes, str | bytes]] = [
            ("Content-Type", "application/json"),
            (b"X-Telegram-Bot-Api-Secret-Token", token),
        ]
        assert (await srv.post("/telegram", headers, body))[0] == 403
        assert srv.counts() == before
        good = [
            ("Content-Type", "application/json"),
            ("X-Telegram-Bot-Api-Secret-Token", TG_SECRET),
        ]
        assert (await srv.post("/telegram", good, body))[0] == 200  # still serving


# ---- 3. Alertmanager: a bearer token that is not ASCII is wrong (401) ---------------------


@pytest.mark.parametrize(
    "authorization",
    [b"Bearer \xff", "Bearer \u00e9t\u00e9".encode(), b"Bearer " + AM_TOKEN.encode() + b"\xfe"],
    ids=["not-utf8", "non-ascii", "right-plus-byte"],
)
async def test_alertmanager_non_ascii_token_is_401(
    make_app: Callable[..., App], authorization: bytes
) -> None:
    async with serving(make_app) as srv:
        body = json.dumps(alert_group()).encode()
        headers: list[tuple[str | bytes, str | bytes]] = [
            (b"Authorization", authorization),
            ("Content-Type", "application/json"),
        ]
        status, answer = await srv.post("/alertmanager", headers, body)
        assert status == 401
        assert json.loads(answer)["error"] == "wrong bearer token"
        assert srv.counts() == (0, 0, 0, 0)


# ---- 4. Alertmanager: malformed payloads are 400 with a reason ---------------------------


def _huge_truncated() -> bytes:
    text = json.dumps(alert_group())
    return text.replace('"truncatedAlerts": 0', '"truncatedAlerts": 1' + "0" * 5000).encode()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "nested too deeply"),
        (
            b'{"version": "4", "groupKey": "k", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            "nested too deeply",
        ),
        (_huge_truncated(), "malformed JSON"),
        (b'{"version": "4", "n": 1' + b"0" * 5000 + b"}", "malformed JSON"),
    ],
    ids=["deep-array", "deep-object", "deep-inside", "huge-truncatedAlerts", "huge-number"],
)
async def test_alertmanager_malformed_is_400(
    make_app: Callable[..., App], body: bytes, reason: str
) -> None:
    async with serving(make_app) as srv:
        status, answer = await srv.alert(body)
        assert status == 400
        assert answer["error"].startswith(reason), answer
        assert srv.counts() == (0, 0, 0, 0)


# ---- 5. Alertmanager: understood in part → stored with that part; else 400 -----------------


async def test_unrepresentable_starts_at_is_stored_as_unknown(
    make_app: Callable[..., App],
) -> None:
    """0001-01-01T00:30+01:00 is before year 1 in UTC: the start is unknown, so the
    incident starts when PIRA heard of it; re-sending the group changes nothing."""
    async with serving(make_app) as srv:
        payload = alert_group(startsAt="0001-01-01T00:30:00+01:00")
        status, answer = await srv.alert(payload)
        assert (status, answer["status"]) == (200, "declared"), answer
        (incident,) = srv.incidents()
        assert incident.started_at == NOW
        assert (await srv.alert(payload))[1]["status"] == "unchanged"
        # The same for the other end of the calendar and for Go's zero time.
        for n, start in enumerate(["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00Z"]):
            late = alert_group(key=f"other-{n}", startsAt=start, fingerprint=f"g{n}")
            status, answer = await srv.alert(late)
            assert (status, answer["status"]) == (200, "declared"), answer
        assert [i.started_at for i in srv.incidents()] == [NOW, NOW, NOW]


async def test_nul_and_control_characters_are_stripped_and_stored(
    make_app: Callable[..., App],
) -> None:
    """PostgreSQL refuses NUL in text and no database takes a lone surrogate: stripped
    (control characters) or replaced (surrogates), on every backend alike."""
    async with serving(make_app) as srv:
        payload = alert_group(
            key='{}:{alertname="Spark\u0000Loss\udc80"}',
            labels={"alertname": "Spark\u0000Loss\u001b[31m", "severity": "p1", "k\u0000": "v"},
            annotations={"summary": "executors \u0000lost\ud800 now"},
            fingerprint="f\u00001\ud800",
        )
        status, answer = await srv.alert(payload)
        assert (status, answer["status"]) == (200, "declared"), answer
        (incident,) = srv.incidents()
        assert incident.alert_group_key == '{}:{alertname="SparkLoss\ufffd"}'
        assert incident.title == "executors lost\ufffd now"
        assert incident.severity == "P1"
        assert list(incident.details["alerts"]) == ["f1\ufffd"]
        # The same group again (same bytes): recognised, nothing new.
        assert (await srv.alert(payload))[1]["status"] == "unchanged"
        assert len(srv.incidents()) == 1


async def test_group_key_longer_than_the_column_is_stored_and_deduplicated(
    make_app: Callable[..., App],
) -> None:
    async with serving(make_app) as srv:
        long_key = "{}:{" + ",".join(f'l{i}="{"x" * 20}"' for i in range(100)) + "}"
        for other in ("A", "B"):  # two keys alike in their first 500 characters
            payload = alert_group(key=long_key + other, fingerprint=other)
            status, answer = await srv.alert(payload)
            assert (status, answer["status"]) == (200, "declared"), answer
            assert (await srv.alert(payload))[1]["status"] == "unchanged"
        keys = [i.alert_group_key or "" for i in srv.incidents()]
        assert len(keys) == 2 and len(set(keys)) == 2
        assert all(len(k) <= 500 for k in keys)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        ({"key": "\u0000\u0001"}, "invalid field groupKey"),
        ({"fingerprint": "\u0000"}, "invalid field alerts[0].fingerprint"),
        ({"startsAt": "not a time"}, "invalid field alerts[0].startsAt"),
    ],
    ids=["key-only-control", "fingerprint-only-nul", "start-not-a-time"],
)
async def test_nothing_left_to_understand_is_400(
    make_app: Callable[..., App], mutate: dict[str, str], reason: str
) -> None:
    async with serving(make_app) as srv:
        status, answer = await srv.alert(alert_group(**mutate))
        assert status == 400
        assert answer["error"].startswith(reason), answer
        assert srv.counts() == (0, 0, 0, 0)


@pytest.mark.parametrize("path", ["/alertmanager", "/slack/events", "/telegram"])
@pytest.mark.parametrize("encoding", ["deflate", "gzip", "br"])
async def test_compressed_bodies_are_refused_at_once(
    make_app: Callable[..., App], path: str, encoding: str
) -> None:
    """Found by the property test: with Content-Encoding: deflate and a body that is not
    deflate data, aiohttp's decompressor never ended the body and the handler waited for
    it (until the body deadline, or forever without one). Nothing is decompressed now."""
    async with serving(make_app, body_timeout=5.0) as srv:
        body = b'{"a":' * 20_000  # 100 KB: enough to stall aiohttp's deflate decoder
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Encoding", encoding),
            ("Authorization", f"Bearer {AM_TOKEN}"),
            ("X-Telegram-Bot-Api-Secret-Token", TG_SECRET),
        ]
        started = time.monotonic()
        status, _ = await srv.post(path, headers, body)
        assert status == 415
        assert time.monotonic() - started < 10
        assert srv.counts() == (0, 0, 0, 0)


@pytest.mark.parametrize(
    "header",
    [b"Authorization: Bearer \x00", b"X-Slack-Signature: \x01v0=", b"X" * 9000 + b": 1"],
    ids=["nul", "control", "oversized"],
)
async def test_malformed_headers_are_400_and_logged_without_traceback(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture, header: bytes
) -> None:
    """Found by the property test: aiohttp logged each malformed request with a traceback
    (a user-caused error); and it may echo what was sent (a secret) into the log."""
    async with serving(make_app) as srv:
        for path in ("/alertmanager", "/slack/events", "/telegram"):
            reader, writer = await asyncio.open_connection(LOOPBACK, srv.port)
            writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\n".encode() + header + b"\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            assert answer.split(b" ")[1] == b"400", answer[:100]
        assert srv.counts() == (0, 0, 0, 0)
    assert tracebacks(caplog) == []


@pytest.mark.parametrize("path", ["/alertmanager", "/slack/events", "/telegram"])
async def test_broken_chunked_body_is_400(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture, path: str
) -> None:
    async with serving(make_app) as srv:
        reader, writer = await asyncio.open_connection(LOOPBACK, srv.port)
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            f"Authorization: Bearer {AM_TOKEN}\r\nX-Telegram-Bot-Api-Secret-Token: {TG_SECRET}\r\n"
            f"X-Slack-Request-Timestamp: {int(time.time())}\r\n"
            'Content-Type: application/json\r\n\r\n5\r\n{"a":\r\nzz\r\n1}\r\n0\r\n\r\n'.encode()
        )
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert answer.split(b" ")[1] in (b"400", b"401"), answer[:100]
        assert srv.counts() == (0, 0, 0, 0)
    assert tracebacks(caplog) == []


# ---- 6. Slow clients: header, body, idle and connection limits ---------------------------


async def _closed_after(reader: asyncio.StreamReader, opened: float, limit: float) -> float:
    """Read until the server closes; seconds since ``opened``. Fails after ``limit`` s."""
    try:
        async with asyncio.timeout(limit):
            while await reader.read(65536):
                pass
    except ConnectionResetError:
        pass
    return time.monotonic() - opened


async def test_default_limits_are_the_documented_ones() -> None:
    assert web_module.HEADER_TIMEOUT == 10.0
    assert web_module.BODY_TIMEOUT == 30.0
    assert web_module.KEEPALIVE_TIMEOUT <= 75.0
    assert web_module.MAX_CONNECTIONS == 256


async def test_slow_headers_are_cut_at_the_header_deadline(make_app: Callable[..., App]) -> None:
    deadline = 2.0
    async with serving(make_app, header_timeout=deadline, body_timeout=30.0) as srv:
        opened = time.monotonic()
        reader, writer = await asyncio.open_connection(LOOPBACK, srv.port)
        writer.write(b"POST /alertmanager HTTP/1.1\r\nHost: x\r\n")

        async def trickle() -> None:  # one header byte every 0.2 s, never finishing
            for _ in range(500):
                writer.write(b"X")
                await asyncio.sleep(0.2)

        dripping = asyncio.create_task(trickle())
        try:
            elapsed = await _closed_after(reader, opened, deadline + 10)
        finally:
            dripping.cancel()
            writer.close()
        assert deadline - 1 <= elapsed <= deadline + 10
        # A connection that sends nothing at all is cut at the same deadline.
        opened = time.monotonic()
        reader, writer = await asyncio.open_connection(LOOPBACK, srv.port)
        elapsed = await _closed_after(reader, opened, deadline + 10)
        writer.close()
        assert deadline - 1 <= elapsed <= deadline + 10


@pytest.mark.parametrize("path", ["/alertmanager", "/slack/events", "/telegram"])
async def test_body_trickle_is_cut_at_the_body_deadline(
    make_app: Callable[..., App], path: str
) -> None:
    deadline = 3.0
    async with serving(make_app, header_timeout=30.0, body_timeout=deadline) as srv:
        opened = time.monotonic()
        reader, writer = await asyncio.open_connection(LOOPBACK, srv.port)
        auth = {
            "/alertmanager": f"Authorization: Bearer {AM_TOKEN}",
            "/slack/events": f"X-Slack-Request-Timestamp: {int(time.time())}",
            "/telegram": f"X-Telegram-Bot-Api-Secret-Token: {TG_SECRET}",
        }[path]
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"{auth}\r\nContent-Length: 100000\r\n\r\n".encode()
        )

        async def trickle() -> None:  # 1 KB/s, 100 s worth
            for _ in range(100):
                writer.write(b" " * 1024)
                await asyncio.sleep(1.0)

        dripping = asyncio.create_task(trickle())
        answer = b""
        try:
            async with asyncio.timeout(deadline + 10):
                while chunk := await reader.read(65536):
                    answer += chunk
        except ConnectionResetError:
            pass
        finally:
            elapsed = time.monotonic() - opened
            dripping.cancel()
            writer.close()
        assert deadline - 1 <= elapsed <= deadline + 10
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert srv.counts() == (0, 0, 0, 0)


async def test_idle_keep_alive_connection_is_closed(make_app: Callable[..., App]) -> None:
    idle = 2.0
    async with serving(make_app, header_timeout=30.0, keepalive_timeout=idle) as srv:
        reader, writer = await asyncio.open_connection(LOOPBACK, srv.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await read_response(reader) == 200
        answered = time.monotonic()
        elapsed = await _closed_after(reader, answered, idle + 10)
        writer.close()
        assert idle - 1 <= elapsed <= idle + 10


async def test_keep_alive_request_after_idle_gets_its_own_header_deadline(
    make_app: Callable[..., App],
) -> None:
    """Idle time does not eat into the next request's header time, and a next request
    whose headers trickle is cut at the header deadline, not at the idle one."""
    async with serving(make_app, header_timeout=2.0, keepalive_timeout=30.0) as srv:
        reader, writer = await asyncio.open_connection(LOOPBACK, srv.port)
        for _ in range(2):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await read_response(reader) == 200
        started = time.monotonic()
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # and the rest never comes
        elapsed = await _closed_after(reader, started, 2.0 + 10)
        writer.close()
        assert 1.0 <= elapsed <= 12.0


async def test_connections_beyond_the_limit_are_refused_at_once(
    make_app: Callable[..., App],
) -> None:
    limit = 16
    async with serving(make_app, header_timeout=30.0, max_connections=limit) as srv:
        held = [await asyncio.open_connection(LOOPBACK, srv.port) for _ in range(limit)]
        try:
            opened = time.monotonic()
            reader, writer = await asyncio.open_connection(LOOPBACK, srv.port)
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            assert time.monotonic() - opened < 10
            assert answer.startswith(b"HTTP/1.1 503"), answer
        finally:
            for _, w in held:
                w.close()
        # Once they are gone, the server takes connections again.
        async with asyncio.timeout(10):
            while True:
                status, _ = await raw_request(srv.port, "/healthz", [], method="GET")
                if status == 200:
                    break
                await asyncio.sleep(0.05)


async def test_300_slow_connections_do_not_exhaust_the_server(
    make_app: Callable[..., App],
) -> None:
    """The reproduction: 300 connections sending headers slowly. Those over the limit are
    refused at once, the rest cut at the header deadline; then the server answers."""
    deadline = 2.0
    async with serving(make_app, header_timeout=deadline, max_connections=256) as srv:
        # Each connection's time counts from its own opening: opening 300 one after
        # another takes over a second on a busy machine.
        conns = []
        for _ in range(300):
            opened = time.monotonic()
            reader, writer = await asyncio.open_connection(LOOPBACK, srv.port)
            writer.write(b"POST /alertmanager HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            conns.append((reader, writer, opened))
        times = await asyncio.gather(
            *(_closed_after(r, opened, deadline + 15) for r, _, opened in conns)
        )
        for _, w, _ in conns:
            w.close()
        assert max(times) <= deadline + 15
        refused = [t for t in times if t < deadline - 1]
        assert len(refused) >= 300 - 256  # at once, with a 503
        assert len(times) - len(refused) >= 200  # held until the header deadline
        status, _ = await raw_request(srv.port, "/healthz", [], method="GET")
        assert status == 200


async def test_a_normal_request_within_the_deadlines_is_served(
    make_app: Callable[..., App],
) -> None:
    async with serving(make_app, header_timeout=3.0, body_timeout=3.0) as srv:
        reader, writer = await asyncio.open_connection(LOOPBACK, srv.port)
        body = json.dumps(alert_group()).encode()
        head = f"POST /alertmanager HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {AM_TOKEN}\r\n"
        writer.write(head.encode())
        await asyncio.sleep(0.3)  # slow, but within the deadlines
        writer.write(
            b"Content-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        half = len(body) // 2
        writer.write(body[:half])
        await asyncio.sleep(0.3)
        writer.write(body[half:])
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert len(srv.incidents()) == 1
