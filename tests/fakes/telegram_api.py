"""Protocol-level fake of the Telegram Bot API (``/bot<token>/<method>``).

Point python-telegram-bot at it::

    async with FakeTelegram() as tg:
        tg.add_private_chat(1001, "alice")
        bot = Bot(tg.token, base_url=tg.base_url)      # base_url == f"{tg.url}/bot"
        async with bot:
            await bot.send_message(1001, "hi")
        call = await tg.wait_for("sendMessage", lambda c: c.params["text"] == "hi")

PTB appends the token to ``base_url`` (``Bot(token, base_url=f"{url}/bot")`` → requests go to
``{url}/bot<token>/<method>``). Updates pushed with :meth:`FakeTelegram.push_update` are served
to ``getUpdates`` long polls.
"""

from __future__ import annotations

import asyncio
import copy
import html
import itertools
import json
import mimetypes
import re
import time
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

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

__all__ = ["FakeTelegram", "RecordedCall", "TelegramError"]

_STRING_FIELDS = {
    "text",
    "caption",
    "parse_mode",
    "url",
    "secret_token",
    "callback_query_id",
    "name",
    "icon_custom_emoji_id",
    "description",
    "short_description",
    "language_code",
    "ip_address",
    "inline_message_id",
    "business_connection_id",
    "title",
    "emoji",
    "message_effect_id",
    "query",
}

UPDATE_TYPES = (
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "business_connection",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
    "message_reaction",
    "message_reaction_count",
    "inline_query",
    "chosen_inline_result",
    "callback_query",
    "shipping_query",
    "pre_checkout_query",
    "purchased_paid_media",
    "poll",
    "poll_answer",
    "my_chat_member",
    "chat_member",
    "chat_join_request",
    "chat_boost",
    "removed_chat_boost",
)
# Telegram's default when allowed_updates was never given: everything except these.
_NOT_DEFAULT = {"chat_member", "message_reaction", "message_reaction_count"}

SEND_METHODS = {
    "sendMessage",
    "sendPhoto",
    "sendDocument",
    "sendAudio",
    "sendVideo",
    "sendAnimation",
    "sendVoice",
    "sendSticker",
    "sendMediaGroup",
    "sendLocation",
    "sendPoll",
    "copyMessage",
    "forwardMessage",
}


def _tg_field(name: str, value: str) -> Any:
    """PTB form-encodes every parameter, JSON-encoding non-strings; decode those back."""
    if name in _STRING_FIELDS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


class TelegramError(ApiError):
    def __init__(self, code: int, description: str, parameters: JSONDict | None = None) -> None:
        body: JSONDict = {"ok": False, "error_code": code, "description": description}
        if parameters:
            body["parameters"] = parameters
        super().__init__(code, body)


def bad_request(what: str) -> TelegramError:
    return TelegramError(400, f"Bad Request: {what}")


