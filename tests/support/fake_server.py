"""The server machinery shared by the protocol fakes of Slack and Telegram
(tests/fakes/slack_api.py, tests/fakes/telegram_api.py).

:class:`FakeServer` is a real aiohttp server on 127.0.0.1 (a free port), run on the
caller's event loop (``async with``) or on its own loop in a background thread
(:meth:`FakeServer.in_thread`, for a bot running as a subprocess). It records every
request as a :class:`RecordedCall`, lets a test wait for one (async or blocking), and
injects failures: HTTP errors, 429s, hung and late answers. A fake subclasses it with
its routes (``_build_app``), its platform's error shapes (``_error_reply``) and rate
limits (``_rate_limit_wait``, with :class:`SlidingWindow`), and answers each request
through ``_pipeline``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qsl

from aiohttp import BodyPartReader, web

# How long a wait for a call the test expects may take. Generous on purpose: a wait ends
# as soon as the call is recorded, so only a failing test waits this long, and under the
# full suite on PostgreSQL (two workers, the database server on the same two cores) a
# command -> transaction -> outbox -> request round trip is thought to have taken
# over 5 s (one forum-topic test timed out there, and passes alone).
WAIT = 15.0

JSONDict = dict[str, Any]
Predicate = Callable[["RecordedCall"], object]  # truthy result = match


@dataclass
class RecordedCall:
    """One request received by a fake.

    ``params`` holds the decoded query string + form/multipart/JSON body (JSON-encoded form
    fields such as ``blocks`` or ``reply_markup`` are decoded; a multipart file part is
    ``{filename, size, content_type, content}``). ``outcome`` is one of
    ``pending``, ``ok``, ``error`` (API-level error answer), ``failed`` (injected 5xx),
    ``ratelimited``, ``hung``, ``late`` (processed; answer delayed), ``released``, ``aborted``.
    ``delivered`` is True when the call took effect (processed and answered ``ok``), even if
    the answer reached the client too late.
    """

    method: str
    params: JSONDict
    headers: dict[str, str]
    token: str | None
    http_method: str
    path: str
    time: float
    body: bytes = b""
    status: int | None = None
    outcome: str = "pending"
    delivered: bool = False
    response: Any = None

    @property
    def json(self) -> JSONDict:
        return self.params


@dataclass
class Fault:
    """A programmed failure for one API method (``"*"`` matches every method)."""

    kind: str  # "status" | "ratelimit" | "hang" | "late"
    remaining: int | None = 1  # None: until cleared
    status: int = 500
    retry_after: int = 1
    delay: float = 0.0
    body: Any = None
    event: asyncio.Event | None = None


class ApiError(Exception):
    """Raised by method handlers; converted to the platform's error shape."""

    def __init__(self, status: int, body: JSONDict, headers: dict[str, str] | None = None) -> None:
        super().__init__(json.dumps(body))
        self.status = status
        self.body = body
        self.headers = headers or {}


@dataclass
class HttpReply:
    """What a fake answers: HTTP status, body (JSON-encoded unless a str) and headers."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class SlidingWindow:
    """Counts events per key in a sliding window; tells how long to wait when full."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._events: dict[Any, deque[float]] = {}

    def wait(self, key: Any, now: float) -> float:
        """Seconds until one more event for ``key`` fits in the window (0: now)."""
        q = self._events.setdefault(key, deque())
        while q and q[0] <= now - self.window:
            q.popleft()
        if len(q) >= self.limit:
            return q[len(q) - self.limit] + self.window - now
        return 0.0

    def add(self, key: Any, now: float) -> None:
        self._events.setdefault(key, deque()).append(now)

    def check(self, key: Any, now: float) -> float:
        """Return 0 if an event may happen now (and count it), else seconds to wait."""
        wait = self.wait(key, now)
        if not wait:
            self.add(key, now)
        return wait

    def reset(self) -> None:
        self._events.clear()


