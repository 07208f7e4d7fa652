"""The runbook's monthly metrics (its "Incident Metrics"): /report [YYYY-MM]."""

from __future__ import annotations

from dataclasses import dataclass

from bot.domain.incident import InvalidInput
from bot.messages import Reply
from bot.report import check_month
from bot.router import Args, CommandList, Context, UsageError

commands = CommandList()


@dataclass(frozen=True)
class ReportArgs:
    month: str | None = None


def parse_report(a: Args) -> ReportArgs:
    month = a.word("the month") if a.peek() else None
    a.end()
    if month is not None:
        try:
            check_month(month)
        except InvalidInput as exc:
            raise UsageError(str(exc)) from None
    return ReportArgs(month)


@commands.add(
    "report",
    usage="/report [YYYY-MM]",
    summary="a month's incident metrics against the runbook's targets, with a chart "
    "(default: this month so far)",
    parse=parse_report,
)
async def report(ctx: Context, args: ReportArgs) -> Reply:
    # The chart is rendered on the store's thread with the rest of the work (CPU, not
    # the event loop's), and posted to this incident's room, else to #incidents.
    done = await ctx.run(
        ctx.services.reports.post,
        month=args.month,
        room_incident=ctx.room_incident,
        by=ctx.actor,
        source=ctx.source,
    )
    return Reply(template="report", data=done.data())
