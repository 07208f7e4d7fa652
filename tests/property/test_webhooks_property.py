"""Property-based: the three webhooks under generated hostile input, over real HTTP.

One App (SQLite, or PostgreSQL with PIRA_TEST_DATABASE_URL) with Slack over HTTP,
Telegram in webhook mode and Alertmanager, on a WebServer with its production limits,
serves on loopback from a background thread with its own event loop. Hypothesis sends
requests over raw sockets, so header values may hold any byte but CR and LF (bytes that
are not UTF-8 included, which aiohttp's client would refuse to send). For every request:

* the answer is below 500 (no database fault is simulated here);
* a refused request (4xx) stored nothing (rows of incidents, timeline, audit, outbox);
* nothing logged holds one of the webhook secrets, and nothing logged a traceback;

and after each test the server still answers ``GET /healthz`` with 200.

Requests whose credentials are right (signed Slack requests, Telegram's secret, the
bearer token) get past the checks and into the parsers and the commands: before each
such request the test waits for the adapters' background work of the previous one, so
that rows written by an accepted command are not blamed on the next refused request.

The last test prints the number of requests and the answers per endpoint and class (and
writes them as JSON to ``$PIRA_FUZZ_STATS`` when set).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import socket
import threading
import time
import traceback
from collections import Counter
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from bot.app import App
from bot.clock import FakeClock
from bot.outbox import ChatAdapter
from bot.settings import Config, Env
from tests.conftest import PG_URL, fresh_database
from tests.fakes.payloads import slack_signature, tg_supergroup_chat
from tests.fakes.slack_api import FakeSlack
from tests.fakes.telegram_api import FakeTelegram
from tests.support.webhooks import serving_webhooks, webhook_env

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*retry_after.*:telegram.warnings.PTBDeprecationWarning"
)

LOOPBACK = "127.0.0.1"
AM_TOKEN = "am-fuzz-token-7Hq2"
SLACK_SECRET = "fedcba9876543210fedcba9876543210"
TG_SECRET = "tg-Fuzz_secret-42"
PD_SECRET = "pd-fuzz-webhook-secret-31"
SECRETS = (AM_TOKEN, SLACK_SECRET, TG_SECRET, PD_SECRET)
GROUP = tg_supergroup_chat(-1001111111111, "Incidents", is_forum=False)
CONFIG = {
    "people": {
        "alice": {"name": "Alice", "slack": "U0ALICE", "telegram": 1001, "roles": ["responder"]},
        "bob": {"name": "Bob", "slack": "U0BOB", "telegram": 1002, "roles": ["admin"]},
    },
    "channels": {"incidents": {"slack": "C0INCIDENTS", "telegram": GROUP["id"]}},
}
COMMANDS = [
    *("incident", "ack", "status", "update", "severity", "commander", "impact", "resolve"),
    *("timeline", "incidents", "oncall", "page", "handoff", "escalation", "help", "confirm"),
    *("cancel", "health", "pods", "logs", "top", "runbook", "scale", "restart", "kill"),
    *("restore", "start", "pira"),
]

# Examples per test: 5,000 requests in all (PIRA_FUZZ_SCALE=0.1 for a quick look).
_SCALE = float(os.environ.get("PIRA_FUZZ_SCALE", "1"))
EXAMPLES = {
    "alertmanager_auth": 500,
    "alertmanager_body": 900,
    "alertmanager_payload": 1100,
    "slack_unsigned": 600,
    "slack_signed": 700,
    "telegram_secret": 500,
    "telegram_update": 700,
    "ack_back": 400,
    "pagerduty_signed": 300,
}
EXAMPLES = {name: max(1, round(n * _SCALE)) for name, n in EXAMPLES.items()}
STATS: Counter[tuple[str, str, int]] = Counter()

FUZZ = settings(
    database=None,
    derandomize=False,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
T = TypeVar("T")
# Tracebacks that generated input causes in code this test does not own, known and
# reported (logger, text of the message): the Telegram adapter's background processing
# of an update that only the secret's holder could send (a message without a chat, a
# text or a chat id of the wrong JSON type). The request itself is answered 200.
TOLERATED = (
    ("pira.telegram", "telegram update failed"),
    ("asyncio", "TelegramAdapter._process"),
)


# ---- the App under test, in its own thread ---------------------------------------------


class _Leaks(logging.Handler):
    """Log records that hold a secret, and records that carry a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.secrets: list[str] = []
        self.tracebacks: list[str] = []
        self.tolerated: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if any(s in f"{message} {record.__dict__}" for s in SECRETS):
            self.secrets.append(message)
        if not record.exc_info:
            return
        where = "".join(traceback.format_exception(*record.exc_info)[-3:])
        for name, needle in TOLERATED:
            if record.name == name and needle in message:
                self.tolerated[f"{name}: {needle}"] += 1
                return
        self.tracebacks.append(f"{record.name}: {message} {where}")

    def clear(self) -> None:
        self.secrets.clear()
        self.tracebacks.clear()


