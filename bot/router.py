"""From a neutral Message to a Reply: parse ``/cmd args``, check the role, ask for
confirmation where a command is destructive, run the handler, audit.

"Does this apply?" (parsing, role, confirmation) is decided here; "do it" is
the handler's. A handler never sees arguments that did not parse.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from sqlalchemy import select

from bot.args import Args, UsageError
from bot.audit import COMMAND, Draft
from bot.domain.incident import InvalidInput, clean
from bot.messages import Button, Message, Reply
from bot.people import Actor
from bot.services import Services
from bot.store.models import AuditEntry, Confirmation

if TYPE_CHECKING:
    from bot.store import Store

__all__ = ["Args", "Command", "CommandList", "Context", "Router", "Services", "UsageError"]

log = logging.getLogger("pira.router")

CONFIRM_WINDOW = timedelta(seconds=60)
MAX_COMMAND = 4000
_COMMAND = re.compile(r"^/([A-Za-z_]+)(?:@[A-Za-z0-9_]+)?(?:\s+(.*))?$", re.DOTALL)

A = TypeVar("A")
P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class Context:
    """What a handler gets: the services, who asked, where, and the command table."""

    services: Services
    actor: Actor
    message: Message
    commands: dict[str, Command[Any]]
    confirmed: bool = False

    @property
    def source(self) -> str:
        return self.message.platform

    @property
    def room_incident(self) -> int | None:
        return self.message.room.incident

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """A service's database work, off the event loop (``await ctx.run(verb, ...)``)."""
        return await self.services.run(fn, *args, **kwargs)

    async def incident(self, number: int | None, *, reading: bool = False) -> int:
        return await self.run(
            self.services.incidents.pick, number, self.room_incident, reading=reading
        )


@dataclass(frozen=True)
class Command(Generic[A]):
    name: str
    usage: str
    summary: str
    parse: Callable[[Args], A]
    run: Callable[[Context, A], Awaitable[Reply]]
    # The role needed: fixed, or chosen by the parsed arguments (``/oncall`` reads for
    # anyone, ``/oncall override`` needs responder).
    role: str | Callable[[A], str | None] | None = None
    # Destructive commands: a prompt (what will happen) shown before running.
    confirm: Callable[[Context, A], Awaitable[str]] | None = None
    audit: bool = False
    # What /help says of a role chosen by the arguments.
    role_note: str | None = None

    def role_for(self, args: A) -> str | None:
        return self.role(args) if callable(self.role) else self.role

    @property
    def role_text(self) -> str | None:
        return self.role if isinstance(self.role, str) else self.role_note


@dataclass
class CommandList:
    """Commands a handlers module declares with ``@commands.add(...)``."""

    items: list[Command[Any]] = field(default_factory=list)

    def add(
        self,
        name: str,
        *,
        usage: str,
        summary: str,
        parse: Callable[[Args], Any],
        role: str | Callable[[Any], str | None] | None = None,
        confirm: Callable[[Context, Any], Awaitable[str]] | None = None,
        audit: bool | None = None,
        role_note: str | None = None,
    ) -> Callable[[Callable[[Context, Any], Awaitable[Reply]]], Callable[..., Any]]:
        def register(fn: Callable[[Context, Any], Awaitable[Reply]]) -> Callable[..., Any]:
            self.items.append(
                Command(
                    name=name,
                    usage=usage,
                    summary=summary,
                    parse=parse,
                    run=fn,
                    role=role,
                    confirm=confirm,
                    audit=bool(audit),  # role-guarded uses are audited anyway
                    role_note=role_note,
                )
            )
            return fn

        return register


