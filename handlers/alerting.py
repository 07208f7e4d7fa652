"""Acting on Alertmanager from chat (issue 16): /silence, /silences, /unsilence, and
/maintenance (hold alert-driven pages while planned work runs)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from bot.domain.durations import format_duration, parse_duration
from bot.domain.incident import InvalidInput, time_text
from bot.maintenance import MaintenanceState
from bot.messages import Reply
from bot.router import Args, CommandList, Context, UsageError
from bot.silences import Matcher, Silence

commands = CommandList()

# name=value, name!=value, name=~regex, name!~regex (Alertmanager's matcher syntax).
_MATCHER = re.compile(r'^([A-Za-z_][A-Za-z0-9_]*)(=~|!~|!=|=)"?([^"]*)"?$')
MAX_LISTED = 20


def _duration(raw: str) -> timedelta:
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


@dataclass(frozen=True)
class SilenceArgs:
    duration: timedelta
    number: int | None
    matchers: tuple[Matcher, ...]
    reason: str | None


def parse_silence(a: Args) -> SilenceArgs:
    duration = _duration(a.word("the duration (e.g. 30m)"))
    number = a.incident()
    matchers: list[Matcher] = []
    while (word := a.peek()) is not None and (m := _MATCHER.match(word)):
        a.word("a matcher")
        name, op, value = m.groups()
        if not value and op in ("=", "=~"):
            raise UsageError(f"{word!r} matches nothing: give the label's value")
        matchers.append(Matcher(name, value, is_regex="~" in op, is_equal=not op.startswith("!")))
    if number is not None and matchers:
        raise UsageError("give either #N or label matchers, not both")
    return SilenceArgs(duration, number, tuple(matchers), a.optional_text())


def _matchers(s: Silence) -> str:
    return ", ".join(str(m) for m in s.matchers)


@commands.add(
    "silence",
    usage="/silence <duration> [#N | name=value …] [reason]",
    summary="silence alerts in Alertmanager: those of incident #N (or of this room's), or "
    "those the matchers name",
    parse=parse_silence,
    role="responder",
    audit=True,
)
async def silence(ctx: Context, args: SilenceArgs) -> Reply:
    service = ctx.services.silences
    number = args.number
    matchers = list(args.matchers)
    if not matchers:
        number = number or ctx.room_incident
        if number is None:
            raise UsageError("say what to silence: #N (its alerts) or label=value matchers")
        matchers = await ctx.run(service.incident_matchers, number)
    made = await service.create(
        duration=args.duration, matchers=matchers, reason=args.reason, by=ctx.actor
    )
    tz = ctx.services.config.tz
    text = (
        f"🔇 Silence {made.id} until {time_text(made.ends_at, tz)}: {_matchers(made)}"
        f" — {made.comment}. /unsilence {made.id} to lift it."
    )
    if number is not None:  # on the incident's timeline (and the audit row with it)
        await ctx.run(
            ctx.services.incidents.note,
            number=number,
            text=f"alerts silenced for {format_duration(args.duration)} ({made.id}): "
            f"{_matchers(made)}",
            by=ctx.actor,
            source=ctx.source,
            kind="silence",
            post=ctx.room_incident != number,
        )
    return Reply.plain(text)


def parse_nothing(a: Args) -> None:
    a.end()


@commands.add(
    "silences",
    usage="/silences",
    summary="the active Alertmanager silences: id, matchers, who, until when",
    parse=parse_nothing,
)
async def silences(ctx: Context, _args: None) -> Reply:
    found = await ctx.services.silences.active()
    if not found:
        return Reply.plain("No active silences.")
    tz = ctx.services.config.tz
    lines = [
        f"• {s.id} — {_matchers(s)} — by {s.created_by} until {time_text(s.ends_at, tz)}"
        + (f" — {s.comment}" if s.comment else "")
        for s in found[:MAX_LISTED]
    ]
    more = f"\n(+{len(found) - MAX_LISTED} more)" if len(found) > MAX_LISTED else ""
    return Reply.plain(f"🔇 {len(found)} active silence(s):\n" + "\n".join(lines) + more)


def parse_unsilence(a: Args) -> str:
    silence_id = a.word("the silence's id (see /silences)")
    a.end()
    return silence_id


@commands.add(
    "unsilence",
    usage="/unsilence <id>",
    summary="expire an Alertmanager silence",
    parse=parse_unsilence,
    role="responder",
    audit=True,
)
async def unsilence(ctx: Context, silence_id: str) -> Reply:
    before = await ctx.services.silences.expire(silence_id)
    shown = _matchers(before) if before else "?"
    return Reply.plain(f"🔔 Silence {silence_id} expired ({shown}): those alerts notify again.")


@dataclass(frozen=True)
class MaintenanceArgs:
    verb: str  # "start", "end", "show"
    duration: timedelta | None = None
    reason: str | None = None


def parse_maintenance(a: Args) -> MaintenanceArgs:
    word = a.peek()
    if word is None:
        return MaintenanceArgs("show")
    if word.lower() == "end":
        a.word("end")
        a.end()
        return MaintenanceArgs("end")
    duration = _duration(a.word("the duration (e.g. 2h)"))
    return MaintenanceArgs("start", duration, a.optional_text())


def _state(state: MaintenanceState, ctx: Context) -> str:
    tz = ctx.services.config.tz
    if state.held is not None:
        text = (
            f"🔧 In maintenance until {time_text(state.held.until, tz)} ({state.held.reason}): "
            "incidents from alerts are announced, their pages wait for the end."
        )
    else:
        text = "No maintenance under way: alerts page as usual."
    if state.next is not None:
        text += (
            f"\nNext planned: {time_text(state.next.start, tz)} – "
            f"{time_text(state.next.end, tz)} ({state.next.reason})."
        )
    return text


@commands.add(
    "maintenance",
    usage="/maintenance [<duration> [reason] | end]",
    summary="hold alert-driven pages and escalations for a while (alerts still announced); "
    "end it early; alone: what is under way",
    parse=parse_maintenance,
    role=lambda args: None if args.verb == "show" else "operator",
    role_note="operator, to start or end one",
)
async def maintenance(ctx: Context, args: MaintenanceArgs) -> Reply:
    service = ctx.services.maintenance
    if args.verb == "show":
        return Reply.plain(_state(await ctx.run(service.state), ctx))
    if args.verb == "end":
        state = await ctx.run(service.end, by=ctx.actor, source=ctx.source)
        return Reply.plain("Maintenance ended.\n" + _state(state, ctx))
    assert args.duration is not None
    if args.duration > timedelta(days=7) or args.duration < timedelta(minutes=1):
        raise InvalidInput("a maintenance window lasts between 1m and 7d")
    state = await ctx.run(
        service.start, duration=args.duration, reason=args.reason, by=ctx.actor, source=ctx.source
    )
    return Reply.plain(_state(state, ctx))
