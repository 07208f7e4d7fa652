"""Cluster commands (issue 5)."""

from __future__ import annotations

from bot.router import CommandList

commands = CommandList()
