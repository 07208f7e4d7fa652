"""Declare and drive an incident: /incident /ack /status /update /severity /commander
/impact /affected /resolve /timeline /incidents."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.domain.categories import CATEGORIES, parse_category
from bot.domain.durations import format_duration
from bot.domain.incident import STATUS_LABELS, STATUSES, InvalidInput, duration_text
from bot.domain.moments import parse_moment
from bot.incidents import Outcome
from bot.messages import Reply
from bot.router import Args, CommandList, Context, UsageError

commands = CommandList()


async def _verb(
    ctx: Context, number: int | None, verb: Callable[..., Outcome], **fields: Any
) -> Reply:
    """Run an incident verb on the incident meant (``#N``, the room's, the only open one)
    as the person who asked, and say what it did."""
    picked = await ctx.incident(number)
    done = await ctx.run(verb, number=picked, by=ctx.actor, source=ctx.source, **fields)
    return Reply.plain(done.text)


# ---- /incident ----------------------------------------------------------------


@dataclass(frozen=True)
class Declare:
    severity: str | None = None
    title: str | None = None
    show: int | None = None
    started: str | None = None  # --started <time | 10m ago>: when it really began


def parse_incident(a: Args) -> Declare:
    number = a.incident()
    if number is not None:
        a.end()
        return Declare(show=number)
    severity = a.severity()
    title, flag, started = a.text("the title").partition("--started")
    if flag and not started.strip():
        raise UsageError("--started needs a time (10m ago, 14:05, 2026-12-01 14:05)")
    if flag and not title.strip():
        raise UsageError("the title is missing")
    return Declare(severity=severity, title=title.strip(), started=started.strip() or None)


async def _show_ticket(ctx: Context, number: int) -> Reply:
    incident = await ctx.run(ctx.services.incidents.get, number)
    return Reply(template="ticket", data=ctx.services.incidents.views.ticket_data(incident))


@commands.add(
    "incident",
    usage="/incident <p0-p3> <title> [--started <10m ago | 14:05>]  |  /incident #N",
    summary="declare an incident (or show incident N's ticket)",
    parse=parse_incident,
    role="responder",
)
async def incident(ctx: Context, args: Declare) -> Reply:
    if args.show is not None:
        return await _show_ticket(ctx, args.show)
    assert args.severity is not None and args.title is not None
    started = None
    if args.started is not None:  # known start, as /started records it (for MTTD)
        tz = ctx.services.config.tz
        started = parse_moment(args.started, now=ctx.services.clock.now(), tz=tz)
    created = await ctx.run(
        ctx.services.incidents.declare,
        severity=args.severity,
        title=args.title,
        by=ctx.actor,
        source=ctx.source,
        started_at=started,
        details={"start_known": True} if started is not None else None,
    )
    policy = ctx.services.config.policy(created.severity)
    nobody = await ctx.run(ctx.services.oncall.unpageable)
    paging = (
        "no page (severity without paging)"
        if policy.page_after is None
        else f"nobody will be paged: {nobody}"
        if nobody
        else "paging the on-call now"
        if not policy.page_after
        else f"paging the on-call in {format_duration(policy.page_after)} unless acknowledged"
    )
    return Reply.plain(
        f"Declared #{created.number} [{created.severity}] {created.title}: announced in "
        f"#incidents, room #incident-{created.number}, {paging}."
    )


# ---- /ack /status /update /severity /commander /impact /resolve ------------------


@dataclass(frozen=True)
class Ref:
    number: int | None


def parse_ref(a: Args) -> Ref:
    number = a.incident()
    a.end()
    return Ref(number)


@commands.add(
    "ack",
    usage="/ack [#N]",
    summary="acknowledge the page: stops the ack chain, sets the commander if none",
    parse=parse_ref,
    role="responder",
)
async def ack(ctx: Context, args: Ref) -> Reply:
    return await _verb(ctx, args.number, ctx.services.incidents.ack)


@dataclass(frozen=True)
class StatusArgs:
    number: int | None
    status: str
    note: str | None


def parse_status(a: Args) -> StatusArgs:
    number = a.incident()
    status = a.choice("the status", STATUSES)
    return StatusArgs(number, status, a.optional_text())


@commands.add(
    "status",
    usage="/status [#N] <investigating|mitigating|monitoring|resolved> [note]",
    summary="change the status (posts an Update)",
    parse=parse_status,
    role="responder",
)
async def status(ctx: Context, args: StatusArgs) -> Reply:
    return await _verb(
        ctx, args.number, ctx.services.incidents.set_status, status=args.status, note=args.note
    )


@dataclass(frozen=True)
class TextArgs:
    number: int | None
    text: str


def parse_update(a: Args) -> TextArgs:
    number = a.incident()
    return TextArgs(number, a.text("the update text"))


@commands.add(
    "update",
    usage="/update [#N] <text>",
    summary="post the Update template; resets the next-update timer",
    parse=parse_update,
    role="responder",
)
async def update(ctx: Context, args: TextArgs) -> Reply:
    return await _verb(ctx, args.number, ctx.services.incidents.post_update, text=args.text)


@dataclass(frozen=True)
class SeverityArgs:
    number: int | None
    severity: str


def parse_severity_args(a: Args) -> SeverityArgs:
    number = a.incident()
    severity = a.severity()
    a.end()
    return SeverityArgs(number, severity)


@commands.add(
    "severity",
    usage="/severity [#N] <p0-p3>",
    summary="change the severity; timers are re-planned from the incident's start",
    parse=parse_severity_args,
    role="responder",
)
async def severity(ctx: Context, args: SeverityArgs) -> Reply:
    return await _verb(
        ctx, args.number, ctx.services.incidents.set_severity, severity=args.severity
    )


@dataclass(frozen=True)
class PersonArgs:
    number: int | None
    person: str


def parse_commander(a: Args) -> PersonArgs:
    number = a.incident()
    person = a.person("the commander")
    a.end()
    return PersonArgs(number, person)


@commands.add(
    "commander",
    usage="/commander [#N] @user",
    summary="set the incident commander",
    parse=parse_commander,
    role="responder",
)
async def commander(ctx: Context, args: PersonArgs) -> Reply:
    number = await ctx.incident(args.number)
    person = ctx.services.directory.find(args.person)
    if person is None:
        raise InvalidInput(ctx.services.directory.not_configured(args.person))
    return await _verb(ctx, number, ctx.services.incidents.set_commander, person=person)


def _ref_and_text(what: str) -> Callable[[Args], TextArgs]:
    """A parser of ``[#N] <text>``, naming ``what`` the text is when it is missing."""

    def parse(a: Args) -> TextArgs:
        number = a.incident()
        return TextArgs(number, a.text(what))

    return parse


def _field_command(field: str, what: str, summary: str) -> None:
    """``/impact`` and ``/affected``: a ticket field, shown in every post."""

    @commands.add(
        field,
        usage=f"/{field} [#N] <text>",
        summary=summary,
        parse=_ref_and_text(what),
        role="responder",
    )
    async def set_field(ctx: Context, args: TextArgs) -> Reply:
        return await _verb(
            ctx, args.number, ctx.services.incidents.set_field, field=field, text=args.text
        )


_field_command("impact", "the impact", "record the impact, shown in every post")
_field_command(
    "affected", "who or what is affected", "record who or what is affected (the ticket's Affected)"
)


@commands.add(
    "started",
    usage="/started [#N] <10m ago | 14:05 | 2026-12-01 14:05>",
    summary="when the incident really began (MTTD is measured from it)",
    parse=_ref_and_text("when it started (10m ago, 14:05, 2026-12-01 14:05)"),
    role="responder",
)
async def started(ctx: Context, args: TextArgs) -> Reply:
    config = ctx.services.config
    at = parse_moment(args.text, now=ctx.services.clock.now(), tz=config.tz)
    number = await ctx.incident(args.number, reading=True)
    return await _verb(ctx, number, ctx.services.incidents.set_started, at=at)


@dataclass(frozen=True)
class CategoryArgs:
    number: int | None
    category: str


def parse_category_args(a: Args) -> CategoryArgs:
    number = a.incident()
    return CategoryArgs(number, parse_category(a.text("the category")))


@commands.add(
    "category",
    usage=f"/category [#N] <{'|'.join(CATEGORIES)}>",
    summary="set the root cause's category (counted for repeat incidents)",
    parse=parse_category_args,
    role="responder",
)
async def category(ctx: Context, args: CategoryArgs) -> Reply:
    number = await ctx.incident(args.number, reading=True)
    return await _verb(ctx, number, ctx.services.incidents.set_category, category=args.category)


@dataclass(frozen=True)
class ResolveArgs:
    number: int | None
    root_cause: str
    resolution: str | None


def parse_resolve(a: Args) -> ResolveArgs:
    number = a.incident()
    text = a.text("the root cause")
    cause, sep, resolution = text.partition(" -- ")
    if not sep and text.endswith(" --"):
        cause = text[:-3]
    if not cause.strip():
        raise UsageError("the root cause is missing")
    return ResolveArgs(number, cause.strip(), resolution.strip() or None)


@commands.add(
    "resolve",
    usage="/resolve [#N] <root cause> [-- resolution]",
    summary="post the Resolution template, stop all timers, propose the PIR",
    parse=parse_resolve,
    role="responder",
)
async def resolve(ctx: Context, args: ResolveArgs) -> Reply:
    return await _verb(
        ctx,
        args.number,
        ctx.services.incidents.resolve,
        root_cause=args.root_cause,
        resolution=args.resolution,
    )


# ---- reading -----------------------------------------------------------------


@commands.add(
    "timeline",
    usage="/timeline [#N]",
    summary="the incident's ticket and every step with time and actor",
    parse=parse_ref,
)
async def timeline(ctx: Context, args: Ref) -> Reply:
    number = await ctx.incident(args.number, reading=True)
    incident = await ctx.run(ctx.services.incidents.get, number)
    now = ctx.services.clock.now()
    return Reply(
        template="timeline",
        data={
            "number": incident.number,
            "title": incident.title,
            "severity": incident.severity,
            "status_label": STATUS_LABELS[incident.status],
            "duration": duration_text(incident.started_at, incident.resolved_at or now),
            "events": [
                {"at": e.at.isoformat(), "actor": e.actor, "source": e.source, "text": e.text}
                for e in incident.timeline
            ],
        },
    )


@dataclass(frozen=True)
class Which:
    which: str


def parse_which(a: Args) -> Which:
    which = a.choice("which incidents", ("open", "all")) if a.peek() else "open"
    a.end()
    return Which(which)


@commands.add(
    "incidents",
    usage="/incidents [open|all]",
    summary="list open (or all recent) incidents",
    parse=parse_which,
)
async def incidents(ctx: Context, args: Which) -> Reply:
    rows = await ctx.run(ctx.services.incidents.list_incidents, open_only=args.which == "open")
    now = ctx.services.clock.now()
    return Reply(
        template="incidents",
        data={
            "which": args.which,
            "rows": [
                {
                    "number": i.number,
                    "severity": i.severity,
                    "title": i.title,
                    "status_label": STATUS_LABELS[i.status],
                    "duration": duration_text(i.started_at, i.resolved_at or now),
                    "commander": i.commander,
                }
                for i in rows
            ],
        },
    )
