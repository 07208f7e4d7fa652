"""/pir [#N] [when]: schedule (or move) a resolved incident's post-incident review (the
runbook's Phase 4): on a business day within 24-48 h of the resolution unless a time is
given; the invite is posted in the incident room, a reminder comes before it."""

from __future__ import annotations

from dataclasses import dataclass

from bot.domain.business import local_text
from bot.domain.durations import format_duration
from bot.messages import Reply
from bot.reviews import WINDOW_TEXT
from bot.router import Args, CommandList, Context

commands = CommandList()


@dataclass(frozen=True)
class PirArgs:
    number: int | None = None
    when: str | None = None


def parse_pir(a: Args) -> PirArgs:
    number = a.incident()
    return PirArgs(number, a.optional_text())


@commands.add(
    "pir",
    usage="/pir [#N] [14:00 | thursday | tomorrow 10:00 | 2026-12-03 14:00]",
    summary="schedule the post-incident review (a business day 24-48 h after resolution), "
    ".ics invite, reminder",
    parse=parse_pir,
    role="responder",
)
async def pir(ctx: Context, args: PirArgs) -> Reply:
    services = ctx.services
    number = await ctx.incident(args.number, reading=True)
    review = await ctx.run(
        services.reviews.schedule, number=number, when=args.when, by=ctx.actor, source=ctx.source
    )
    config = services.config
    verb = "moved to" if review.rescheduled else "scheduled for"
    text = f"Post-incident review of #{number} {verb} {local_text(review.at, config.tz)}"
    if review.outside_window:
        text += f" ({WINDOW_TEXT}: no business day fell within it)"
    where = f"#incident-{number}" if review.platforms else "nowhere (no chat platform reaches it)"
    invited = ", ".join(f"@{p}" for p in review.invitees) or "nobody"
    reminder = format_duration(config.pir.remind_before)
    return Reply.plain(
        f"{text}. Invite posted in {where} for {invited}; a reminder {reminder} before."
    )
