"""/help and /escalation: what PIRA can do and which tables are in force."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.domain.durations import format_duration
from bot.domain.incident import InvalidInput
from bot.messages import Reply
from bot.oncall import Verification
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
    verify: bool


def parse_escalation(a: Args) -> EscalationArgs:
    verify = a.choice("the sub-command", ("verify",)) == "verify" if a.peek() else False
    a.end()
    return EscalationArgs(verify)


@commands.add(
    "escalation",
    usage="/escalation [verify]",
    summary="the severity and escalation tables in force; verify their targets",
    parse=parse_escalation,
)
async def escalation(ctx: Context, args: EscalationArgs) -> Reply:
    if args.verify:
        return verification_reply(await ctx.run(ctx.services.oncall.verify))
    return Reply(template="escalation", data=tables(ctx.services.config))


def verification_reply(found: Verification) -> Reply:
    reachable = "\n".join(f"- {c}" for c in found.reachable)
    if found.gaps:
        text = "❌ Escalation targets with gaps:\n" + "\n".join(f"- {g}" for g in found.gaps)
        if found.reachable:
            text += "\nReachable:\n" + reachable
        return Reply.plain(text, ok=False)
    return Reply.plain("✅ Every escalation target is reachable:\n" + reachable)