@dataclass
class Target:
    app: App
    port: int
    chats: list[ChatAdapter]
    slack_response_url: str
    loop: asyncio.AbstractEventLoop
    leaks: _Leaks
    started: float = field(default_factory=time.monotonic)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def counts(self) -> tuple[int, ...]:
        with self.app.store.read() as s:
            row = s.execute(
                text(
                    "SELECT (SELECT count(*) FROM incidents), (SELECT count(*) FROM timeline),"
                    " (SELECT count(*) FROM audit), (SELECT count(*) FROM outbox)"
                )
            ).one()
        return tuple(row)

    def settle(self) -> None:
        """Wait for the chat adapters' background work (commands run after the ack)."""

        async def drain() -> None:
            for chat in self.chats:
                await chat.settle()

        self.run(drain())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="pira-under-test", daemon=True)
    thread.start()
    leaks = _Leaks()
    logging.getLogger().addHandler(leaks)
    stack = contextlib.AsyncExitStack()

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(120)

    with fresh_database(tmp_path_factory.mktemp("property")) as url:

        async def start() -> Target:
            slack = await stack.enter_async_context(FakeSlack())
            tg = await stack.enter_async_context(FakeTelegram())
            tg.add_chat(GROUP)
            port = _free_port()
            env = Env.from_environ(
                {
                    "PIRA_DATABASE_URL": url,
                    "PIRA_PAGERDUTY_WEBHOOK_SECRET": PD_SECRET,
                    **webhook_env(
                        slack,
                        tg,
                        port,
                        am_token=AM_TOKEN,
                        slack_secret=SLACK_SECRET,
                        tg_secret=TG_SECRET,
                    ),
                }
            )
            app = App(config=Config.model_validate(CONFIG), env=env, clock=FakeClock())
            # The production limits of the HTTP server (no options given).
            _server, chats = await stack.enter_async_context(serving_webhooks(app, port))
            return Target(app, port, chats, slack.response_url(), loop, leaks)

        try:
            yield run(start())
        finally:
            run(stack.aclose())
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
            logging.getLogger().removeHandler(leaks)


# ---- raw HTTP -------------------------------------------------------------------------


def send(
    port: int,
    path: bytes,
    headers: dict[bytes, bytes],
    body: bytes,
    *,
    chunked: bool = False,
    method: bytes = b"POST",
) -> int:
    """One request on a fresh connection; the answer's status."""
    head = [method + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    head += [name + b": " + value for name, value in headers.items()]
    if chunked:
        head.append(b"Transfer-Encoding: chunked")
        payload = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    else:
        head.append(b"Content-Length: %d" % len(body))
        payload = body
    answer = b""
    with socket.create_connection((LOOPBACK, port), timeout=60) as sock:
        with contextlib.suppress(OSError):  # answered (and closed) before taking it all
            sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + payload)
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                answer += chunk
    while answer.startswith(b"HTTP/1.1 1"):  # 100 Continue (Expect: 100-continue)
        answer = answer.partition(b"\r\n\r\n")[2]
    assert answer.startswith(b"HTTP/1."), f"no HTTP answer: {answer[:80]!r}"
    return int(answer.split(b" ", 2)[1])


