"""Slack: slash commands and button clicks in through slack-bolt's AsyncApp (HTTP on
``/slack/events`` or Socket Mode), Block Kit posts out for the outbox worker.

Commands are acknowledged at once and run after the ack (Slack's 3 s deadline),
the reply goes back to the person only (``response_url``). Posts carry their
outbox key in the message metadata, so a post whose answer never came back is
looked up in the channel before it is sent again: delivered once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters import slack_format as fmt
from bot.adapters.deps import ChatDeps
from bot.adapters.slack_answers import SlackAnswers
from bot.adapters.slack_contacts import SlackContacts
from bot.adapters.slack_http import fenced_session
from bot.adapters.slack_send import SlackSender
from bot.domain.incident import clean
from bot.messages import Destination, Message, Room
from bot.outbox import Outbound

if TYPE_CHECKING:
    from bot.web import WebServer

log = logging.getLogger("pira.slack")

SLACK_API = "https://slack.com/api/"
SIGNATURE_MAX_AGE = 300  # seconds; older requests are replays (Slack's rule)
_TIMESTAMP = re.compile(r"[0-9]{1,15}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")


def _obj(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    """``value`` if it is a string (without control characters), else an empty one.
    For ids and names from a payload: Slack's ids are ASCII letters, digits and dots, and
    a NUL must not reach the database (PostgreSQL refuses it, even in a look-up)."""
    return clean(value) if isinstance(value, str) else ""


def _brief(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:200]


def _raised_in(error: BaseException, packages: tuple[str, ...]) -> bool:
    """Whether the innermost frame of ``error``'s traceback is in one of ``packages``."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    module = str(tb.tb_frame.f_globals.get("__name__", "")) if tb is not None else ""
    return module.split(".")[0] in packages