class FakeServer:
    """Base for the fakes: aiohttp app on 127.0.0.1:0, call log, waits and failure injection."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._calls: list[RecordedCall] = []
        self._faults: dict[str, list[Fault]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self.port: int = 0
        self.rate_limits_enabled = False

    # ---- lifecycle -----------------------------------------------------------------------

    @property
    def root_url(self) -> str:
        if not self.port:
            raise RuntimeError("fake server is not running")
        return f"http://{self.host}:{self.port}"

    def _build_app(self) -> web.Application:  # pragma: no cover - abstract
        raise NotImplementedError

    async def _on_stop(self) -> None:
        """Subclass hook: close websockets, wake long polls."""

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._closing = asyncio.Event()
        app = self._build_app()
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None)
        assert sockets
        self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._closing is not None:
            self._closing.set()
        with self._lock:
            faults = [f for fl in self._faults.values() for f in fl]
        for f in faults:
            if f.event is not None:
                f.event.set()
        await self._on_stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        with self._cond:
            self._cond.notify_all()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def threaded(self) -> Iterator[Self]:
        """Run this fake on its own event loop in a background thread."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.stop())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name=type(self).__name__, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake server did not start within 10 s")
        if errors:
            raise errors[0]
        try:
            yield self
        finally:
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(loop.stop)
            self._thread.join(10)
            self._thread = None

    @classmethod
    @contextlib.contextmanager
    def in_thread(cls, *args: Any, **kwargs: Any) -> Iterator[Self]:
        """``with FakeX.in_thread(**ctor_kwargs) as fake:`` — construct and run in a thread."""
        with cls(*args, **kwargs).threaded() as fake:
            yield fake

    def _call_soon(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the server loop (thread-safe; works from the loop thread too)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(fn)

    # ---- recording -----------------------------------------------------------------------

    @staticmethod
    def _request_call(
        request: web.Request, method: str, params: JSONDict, token: str | None, body: bytes = b""
    ) -> RecordedCall:
        """A :class:`RecordedCall` for ``request`` (not recorded yet: see :meth:`_record`)."""
        return RecordedCall(
            method=method,
            params=params,
            headers=dict(request.headers),
            token=token,
            http_method=request.method,
            path=request.path,
            time=time.time(),
            body=body,
        )

    def _record(self, call: RecordedCall) -> RecordedCall:
        with self._cond:
            self._calls.append(call)
            self._cond.notify_all()
        return call

    def _touch(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def calls(
        self, method: str | None = None, *, delivered: bool | None = None
    ) -> list[RecordedCall]:
        """Snapshot of recorded calls, optionally filtered by method and delivery."""
        with self._lock:
            out = list(self._calls)
        if method is not None:
            out = [c for c in out if c.method == method]
        if delivered is not None:
            out = [c for c in out if c.delivered == delivered]
        return out

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def _find(
        self, method: str | None, predicate: Predicate | None, delivered: bool | None, start: int
    ) -> RecordedCall | None:
        for c in self.calls(method, delivered=delivered)[start:]:
            if predicate is None or predicate(c):
                return c
        return None

    def _timeout_error(self, method: str | None, timeout: float) -> TimeoutError:
        seen = [
            f"{c.method}:{c.outcome}"
            + (f" ({str(c.response)[:120]})" if c.outcome == "error" else "")
            for c in self.calls()
        ][-20:]
        return TimeoutError(f"no matching {method or 'call'} within {timeout}s; last calls: {seen}")

    async def wait_for(
        self,
        method: str | None = None,
        predicate: Predicate | None = None,
        timeout: float = WAIT,
        *,
        delivered: bool | None = None,
        skip: int = 0,
    ) -> RecordedCall:
        """Wait (async) for a recorded call matching method/predicate; ``skip`` ignores the
        first N calls of that method (e.g. ``skip=len(fake.calls(m))`` waits for a new one)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self._find(method, predicate, delivered, skip)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                raise self._timeout_error(method, timeout)
            await asyncio.sleep(0.01)

    def wait_for_sync(
        self,
        method: str | None = None,
        predicate: Predicate | None = None,
        timeout: float = WAIT,
        *,
        delivered: bool | None = None,
        skip: int = 0,
    ) -> RecordedCall:
        """Blocking variant of :meth:`wait_for` (use with :meth:`in_thread`)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self._find(method, predicate, delivered, skip)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._timeout_error(method, timeout)
                self._cond.wait(min(left, 0.1))

    # ---- failure injection ---------------------------------------------------------------

    def _add_fault(self, method: str, fault: Fault) -> Fault:
        with self._lock:
            self._faults.setdefault(method, []).append(fault)
        return fault

    def fail(
        self, method: str, *, status: int = 500, times: int | None = 1, body: Any = None
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with HTTP ``status`` (not processed)."""
        self._add_fault(method, Fault("status", times, status=status, body=body))

    def rate_limit(self, method: str, *, retry_after: int = 1, times: int | None = 1) -> None:
        """Answer the next ``times`` calls with the platform's 429 shape (not processed)."""
        self._add_fault(method, Fault("ratelimit", times, retry_after=retry_after))

    def hang(self, method: str, *, times: int | None = 1) -> None:
        """Never answer the next ``times`` calls until :meth:`release` (not processed before)."""
        self._add_fault(method, Fault("hang", times))

    def respond_late(self, method: str, delay: float, *, times: int | None = 1) -> None:
        """Process the call (it takes effect, ``delivered=True``) but answer after ``delay`` s —
        simulates a response lost after the client gave up."""
        self._add_fault(method, Fault("late", times, delay=delay))

    def release(self, method: str | None = None, *, process: bool = True) -> None:
        """Release hung calls (of ``method`` or all). With ``process`` they are then handled
        normally; otherwise they are answered 502 without effect. Also removes hang faults."""
        with self._lock:
            for m, faults in list(self._faults.items()):
                if method is not None and m != method:
                    continue
                for f in faults:
                    if f.kind == "hang":
                        f.body = "process" if process else "drop"
                        f.remaining = 0
                        if f.event is not None:
                            self._call_soon(f.event.set)

    def clear_faults(self) -> None:
        self.release(process=False)
        with self._lock:
            self._faults.clear()

    def _take_fault(self, method: str) -> Fault | None:
        with self._lock:
            for key in (method, "*"):
                for f in self._faults.get(key, []):
                    if f.remaining is None or f.remaining > 0:
                        if f.remaining is not None:
                            f.remaining -= 1
                        if f.kind == "hang" and f.event is None:
                            f.event = asyncio.Event()
                        return f
        return None

    def enable_rate_limits(self, enabled: bool = True) -> None:
        """Switch the platform's documented rate limits on/off (429 with the right wait)."""
        self.rate_limits_enabled = enabled
        self._reset_rate_limits()

    def _reset_rate_limits(self) -> None:
        """Subclass hook."""

    # ---- request pipeline ----------------------------------------------------------------

    def _error_reply(self, kind: str, fault: Fault) -> HttpReply:  # pragma: no cover - abstract
        raise NotImplementedError

    def _rate_limit_wait(self, method: str, params: JSONDict) -> float:
        return 0.0

    async def _sleep_or_close(self, delay: float) -> None:
        assert self._closing is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), delay)

    async def _pipeline(
        self, call: RecordedCall, process: Callable[[], Awaitable[HttpReply]]
    ) -> HttpReply:
        fault = self._take_fault(call.method)
        late_delay = 0.0
        if fault is not None:
            if fault.kind in ("status", "ratelimit"):
                reply = self._error_reply(fault.kind, fault)
                call.outcome = "failed" if fault.kind == "status" else "ratelimited"
                return self._finish(call, reply)
            if fault.kind == "hang":
                call.outcome = "hung"
                self._touch()
                assert fault.event is not None and self._closing is not None
                closing = asyncio.ensure_future(self._closing.wait())
                released = asyncio.ensure_future(fault.event.wait())
                try:
                    await asyncio.wait({closing, released}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    closing.cancel()
                    released.cancel()
                if self._closing.is_set() or fault.body != "process":
                    call.outcome = "aborted"
                    return self._finish(
                        call, self._error_reply("status", Fault("status", status=502))
                    )
                call.outcome = "released"
            if fault.kind == "late":
                late_delay = fault.delay
        wait = self._rate_limit_wait(call.method, call.params) if self.rate_limits_enabled else 0.0
        if wait > 0:
            call.outcome = "ratelimited"
            reply = self._error_reply("ratelimit", Fault("ratelimit", retry_after=math.ceil(wait)))
            return self._finish(call, reply)
        reply = await process()
        ok = 200 <= reply.status < 300 and (
            not isinstance(reply.body, dict) or reply.body.get("ok", True) is not False
        )
        call.delivered = ok
        if call.outcome == "pending":
            call.outcome = "ok" if ok else "error"
        if late_delay:
            call.outcome = "late"
            call.response = reply.body
            self._touch()
            await self._sleep_or_close(late_delay)
        return self._finish(call, reply)

    def _finish(self, call: RecordedCall, reply: HttpReply) -> HttpReply:
        call.status = reply.status
        call.response = reply.body
        self._touch()
        return reply


def json_response(reply: HttpReply) -> web.Response:
    if isinstance(reply.body, str):
        return web.Response(status=reply.status, text=reply.body, headers=reply.headers)
    return web.Response(
        status=reply.status,
        text=json.dumps(reply.body),
        content_type="application/json",
        charset="utf-8",
        headers=reply.headers,
    )


async def read_params(request: web.Request, json_fields: Callable[[str, str], Any]) -> JSONDict:
    """Decode query + body (JSON, urlencoded or multipart). ``json_fields(name, value)`` decodes
    form string values (e.g. JSON-encoded ``blocks``)."""
    params: JSONDict = {k: json_fields(k, v) for k, v in request.query.items()}
    ctype = request.content_type
    if not request.can_read_body:
        return params
    if ctype == "application/json":
        raw = await request.read()
        if raw.strip():
            data = json.loads(raw)
            if isinstance(data, dict):
                params.update(data)
    elif ctype == "multipart/form-data":
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue
            if part.filename:
                content = bytes(await part.read())
                params[part.name] = {
                    "filename": part.filename,
                    "size": len(content),
                    "content_type": part.headers.get("Content-Type", ""),
                    "content": content,
                }
            else:
                params[part.name] = json_fields(part.name, await part.text())
    else:
        raw = await request.read()
        for k, v in parse_qsl(raw.decode("utf-8"), keep_blank_values=True):
            params[k] = json_fields(k, v)
    return params