def check(
    target: Target,
    endpoint: str,
    kind: str,
    headers: dict[bytes, bytes],
    body: bytes,
    *,
    chunked: bool = False,
    refused: bool = False,
) -> int:
    """Send, then check the properties; ``refused``: the request must be answered 4xx."""
    target.leaks.clear()
    before = target.counts()
    status = send(target.port, endpoint.encode(), headers, body, chunked=chunked)
    STATS[(endpoint, kind, status)] += 1
    assert status < 500, f"{endpoint} {kind}: {status}"
    if refused:
        assert 400 <= status < 500, f"{endpoint} {kind}: {status}"
    if 400 <= status < 500:
        assert target.counts() == before, f"{endpoint} {kind}: {status} but rows were stored"
    assert not target.leaks.secrets, target.leaks.secrets[:3]
    assert not target.leaks.tracebacks, target.leaks.tracebacks[:3]
    return status


def healthy(target: Target) -> None:
    assert send(target.port, b"/healthz", {}, b"", method=b"GET") == 200
    assert send(target.port, b"/readyz", {}, b"", method=b"GET") == 200


# ---- strategies ---------------------------------------------------------------------------

# Characters every string may hold, besides any Unicode character: NUL and other controls,
# lone surrogates (undecodable bytes), direction overrides, a BOM, line separators.
SPECIAL = '\x00\x01\x1b\x7f\x85\x9f\ud800\udfff\u202e\u2066\ufeff\u2028\r\n\t"\\%/é🔥'
fuzz_text = st.text(alphabet=st.one_of(st.characters(), st.sampled_from(SPECIAL)), max_size=12)
# Long strings, cheaply: a short piece repeated (beyond a column's length, a title's).
long_text = st.builds(lambda piece, n: (piece or "x") * n, fuzz_text, st.integers(50, 400))
any_text = st.one_of(fuzz_text, fuzz_text, fuzz_text, long_text)


def _one_line(value: bytes) -> bytes:
    return value.replace(b"\r", b"").replace(b"\n", b"")


header_value = st.one_of(
    st.binary(max_size=64),
    fuzz_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.integers().map(lambda n: str(n).encode()),
    st.sampled_from(
        [
            b"",
            b" ",
            b"abc",
            b"1.5",
            b"-1",
            b"1e9",
            b"\xff\xfe",
            b"\xc3(",
            b"9" * 5000,
            b"x" * 9000,
            b"v0=" + b"0" * 64,
            b"v0=" + "é".encode() * 32,
            b"Bearer",
            b"Bearer ",
            b"bearer x",
            "Bearer é".encode(),
            b"Bearer " + AM_TOKEN.encode() + b"\xff",
            TG_SECRET.encode() + b"\x80",
        ]
    ),
).map(_one_line)
content_type = st.one_of(
    st.sampled_from(
        [
            b"application/json",
            b"application/json; charset=utf-8",
            b"application/json; charset=no-such",
            b"application/json; charset=utf-16",
            b"application/x-www-form-urlencoded",
            b"application/x-www-form-urlencoded; charset=latin-1",
            b"text/plain",
            b"multipart/form-data; boundary=x",
        ]
    ),
    header_value,
)
rare_headers = st.sampled_from(
    [
        {},
        {},
        {},
        {},
        {b"Content-Encoding": b"gzip"},
        {b"Content-Encoding": b"deflate"},
        {b"Content-Encoding": b"identity"},
        {b"Expect": b"100-continue"},
        {b"Expect": b"x"},
    ]
)
other_headers = st.builds(
    lambda common, rare: {**common, **rare},
    st.fixed_dictionaries(
        {}, optional={b"Content-Type": content_type, b"X-Forwarded-For": header_value}
    ),
    rare_headers,
)

json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**300), max_value=10**300),
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
    st.sampled_from(["@@DEEP@@", "@@HUGE@@"]),
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(fuzz_text, inner, max_size=4),
    max_leaves=8,
)


def dumps(value: Any, ascii_only: bool = True) -> bytes:
    """JSON with the markers replaced: deep nesting and numbers beyond Python's digit limit
    (neither of which json.dumps can write)."""
    raw = json.dumps(value, ensure_ascii=ascii_only)
    raw = raw.replace('"@@DEEP@@"', "[" * 3000 + "]" * 3000)
    raw = raw.replace('"@@HUGE@@"', "1" + "0" * 5000)
    return raw.encode("utf-8", "surrogatepass")


def _nested(depth: int, opener: str) -> bytes:
    closer = {"[": "]", '{"a":': "}", '{"alerts":[': "]}"}[opener]
    return (opener * depth + "1" + closer * depth).encode()