def signed(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> bool:
    """Whether a request carries Slack's signature of ``body`` (``v0=`` HMAC-SHA256 of
    ``v0:{timestamp}:{body}``) with a timestamp within 5 minutes of ``now``. Any other
    header value, however odd (empty, not a number, not ASCII), is simply not signed."""
    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    signature = headers.get("X-Slack-Signature", "")
    if not _TIMESTAMP.fullmatch(timestamp) or not _SIGNATURE.fullmatch(signature):
        return False
    if abs(now - int(timestamp)) > SIGNATURE_MAX_AGE:
        return False
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


class SlackAdapter:
    name = "slack"

    def __init__(self, deps: ChatDeps, *, timeout: float = 10.0) -> None:
        env = self.env = deps.env
        self.router = deps.router
        self.directory = deps.directory
        self.token = env.slack_bot_token or ""
        self.base_url = (env.slack_api_url or SLACK_API).rstrip("/") + "/"
        # No built-in retries: a retried post could arrive twice; the outbox retries.
        self.client = AsyncWebClient(
            token=self.token, base_url=self.base_url, timeout=int(timeout), retry_handlers=[]
        )
        self.client.timeout = timeout  # type: ignore[assignment]  # sub-second in tests
        self.sender = SlackSender(deps, self.client)
        self.answers = SlackAnswers(deps, self.client)
        self.unreachable = SlackContacts(self.client, deps.directory).unreachable  # Contacts
        self.bot_user_id: str | None = None
        self.bot_id: str | None = None
        self.team_id: str | None = None
        self.bolt: AsyncApp | None = None
        self._socket: Any = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- lifecycle -------------------------------------------------------

    async def start(self, web: WebServer) -> None:
        self.client.session = fenced_session(float(self.client.timeout))
        await self._identify()
        env = self.env
        secret = env.slack_signing_secret
        socket = bool(env.slack_app_token)

        # Bolt passes arguments by parameter name, which bound methods confuse (``self``):
        # plain functions forward to the methods.
        async def authorize(
            enterprise_id: str | None, team_id: str | None, user_id: str | None
        ) -> AuthorizeResult:
            return self._authorize(enterprise_id, team_id, user_id)

        async def on_command(ack: Any, command: dict[str, Any], respond: Any) -> None:
            await self._on_command(ack, command, respond)

        async def on_action(ack: Any, body: dict[str, Any], respond: Any) -> None:
            await self._on_action(ack, body, respond)

        async def on_mention(event: dict[str, Any]) -> None:
            self._spawn(self._on_mention(event))  # tracked: stop() lets it finish

        async def on_submit(ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
            await self._on_submit(ack, body, view)

        async def on_error(error: Exception) -> BoltResponse | None:
            return await self._on_bolt_error(error)

        bolt = AsyncApp(
            client=AsyncWebClient(base_url=self.base_url, timeout=10),
            authorize=authorize,
            signing_secret=secret or "unset",
            request_verification_enabled=not socket,
            process_before_response=False,
            logger=logging.getLogger("pira.slack.bolt"),
        )
        names = sorted({*self.router.commands, "confirm", "cancel", "pira"})
        for name in names:
            bolt.command(f"/{name}")(on_command)
        bolt.action(re.compile(r"^pira:"))(on_action)
        bolt.event("app_mention")(on_mention)
        bolt.view(fmt.PROMPT_CALLBACK)(on_submit)
        bolt.error(on_error)
        self.bolt = bolt
        if socket:
            from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

            self._socket = AsyncSocketModeHandler(bolt, env.slack_app_token)
            await self._socket.connect_async()
            log.info("slack connected by socket mode", extra={"commands": len(names)})
        else:
            if not secret:
                log.error("PIRA_SLACK_SIGNING_SECRET is not set: every Slack request is refused")
            web.route("POST", "/slack/events", self._http)
            log.info("slack listening on /slack/events", extra={"commands": len(names)})

    async def stop(self) -> None:
        if self.client.session is not None:
            await self.client.session.close()
        if self._socket is not None:
            with contextlib.suppress(Exception):
                await self._socket.close_async()
            self._socket = None
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        for task in self._tasks:
            task.cancel()

    async def settle(self) -> None:
        """Wait until the commands being handled are answered (tests; shutdown)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks), timeout=30)

    async def _identify(self) -> None:
        """Who the bot is (auth.test), once, before requests come in; a Slack that does not
        answer now does not stop the bot: the ids are only needed for room recovery."""
        try:
            found = await self.client.auth_test()
        except Exception as exc:
            log.warning("slack auth.test failed", extra={"error": type(exc).__name__})
            return
        self.bot_user_id = self.sender.bot_user_id = found.get("user_id")
        self.bot_id = found.get("bot_id")
        self.team_id = found.get("team_id")

    def _authorize(
        self, enterprise_id: str | None, team_id: str | None, user_id: str | None
    ) -> AuthorizeResult:
        # Single workspace, token from the environment: no auth.test before each ack.
        return AuthorizeResult(
            enterprise_id=enterprise_id,
            team_id=team_id or self.team_id,
            bot_token=self.token,
            bot_user_id=self.bot_user_id,
            bot_id=self.bot_id,
            user_id=user_id,
        )

    async def _http(self, request: web.Request) -> web.StreamResponse:
        secret = self.env.slack_signing_secret
        if not secret or self.bolt is None:
            return web.Response(status=401, text="")
        body = await request.read()  # at most the server's client_max_size, else 413
        # Checked here, on the bytes as sent, before Bolt (whose own check raises on a
        # timestamp that is not a number or a signature that is not ASCII: a 500).
        if not signed(secret, request.headers, body, time.time()):
            log.warning("slack request refused: bad or missing signature or timestamp")
            return web.Response(status=401, text="")
        try:
            # Slack sends UTF-8, whatever charset the Content-Type claims.
            bolt_request = AsyncBoltRequest(
                body=body.decode("utf-8"),
                query=request.query_string,
                headers=request.headers,  # type: ignore[arg-type]
            )
        except Exception as exc:  # not UTF-8, or a body Bolt's parsing fails on
            log.warning("slack request refused: unreadable body", extra={"error": _brief(exc)})
            return web.Response(status=400, text="unreadable body")
        try:
            response = await self.bolt.async_dispatch(bolt_request)
        except Exception as exc:  # Bolt's payload helpers, on a shape Slack never sends
            log.warning("slack request refused: malformed payload", extra={"error": _brief(exc)})
            return web.Response(status=400, text="malformed payload")
        return await to_aiohttp_response(response)

    async def _on_bolt_error(self, error: Exception) -> BoltResponse | None:
        """Bolt's error handler. Bolt's own code failing on a signed payload of a shape Slack
        never sends is a malformed request: one line, 400. Anything else is a bug: logged
        with its traceback, and Bolt's answer (500) stands."""
        if _raised_in(error, ("slack_bolt", "slack_sdk")):
            log.warning("slack request refused: malformed payload", extra={"error": _brief(error)})
            return BoltResponse(status=400, body="malformed payload")
        log.error("slack request failed", exc_info=error)
        return None

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- inbound ---------------------------------------------------------

    async def _on_command(
        self, ack: Callable[[], Awaitable[Any]], command: dict[str, Any], respond: Any
    ) -> None:
        await ack()  # first: Slack's 3 s deadline
        name = str(command.get("command", "")).lower()
        text = fmt.command_text(str(command.get("text", ""))).strip()
        # /pira is the catch-all (/pira ack #3), for names another app or Slack took.
        text = "/" + (text.lstrip("/") or "help") if name == "/pira" else f"{name} {text}".strip()
        message = Message(
            platform="slack",
            user_id=_text(command.get("user_id")),
            text=text,
            room=self._room(_text(command.get("channel_id")), None),
            user_name=_text(command.get("user_name")),
        )
        self._spawn(self.answers.answer(message, respond, replace=False))

    async def _on_action(
        self, ack: Callable[[], Awaitable[Any]], body: dict[str, Any], respond: Any
    ) -> None:
        await ack()
        # Signed, so from Slack; still read defensively: a field of another JSON type is
        # taken as missing rather than failing after the ack.
        actions = body.get("actions")
        action = _obj(actions[0] if isinstance(actions, list) and actions else None)
        user = _obj(body.get("user"))
        container = _obj(body.get("container"))
        channel = _text(_obj(body.get("channel")).get("id")) or _text(container.get("channel_id"))
        thread = _text(container.get("thread_ts")) or None
        asked = fmt.asked(str(action.get("value", "")))
        if str(action.get("action_id", "")).startswith(fmt.ASK_ACTION) and asked is not None:
            # At once, not spawned: the trigger_id is valid for 3 s after the click.
            label = _text(_obj(action.get("text")).get("text"))
            await self._ask(body, respond, label, *asked, channel, thread)
            return
        ts = _text(container.get("message_ts")) or None
        clicked = {"channel": channel, "ts": ts, "thread_ts": thread}
        message = Message(
            platform="slack",
            user_id=_text(user.get("id")),
            text=str(action.get("value", "")),
            room=self._room(channel, thread),
            user_name=_text(user.get("username") or user.get("name")),
            clicked=clicked,
        )
        ephemeral = container.get("is_ephemeral") is True
        label = _text(_obj(action.get("text")).get("text"))
        self._spawn(
            self.answers.answer(
                message,
                respond,
                replace=ephemeral,  # a Confirm/Cancel prompt is replaced by its outcome
                mark=None if ephemeral else (_obj(body.get("message")), label),
            )
        )

    async def _ask(
        self,
        body: dict[str, Any],
        respond: Any,
        label: str,
        command: str,
        prompt: str,
        channel: str,
        thread: str | None,
    ) -> None:
        """A prompting button: a modal asks for the text; its submission runs the command."""
        meta = {"command": command, "channel": channel, "thread_ts": thread}
        try:
            view = fmt.prompt_view(label, prompt, meta)
            await self.client.views_open(trigger_id=str(body.get("trigger_id") or ""), view=view)
        except Exception as exc:
            log.warning("slack: prompt not opened", extra={"error": str(exc)[:120]})
            usage = f"Could not ask here; type `{command} <text>` instead."
            with contextlib.suppress(Exception):
                await respond(response_type="ephemeral", replace_original=False, text=usage)

    async def _on_submit(
        self, ack: Callable[..., Awaitable[Any]], body: dict[str, Any], view: dict[str, Any]
    ) -> None:
        try:
            meta, text = fmt.submitted(view)
        except (TypeError, AttributeError, ValueError, RecursionError):
            await ack()  # a view of a shape Slack never sends: close it, do nothing
            log.warning("slack: malformed view submission ignored")
            return
        command = str(meta.get("command") or "")
        if not text:
            errors = {fmt.PROMPT_BLOCK: "Write something first; nothing was done."}
            await ack(response_action="errors", errors=errors)
            return
        await ack()  # closes the modal; the outcome goes to the person as an ephemeral
        if not command.startswith("/"):
            log.warning("slack: prompt submitted without a command")
            return
        user = _obj(body.get("user"))
        channel, thread = _text(meta.get("channel")), _text(meta.get("thread_ts")) or None
        message = Message(
            platform="slack",
            user_id=_text(user.get("id")),
            text=f"{command} {text}",
            room=self._room(channel, thread),
            user_name=_text(user.get("username") or user.get("name")),
            clicked={"channel": channel, "ts": None, "thread_ts": thread},
        )
        self._spawn(self.answers.tell(message))

    async def _on_mention(self, event: dict[str, Any]) -> None:
        """``@pira /ack`` in a thread: slash commands cannot be typed in threads."""
        text = re.sub(r"^\s*<@[A-Z0-9]+>\s*", "", str(event.get("text", "")))
        text = fmt.command_text(text).strip()
        channel, user = _text(event.get("channel")), _text(event.get("user"))
        thread = _text(event.get("thread_ts")) or None
        if not text.startswith("/"):
            text = "/help"
        message = Message("slack", user, text, self._room(channel, thread))
        reply = await self.answers.run(message)
        with contextlib.suppress(Exception):
            await self.client.chat_postEphemeral(
                channel=channel, user=user, thread_ts=thread, **self.answers.reply_body(reply)
            )

    @staticmethod
    def _room(channel: str, thread: str | None) -> Room:
        """Where a message was written; its incident is looked up when it runs."""
        return Room(platform="slack", chat_id=channel, thread_id=thread)

    # ---- outbound (slack_send) ---------------------------------------------

    def reaches(self, destination: Destination) -> bool:
        if destination.kind in ("incidents", "incident"):
            return bool(self.sender.incidents_channel)
        if destination.kind == "stakeholders":
            return bool(self.sender.stakeholders_channel)
        if destination.kind == "dm":
            return self.directory.platform_id(destination.arg, "slack") is not None
        return False

    async def deliver(self, message: Outbound) -> dict[str, Any] | None:
        return await self.sender.deliver(message)
