"""Looking into and acting on the Spark cluster (issue 5): /health, patterns, actions."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.app import App


class Diagnostics:
    def __init__(self, app: App) -> None:
        self.app = app
