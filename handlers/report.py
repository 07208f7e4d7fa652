"""(being written)"""

from __future__ import annotations

from bot.router import CommandList

commands = CommandList()
