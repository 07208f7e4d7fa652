"""Telegram with python-telegram-bot 22, in the bot's own event loop.

Receiving: long polling (``getUpdates``) by default, or ``POST /telegram`` on the bot's
HTTP server when ``PIRA_TELEGRAM_WEBHOOK_URL`` is set (secret token checked in constant
time). PTB's ``Bot`` is used directly rather than ``Application``: PIRA has its own
router, and owning the update loop keeps the processing order and shutdown explicit.

Sending: outbox posts through :class:`ChatSender` (rate limits, splitting, lost-answer
probing; see telegram_send.py and telegram_limits.py); a post's ``admitted`` hook is
awaited once its first message is admitted by the rate limiter, before it is sent.
Command replies are sent directly, not through the outbox: a reply answers the person
now (it has no Destination the outbox could name — "this chat, this topic"), it changes
no state, and it shares the same per-chat lock and rate limiter, so it neither breaks
room order nor the platform's limits.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
from typing import TYPE_CHECKING, Any

from telegram import (
    Bot as PtbBot,
)
from telegram import (
    BotCommand,
    CallbackQuery,
    Update,
)
from telegram import (
    Message as PtbMessage,
)
from telegram.error import TelegramError
from telegram.request import HTTPXRequest

from bot.adapters import telegram_contacts
from bot.adapters.deps import ChatDeps
from bot.adapters.telegram_answers import Answers
from bot.adapters.telegram_buttons import Buttons
from bot.adapters.telegram_files import FileSender
from bot.adapters.telegram_intake import ALLOWED_UPDATES, Intake
from bot.adapters.telegram_prompts import (
    PROMPTED,
    prompt_of,
    prompted_command,
    short,
)
from bot.adapters.telegram_rooms import TelegramRooms
from bot.adapters.telegram_send import ChatSender, Limits, RateLimiter
from bot.messages import Destination, Message, Room
from bot.outbox import Outbound

if TYPE_CHECKING:
    from bot.web import WebServer

log = logging.getLogger("pira.telegram")

TELEGRAM_API = "https://api.telegram.org"
SPARE_CONNECTIONS = 8  # HTTP connections beyond the rate limiter's requests in flight
_SECRET_OK = re.compile(r"[A-Za-z0-9_-]{1,256}")
_TAGS = re.compile(r"<[^>]+>")


class TelegramAdapter:
    name = "telegram"

    def __init__(
        self,
        deps: ChatDeps,
        *,
        limits: Limits | None = None,
        send_timeout: float = 15.0,
        poll_timeout: int = 25,
        reply_wait: float = 10.0,
    ) -> None:
        env = self.env = deps.env
        if not env.telegram_token:
            raise ValueError("PIRA_TELEGRAM_TOKEN is not set")
        self.secrets = deps.secrets
        self.secrets.add(env.telegram_token)
        self.secrets.add(env.telegram_webhook_secret)
        self.router = deps.router
        self.directory = deps.directory
        self.renderer = deps.renderer
        self.leading = deps.leading
        self.poll_timeout = poll_timeout
        self.reply_wait = reply_wait
        base = (env.telegram_api_url or TELEGRAM_API).rstrip("/")
        # PTB appends the token to base_url: {base}/bot{token}/{method}
        base_url = base if base.endswith("/bot") else f"{base}/bot"
        limits = limits or Limits()
        self.bot = PtbBot(
            env.telegram_token,
            base_url=base_url,
            request=HTTPXRequest(
                # Every request the rate limiter lets fly at once, and room for those it
                # does not count (button answers, getChat, createForumTopic, …): a request
                # admitted on time must not wait here for a connection and leave late.
                connection_pool_size=limits.in_flight + SPARE_CONNECTIONS,
                connect_timeout=5.0,
                read_timeout=send_timeout,
                write_timeout=send_timeout,
                pool_timeout=5.0,
            ),
            get_updates_request=HTTPXRequest(
                connection_pool_size=2, read_timeout=poll_timeout + 10, connect_timeout=5.0
            ),
        )
        self.sender = ChatSender(self.bot, RateLimiter(limits), send_timeout=send_timeout)
        self.incidents_chat = deps.config.channels.incidents.telegram
        self.rooms = TelegramRooms(
            bot=self.bot,
            sender=self.sender,
            rooms=deps.rooms,
            directory=deps.directory,
            incidents_chat=self.incidents_chat,
            stakeholders_chat=deps.config.channels.stakeholders.telegram,
        )
        self.files = FileSender(self.sender)
        self.buttons = Buttons(deps.rooms)
        self.answers = Answers(
            sender=self.sender, renderer=deps.renderer, buttons=self.buttons, reply_wait=reply_wait
        )
        self.username = ""
        head = env.telegram_token.split(":", 1)[0]
        self.bot_id = int(head) if head.isdigit() else 0  # getMe's answer replaces it
        self.intake = Intake(
            bot=self.bot, poll_timeout=poll_timeout, leading=deps.leading, process=self._process
        )
        self._started = False

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self, web_server: WebServer) -> None:
        env = self.env
        webhook = env.telegram_webhook_url
        if webhook:
            # The route exists before the HTTP server starts; Telegram only calls it
            # once setWebhook below succeeded.
            secret = env.telegram_webhook_secret or ""
            if not secret:
                secret = secrets.token_urlsafe(32)
                self.secrets.add(secret)
                log.warning(
                    "PIRA_TELEGRAM_WEBHOOK_SECRET not set: using a random secret for this "
                    "process (set one when several replicas serve /telegram)"
                )
            self.intake.webhook_secret = secret
            web_server.route("POST", "/telegram", self.intake.webhook)
        try:
            await self.bot.initialize()  # getMe: checks the token, learns the username
        except TelegramError as exc:
            log.error("telegram unavailable at start", extra={"error": type(exc).__name__})
            return
        self.username = self.bot.username or ""
        self.bot_id = self.bot.id
        self._started = True
        await self._set_commands()
        if webhook:
            if not _SECRET_OK.fullmatch(self.intake.webhook_secret):
                log.error("PIRA_TELEGRAM_WEBHOOK_SECRET may only hold A-Z a-z 0-9 _ -")
                return
            try:
                await self.bot.set_webhook(
                    webhook,
                    secret_token=self.intake.webhook_secret,
                    allowed_updates=ALLOWED_UPDATES,
                )
                log.info("telegram webhook set", extra={"url": webhook})
            except TelegramError as exc:
                log.error("telegram setWebhook failed", extra={"error": str(exc)[:200]})
            return
        try:
            await self.bot.delete_webhook()  # getUpdates answers 409 while a webhook is set
        except TelegramError as exc:
            log.warning("telegram deleteWebhook failed", extra={"error": str(exc)[:200]})
        self.intake.start_polling()
        log.info("telegram long polling", extra={"bot": self.username})

    async def stop(self) -> None:
        await self.intake.stop(confirm=self._started)
        if self._started:
            with contextlib.suppress(TelegramError):
                await self.bot.shutdown()
            self._started = False

    async def settle(self) -> None:
        """Wait until the updates being handled are answered (tests; shutdown)."""
        await self.intake.settle()

    async def _set_commands(self) -> None:
        commands = [
            BotCommand(name, (cmd.summary or name)[:256])
            for name, cmd in self.router.commands.items()
            if re.fullmatch(r"[a-z0-9_]{1,32}", name)
        ]
        commands.append(BotCommand("confirm", "confirm a destructive action (code)"))
        commands.append(BotCommand("cancel", "cancel a destructive action (code)"))
        try:
            await self.bot.set_my_commands(commands[:100])
        except TelegramError as exc:
            log.warning("telegram setMyCommands failed", extra={"error": str(exc)[:200]})

    # ---- receiving -----------------------------------------------------------------------

    async def _process(self, update: Update) -> None:
        if update.callback_query is not None:
            await self._on_callback(update.callback_query)
        elif update.message is not None:
            await self._on_message(update.message)

    def _command_text(self, text: str) -> str | None:
        """``/cmd@thisbot args`` → ``/cmd args``; None for another bot's command."""
        head, sep, rest = text.partition(" ")
        name, at, target = head.partition("@")
        if at and target.lower() != self.username.lower():
            return None
        if name.lower() == "/start":  # what Telegram sends when a person opens the bot
            name = "/help"
        return f"{name}{sep}{rest}"

    async def _on_message(self, msg: PtbMessage) -> None:
        self.sender.saw(msg.chat.id, msg.message_id)
        text = msg.text or ""
        user = msg.from_user
        if user is None or user.is_bot:
            return
        asked = self._prompted(msg)
        if asked is not None:  # the answer to a button's question, whatever it says
            await self._on_answer(msg, asked)
            return
        if not text.startswith("/"):
            return
        command = self._command_text(text)
        if command is None:
            return
        await self._run(msg, command)

    async def _run(self, msg: PtbMessage, command: str) -> None:
        """Run ``command`` as the author of ``msg`` and answer in reply to it."""
        user = msg.from_user
        if user is None:
            return
        thread = msg.message_thread_id if msg.is_topic_message else None
        reply_to = msg.reply_to_message.message_id if msg.reply_to_message else None
        room = Room(
            platform="telegram",
            chat_id=str(msg.chat.id),
            thread_id=str(thread) if thread else None,
            incident=await self.rooms.incident_of(msg.chat.id, thread, reply_to),
        )
        name = user.full_name or user.username or str(user.id)
        actor = self.directory.actor("telegram", str(user.id), name)
        message = Message("telegram", str(user.id), command, room, user_name=name)
        reply = await self.router.handle(message, actor)
        await self.answers.reply(msg.chat.id, thread, msg.message_id, reply)

    async def _on_callback(self, query: CallbackQuery) -> None:
        answered = False
        try:
            command = await self.buttons.decode(query.data or "")
            if command is None:
                await query.answer("This button has expired; type the command.", show_alert=True)
                answered = True
                return
            user = query.from_user
            msg = query.message if isinstance(query.message, PtbMessage) else None
            thread = msg.message_thread_id if msg and msg.is_topic_message else None
            chat_id = msg.chat.id if msg else user.id
            if msg is not None:
                self.sender.saw(chat_id, msg.message_id)
            if command.startswith(PROMPTED):
                command = command[len(PROMPTED) :]
                prompt = await self.buttons.prompt_for(command)
                answered = True
                with contextlib.suppress(TelegramError):  # too old: still ask
                    await query.answer(f"{short(prompt)}: reply to my message below.")
                await self.answers.ask(
                    chat_id, thread, None, command, prompt, self.answers.mention(user)
                )
                return
            room = Room(
                platform="telegram",
                chat_id=str(chat_id),
                thread_id=str(thread) if thread else None,
                incident=await self.rooms.incident_of(
                    chat_id, thread, msg.message_id if msg else None
                ),
            )
            name = user.full_name or user.username or str(user.id)
            actor = self.directory.actor("telegram", str(user.id), name)
            clicked = {"chat_id": chat_id, "message_id": msg.message_id} if msg else None
            message = Message("telegram", str(user.id), command, room, name, clicked)
            reply = await self.router.handle(message, actor)
            await query.answer(self.answers.toast(reply), show_alert=not reply.ok)
            answered = True
            if msg is not None and msg.reply_markup is not None:
                await self._retire_prompt(command, chat_id, msg.message_id)
            await self.answers.reply(chat_id, thread, msg.message_id if msg else None, reply)
        finally:
            if not answered:  # a button must never spin forever
                with contextlib.suppress(TelegramError):
                    await query.answer()

    async def _retire_prompt(self, command: str, chat_id: int, message_id: int) -> None:
        """A confirmation prompt loses its Confirm/Cancel buttons once its code is used
        (confirmed, cancelled or expired); a click by someone else leaves them."""
        verb, _, code = command.partition(" ")
        if verb not in ("/confirm", "/cancel"):
            return
        if not await self.router.pending(code):
            with contextlib.suppress(TelegramError):
                await self.bot.edit_message_reply_markup(chat_id, message_id, reply_markup=None)

    def _prompted(self, msg: PtbMessage) -> str | None:
        """The command whose text ``msg`` answers: a reply to a prompt *the bot itself*
        sent (a person's message with the same words counts for nothing)."""
        asked = msg.reply_to_message
        if asked is None or asked.from_user is None or asked.from_user.id != self.bot_id:
            return None
        command = prompted_command(asked.text or "")
        if command is None:
            return None
        name = command.split(" ", 1)[0][1:].lower()
        return command if name in self.router.commands else None

    async def _on_answer(self, msg: PtbMessage, command: str) -> None:
        answer = (msg.text or msg.caption or "").strip()
        if answer:
            await self._run(msg, f"{command} {answer}")
            return
        # A sticker, a photo without caption…: ask again, in reply to it.
        user = msg.from_user
        asked = msg.reply_to_message
        if user is None or asked is None:
            return
        prompt = prompt_of(asked.text or "") or await self.buttons.prompt_for(command)
        thread = msg.message_thread_id if msg.is_topic_message else None
        await self.answers.ask(
            msg.chat.id, thread, msg.message_id, command, prompt, self.answers.mention(user)
        )

    # ---- delivering ------------------------------------------------------------------------

    def reaches(self, destination: Destination) -> bool:
        return self.rooms.reaches(destination)

    async def unreachable(self, person: str) -> str | None:
        """Why the bot cannot message ``person`` (bot/outbox.py's Contacts): getChat."""
        user_id = self.directory.platform_id(person, "telegram")
        if user_id is None:
            return "no telegram id"
        return await telegram_contacts.unreachable(self.bot, int(user_id))

    async def deliver(self, message: Outbound) -> dict[str, Any] | None:
        markup = await self.buttons.markup(message.buttons)
        if message.edit_of is not None:
            ref = message.original_ref or {}
            if not ref.get("message_id"):
                return None  # the original was not a Telegram message we can edit
            await self.sender.edit(
                int(ref["chat_id"]), int(ref["message_id"]), message.text, markup
            )
            return ref
        chat_id, thread, reply_to = await self.rooms.address(message)
        # With a file: sendDocument or sendPhoto, its caption the text (telegram_files).
        sent = await self.files.post(
            chat_id,
            message.text,
            message.file,
            markup=markup,
            thread_id=thread,
            reply_to=reply_to,
            key=message.key,
            admitted=message.admitted,
        )
        await self.rooms.remember(chat_id, list(sent.message_ids), message)
        return sent.ref()


__all__ = ["Limits", "TelegramAdapter"]
