"""The command handlers: parse, call a service, choose the reply's template."""

from __future__ import annotations

from typing import Any

from bot.router import Command


def all_commands() -> list[Command[Any]]:
    """Every command the router serves (and the Slack manifest and Telegram menu list)."""
    from handlers import (
        actions,
        aftermath,
        alerting,
        diagnose,
        incident,
        meta,
        oncall,
        pir,
        report,
    )

    return [
        *incident.commands.items,
        *oncall.commands.items,
        *diagnose.commands.items,
        *actions.commands.items,
        *alerting.commands.items,
        *aftermath.commands.items,
        *pir.commands.items,
        *report.commands.items,
        *meta.commands.items,
    ]
