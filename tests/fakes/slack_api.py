"""Protocol-level fake of the Slack Web API, Socket Mode and response_url endpoints.

The fake is a real aiohttp server on 127.0.0.1 (free port). Point the real clients at it::

    async with FakeSlack() as slack:
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.url)
        await client.chat_postMessage(channel="C0INCIDENTS", text="hi")
        call = await slack.wait_for("chat.postMessage", lambda c: c.params["text"] == "hi")

    with FakeSlack.in_thread() as slack:  # for a bot running as a subprocess
        ...
        slack.wait_for_sync("chat.postMessage", timeout=5)

The server machinery (loopback server, recording, waiting, failure injection,
background-thread runner) is :class:`tests.support.fake_server.FakeServer`, shared with the
Telegram fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import BodyPartReader, WSMsgType, web

from tests.support.fake_server import (
    ApiError,
    FakeServer,
    Fault,
    HttpReply,
    JSONDict,
    RecordedCall,
    SlidingWindow,
    json_response,
    read_params,
)

# RecordedCall and SlidingWindow are imported from here by tests.
__all__ = ["FakeSlack", "RecordedCall", "SlackError", "SlidingWindow"]


_SLACK_JSON_FIELDS = {
    "blocks",
    "attachments",
    "metadata",
    "view",
    "user_ids",
    "replace_original",
    "files",
}


def _slack_field(name: str, value: str) -> Any:
    if name in _SLACK_JSON_FIELDS and value[:1] in "[{tf":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class SlackError(ApiError):
    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(200, {"ok": False, "error": error, **extra})


@dataclass
class SlackChannel:
    id: str
    name: str
    is_private: bool = False
    is_im: bool = False
    bot_is_member: bool = True
    members: set[str] = field(default_factory=set)
    created: int = field(default_factory=lambda: int(time.time()))
    topic: str = ""

    def to_api(self) -> JSONDict:
        if self.is_im:
            user = next(iter(self.members), "")
            return {"id": self.id, "is_im": True, "user": user, "created": self.created}
        return {
            "id": self.id,
            "name": self.name,
            "name_normalized": self.name,
            "is_channel": not self.is_private,
            "is_group": self.is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": self.is_private,
            "is_archived": False,
            "is_general": False,
            "is_shared": False,
            "is_ext_shared": False,
            "is_org_shared": False,
            "is_member": self.bot_is_member,
            "created": self.created,
            "creator": FakeSlack.BOT_USER_ID,
            "unlinked": 0,
            "topic": {"value": self.topic, "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
            "previous_names": [],
            "num_members": len(self.members),
        }


@dataclass
class SlackFile:
    """A file of the files.getUploadURLExternal flow: announced (``length``), its bytes
    POSTed to the upload URL (``content``), completed (``permalink`` known), and shared by
    the messages listed in ``shares`` ((channel, ts): a completion into a channel, or a
    posted message whose text holds the permalink)."""

    id: str
    name: str
    length: int
    content: bytes | None = None
    title: str = ""
    completed: bool = False
    permalink: str = ""
    shares: list[tuple[str, str]] = field(default_factory=list)
    created: int = field(default_factory=lambda: int(time.time()))

    def to_api(self) -> JSONDict:
        public: dict[str, list[JSONDict]] = {}
        for cid, ts in self.shares:
            public.setdefault(cid, []).append({"ts": ts, "reply_users_count": 0})
        ext = self.name.rsplit(".", 1)[-1].lower() if "." in self.name else "binary"
        private = f"https://files.slack.com/files-pri/{FakeSlack.TEAM_ID}-{self.id}/{self.name}"
        return {
            "id": self.id,
            "created": self.created,
            "timestamp": self.created,
            "name": self.name,
            "title": self.title or self.name,
            "mimetype": "application/octet-stream",
            "filetype": ext,
            "pretty_type": ext.upper(),
            "user": FakeSlack.BOT_USER_ID,
            "user_team": FakeSlack.TEAM_ID,
            "editable": False,
            "size": len(self.content or b""),
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": bool(self.shares),
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": private,
            "url_private_download": private.replace("/files-pri/", "/files-pri/download/"),
            "permalink": self.permalink,
            "permalink_public": f"https://slack-files.com/{FakeSlack.TEAM_ID}-{self.id}-0",
            "comments_count": 0,
            "is_starred": False,
            "shares": {"public": public} if public else {},
            "channels": list(public),
            "groups": [],
            "ims": [],
            "has_rich_preview": False,
        }


@dataclass
class SocketAck:
    envelope_id: str | None
    payload: Any
    raw: JSONDict
    time: float


class FakeSlack(FakeServer):
    """Fake Slack: Web API under ``/api/``, Socket Mode at ``/link/``, response URLs at
    ``/response/...``.

    ``url`` is the Web API base URL for ``AsyncWebClient(base_url=...)`` (ends with ``/api/``).
    """

    TEAM_ID = "T0PIRA001"
    TEAM_DOMAIN = "pira-test"
    APP_ID = "A0PIRA001"
    BOT_USER_ID = "U0PIRABOT"
    BOT_ID = "B0PIRABOT"

    SCOPES_NEEDED = {
        "conversations.create": "channels:manage",
        "conversations.invite": "channels:manage",
        "conversations.join": "channels:join",
        "conversations.history": "channels:history",
        "conversations.list": "channels:read",
        "conversations.open": "im:write",
        "chat.postMessage": "chat:write",
        "users.info": "users:read",
        "files.getUploadURLExternal": "files:write",
        "files.completeUploadExternal": "files:write",
    }

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-pira-test-token",
        app_token: str = "xapp-1-A0PIRA001-pira-test",
        extra_tokens: tuple[str, ...] = (),
        rate_limits: bool = False,
        with_default_fixtures: bool = True,
    ) -> None:
        super().__init__()
        self.bot_token = bot_token
        self.app_token = app_token
        self._tokens = {bot_token, *extra_tokens}
        self.rate_limits_enabled = rate_limits
        self.missing_scopes: set[str] = set()  # method names answering missing_scope
        self.channels: dict[str, SlackChannel] = {}
        self.users: dict[str, JSONDict] = {}
        self.history: dict[str, list[JSONDict]] = {}
        self.ephemeral: list[JSONDict] = []
        self.views: list[JSONDict] = []  # modals opened by views.open (as answered)
        self.files: dict[str, SlackFile] = {}  # by id: uploads (files.getUploadURLExternal)
        self._triggers_used: set[str] = set()
        self.response_posts: list[RecordedCall] = []
        self.socket_acks: list[SocketAck] = []
        self.socket_messages: list[JSONDict] = []  # every text frame the client sent
        self.socket_connections = 0  # total successful websocket handshakes
        self._sockets: list[web.WebSocketResponse] = []
        self._pending_envelopes: list[JSONDict] = []
        self._ts_counter = itertools.count(1)
        self._id_counter = itertools.count(1)
        self._channel_window = SlidingWindow(1, 1.0)
        self._last_ts = 0.0
        if with_default_fixtures:
            self.add_channel("incidents", "C0INCIDENTS")
            self.add_channel("general", "C0GENERAL")
            self.add_user("U0ALICE", "alice", "Alice Example")
            self.add_user("U0BOB", "bob", "Bob Example")
            self.add_user(self.BOT_USER_ID, "pira", "PIRA", is_bot=True)

    @property
    def url(self) -> str:
        return f"{self.root_url}/api/"

    # ---- declarations --------------------------------------------------------------------

    def add_channel(
        self,
        name: str,
        channel_id: str | None = None,
        *,
        is_private: bool = False,
        bot_is_member: bool = True,
        members: tuple[str, ...] = (),
    ) -> SlackChannel:
        cid = channel_id or f"C{next(self._id_counter):08d}"
        ch = SlackChannel(cid, name, is_private, False, bot_is_member, set(members))
        if bot_is_member:
            ch.members.add(self.BOT_USER_ID)
        with self._lock:
            self.channels[cid] = ch
            self.history.setdefault(cid, [])
        return ch

    def add_user(
        self,
        user_id: str,
        name: str,
        real_name: str = "",
        *,
        is_bot: bool = False,
        tz: str = "Europe/Berlin",
        email: str | None = None,
        deleted: bool = False,
    ) -> JSONDict:
        user = {
            "id": user_id,
            "team_id": self.TEAM_ID,
            "name": name,
            "deleted": deleted,
            "real_name": real_name or name,
            "tz": tz,
            "tz_label": "Central European Time",
            "tz_offset": 3600,
            "is_admin": False,
            "is_owner": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": int(time.time()),
            "profile": {
                "real_name": real_name or name,
                "display_name": name,
                "email": email or f"{name}@example.invalid",
                "team": self.TEAM_ID,
            },
        }
        with self._lock:
            self.users[user_id] = user
        return user

    def messages(self, channel: str) -> list[JSONDict]:
        """Every message the fake holds for a channel (oldest first, threads included)."""
        with self._lock:
            cid = self._resolve_channel_id(channel)
            return [dict(m) for m in self.history.get(cid or channel, [])]

    def response_url(self, kind: str = "commands") -> str:
        """A fresh per-request response URL served (and recorded) by this fake."""
        return f"{self.root_url}/response/{kind}/{self.TEAM_ID}/{next(self._id_counter)}/" + (
            secrets.token_hex(8)
        )

    # ---- socket mode ---------------------------------------------------------------------

    def push_envelope(
        self,
        type: str,
        payload: JSONDict,
        *,
        envelope_id: str | None = None,
        accepts_response_payload: bool | None = None,
    ) -> str:
        """Send a Socket Mode envelope (``slash_commands``, ``interactive``, ``events_api``) to
        the connected client (queued until one connects). Thread-safe; returns envelope_id."""
        eid = envelope_id or f"{secrets.token_hex(4)}-{secrets.token_hex(2)}-{secrets.token_hex(6)}"
        env: JSONDict = {"envelope_id": eid, "payload": payload, "type": type}
        if accepts_response_payload is None:
            accepts_response_payload = type in ("slash_commands", "interactive")
        env["accepts_response_payload"] = accepts_response_payload
        if type == "events_api":
            env["retry_attempt"] = 0
            env["retry_reason"] = ""
        with self._lock:
            self._pending_envelopes.append(env)
        self._call_soon(lambda: asyncio.ensure_future(self._flush_envelopes()))
        return eid

    def push_disconnect(self, reason: str = "refresh_requested") -> None:
        """Send ``{"type": "disconnect"}`` like Slack does before rotating a connection."""
        msg = {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}}
        self._call_soon(lambda: asyncio.ensure_future(self._broadcast(msg)))

    async def _broadcast(self, msg: JSONDict) -> None:
        for ws in list(self._sockets):
            if not ws.closed:
                await ws.send_str(json.dumps(msg))

    async def _flush_envelopes(self) -> None:
        live = [ws for ws in self._sockets if not ws.closed]
        if not live:
            return
        with self._lock:
            pending, self._pending_envelopes = self._pending_envelopes, []
        for env in pending:
            await live[-1].send_str(json.dumps(env))

    def _find_ack(self, envelope_id: str) -> SocketAck | None:
        with self._lock:
            return next((a for a in self.socket_acks if a.envelope_id == envelope_id), None)

    async def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> SocketAck:
        deadline = time.monotonic() + timeout
        while (ack := self._find_ack(envelope_id)) is None:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no ack for envelope {envelope_id} within {timeout}s")
            await asyncio.sleep(0.01)
        return ack

    def wait_for_ack_sync(self, envelope_id: str, timeout: float = 5.0) -> SocketAck:
        deadline = time.monotonic() + timeout
        with self._cond:
            while (ack := self._find_ack(envelope_id)) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no ack for envelope {envelope_id} within {timeout}s")
                self._cond.wait(min(left, 0.1))
        return ack

    async def wait_for_socket(self, timeout: float = 5.0, count: int = 1) -> None:
        """Wait until ``count`` Socket Mode handshakes (hello sent) happened."""
        deadline = time.monotonic() + timeout
        while self.socket_connections < count:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no Socket Mode connection within {timeout}s")
            await asyncio.sleep(0.01)

    def wait_for_socket_sync(self, timeout: float = 5.0, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.socket_connections < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no Socket Mode connection within {timeout}s")
                self._cond.wait(min(left, 0.1))

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("ticket") is None:
            return web.Response(status=401, text="missing ticket")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        hello = {
            "type": "hello",
            "num_connections": len([s for s in self._sockets if not s.closed]),
            "debug_info": {
                "host": "applink-fake",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": self.APP_ID},
        }
        await ws.send_str(json.dumps(hello))
        with self._cond:
            self.socket_connections += 1
            self._cond.notify_all()
        await self._flush_envelopes()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    continue
                with self._cond:
                    self.socket_messages.append(data)
                    if isinstance(data, dict) and "envelope_id" in data:
                        self.socket_acks.append(
                            SocketAck(
                                data.get("envelope_id"), data.get("payload"), data, time.time()
                            )
                        )
                    self._cond.notify_all()
        finally:
            if ws in self._sockets:
                self._sockets.remove(ws)
        return ws

    async def _on_stop(self) -> None:
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close()

    # ---- HTTP ----------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api_handler)
        app.router.add_get("/link/", self._ws_handler)
        app.router.add_post("/response/{tail:.*}", self._response_url_handler)
        app.router.add_post("/upload/{file_id}", self._upload_handler)
        return app

    def _error_reply(self, kind: str, fault: Fault) -> HttpReply:
        if kind == "ratelimit":
            return HttpReply(
                429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(fault.retry_after)}
            )
        body = fault.body if fault.body is not None else {"ok": False, "error": "fatal_error"}
        return HttpReply(fault.status, body)

    def _reset_rate_limits(self) -> None:
        self._channel_window.reset()

    def _rate_limit_wait(self, method: str, params: JSONDict) -> float:
        if method != "chat.postMessage":
            return 0.0
        key = self._resolve_channel_id(str(params.get("channel", ""))) or params.get("channel")
        with self._lock:
            return self._channel_window.check(key, time.monotonic())

    async def _api_handler(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        try:
            params = await read_params(request, _slack_field)
        except ConnectionResetError:  # the client went away mid-request (shutting down)
            return web.Response(status=499)
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else params.get("token")
        call = self._record(self._request_call(request, method, params, token))

        async def process() -> HttpReply:
            try:
                result = self._dispatch(method, params, token)
            except ApiError as err:
                return HttpReply(err.status, err.body, err.headers)
            return HttpReply(200, {"ok": True, **result})

        reply = await self._pipeline(call, process)
        return json_response(reply)

    async def _response_url_handler(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else {}
        except ValueError:
            body = dict(parse_qsl(raw.decode("utf-8")))
        params = body if isinstance(body, dict) else {"body": body}
        call = self._request_call(request, "response_url", params, None, body=raw)
        with self._lock:
            self.response_posts.append(call)
        self._record(call)

        async def process() -> HttpReply:
            return HttpReply(200, {"ok": True})

        return json_response(await self._pipeline(call, process))

    # ---- API methods ---------------------------------------------------------------------

    def _dispatch(self, method: str, p: JSONDict, token: str | None) -> JSONDict:
        if not token:
            raise SlackError("not_authed")
        if method == "apps.connections.open":
            if token != self.app_token:
                raise SlackError(
                    "not_allowed_token_type" if token in self._tokens else "invalid_auth"
                )
        elif token not in self._tokens:
            raise SlackError("invalid_auth")
        if method in self.missing_scopes:
            raise SlackError(
                "missing_scope",
                needed=self.SCOPES_NEEDED.get(method, "unknown"),
                provided="chat:write,commands,users:read",
            )
        handler = self._methods().get(method)
        if handler is None:
            raise SlackError("unknown_method", req_method=method)
        with self._lock:
            return handler(p)

    def _methods(self) -> dict[str, Callable[[JSONDict], JSONDict]]:
        return {
            "api.test": lambda p: {"args": p},
            "auth.test": self._auth_test,
            "apps.connections.open": self._connections_open,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "conversations.create": self._conv_create,
            "conversations.invite": self._conv_invite,
            "conversations.join": self._conv_join,
            "conversations.info": self._conv_info,
            "conversations.list": self._conv_list,
            "conversations.history": self._conv_history,
            "conversations.replies": self._conv_replies,
            "conversations.open": self._conv_open,
            "users.info": self._users_info,
            "views.open": self._views_open,
            "files.getUploadURLExternal": self._files_upload_url,
            "files.completeUploadExternal": self._files_complete,
        }

    def _auth_test(self, p: JSONDict) -> JSONDict:
        return {
            "url": f"https://{self.TEAM_DOMAIN}.slack.com/",
            "team": "PIRA Test",
            "user": "pira",
            "team_id": self.TEAM_ID,
            "user_id": self.BOT_USER_ID,
            "bot_id": self.BOT_ID,
            "is_enterprise_install": False,
        }

    def _connections_open(self, p: JSONDict) -> JSONDict:
        ws_url = self.root_url.replace("http://", "ws://")
        return {"url": f"{ws_url}/link/?ticket={secrets.token_hex(8)}&app_id={self.APP_ID}"}

    def _resolve_channel_id(self, channel: str) -> str | None:
        if channel in self.channels:
            return channel
        name = channel.lstrip("#")
        for ch in self.channels.values():
            if ch.name == name and not ch.is_im:
                return ch.id
        return None

    def _channel(self, p: JSONDict, *, for_post: bool = False) -> SlackChannel:
        raw = str(p.get("channel") or "")
        if not raw:
            raise SlackError("channel_not_found")
        cid = self._resolve_channel_id(raw)
        if cid is None and for_post and raw in self.users:
            # posting to a user ID opens (or reuses) the DM with that user
            dm = next((c for c in self.channels.values() if c.is_im and raw in c.members), None)
            if dm is None:
                dm = SlackChannel(f"D{next(self._id_counter):08d}", raw, is_im=True)
                dm.members = {raw}
                self.channels[dm.id] = dm
                self.history[dm.id] = []
            return dm
        if cid is None:
            raise SlackError("channel_not_found")
        return self.channels[cid]

    def _next_ts(self) -> str:
        now = max(time.time(), self._last_ts + 0.000001)
        self._last_ts = now
        return f"{now:.6f}"

    def _find_message(self, cid: str, ts: str) -> JSONDict | None:
        return next((m for m in self.history.get(cid, []) if m["ts"] == ts), None)

    def _post_message(self, p: JSONDict) -> JSONDict:
        ch = self._channel(p, for_post=True)
        if not ch.is_im and not ch.bot_is_member:
            raise SlackError("not_in_channel")
        text = p.get("text")
        blocks = p.get("blocks")
        attachments = p.get("attachments")
        if not text and not blocks and not attachments:
            raise SlackError("no_text")
        if isinstance(text, str) and len(text) > 40000:
            raise SlackError("msg_too_long")
        if blocks is not None and not isinstance(blocks, list):
            raise SlackError("invalid_blocks_format")
        thread_ts = p.get("thread_ts")
        if thread_ts:
            parent = self._find_message(ch.id, str(thread_ts))
            if parent is None:
                raise SlackError("thread_not_found")
            thread_ts = parent.get("thread_ts", parent["ts"])
            parent["thread_ts"] = thread_ts
            parent["reply_count"] = parent.get("reply_count", 0) + 1
        ts = self._next_ts()
        msg: JSONDict = {
            "type": "message",
            "user": self.BOT_USER_ID,
            "bot_id": self.BOT_ID,
            "app_id": self.APP_ID,
            "text": text or "",
            "ts": ts,
            "team": self.TEAM_ID,
        }
        if blocks is not None:
            msg["blocks"] = blocks
        if attachments is not None:
            msg["attachments"] = attachments
        if thread_ts:
            msg["thread_ts"] = thread_ts
            msg["parent_user_id"] = self.BOT_USER_ID
        if p.get("metadata"):
            msg["metadata"] = p["metadata"]
        self.history.setdefault(ch.id, []).append(msg)
        self._share_linked(ch.id, ts, msg)
        return {"channel": ch.id, "ts": ts, "message": dict(msg)}

    def _update(self, p: JSONDict) -> JSONDict:
        ch = self._channel(p)
        msg = self._find_message(ch.id, str(p.get("ts", "")))
        if msg is None:
            raise SlackError("message_not_found")
        if "text" not in p and "blocks" not in p and "attachments" not in p:
            raise SlackError("no_text")
        for key in ("text", "blocks", "attachments", "metadata"):
            if key in p:
                msg[key] = p[key]
        msg["edited"] = {"user": self.BOT_USER_ID, "ts": self._next_ts()}
        return {
            "channel": ch.id,
            "ts": msg["ts"],
            "text": msg.get("text", ""),
            "message": dict(msg),
        }

    def _post_ephemeral(self, p: JSONDict) -> JSONDict:
        ch = self._channel(p)
        user = p.get("user")
        if user not in self.users:
            raise SlackError("user_not_found")
        if not p.get("text") and not p.get("blocks"):
            raise SlackError("no_text")
        ts = self._next_ts()
        self.ephemeral.append({"channel": ch.id, "user": user, "ts": ts, **p})
        return {"message_ts": ts}

    _NAME_RE = re.compile(r"^[a-z0-9_\-]{1,80}$")

    def _conv_create(self, p: JSONDict) -> JSONDict:
        name = str(p.get("name") or "")
        if not name:
            raise SlackError("invalid_name_required")
        if len(name) > 80:
            raise SlackError("invalid_name_maxlength")
        if not self._NAME_RE.match(name):
            raise SlackError("invalid_name_specials")
        if any(c.name == name for c in self.channels.values()):
            raise SlackError("name_taken")
        is_private = str(p.get("is_private", "false")).lower() in ("true", "1")
        ch = self.add_channel(name, is_private=is_private)
        return {"channel": ch.to_api()}

    def _conv_invite(self, p: JSONDict) -> JSONDict:
        ch = self._channel(p)
        raw = p.get("users") or ""
        users = raw if isinstance(raw, list) else [u.strip() for u in str(raw).split(",") if u]
        if not users:
            raise SlackError("no_user")
        if not ch.bot_is_member:
            raise SlackError("not_in_channel")
        for u in users:
            if u not in self.users:
                raise SlackError("user_not_found")
        if all(u in ch.members for u in users):
            raise SlackError("already_in_channel")
        ch.members.update(users)
        return {"channel": ch.to_api()}

    def _conv_join(self, p: JSONDict) -> JSONDict:
        ch = self._channel(p)
        if ch.is_private and not ch.bot_is_member:
            raise SlackError("method_not_supported_for_channel_type")
        already = ch.bot_is_member
        ch.bot_is_member = True
        ch.members.add(self.BOT_USER_ID)
        out: JSONDict = {"channel": ch.to_api()}
        if already:
            out["warning"] = "already_in_channel"
            out["response_metadata"] = {"warnings": ["already_in_channel"]}
        return out

    def _conv_info(self, p: JSONDict) -> JSONDict:
        return {"channel": self._channel(p).to_api()}

    def _conv_list(self, p: JSONDict) -> JSONDict:
        types = str(p.get("types") or "public_channel").split(",")
        chans = [
            c.to_api()
            for c in self.channels.values()
            if not c.is_im and ("private_channel" if c.is_private else "public_channel") in types
        ]
        page = self._page(chans, p)
        return {"channels": page.pop("messages"), **page}

    def _page(self, msgs: list[JSONDict], p: JSONDict) -> JSONDict:
        limit = int(p.get("limit") or 100)
        start = int(p.get("cursor") or 0)
        page = msgs[start : start + limit]
        more = start + limit < len(msgs)
        return {
            "messages": [dict(m) for m in page],
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _conv_history(self, p: JSONDict) -> JSONDict:
        ch = self._channel(p)
        if not ch.bot_is_member and not ch.is_im:
            raise SlackError("not_in_channel")
        inclusive = str(p.get("inclusive", "")).lower() in ("true", "1")
        oldest = float(p.get("oldest") or 0)
        latest = float(p["latest"]) if p.get("latest") else math.inf
        msgs = []
        for m in reversed(self.history.get(ch.id, [])):
            if m.get("thread_ts") and m["thread_ts"] != m["ts"]:
                continue  # replies live in conversations.replies
            t = float(m["ts"])
            if (oldest < t < latest) or (inclusive and t in (oldest, latest)):
                msgs.append(m)
        return {**self._page(msgs, p), "pin_count": 0}

    def _conv_open(self, p: JSONDict) -> JSONDict:
        """The DM with ``users`` (one user id), opened if it was not (im:write)."""
        user = str(p.get("users") or "")
        if user not in self.users:
            raise SlackError("user_not_found")
        dm = self._channel({"channel": user}, for_post=True)
        return {"channel": {"id": dm.id}, "already_open": True}

    def _conv_replies(self, p: JSONDict) -> JSONDict:
        ch = self._channel(p)
        ts = str(p.get("ts") or "")
        parent = self._find_message(ch.id, ts)
        if parent is None:
            raise SlackError("thread_not_found")
        root = parent.get("thread_ts", parent["ts"])
        msgs = [m for m in self.history[ch.id] if m["ts"] == root or m.get("thread_ts") == root]
        return self._page(msgs, p)

    _TRIGGER_RE = re.compile(r"^\d+\.\d+\.[0-9a-f]{8,}$")

    def _views_open(self, p: JSONDict) -> JSONDict:
        """A modal for a click's ``trigger_id`` (each trigger opens one view, as on Slack)."""
        trigger = str(p.get("trigger_id") or "")
        if not self._TRIGGER_RE.match(trigger):
            raise SlackError("invalid_trigger_id")
        if trigger in self._triggers_used:
            raise SlackError("exchanged_trigger_id")
        view = p.get("view")
        if isinstance(view, str):
            view = json.loads(view)
        if not isinstance(view, dict) or view.get("type") != "modal":
            raise SlackError("invalid_arguments")
        problems = []
        title = (view.get("title") or {}).get("text") or ""
        if not title or len(title) > 24:
            problems.append("[ERROR] must be 1-24 characters [json-pointer:/view/title/text]")
        if len(str(view.get("private_metadata") or "")) > 3000:
            problems.append("[ERROR] must be at most 3000 characters [/view/private_metadata]")
        if len(str(view.get("callback_id") or "")) > 255:
            problems.append("[ERROR] must be at most 255 characters [/view/callback_id]")
        blocks = view.get("blocks")
        if not isinstance(blocks, list) or not 1 <= len(blocks) <= 100:
            problems.append("[ERROR] must have 1-100 blocks [json-pointer:/view/blocks]")
        if problems:
            raise SlackError("invalid_arguments", response_metadata={"messages": problems})
        self._triggers_used.add(trigger)
        opened = {
            "id": f"V{next(self._id_counter):010d}",
            "team_id": self.TEAM_ID,
            "app_id": self.APP_ID,
            "bot_id": self.BOT_ID,
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "private_metadata": "",
            "callback_id": "",
            "root_view_id": None,
            "previous_view_id": None,
            "external_id": "",
            **view,
        }
        opened["root_view_id"] = opened["root_view_id"] or opened["id"]
        self.views.append(opened)
        return {"view": dict(opened)}

    # ---- files (Slack's upload flow) ------------------------------------------------------

    def shared(self, file_id: str) -> list[tuple[str, str]]:
        """The (channel, ts) of every message that shares the file (empty: unshared)."""
        with self._lock:
            found = self.files.get(file_id)
            return list(found.shares) if found is not None else []

    def _files_upload_url(self, p: JSONDict) -> JSONDict:
        name = str(p.get("filename") or "")
        length = str(p.get("length") or "")
        if not name or not length.isdigit() or int(length) <= 0:
            raise SlackError("invalid_arguments")
        fid = f"F{next(self._id_counter):010d}"
        self.files[fid] = SlackFile(fid, name, int(length))
        return {"upload_url": f"{self.root_url}/upload/{fid}", "file_id": fid}

    async def _upload_handler(self, request: web.Request) -> web.Response:
        """The upload URL: the bytes as the body, or a multipart form's ``file`` part."""
        fid = request.match_info["file_id"]
        if request.content_type == "multipart/form-data":
            raw = b""
            reader = await request.multipart()
            async for part in reader:
                if isinstance(part, BodyPartReader) and part.name == "file":
                    raw = await part.read()
        else:
            raw = await request.read()
        call = self._request_call(request, "upload", {"file_id": fid}, None, body=raw)
        self._record(call)

        async def process() -> HttpReply:
            with self._lock:
                found = self.files.get(fid)
                if found is None or found.completed:
                    return HttpReply(404, "Not Found")
                if len(raw) != found.length:
                    return HttpReply(400, f"length mismatch: {len(raw)} != {found.length}")
                found.content = raw
            return HttpReply(200, f"OK - {len(raw)}")

        return json_response(await self._pipeline(call, process))

    def _files_complete(self, p: JSONDict) -> JSONDict:
        listed = p.get("files")
        if not isinstance(listed, list) or not listed:
            raise SlackError("invalid_arguments")
        found: list[SlackFile] = []
        for item in listed:
            f = self.files.get(str(item.get("id") if isinstance(item, dict) else ""))
            if f is None or f.content is None or f.completed:
                raise SlackError("file_not_found")
            found.append(f)
        channel = str(p.get("channel_id") or p.get("channels") or "")
        target = self._channel({"channel": channel}) if channel else None
        for item, f in zip(listed, found, strict=True):
            f.completed = True
            f.title = str(item.get("title") or f.name)
            f.permalink = (
                f"https://{self.TEAM_DOMAIN}.slack.com/files/{self.BOT_USER_ID}/{f.id}/{f.name}"
            )
        if target is not None:  # Slack posts the files itself, without metadata
            ts = self._next_ts()
            msg: JSONDict = {
                "type": "message",
                "subtype": "file_share",
                "user": self.BOT_USER_ID,
                "text": str(p.get("initial_comment") or ""),
                "ts": ts,
                "files": [],
                "upload": True,
            }
            for f in found:
                f.shares.append((target.id, ts))
            msg["files"] = [f.to_api() for f in found]
            self.history.setdefault(target.id, []).append(msg)
        return {"files": [f.to_api() for f in found]}

    def _share_linked(self, cid: str, ts: str, msg: JSONDict) -> None:
        """A posted message whose text links a completed file's permalink shares it."""
        texts = [str(msg.get("text") or "")]
        for block in msg.get("blocks") or []:
            if isinstance(block, dict) and isinstance(block.get("text"), dict):
                texts.append(str(block["text"].get("text") or ""))
        body = "\n".join(texts)
        linked = [
            f
            for f in self.files.values()
            if f.completed and re.search(rf"<{re.escape(f.permalink)}(\|[^>]*)?>", body)
        ]
        for f in linked:
            f.shares.append((cid, ts))
        if linked:
            msg["files"] = [f.to_api() for f in linked]

    def _users_info(self, p: JSONDict) -> JSONDict:
        user = self.users.get(str(p.get("user") or ""))
        if user is None:
            raise SlackError("user_not_found")
        return {"user": dict(user)}
