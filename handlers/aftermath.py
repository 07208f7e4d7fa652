"""After the incident (the runbook's Phase 4): /action add|list|done, /postmortem [publish]."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from bot.action_items import Item
from bot.domain.durations import parse_duration
from bot.domain.incident import InvalidInput
from bot.messages import Reply
from bot.router import Args, CommandList, Context, UsageError

commands = CommandList()

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SPAN = re.compile(r"^\d+[dw]$")


@dataclass(frozen=True)
class ActionArgs:
    verb: str
    number: int | None = None
    text: str = ""
    owner: str | None = None
    due: str | None = None
    which: str = "open"
    item: int = 0


def parse_action(a: Args) -> ActionArgs:
    verb = a.choice("what to do (add, list, done)", ("add", "list", "done"))
    if verb == "list":
        which = a.choice("which (open, all)", ("open", "all")) if a.peek() else "open"
        a.end()
        return ActionArgs(verb, which=which)
    if verb == "done":
        item = a.integer("the action item's number", low=1)
        a.end()
        return ActionArgs(verb, item=item)
    number = a.incident()
    words = a.text("what is to be done").split()
    owner = due = None
    for _ in range(2):  # "[@owner] [due]", in either order, at the end
        if words and due is None and (_DATE.match(words[-1]) or _SPAN.match(words[-1])):
            due = words.pop()
        elif words and owner is None and words[-1].startswith("@") and len(words[-1]) > 1:
            owner = words.pop()[1:]
    if not words:
        raise UsageError("what is to be done is missing")
    return ActionArgs(verb, number, " ".join(words), owner, due)


def _due(raw: str | None, now: datetime, ctx: Context) -> date | None:
    if raw is None:
        return None
    today = now.astimezone(ctx.services.config.tz).date()
    if _DATE.match(raw):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            raise InvalidInput(f"{raw} is not a date") from None
    return today + parse_duration(raw)


def _line(item: Item) -> str:
    owner = f" — @{item.owner}" if item.owner else " — no owner"
    due = f", due {item.due.isoformat()}" if item.due else ""
    done = "✅ " if item.done else ""
    return f"{done}{item.id}. [{item.severity}] #{item.incident} {item.text}{owner}{due}"


@commands.add(
    "action",
    usage="/action add [#N] <text> [@owner] [YYYY-MM-DD|3d]  |  /action list [open|all]  |  "
    "/action done <id>",
    summary="the incident's action items: add one, list them (most urgent first), mark done",
    parse=parse_action,
    role=lambda args: None if args.verb == "list" else "responder",
    role_note="responder, to add or close one",
)
async def action(ctx: Context, args: ActionArgs) -> Reply:
    items = ctx.services.action_items
    if args.verb == "list":
        found = await ctx.run(items.list, open_only=args.which == "open")
        if not found:
            return Reply.plain(f"No {'open ' if args.which == 'open' else ''}action items.")
        return Reply.plain("\n".join(_line(i) for i in found))
    if args.verb == "done":
        item = await ctx.run(items.done, item_id=args.item, by=ctx.actor, source=ctx.source)
        return Reply.plain(f"Done: {_line(item)}")
    owner = None
    if args.owner is not None:
        owner = ctx.services.directory.find(args.owner)
        if owner is None:
            raise InvalidInput(ctx.services.directory.not_configured(args.owner))
    due = _due(args.due, ctx.services.clock.now(), ctx)
    number = await ctx.incident(args.number, reading=True)
    item = await ctx.run(
        items.add,
        number=number,
        text=args.text,
        owner=owner,
        due=due,
        by=ctx.actor,
        source=ctx.source,
    )
    return Reply.plain(f"Action item added: {_line(item)}")


@dataclass(frozen=True)
class PostmortemArgs:
    publish: bool
    number: int | None


def parse_postmortem(a: Args) -> PostmortemArgs:
    publish = a.peek() == "publish"
    if publish:
        a.word("publish")
    number = a.incident()
    a.end()
    return PostmortemArgs(publish, number)


@commands.add(
    "postmortem",
    usage="/postmortem [#N]  |  /postmortem publish [#N]",
    summary="draft the postmortem from the record (a Markdown file); publish: post it to "
    "the stakeholders channel",
    parse=parse_postmortem,
    role="responder",
)
async def postmortem(ctx: Context, args: PostmortemArgs) -> Reply:
    number = await ctx.incident(args.number, reading=True)
    service = ctx.services.postmortems
    if args.publish:
        done = await ctx.run(service.publish, number=number, by=ctx.actor, source=ctx.source)
        return Reply.plain(
            f"Postmortem of #{number} (draft {done.version}) published to the stakeholders."
        )
    done = await ctx.run(service.draft, number=number, by=ctx.actor, source=ctx.source)
    where = f"#incident-{number}"
    return Reply.plain(
        f"Postmortem of #{number}, draft {done.version}: {done.name} posted in {where}. "
        f"Fill in the review's sections, then /postmortem publish #{number}."
    )