deep_body = st.builds(
    _nested,
    st.one_of(st.integers(1, 2000), st.integers(2000, 100_000)),
    st.sampled_from(["[", '{"a":', '{"alerts":[']),
)
huge_number_body = st.integers(4200, 6000).map(
    lambda n: b'{"version": "4", "groupKey": "k", "truncatedAlerts": 1' + b"0" * n + b"}"
)
random_body = st.one_of(
    st.binary(max_size=2048),
    st.builds(dumps, json_value, st.booleans()),
    deep_body,
    huge_number_body,
    st.just(b""),
)

offset = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
rfc3339 = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59), timezones=offset
).map(lambda d: d.isoformat())
junk = st.one_of(
    st.none(),
    st.integers(),
    st.floats(),
    fuzz_text,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(fuzz_text, fuzz_text, max_size=2),
    st.integers(0, 5).map(lambda n: "@@DEEP@@" if n == 0 else "@@HUGE@@" if n == 1 else {}),
)
mostly_ascii = st.sampled_from([True, True, True, False])


def mostly(valid: st.SearchStrategy[Any], one_in: int = 20) -> st.SearchStrategy[Any]:
    """``valid``, but junk once in ``one_in`` draws: payloads wrong in one or two places."""
    return st.sampled_from([valid] * (one_in - 1) + [junk]).flatmap(lambda chosen: chosen)


times = mostly(
    st.one_of(
        rfc3339,
        st.sampled_from(
            [
                "0001-01-01T00:00:00Z",
                "0001-01-01T00:30:00+01:00",
                "9999-12-31T23:59:59-01:00",
                "2026-11-30T08:50:00Z",
                "2026-11-30T08:50:00.123456789+05:30",
                "1969-12-31T23:59:59Z",
                None,
                "2026-11-30T08:50:00",
                "yesterday",
                "",
            ]
        ),
    )
)
labels = mostly(
    st.dictionaries(
        st.one_of(st.sampled_from(["alertname", "severity", "namespace"]), fuzz_text),
        st.one_of(st.sampled_from(["p0", "p1", "critical", "warning", "X"]), any_text),
        max_size=3,
    )
)
alert = st.fixed_dictionaries(
    {
        "status": mostly(st.sampled_from(["firing", "resolved"])),
        "labels": labels,
        "startsAt": times,
        "fingerprint": mostly(st.one_of(st.sampled_from(["f1", "f2", "f3"]), any_text)),
    },
    optional={
        "annotations": labels,
        "endsAt": times,
        "generatorURL": mostly(any_text),
    },
)
am_payload = st.fixed_dictionaries(
    {
        "version": mostly(st.just("4")),
        "groupKey": mostly(st.one_of(st.sampled_from(["g1", "g2", '{}:{a="b"}']), any_text)).map(
            lambda key: key if key != "" else "g3"
        ),
        "receiver": mostly(st.one_of(st.just("pira"), any_text)),
        "status": mostly(st.sampled_from(["firing", "resolved"])),
        "alerts": mostly(st.lists(alert, max_size=3)),
    },
    optional={
        "groupLabels": labels,
        "commonLabels": labels,
        "commonAnnotations": labels,
        "externalURL": mostly(any_text),
        "truncatedAlerts": mostly(st.integers()),
        "extra": st.one_of(st.none(), st.none(), st.none(), json_value),
    },
)
command_text = st.one_of(
    any_text,
    st.builds(
        lambda sev, title: f"{sev} {title}",
        st.sampled_from(["p0", "p1", "p2", "p3", "px", "#1", ""]),
        any_text,
    ),
)
slack_user = st.one_of(st.sampled_from(["U0ALICE", "U0BOB"]), fuzz_text)


def _no_url(body: bytes) -> bool:
    """Bodies Slack would never send: no address for the bot to answer to but the fake's."""
    lowered = body.lower()
    return b"http" not in lowered and b"url" not in lowered and b"%2f%2f" not in lowered


# ---- Alertmanager -------------------------------------------------------------------------

VALID_AM = dumps(
    {
        "version": "4",
        "groupKey": "auth",
        "receiver": "pira",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "A"},
                "startsAt": "2026-11-30T08:50:00Z",
                "fingerprint": "a",
            }
        ],
    }
)


