"""Alertmanager webhook → incidents (issue 6)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.app import App
    from bot.web import WebServer


class AlertIngest:
    def __init__(self, app: App) -> None:
        self.app = app

    def register(self, web: WebServer) -> None:
        """Add ``POST /alertmanager`` to the bot's HTTP server."""
