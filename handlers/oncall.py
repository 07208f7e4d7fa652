"""/oncall, /page and /handoff."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from bot.domain.durations import parse_duration
from bot.domain.incident import InvalidInput
from bot.messages import Reply
from bot.oncall import OnCallNow
from bot.router import Args, CommandList, Context, UsageError
from bot.settings import ROLE_NAMES

commands = CommandList()


@dataclass(frozen=True)
class OnCallArgs:
    person: str | None = None
    duration: timedelta | None = None


def parse_oncall(a: Args) -> OnCallArgs:
    if not a.peek():
        return OnCallArgs()
    a.choice("the sub-command", ("override",))
    person = a.person("the person to put on call")
    raw = a.word("the duration (e.g. 4h)")
    a.end()
    try:
        duration = parse_duration(raw)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return OnCallArgs(person, duration)


def _oncall_reply(now: OnCallNow) -> Reply:
    return Reply(
        template="oncall",
        data={
            "primary": now.primary,
            "secondary": now.secondary,
            "until": now.until.isoformat() if now.until else None,
            "override_until": now.override_until.isoformat() if now.override_until else None,
        },
    )


@commands.add(
    "oncall",
    usage="/oncall  |  /oncall override @user <duration>",
    summary="who is primary and secondary until when; put someone on as primary for a while",
    parse=parse_oncall,
    role=lambda args: "responder" if args.person is not None else None,
    role_note="responder, for an override",
)
async def oncall(ctx: Context, args: OnCallArgs) -> Reply:
    service = ctx.services.oncall
    if args.person is None:
        return _oncall_reply(await ctx.run(service.now))
    person = ctx.services.directory.find(args.person)
    if person is None:
        raise InvalidInput(ctx.services.directory.not_configured(args.person))
    assert args.duration is not None
    return _oncall_reply(
        await ctx.run(service.override, person=person, duration=args.duration, by=ctx.actor)
    )


@dataclass(frozen=True)
class PageArgs:
    target: str
    number: int | None
    message: str | None


def parse_page(a: Args) -> PageArgs:
    raw = a.word("who to page (a role or @user)")
    if raw.startswith(("@", "<@")):
        target = Args(raw).person()
    elif raw.lower() in ROLE_NAMES:
        target = raw.lower()
    else:
        raise UsageError(f"{raw!r} is not a role ({', '.join(ROLE_NAMES)}) or @user")
    number = a.incident()
    return PageArgs(target, number, a.optional_text())


@commands.add(
    "page",
    usage="/page <primary|secondary|team_lead|engineering_manager|cto|@user> [#N] [message]",
    summary="page someone by hand for an incident",
    parse=parse_page,
    role="responder",
)
async def page(ctx: Context, args: PageArgs) -> Reply:
    app = ctx.services
    number = await ctx.incident(args.number)
    target = args.target
    if target not in ROLE_NAMES:
        found = app.directory.find(target)
        if found is None:
            raise InvalidInput(ctx.services.directory.not_configured(target))
        target = found
    reason = f"Paged by {ctx.actor.handle}" + (f": {args.message}" if args.message else ".")
    person = await ctx.run(
        app.incidents.page,
        number=number,
        target=target,
        reason=reason,
        by=ctx.actor,
        source=ctx.source,
    )
    if person is None:
        return Reply.error(f"Could not page {target}; the reason is posted in #incident-{number}.")
    return Reply.plain(f"Paged @{person} for #{number}.")


def parse_nothing(a: Args) -> None:
    a.end()


@commands.add(
    "handoff",
    usage="/handoff",
    summary="the handoff document: on-call, open incidents, last week's incidents, open "
    "action items",
    parse=parse_nothing,
)
async def handoff(ctx: Context, args: None) -> Reply:
    data = await ctx.run(ctx.services.oncall.handoff_data, ctx.services.clock.now())
    data["late"] = None
    return Reply(template="handoff", data=data)