@settings(FUZZ, max_examples=EXAMPLES["alertmanager_auth"])
@given(
    authorization=st.one_of(
        header_value,
        header_value.map(lambda v: b"Bearer " + v),
        st.just(AM_TOKEN.encode()),
        st.just(b"Basic " + AM_TOKEN.encode()),
    ),
    extra=other_headers,
)
def test_alertmanager_wrong_credentials(
    target: Target, authorization: bytes, extra: dict[bytes, bytes]
) -> None:
    headers = {**extra, b"Authorization": authorization}
    check(target, "/alertmanager", "credentials", headers, VALID_AM, refused=True)


@settings(FUZZ, max_examples=EXAMPLES["alertmanager_body"])
@given(body=random_body, extra=other_headers, chunked=st.booleans())
def test_alertmanager_random_bodies(
    target: Target, body: bytes, extra: dict[bytes, bytes], chunked: bool
) -> None:
    headers = {**extra, b"Authorization": b"Bearer " + AM_TOKEN.encode()}
    check(target, "/alertmanager", "random body", headers, body, chunked=chunked)


@settings(FUZZ, max_examples=EXAMPLES["alertmanager_payload"])
@given(payload=am_payload, ascii_only=mostly_ascii)
def test_alertmanager_fuzzed_payloads(target: Target, payload: Any, ascii_only: bool) -> None:
    headers = {
        b"Authorization": b"Bearer " + AM_TOKEN.encode(),
        b"Content-Type": b"application/json",
    }
    check(target, "/alertmanager", "fuzzed payload", headers, dumps(payload, ascii_only))


# ---- Slack --------------------------------------------------------------------------------


@settings(FUZZ, max_examples=EXAMPLES["slack_unsigned"])
@given(
    timestamp=st.one_of(header_value, st.just(b"now")),
    signature=header_value,
    body=random_body,
    extra=other_headers,
)
def test_slack_unsigned(
    target: Target, timestamp: bytes, signature: bytes, body: bytes, extra: dict[bytes, bytes]
) -> None:
    if timestamp == b"now":  # a fresh timestamp, so that only the signature is wrong
        timestamp = str(int(time.time())).encode()
    headers = {**extra, b"X-Slack-Request-Timestamp": timestamp, b"X-Slack-Signature": signature}
    check(target, "/slack/events", "unsigned", headers, body, refused=True)


slash_command = st.fixed_dictionaries(
    {
        "command": mostly(st.sampled_from([f"/{c}" for c in COMMANDS])),
        "text": command_text,
        "user_id": slack_user,
        "user_name": fuzz_text,
        "channel_id": st.one_of(st.sampled_from(["C0INCIDENTS", "C0GENERAL"]), fuzz_text),
        "team_id": st.one_of(st.just("T0PIRA001"), fuzz_text),
        "trigger_id": fuzz_text,
    }
)
interaction = st.fixed_dictionaries(
    {
        "type": st.one_of(
            st.sampled_from(["block_actions", "view_submission", "shortcut"]), fuzz_text
        ),
        "user": st.one_of(st.fixed_dictionaries({"id": slack_user}), junk),
        "actions": st.one_of(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "action_id": st.one_of(st.sampled_from(["pira:0", "pira:ask:0"]), junk),
                        "value": st.one_of(command_text, junk),
                    }
                ),
                max_size=2,
            ),
            junk,
        ),
        "view": st.one_of(json_value, junk),
        "container": st.one_of(json_value, junk),
    }
)


@st.composite
def slack_body(draw: st.DrawFn, response_url: str) -> tuple[bytes, bytes]:
    """A body and its Content-Type; what asks for an answer asks it of the fake Slack."""
    choice = draw(st.integers(0, 2))
    if choice == 0:
        form = {**draw(slash_command), "response_url": response_url}
        body = urlencode(form, errors="surrogatepass").encode()
        return body, b"application/x-www-form-urlencoded"
    if choice == 1:
        payload = {**draw(interaction), "response_url": response_url}
        text_ = json.dumps(payload)
        if not _no_url(text_.replace(response_url, "").encode()):
            text_ = json.dumps({**payload, "view": None, "container": None})
        body = urlencode({"payload": text_}, errors="surrogatepass").encode()
        return body, b"application/x-www-form-urlencoded"
    body = draw(random_body.filter(_no_url))
    return body, draw(content_type)


