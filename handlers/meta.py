"""/help and /escalation: what PIRA can do and which tables are in force."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.contacts import Verification
from bot.domain.durations import format_duration
from bot.domain.incident import InvalidInput
from bot.handoff_test import TestAck
from bot.messages import Reply
from bot.router import Args, CommandList, Context
from bot.settings import Config

commands = CommandList()


@dataclass(frozen=True)
class HelpArgs:
    command: str | None


def parse_help(a: Args) -> HelpArgs:
    word = a.word("the command").lstrip("/").lower() if a.peek() else None
    a.end()
    return HelpArgs(word)


@commands.add(
    "help", usage="/help [command]", summary="this list, or one command's usage", parse=parse_help
)
async def help_(ctx: Context, args: HelpArgs) -> Reply:
    table = ctx.commands
    if args.command is not None:
        command = table.get(args.command)
        if command is None:
            raise InvalidInput(f"there is no /{args.command}")
        return Reply(
            template="help",
            data={
                "command": {
                    "usage": command.usage,
                    "summary": command.summary,
                    "role": command.role_text,
                }
            },
        )
    rows = [{"usage": c.usage, "summary": c.summary} for c in table.values()]
    rows.append(
        {
            "usage": "/confirm <code>, /cancel <code>",
            "summary": "confirm or cancel a destructive action (60 s)",
        }
    )
    return Reply(template="help", data={"command": None, "commands": rows})


def tables(config: Config) -> dict[str, Any]:
    """The severity and escalation tables in force, as the escalation template shows them."""
    severities = []
    for key, p in config.severities.items():
        severities.append(
            {
                "key": key,
                "name": p.name,
                "page_after": "never" if p.page_after is None else format_duration(p.page_after),
                "respond_within": format_duration(p.respond_within),
                "update_every": format_duration(p.update_every),
                "escalate": ", ".join(f"{format_duration(t.after)} → {t.to}" for t in p.escalate),
            }
        )
    chain = []
    for step in config.oncall.chain:
        who = config.roles.get(step.role)
        if step.role in ("primary", "secondary") and config.oncall.rotation is not None:
            who = "rotation"
        chain.append(
            {
                "role": step.role,
                "who": who,
                "respond_within": ", ".join(
                    f"{s} {format_duration(d)}" for s, d in step.respond_within.items()
                ),
            }
        )
    return {"severities": severities, "chain": chain}


@dataclass(frozen=True)
class EscalationArgs:
    sub: str | None  # None (the tables), "verify" or "ack"


def parse_escalation(a: Args) -> EscalationArgs:
    sub = a.choice("the sub-command", ("verify", "ack")) if a.peek() else None
    a.end()
    return EscalationArgs(sub)


@commands.add(
    "escalation",
    usage="/escalation [verify | ack]",
    summary="the severity and escalation tables in force; verify their targets; "
    "ack your handoff test page",
    parse=parse_escalation,
)
async def escalation(ctx: Context, args: EscalationArgs) -> Reply:
    oncall = ctx.services.oncall
    if args.sub == "verify":
        found = await ctx.run(oncall.verify)
        return verification_reply(await oncall.confirm_contacts(found))
    if args.sub == "ack":
        if not ctx.actor.known:  # only a configured person is sent a test page
            return test_ack_reply(TestAck("none"))
        return test_ack_reply(await ctx.run(oncall.ack_test_page, ctx.actor.key))
    return Reply(template="escalation", data=tables(ctx.services.config))


def test_ack_reply(ack: TestAck) -> Reply:
    if ack.status == "none":
        return Reply.error("No handoff test page was sent to you.")
    if ack.status == "late":
        return Reply.plain(
            "✅ Acknowledged, after the deadline: the team lead was told already; "
            "#incidents hears that pages reach you."
        )
    return Reply.plain("✅ Test page acknowledged: pages reach you. Have a quiet shift.")


def verification_reply(found: Verification) -> Reply:
    def listed(lines: list[str]) -> str:
        return "\n".join(f"- {line}" for line in lines)

    parts: list[str] = []
    if found.gaps:
        parts.append("❌ Escalation targets with gaps:\n" + listed(found.gaps))
    if found.unchecked:
        parts.append("⚠️ Could not check with the platform:\n" + listed(found.unchecked))
    if found.reachable:
        head = "Reachable:" if parts else "✅ Every escalation target is reachable:"
        parts.append(f"{head}\n{listed(found.reachable)}")
    elif not parts:
        parts.append("✅ Every escalation target is reachable.")
    parts.extend(found.notes)
    return Reply.plain("\n".join(parts), ok=not found.gaps)