class Bucket:
    """A token bucket per key: ``limit`` events at once, then one every ``window``
    seconds (GCRA). With ``limit`` 1 it is the sliding window of one per ``window``.
    The interface of :class:`SlidingWindow`."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._due: dict[Any, float] = {}  # key → when its bucket is full again

    def wait(self, key: Any, now: float) -> float:
        due = self._due.get(key, now)
        return max(0.0, due - (self.limit - 1) * self.window - now)

    def add(self, key: Any, now: float) -> None:
        self._due[key] = max(self._due.get(key, now), now) + self.window

    def reset(self) -> None:
        self._due.clear()


class FakeTelegram(FakeServer):
    """Fake Telegram Bot API server.

    ``url`` is the server root; ``base_url`` (= ``url + "/bot"``) is what PTB's ``Bot`` /
    ``ApplicationBuilder().base_url()`` take.
    """

    def __init__(
        self,
        *,
        token: str = "123456789:AAF-pira-test-token_0123456789abcdef",
        username: str = "pira_test_bot",
        first_name: str = "PIRA",
        rate_limits: bool = False,
        require_https_webhook: bool = False,
        chat_limit: tuple[int, float] = (1, 1.0),
        group_limit: tuple[int, float] = (20, 60.0),
        overall_limit: tuple[int, float] = (30, 1.0),
        latency: float = 0.0,
    ) -> None:
        """``rate_limits`` enforces Telegram's documented limits (429 + ``retry_after``):
        ``chat_limit`` per chat, a bucket of (burst, seconds per message) (Telegram: about
        one a second, "short bursts" tolerated, how short undocumented: ``(3, 1.0)``
        models a burst of three), and sliding windows of (messages, seconds):
        ``group_limit`` per group (20 a minute), ``overall_limit`` for the bot (30 a
        second). Only the send methods count. ``latency``: seconds each request spends
        on the network, half on the way in (before Telegram sees it), half on the way
        back."""
        super().__init__()
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.username = username
        self.first_name = first_name
        self.rate_limits_enabled = rate_limits
        self.require_https_webhook = require_https_webhook
        self.latency = latency
        self.chats: dict[int, JSONDict] = {}
        self.messages: dict[int, dict[int, JSONDict]] = {}
        self.topics: dict[int, dict[int, JSONDict]] = {}
        self.commands: dict[str, list[JSONDict]] = {}
        self.webhook: JSONDict | None = None
        # Bytes of the files sent (sendDocument, sendPhoto) by file_id, as uploaded.
        self.files: dict[str, JSONDict] = {}
        self.answered_callbacks: dict[str, JSONDict] = {}
        self._open_callbacks: set[str] = set()
        self._updates: list[JSONDict] = []
        self._last_update_id = 0
        self._confirmed_offset = 0
        self._allowed_updates: list[str] | None = None
        self._msg_ids: dict[int, itertools.count[int]] = {}
        self._file_ids = itertools.count(1)
        self._update_event: asyncio.Event | None = None
        self._poll_generation = 0
        self._chat_window: Bucket | SlidingWindow = Bucket(*chat_limit)
        self._group_window = SlidingWindow(*group_limit)
        self._global_window = SlidingWindow(*overall_limit)

    # ---- URLs ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.root_url

    @property
    def base_url(self) -> str:
        """For ``Bot(token, base_url=...)``: PTB appends the token."""
        return f"{self.root_url}/bot"

    @property
    def bot_user(self) -> JSONDict:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
        }

    # ---- declarations --------------------------------------------------------------------

    def add_chat(self, chat: JSONDict) -> JSONDict:
        """Declare a chat (a Telegram ``Chat`` dict: id, type, title/username, is_forum)."""
        with self._lock:
            stored = self.chats.setdefault(int(chat["id"]), {})
            stored.update(chat)
            self.messages.setdefault(int(chat["id"]), {})
            if chat.get("is_forum"):
                self.topics.setdefault(int(chat["id"]), {})
                # message_thread_id 1 is the General topic: real topic ids are never 1
                if int(chat["id"]) not in self._msg_ids:
                    self._bump_msg_id(int(chat["id"]), 1)
            return stored

    def add_private_chat(self, user_id: int, username: str, first_name: str = "") -> JSONDict:
        return self.add_chat(
            {
                "id": user_id,
                "type": "private",
                "username": username,
                "first_name": first_name or username.capitalize(),
            }
        )

    def add_group(self, chat_id: int, title: str) -> JSONDict:
        return self.add_chat({"id": chat_id, "type": "group", "title": title})

    def add_supergroup(self, chat_id: int, title: str, *, is_forum: bool = False) -> JSONDict:
        chat: JSONDict = {"id": chat_id, "type": "supergroup", "title": title}
        if is_forum:
            chat["is_forum"] = True
        return self.add_chat(chat)

    def add_topic(self, chat_id: int, message_thread_id: int, name: str) -> JSONDict:
        """Declare an existing forum topic."""
        with self._lock:
            topic = {"message_thread_id": message_thread_id, "name": name, "icon_color": 7322096}
            self.topics.setdefault(chat_id, {})[message_thread_id] = topic
            self._bump_msg_id(chat_id, message_thread_id)
            return topic

    def sent_messages(
        self, chat_id: int, message_thread_id: int | None = None, *, include_service: bool = False
    ) -> list[JSONDict]:
        """Messages the bot sent to a chat (current state, after edits), oldest first; service
        messages (e.g. ``forum_topic_created``) only with ``include_service``."""
        with self._lock:
            msgs = [
                copy.deepcopy(m)
                for m in self.messages.get(chat_id, {}).values()
                if m.get("from", {}).get("id") == self.bot_id
                and (include_service or "forum_topic_created" not in m)
            ]
        if message_thread_id is not None:
            msgs = [m for m in msgs if m.get("message_thread_id") == message_thread_id]
        return sorted(msgs, key=lambda m: m["message_id"])

    def _bump_msg_id(self, chat_id: int, used: int) -> None:
        counter = self._msg_ids.get(chat_id)
        nxt = next(counter) if counter is not None else 1
        self._msg_ids[chat_id] = itertools.count(max(nxt, used + 1))

    def _next_msg_id(self, chat_id: int) -> int:
        counter = self._msg_ids.setdefault(chat_id, itertools.count(1))
        return next(counter)

    # ---- updates -------------------------------------------------------------------------

    def push_update(self, update: JSONDict) -> JSONDict:
        """Queue an update for getUpdates (thread-safe). Chats, messages and callback queries
        in it are registered; ``update_id`` is renumbered if missing or not increasing."""
        upd = copy.deepcopy(update)
        with self._lock:
            if int(upd.get("update_id") or 0) <= self._last_update_id:
                upd["update_id"] = self._last_update_id + 1
            self._last_update_id = int(upd["update_id"])
            for key in ("message", "edited_message", "channel_post", "business_message"):
                msg = upd.get(key)
                if isinstance(msg, dict) and "chat" in msg:
                    chat = msg["chat"]
                    if int(chat["id"]) not in self.chats:
                        self.add_chat(dict(chat))
                    self.messages[int(chat["id"])][int(msg["message_id"])] = msg
                    self._bump_msg_id(int(chat["id"]), int(msg["message_id"]))
            cq = upd.get("callback_query")
            if isinstance(cq, dict):
                self._open_callbacks.add(str(cq["id"]))
                cq_msg = cq.get("message")
                cq_chat = cq_msg.get("chat") if isinstance(cq_msg, dict) else None
                if isinstance(cq_chat, dict) and int(cq_chat["id"]) not in self.chats:
                    self.add_chat(dict(cq_chat))
            self._updates.append(upd)
        self._call_soon(self._signal_updates)
        return upd

    def pending_updates(self) -> list[JSONDict]:
        with self._lock:
            return [copy.deepcopy(u) for u in self._updates]

    def _signal_updates(self) -> None:
        ev = self._update_event
        self._update_event = asyncio.Event()
        if ev is not None:
            ev.set()

    async def deliver_webhook(
        self, update: JSONDict, url: str | None = None, secret_token: str | None = None
    ) -> tuple[int, str]:
        """POST an update to the webhook (registered via setWebhook unless ``url`` given), with
        ``X-Telegram-Bot-Api-Secret-Token`` as Telegram does. Loopback URLs only."""
        target, headers = self._webhook_target(url, secret_token)
        self._open_callback(update)
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                target, json=update, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
            ) as resp,
        ):
            return resp.status, await resp.text()

    def deliver_webhook_sync(
        self, update: JSONDict, url: str | None = None, secret_token: str | None = None
    ) -> tuple[int, str]:
        target, headers = self._webhook_target(url, secret_token)
        self._open_callback(update)
        req = urllib.request.Request(
            target,
            data=json.dumps(update).encode(),
            headers={**headers, "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def _open_callback(self, update: JSONDict) -> None:
        """A callback query sent by webhook may be answered, as one served by getUpdates."""
        cq = update.get("callback_query")
        if isinstance(cq, dict):
            with self._lock:
                self._open_callbacks.add(str(cq["id"]))

    def _webhook_target(self, url: str | None, secret: str | None) -> tuple[str, dict[str, str]]:
        hook = self.webhook or {}
        target = url or hook.get("url")
        if not target:
            raise RuntimeError("no webhook URL: call setWebhook first or pass url=")
        host = urlsplit(target).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"refusing to deliver to non-loopback host {host!r}")
        secret = secret if secret is not None else hook.get("secret_token")
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
        return target, headers

    # ---- server --------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        self._update_event = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handler)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    async def _on_stop(self) -> None:
        self._signal_updates()

    async def _not_found(self, request: web.Request) -> web.Response:
        return json_response(
            HttpReply(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        )

    def _error_reply(self, kind: str, fault: Fault) -> HttpReply:
        if kind == "ratelimit":
            n = fault.retry_after
            return HttpReply(
                429,
                {
                    "ok": False,
                    "error_code": 429,
                    "description": f"Too Many Requests: retry after {n}",
                    "parameters": {"retry_after": n},
                },
            )
        if fault.body is not None:
            return HttpReply(fault.status, fault.body)
        try:
            from http import HTTPStatus

            phrase = HTTPStatus(fault.status).phrase
        except ValueError:
            phrase = "Error"
        return HttpReply(
            fault.status, {"ok": False, "error_code": fault.status, "description": phrase}
        )

    def _reset_rate_limits(self) -> None:
        for w in (self._chat_window, self._group_window, self._global_window):
            w.reset()

    def _rate_limit_wait(self, method: str, params: JSONDict) -> float:
        if method not in SEND_METHODS:
            return 0.0
        chat = params.get("chat_id")
        now = time.monotonic()
        windows: list[tuple[Bucket | SlidingWindow, Any]] = [
            (self._global_window, "global"),
            (self._chat_window, chat),
        ]
        if (isinstance(chat, int) and chat < 0) or isinstance(chat, str):
            windows.append((self._group_window, chat))
        with self._lock:
            wait = max(w.wait(key, now) for w, key in windows)
            if not wait:
                for w, key in windows:
                    w.add(key, now)
        return wait

    _METHOD_NAMES = (
        "getMe",
        "logOut",
        "close",
        "getUpdates",
        "setWebhook",
        "deleteWebhook",
        "getWebhookInfo",
        "sendMessage",
        "editMessageText",
        "editMessageReplyMarkup",
        "editMessageCaption",
        "sendDocument",
        "sendPhoto",
        "deleteMessage",
        "sendChatAction",
        "answerCallbackQuery",
        "createForumTopic",
        "setMyCommands",
        "getMyCommands",
        "deleteMyCommands",
        "getChat",
    )
    _CANONICAL = {m.lower(): m for m in _METHOD_NAMES}

    async def _handler(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        raw_method = request.match_info["method"]
        method = self._CANONICAL.get(raw_method.lower(), raw_method)
        try:
            params = await read_params(request, _tg_field)
        except ConnectionResetError:  # the client went away mid-request (shutting down)
            return web.Response(status=499)
        except ValueError:
            params = {}
        if self.latency:
            await asyncio.sleep(self.latency / 2)  # on the way in
        call = self._record(self._request_call(request, method, params, token))

        async def process() -> HttpReply:
            try:
                if token != self.token:
                    if re.fullmatch(r"\d+:[\w-]{10,}", token):
                        raise TelegramError(401, "Unauthorized")
                    raise TelegramError(404, "Not Found")
                handler = self._handlers().get(method)
                if handler is None:
                    raise TelegramError(404, "Not Found")
                if method == "getUpdates":
                    result = await handler(params)  # long poll: must not hold the lock
                else:
                    with self._lock:  # handlers don't suspend; state is shared with threads
                        result = await handler(params)
            except ApiError as err:
                return HttpReply(err.status, err.body, err.headers)
            return HttpReply(200, {"ok": True, "result": result})

        reply = await self._pipeline(call, process)
        if self.latency:
            await asyncio.sleep(self.latency / 2)  # on the way back
        return json_response(reply)

    def _handlers(self) -> dict[str, Callable[[JSONDict], Any]]:
        return {m: getattr(self, "_m_" + m) for m in self._METHOD_NAMES}

    # ---- helpers -------------------------------------------------------------------------

    def _chat(self, p: JSONDict) -> JSONDict:
        cid = p.get("chat_id")
        if cid is None or cid == "":
            raise bad_request("chat_id is empty")
        if isinstance(cid, str):
            for known in self.chats.values():
                if cid.startswith("@") and known.get("username") == cid[1:]:
                    return known
            raise bad_request("chat not found")
        chat = self.chats.get(int(cid))
        if chat is None:
            raise bad_request("chat not found")
        return chat

    @staticmethod
    def _short_chat(chat: JSONDict) -> JSONDict:
        keys = ("id", "type", "title", "username", "first_name", "last_name", "is_forum")
        return {k: chat[k] for k in keys if k in chat}

    @staticmethod
    def _reply_markup(p: JSONDict) -> JSONDict | None:
        rm = p.get("reply_markup")
        if rm is None:
            return None
        if not isinstance(rm, dict):
            raise bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in rm:
            kb = rm["inline_keyboard"]
            if not isinstance(kb, list) or not all(isinstance(r, list) for r in kb):
                raise bad_request(
                    'field "inline_keyboard" of the InlineKeyboardMarkup must be an Array'
                )
            for row in kb:
                for button in row:
                    data = button.get("callback_data")
                    if data is not None and not 1 <= len(str(data).encode()) <= 64:
                        raise bad_request("BUTTON_DATA_INVALID")
                    if "text" not in button:
                        raise bad_request('can\'t find field "text"')
        return rm

    @staticmethod
    def _render_text(p: JSONDict) -> str:
        text = p.get("text")
        if text is None or str(text).strip() == "":
            raise bad_request("message text is empty")
        text = str(text)
        if str(p.get("parse_mode", "")).upper() == "HTML":
            text = html.unescape(re.sub(r"</?[a-zA-Z][^>]*>", "", text))
        if len(text) > 4096:
            raise bad_request("message is too long")
        return text

    @staticmethod
    def _render_caption(p: JSONDict) -> str | None:
        caption = p.get("caption")
        if caption is None or str(caption) == "":
            return None
        text = str(caption)
        if str(p.get("parse_mode", "")).upper() == "HTML":
            text = html.unescape(re.sub(r"</?[a-zA-Z][^>]*>", "", text))
        if len(text.encode("utf-16-le")) // 2 > 1024:
            raise bad_request("message caption is too long")
        return text

    def _store(self, chat_id: int, msg: JSONDict) -> JSONDict:
        self.messages.setdefault(chat_id, {})[msg["message_id"]] = msg
        return copy.deepcopy(msg)

    # ---- methods -------------------------------------------------------------------------

    async def _m_getMe(self, p: JSONDict) -> JSONDict:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _m_logOut(self, p: JSONDict) -> bool:
        return True

    async def _m_close(self, p: JSONDict) -> bool:
        return True

    async def _m_getUpdates(self, p: JSONDict) -> list[JSONDict]:
        if self.webhook:
            raise TelegramError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = int(p.get("offset") or 0)
        limit = max(1, min(100, int(p.get("limit") or 100)))
        timeout = max(0.0, float(p.get("timeout") or 0))
        allowed = p.get("allowed_updates")
        with self._lock:
            if isinstance(allowed, list):
                # Telegram remembers the last non-empty-request setting; [] means default
                self._allowed_updates = allowed or None
            if offset < 0:
                keep = self._updates[offset:]
                self._updates = keep
            elif offset:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            self._poll_generation += 1
            generation = self._poll_generation
        self._signal_updates()  # a waiting older poll wakes up and answers 409
        deadline = time.monotonic() + timeout
        while True:
            if generation != self._poll_generation:
                raise TelegramError(
                    409,
                    "Conflict: terminated by other getUpdates request; "
                    "make sure that only one bot instance is running",
                )
            with self._lock:
                kinds = set(self._allowed_updates or set(UPDATE_TYPES) - _NOT_DEFAULT)
                ready = [u for u in self._updates if any(k in u for k in kinds)]
                # updates of non-allowed types are dropped, as Telegram does
                self._updates = ready
            if ready:
                return [copy.deepcopy(u) for u in ready[:limit]]
            left = deadline - time.monotonic()
            assert self._closing is not None
            if left <= 0 or self._closing.is_set():
                return []
            ev = self._update_event
            assert ev is not None
            try:
                await asyncio.wait_for(ev.wait(), left)
            except TimeoutError:
                return []

    async def _m_setWebhook(self, p: JSONDict) -> bool:
        url = str(p.get("url") or "")
        if not url:
            return await self._m_deleteWebhook(p)
        scheme = urlsplit(url).scheme
        if self.require_https_webhook and scheme != "https":
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        if scheme not in ("http", "https"):
            raise bad_request("bad webhook: Failed to resolve host: Name or service not known")
        secret = p.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise bad_request("bad webhook: secret token contains unallowed characters")
        with self._lock:
            if p.get("drop_pending_updates"):
                self._updates.clear()
            self.webhook = {
                "url": url,
                "secret_token": secret,
                "allowed_updates": p.get("allowed_updates"),
                "max_connections": int(p.get("max_connections") or 40),
                "ip_address": p.get("ip_address"),
            }
            # wake (and conflict) a running long poll
            self._poll_generation += 1
        self._call_soon(self._signal_updates)
        return True

    async def _m_deleteWebhook(self, p: JSONDict) -> bool:
        with self._lock:
            self.webhook = None
            if p.get("drop_pending_updates"):
                self._updates.clear()
        return True

    async def _m_getWebhookInfo(self, p: JSONDict) -> JSONDict:
        with self._lock:
            hook = self.webhook
            info: JSONDict = {
                "url": hook["url"] if hook else "",
                "has_custom_certificate": False,
                "pending_update_count": len(self._updates),
            }
            if hook:
                info["max_connections"] = hook["max_connections"]
                if hook.get("allowed_updates"):
                    info["allowed_updates"] = hook["allowed_updates"]
                if hook.get("ip_address"):
                    info["ip_address"] = hook["ip_address"]
        return info

    async def _m_sendMessage(self, p: JSONDict) -> JSONDict:
        chat = self._chat(p)
        text = self._render_text(p)
        markup = self._reply_markup(p)
        cid = int(chat["id"])
        msg: JSONDict = {
            "message_id": 0,
            "from": self.bot_user,
            "chat": self._short_chat(chat),
            "date": int(time.time()),
            "text": text,
        }
        thread = p.get("message_thread_id")
        if thread is not None:
            thread = int(thread)
            if chat.get("is_forum"):
                if thread != 1 and thread not in self.topics.get(cid, {}):
                    raise bad_request("message thread not found")
                if thread != 1:
                    msg["message_thread_id"] = thread
                    msg["is_topic_message"] = True
            elif chat["type"] == "supergroup":
                msg["message_thread_id"] = thread
        reply = p.get("reply_parameters") or (
            {"message_id": p["reply_to_message_id"]} if p.get("reply_to_message_id") else None
        )
        if isinstance(reply, dict):
            target = self.messages.get(cid, {}).get(int(reply["message_id"]))
            if target is None:
                if not reply.get("allow_sending_without_reply"):
                    raise bad_request("message to be replied not found")
            else:
                msg["reply_to_message"] = copy.deepcopy(target)
                msg["reply_to_message"].pop("reply_to_message", None)
        if p.get("entities"):
            msg["entities"] = p["entities"]
        if markup is not None and "inline_keyboard" in markup:
            msg["reply_markup"] = markup
        msg["message_id"] = self._next_msg_id(cid)
        return self._store(cid, msg)

    def _upload(self, p: JSONDict, field: str) -> JSONDict:
        """The file of a send: a multipart part (stored under a new file_id) or the
        file_id of one sent before."""
        value = p.get(field)
        if isinstance(value, dict) and "content" in value:
            content = bytes(value["content"])
            if not content:
                raise bad_request("file must be non-empty")
            name = str(value.get("filename") or "file")
            uid = f"AgAD{next(self._file_ids):06d}"
            file_id = f"BQACAgIAAxkBAAI{uid}"
            stored: JSONDict = {
                "file_id": file_id,
                "file_unique_id": uid,
                "file_name": name,
                "mime_type": mimetypes.guess_type(name)[0]
                or str(value.get("content_type") or "application/octet-stream"),
                "file_size": len(content),
                "content": content,
            }
            self.files[file_id] = stored
            return stored
        if isinstance(value, str) and value in self.files:
            return self.files[value]
        if value is None or value == "":
            raise bad_request(f"there is no {field} in the request")
        raise bad_request("wrong file identifier/HTTP URL specified")

    def _media_message(self, p: JSONDict) -> tuple[int, JSONDict]:
        """A sent message without its content yet: chat, thread, reply, caption, markup."""
        chat = self._chat(p)
        cid = int(chat["id"])
        msg: JSONDict = {
            "message_id": 0,
            "from": self.bot_user,
            "chat": self._short_chat(chat),
            "date": int(time.time()),
        }
        thread = p.get("message_thread_id")
        if thread is not None and int(thread) != 1:
            if chat.get("is_forum") and int(thread) not in self.topics.get(cid, {}):
                raise bad_request("message thread not found")
            msg["message_thread_id"] = int(thread)
            msg["is_topic_message"] = bool(chat.get("is_forum"))
        reply = p.get("reply_parameters")
        if isinstance(reply, dict):
            target = self.messages.get(cid, {}).get(int(reply["message_id"]))
            if target is None and not reply.get("allow_sending_without_reply"):
                raise bad_request("message to be replied not found")
            if target is not None:
                msg["reply_to_message"] = copy.deepcopy(target)
                msg["reply_to_message"].pop("reply_to_message", None)
        caption = self._render_caption(p)
        if caption is not None:
            msg["caption"] = caption
        markup = self._reply_markup(p)
        if markup is not None and "inline_keyboard" in markup:
            msg["reply_markup"] = markup
        return cid, msg

    async def _m_sendDocument(self, p: JSONDict) -> JSONDict:
        cid, msg = self._media_message(p)
        stored = self._upload(p, "document")
        msg["document"] = {k: v for k, v in stored.items() if k != "content"}
        msg["message_id"] = self._next_msg_id(cid)
        return self._store(cid, msg)

    async def _m_sendPhoto(self, p: JSONDict) -> JSONDict:
        cid, msg = self._media_message(p)
        stored = self._upload(p, "photo")
        width, height = _image_size(stored["content"])
        sizes = []
        for i, scale in enumerate((320, 800, 1280)):
            w = min(width, scale)
            h = max(1, height * w // max(width, 1))
            sizes.append(
                {
                    "file_id": f"{stored['file_id']}_{i}",
                    "file_unique_id": f"{stored['file_unique_id']}{i}",
                    "width": w,
                    "height": h,
                    "file_size": max(1, stored["file_size"] * (i + 1) // 3),
                }
            )
            if w == width:
                break
        msg["photo"] = sizes
        msg["message_id"] = self._next_msg_id(cid)
        return self._store(cid, msg)

    async def _m_editMessageCaption(self, p: JSONDict) -> JSONDict | bool:
        caption = self._render_caption(p)
        markup = self._reply_markup(p)
        target = self._target_message(p)
        if target is None:
            return True
        _cid, msg = target
        if not any(k in msg for k in ("document", "photo", "video", "audio", "animation")):
            raise bad_request("there is no caption in the message to edit")
        new_markup = markup if markup and "inline_keyboard" in markup else None
        if msg.get("caption") == caption and msg.get("reply_markup") == new_markup:
            raise bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        if caption is None:
            msg.pop("caption", None)
        else:
            msg["caption"] = caption
        if new_markup is None:
            msg.pop("reply_markup", None)
        else:
            msg["reply_markup"] = new_markup
        msg["edit_date"] = int(time.time())
        return copy.deepcopy(msg)

    def _target_message(self, p: JSONDict) -> tuple[int, JSONDict] | None:
        if p.get("inline_message_id"):
            return None
        chat = self._chat(p)
        cid = int(chat["id"])
        mid = p.get("message_id")
        msg = self.messages.get(cid, {}).get(int(mid)) if mid is not None else None
        if msg is None:
            raise bad_request("message to edit not found")
        if msg.get("from", {}).get("id") != self.bot_id:
            raise bad_request("message can't be edited")
        return cid, msg

    async def _m_editMessageText(self, p: JSONDict) -> JSONDict | bool:
        text = self._render_text(p)
        markup = self._reply_markup(p)
        target = self._target_message(p)
        if target is None:
            return True
        _cid, msg = target
        if "text" not in msg:
            raise bad_request("there is no text in the message to edit")
        new_markup = markup if markup and "inline_keyboard" in markup else None
        if msg.get("text") == text and msg.get("reply_markup") == new_markup:
            raise bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        msg["text"] = text
        if new_markup is None:
            msg.pop("reply_markup", None)
        else:
            msg["reply_markup"] = new_markup
        if p.get("entities"):
            msg["entities"] = p["entities"]
        else:
            msg.pop("entities", None)
        msg["edit_date"] = int(time.time())
        return copy.deepcopy(msg)

    async def _m_editMessageReplyMarkup(self, p: JSONDict) -> JSONDict | bool:
        markup = self._reply_markup(p)
        target = self._target_message(p)
        if target is None:
            return True
        _cid, msg = target
        new_markup = markup if markup and "inline_keyboard" in markup else None
        if msg.get("reply_markup") == new_markup:
            raise bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        if new_markup is None:
            msg.pop("reply_markup", None)
        else:
            msg["reply_markup"] = new_markup
        msg["edit_date"] = int(time.time())
        return copy.deepcopy(msg)

    async def _m_deleteMessage(self, p: JSONDict) -> bool:
        chat = self._chat(p)
        msgs = self.messages.get(int(chat["id"]), {})
        if msgs.pop(int(p.get("message_id") or 0), None) is None:
            raise bad_request("message to delete not found")
        return True

    async def _m_sendChatAction(self, p: JSONDict) -> bool:
        self._chat(p)
        return True

    async def _m_answerCallbackQuery(self, p: JSONDict) -> bool:
        qid = str(p.get("callback_query_id") or "")
        with self._lock:
            if qid not in self._open_callbacks:
                raise bad_request(
                    "query is too old and response timeout expired or query ID is invalid"
                )
            self._open_callbacks.discard(qid)
            self.answered_callbacks[qid] = dict(p)
        return True

    async def _m_createForumTopic(self, p: JSONDict) -> JSONDict:
        chat = self._chat(p)
        if not chat.get("is_forum"):
            raise bad_request("the chat is not a forum")
        name = str(p.get("name") or "")
        if not 1 <= len(name) <= 128:
            raise bad_request("TOPIC_NAME_EMPTY" if not name else "TOPIC_NAME_INVALID")
        cid = int(chat["id"])
        thread_id = self._next_msg_id(cid)
        topic: JSONDict = {
            "message_thread_id": thread_id,
            "name": name,
            "icon_color": int(p.get("icon_color") or 7322096),
        }
        if p.get("icon_custom_emoji_id"):
            topic["icon_custom_emoji_id"] = p["icon_custom_emoji_id"]
        self.topics.setdefault(cid, {})[thread_id] = topic
        # the service message that opens the topic
        self._store(
            cid,
            {
                "message_id": thread_id,
                "from": self.bot_user,
                "chat": self._short_chat(chat),
                "date": int(time.time()),
                "message_thread_id": thread_id,
                "is_topic_message": True,
                "forum_topic_created": {"name": name, "icon_color": topic["icon_color"]},
            },
        )
        return dict(topic)

    @staticmethod
    def _scope_key(p: JSONDict) -> str:
        scope = p.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True) + "|" + str(p.get("language_code") or "")

    async def _m_setMyCommands(self, p: JSONDict) -> bool:
        cmds = p.get("commands")
        if not isinstance(cmds, list):
            raise bad_request("can't parse commands JSON object")
        if len(cmds) > 100:
            raise bad_request("BOT_COMMANDS_TOO_MUCH")
        for c in cmds:
            if not isinstance(c, dict) or not re.fullmatch(
                r"[a-z0-9_]{1,32}", str(c.get("command"))
            ):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(c.get("description") or "")) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        with self._lock:
            self.commands[self._scope_key(p)] = [
                {"command": c["command"], "description": c["description"]} for c in cmds
            ]
        return True

    async def _m_getMyCommands(self, p: JSONDict) -> list[JSONDict]:
        with self._lock:
            return list(self.commands.get(self._scope_key(p), []))

    async def _m_deleteMyCommands(self, p: JSONDict) -> bool:
        with self._lock:
            self.commands.pop(self._scope_key(p), None)
        return True

    async def _m_getChat(self, p: JSONDict) -> JSONDict:
        chat = self._chat(p)
        info = dict(chat)
        info.setdefault("accent_color_id", 0)
        info.setdefault("max_reaction_count", 11)
        info.setdefault(
            "accepted_gift_types",
            {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        )
        if chat.get("type") != "private":
            info.setdefault("permissions", {"can_send_messages": True})
        return info

    def commands_for(
        self, scope: JSONDict | None = None, language_code: str = ""
    ) -> list[JSONDict]:
        """Commands currently set for a scope (default scope when None)."""
        key = self._scope_key({"scope": scope, "language_code": language_code})
        with self._lock:
            return list(self.commands.get(key, []))


def _image_size(content: bytes) -> tuple[int, int]:
    """(width, height) of a PNG (its IHDR) or a JPEG (its first SOF); 512×512 otherwise."""
    if content[:8] == b"\x89PNG\r\n\x1a\n" and len(content) >= 24:
        return int.from_bytes(content[16:20], "big"), int.from_bytes(content[20:24], "big")
    i = 2
    while content[:2] == b"\xff\xd8" and i + 9 < len(content):
        if content[i] != 0xFF:
            break
        marker, size = content[i + 1], int.from_bytes(content[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h = int.from_bytes(content[i + 5 : i + 7], "big")
            return int.from_bytes(content[i + 7 : i + 9], "big"), h
        i += 2 + size
    return 512, 512


def retry_after_seconds(value: Any) -> float:
    """Seconds of a ``telegram.error.RetryAfter`` (or of its ``retry_after`` value): PTB 22
    exposes int or timedelta and warns about the change; normalise without the warning."""
    if hasattr(value, "_retry_after"):
        value = value._retry_after
    if hasattr(value, "total_seconds"):
        return float(value.total_seconds())
    return float(value)