class Router:
    def __init__(
        self,
        *,
        store: Store,
        services: Services,
        commands: Iterable[Command[Any]],
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        self.observe = observe  # (command, seconds its handler ran), e.g. for a histogram
        self.store = store
        self.services = services
        self.clock = services.clock
        self.commands: dict[str, Command[Any]] = {}
        for command in commands:
            if command.name in self.commands:
                raise ValueError(f"command /{command.name} declared twice")
            self.commands[command.name] = command

    async def handle(self, message: Message, actor: Actor | None = None) -> Reply:
        """Answer one message. Never raises: whatever happens inside, the person gets an
        answer and the log gets the error (the outermost handler of every surface)."""
        try:
            return await self._handle(message, actor)
        except Exception:
            log.exception("message failed", extra={"platform": message.platform})
            return Reply.error(
                "PIRA could not handle that message; nothing was changed that is not shown "
                "here. The error is in the bot's log."
            )

    async def _handle(self, message: Message, actor: Actor | None) -> Reply:
        actor = actor or self.services.directory.actor(
            message.platform, message.user_id, message.user_name
        )
        # Control characters (NUL included: PostgreSQL refuses it in text) never get in.
        text = clean(message.text).strip()
        if len(text) > MAX_COMMAND:
            return Reply.error(
                f"That message is too long ({len(text)} characters; at most {MAX_COMMAND})."
            )
        m = _COMMAND.match(text)
        if m is None:
            return Reply.error("Commands start with /, e.g. /help.")
        name, raw = m.group(1).lower(), (m.group(2) or "")
        if name in ("confirm", "cancel"):
            return await self._confirmation(name, raw.strip(), message, actor)
        command = self.commands.get(name)
        if command is None:
            return Reply.error(f"Unknown command /{name}. /help lists the commands.")
        attempt = f"/{name} {raw}".strip()
        try:
            args = command.parse(Args(raw))
        except InvalidInput as exc:
            if command.audit or command.role is not None:
                # Every attempt at a guarded command is audited, even one that did not parse.
                await self.audit(actor, message.platform, attempt, "rejected", str(exc))
            return Reply.error(f"{_sentence(str(exc))} Usage: {command.usage}")
        role = command.role_for(args)
        if not actor.has(role):
            await self.audit(actor, message.platform, attempt, "refused", f"needs role {role}")
            return Reply.error(f"/{name} needs the {role} role; {actor.handle} does not have it.")
        ctx = Context(self.services, actor, message, self.commands)
        if command.confirm is not None:
            return await self._ask(command, ctx, args, attempt)
        return await self._run(command, ctx, args, attempt)

    async def _run(self, command: Command[Any], ctx: Context, args: Any, text: str) -> Reply:
        draft = None
        if self._audited(command, args):
            draft = Draft(ctx.actor.handle, ctx.source, text)
        token, started = COMMAND.set(draft), time.monotonic()
        try:
            reply = await command.run(ctx, args)
        except InvalidInput as exc:
            reply = Reply.error(_sentence(str(exc)))
        except Exception:
            log.exception("command failed", extra={"command": command.name})
            if draft is not None:
                await self._finish(draft, "failed", "internal error")
            return Reply.error(
                f"/{command.name} failed on PIRA's side; nothing was changed "
                "that is not shown here. The error is in the bot's log."
            )
        finally:
            COMMAND.reset(token)
            if self.observe is not None:
                self.observe(command.name, time.monotonic() - started)
        if draft is not None:
            # The reply's own text is the detail: an action's answer from the API, or
            # why it was rejected.
            outcome = reply.outcome or ("ok" if reply.ok else "rejected")
            await self._finish(draft, outcome, str(reply.data.get("text", ""))[:500])
        return reply

    async def _finish(self, draft: Draft, outcome: str, detail: str) -> None:
        """The command's audit row: already committed with its change (one transaction),
        else written now, alone."""
        if draft.committed and draft.outcome == outcome:
            draft.logged(outcome)
            return
        await self._write(draft, outcome, detail)

    @staticmethod
    def _audited(command: Command[Any], args: Any) -> bool:
        """Audited: commands that ask for it, and every role-guarded use of a command."""
        return command.audit or command.role_for(args) is not None

    async def _ask(self, command: Command[Any], ctx: Context, args: Any, text: str) -> Reply:
        assert command.confirm is not None
        try:
            prompt = await command.confirm(ctx, args)
        except InvalidInput as exc:
            await self.audit(ctx.actor, ctx.source, text, "rejected", str(exc))
            return Reply.error(_sentence(str(exc)))
        except Exception:
            log.exception("confirmation prompt failed", extra={"command": command.name})
            await self.audit(ctx.actor, ctx.source, text, "failed", "internal error")
            return Reply.error(
                f"/{command.name} failed on PIRA's side; nothing was done. "
                "The error is in the bot's log."
            )
        code = secrets.token_hex(3).upper()
        draft = Draft(ctx.actor.handle, ctx.source, text)
        await self.store.run(self._save_confirmation, code, ctx.actor.key, text, draft)
        draft.logged("requested")
        seconds = int(CONFIRM_WINDOW.total_seconds())
        return Reply.plain(
            f"{prompt}\nConfirm within {seconds} s: /confirm {code} (or /cancel {code}).",
            buttons=(
                Button("Confirm", f"/confirm {code}", "danger"),
                Button("Cancel", f"/cancel {code}"),
            ),
        )

    def _save_confirmation(self, code: str, actor: str, text: str, draft: Draft) -> None:
        now = self.clock.now()
        with self.store.transaction() as s:
            s.add(
                Confirmation(
                    code=code,
                    actor=actor,
                    command=text,
                    created_at=now,
                    expires_at=now + CONFIRM_WINDOW,
                )
            )
            s.add(draft.row(now, "requested", f"confirmation {code}"))

    async def _confirmation(self, verb: str, code: str, message: Message, actor: Actor) -> Reply:
        code = code.upper()
        if not code:
            return Reply.error(f"Usage: /{verb} <code> (the code the bot gave you).")
        if not re.fullmatch(r"[0-9A-F]{6}", code):
            return Reply.error(_no_code(code[:20]))
        used = await self.store.run(self._use_code, verb, code, actor, message.platform)
        if isinstance(used, Reply):
            return used
        command_text = used
        m = _COMMAND.match(command_text)
        assert m is not None
        command = self.commands[m.group(1).lower()]
        args = command.parse(Args(m.group(2) or ""))
        role = command.role_for(args)
        if not actor.has(role):  # roles may have changed since the request
            await self.audit(actor, message.platform, command_text, "refused", "role")
            return Reply.error(f"/{command.name} needs the {role} role.")
        await self.audit(actor, message.platform, command_text, "confirmed", f"code {code}")
        ctx = Context(self.services, actor, message, self.commands, confirmed=True)
        return await self._run(command, ctx, args, command_text)

    def _use_code(self, verb: str, code: str, actor: Actor, platform: str) -> Reply | str:
        """Take a confirmation code (one transaction with its audit row): the command
        to run, or the answer when there is nothing to run."""
        now = self.clock.now()
        with self.store.transaction() as s:
            pending = s.get(Confirmation, code)
            if pending is None or pending.used_at is not None:
                return Reply.error(_no_code(code))
            draft = Draft(actor.handle, platform, pending.command)
            if pending.actor != actor.key:
                detail = f"{verb} {code} by another person than {pending.actor}"
                s.add(draft.row(now, "refused", detail))
                draft.logged("refused")
                return Reply.error("Only the person who asked for this action can confirm it.")
            pending.used_at = now
            if pending.expires_at < now:
                s.add(draft.row(now, "expired", f"code {code}"))
                draft.logged("expired")
                return Reply.error(f"Code {code} expired (60 s); nothing was done. Ask again.")
            if verb == "cancel":
                s.add(draft.row(now, "cancelled", f"code {code}"))
                draft.logged("cancelled")
                return Reply.plain(f"Cancelled: {pending.command}")
            return pending.command

    async def pending(self, code: str) -> bool:
        """Whether confirmation ``code`` can still be used (its prompt keeps its buttons)."""
        return await self.store.run(self._pending, code.strip().upper())

    def _pending(self, code: str) -> bool:
        with self.store.read() as s:
            found = s.get(Confirmation, code)
            return found is not None and found.used_at is None

    async def audit(
        self, actor: Actor, source: str, action: str, outcome: str, detail: str
    ) -> None:
        """Write an audit row alone (a command that changed nothing)."""
        await self._write(Draft(actor.handle, source, action), outcome, detail)

    async def _write(self, draft: Draft, outcome: str, detail: str) -> None:
        """An error path calls this too, so it must not raise: a failure to audit is
        logged (and the answer still goes out)."""
        try:
            await self.store.run(self._insert, draft, outcome, detail)
        except Exception:
            log.exception("audit failed", extra={"source": draft.source, "outcome": outcome})
            return
        draft.logged(outcome)

    def _insert(self, draft: Draft, outcome: str, detail: str) -> None:
        with self.store.transaction() as s:
            s.add(draft.row(self.clock.now(), outcome, detail))

    def audit_entries(self, limit: int = 50) -> list[AuditEntry]:
        with self.store.read() as s:
            return list(s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)))


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _no_code(code: str) -> str:
    window = int(CONFIRM_WINDOW.total_seconds())
    return (
        f"No pending action with code {code}: it is unknown, used already, or expired "
        f"(a code lasts {window} s). Run the command again for a new one."
    )