@settings(FUZZ, max_examples=EXAMPLES["slack_signed"])
@given(data=st.data())
def test_slack_signed(target: Target, data: st.DataObject) -> None:
    body, ctype = data.draw(slack_body(target.slack_response_url))
    target.settle()
    ts = str(int(time.time()))
    headers = {
        b"Content-Type": ctype,
        b"X-Slack-Request-Timestamp": ts.encode(),
        b"X-Slack-Signature": slack_signature(SLACK_SECRET, ts, body).encode(),
    }
    check(target, "/slack/events", "signed", headers, body)


# ---- Telegram -----------------------------------------------------------------------------


@settings(FUZZ, max_examples=EXAMPLES["telegram_secret"])
@given(secret=st.one_of(header_value, st.none()), body=random_body, extra=other_headers)
def test_telegram_wrong_secret(
    target: Target, secret: bytes | None, body: bytes, extra: dict[bytes, bytes]
) -> None:
    headers = dict(extra)
    if secret is not None:
        headers[b"X-Telegram-Bot-Api-Secret-Token"] = secret
    check(target, "/telegram", "wrong secret", headers, body, refused=True)


tg_id = mostly(
    st.one_of(
        st.sampled_from([1001, 1002, 1003, GROUP["id"]]),
        st.integers(),
        st.integers(min_value=-(10**40), max_value=10**40),
    )
)
tg_user_ = st.fixed_dictionaries(
    {"id": tg_id, "is_bot": mostly(st.just(False)), "first_name": any_text},
    optional={"username": fuzz_text},
)
tg_chat = st.fixed_dictionaries(
    {"id": tg_id, "type": mostly(st.sampled_from(["group", "supergroup", "private"]))},
    optional={"title": any_text, "is_forum": st.booleans()},
)
tg_message = st.fixed_dictionaries(
    {
        "message_id": mostly(st.integers()),
        "date": mostly(st.integers(min_value=0, max_value=2**33)),
        "chat": mostly(tg_chat),
        "from": mostly(tg_user_),
        "text": mostly(
            st.one_of(
                st.builds(lambda c, t: f"/{c} {t}", st.sampled_from(COMMANDS), command_text),
                any_text,
            )
        ),
    },
    optional={
        "message_thread_id": mostly(st.integers()),
        "reply_to_message": mostly(st.none()),
        "entities": mostly(st.just([])),
    },
)
tg_callback = st.fixed_dictionaries(
    {
        "id": mostly(fuzz_text),
        "from": mostly(tg_user_),
        "chat_instance": fuzz_text,
        "data": mostly(command_text),
    },
    optional={"message": mostly(tg_message)},
)
tg_update = st.fixed_dictionaries(
    {
        "update_id": mostly(st.one_of(st.integers(), st.integers(min_value=0, max_value=10**30))),
    },
    optional={
        "message": mostly(tg_message),
        "callback_query": mostly(tg_callback),
        "edited_message": mostly(st.none()),
    },
)


@settings(FUZZ, max_examples=EXAMPLES["telegram_update"])
@given(
    body=st.integers(1, 4).flatmap(
        lambda n: random_body if n == 1 else st.builds(dumps, tg_update, mostly_ascii)
    ),
    ctype=st.integers(1, 4).flatmap(
        lambda n: content_type if n == 1 else st.just(b"application/json")
    ),
)
def test_telegram_updates(target: Target, body: bytes, ctype: bytes) -> None:
    target.settle()
    headers = {b"Content-Type": ctype, b"X-Telegram-Bot-Api-Secret-Token": TG_SECRET.encode()}
    check(target, "/telegram", "update", headers, body)


# ---- acknowledgements from phones ------------------------------------------------------------


def check_ack_back(
    target: Target, endpoint: str, kind: str, headers: dict[bytes, bytes], body: bytes
) -> int:
    """As :func:`check`, but a refusal is audited (one row), and nothing else is stored."""
    target.leaks.clear()
    before = target.counts()
    status = send(target.port, endpoint.encode(), headers, body)
    STATS[(endpoint, kind, status)] += 1
    assert status < 500, f"{endpoint} {kind}: {status}"
    after = target.counts()
    if 400 <= status < 500:
        incidents, timeline, audit, outbox = before
        assert after[:2] + after[3:] == (incidents, timeline, outbox), f"{endpoint}: stored"
        assert after[2] - audit <= 1, f"{endpoint} {kind}: more than the refusal audited"
    assert not target.leaks.secrets, target.leaks.secrets[:3]
    assert not target.leaks.tracebacks, target.leaks.tracebacks[:3]
    return status


@settings(FUZZ, max_examples=EXAMPLES["ack_back"])
@given(
    endpoint=st.sampled_from(["/ntfy/ack", "/pagerduty"]),
    body=st.one_of(
        random_body,
        st.builds(lambda t: dumps({"token": t}), any_text),
        st.builds(
            lambda v: dumps({"token": v}),
            st.one_of(st.integers(), st.none(), st.lists(st.integers())),
        ),
    ),
    signature=st.one_of(header_value, header_value.map(lambda v: b"v1=" + v)),
    extra=other_headers,
)
def test_ack_back_refuses_what_it_cannot_trust(
    target: Target, endpoint: str, body: bytes, signature: bytes, extra: dict[bytes, bytes]
) -> None:
    headers = {**extra, b"Content-Type": b"application/json", b"X-PagerDuty-Signature": signature}
    status = check_ack_back(target, endpoint, "untrusted", headers, body)
    assert status in (400, 401, 413, 415, 417), f"{endpoint}: {status}"


pd_event = st.fixed_dictionaries(
    {
        "event": mostly(
            st.fixed_dictionaries(
                {
                    "id": mostly(any_text),
                    "event_type": mostly(
                        st.sampled_from(["incident.acknowledged", "incident.triggered", "x"])
                    ),
                    "occurred_at": mostly(
                        st.sampled_from(["2026-11-30T09:00:00Z", "0001-01-01T00:00:00Z", "soon"])
                    ),
                    "data": mostly(
                        st.fixed_dictionaries(
                            {
                                "incident_key": mostly(
                                    st.sampled_from(
                                        [
                                            "pira-incident-1",
                                            "pira-incident-99999999999999",
                                            "pira-incident-",
                                            "x",
                                        ]
                                    )
                                )
                            }
                        )
                    ),
                    "agent": mostly(
                        st.fixed_dictionaries({"id": mostly(any_text), "summary": mostly(any_text)})
                    ),
                }
            )
        )
    }
)


@settings(FUZZ, max_examples=EXAMPLES["pagerduty_signed"])
@given(payload=pd_event, ascii_only=mostly_ascii)
def test_pagerduty_signed_events(target: Target, payload: Any, ascii_only: bool) -> None:
    """Correctly signed: past the signature, into the parser and the acknowledgement
    (there is no incident #1 here: nothing can be acknowledged)."""
    body = dumps(payload, ascii_only)
    signature = hmac.new(PD_SECRET.encode(), body, hashlib.sha256).hexdigest().encode()
    headers = {b"Content-Type": b"application/json", b"X-PagerDuty-Signature": b"v1=" + signature}
    check_ack_back(target, "/pagerduty", "signed event", headers, body)


# ---- after it all -------------------------------------------------------------------------


def test_still_healthy_and_report(target: Target, capsys: pytest.CaptureFixture[str]) -> None:
    target.settle()
    healthy(target)
    took = time.monotonic() - target.started
    by_class: dict[str, dict[str, int]] = {}
    for (endpoint, kind, status), n in sorted(STATS.items()):
        by_class.setdefault(f"{endpoint} {kind}", {})[str(status)] = n
    total = sum(STATS.values())
    report = {
        "database": "postgresql" if PG_URL else "sqlite",
        "tolerated_tracebacks": dict(target.leaks.tolerated),
        "requests": total,
        "seconds": round(took, 1),
        "answers": by_class,
        "over_499": sum(n for (_, _, status), n in STATS.items() if status >= 500),
    }
    if path := os.environ.get("PIRA_FUZZ_STATS"):
        Path(path).write_text(json.dumps(report, indent=2))
    with capsys.disabled():
        print(f"\nwebhook fuzz: {total} requests in {took:.1f} s on {report['database']}")
        for name, answers in by_class.items():
            print(f"  {name}: {sum(answers.values())} → {answers}")
        print(f"  known tracebacks (see TOLERATED): {report['tolerated_tracebacks']}")
    assert report["over_499"] == 0
