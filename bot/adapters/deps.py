"""What a chat adapter is given by the composition root (bot/app.py), and nothing more:
the platform's settings, the router to hand messages to, the people, the renderer for
answers, the room store, and whether this replica leads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.logs import Secrets
    from bot.people import Directory
    from bot.render import Renderer
    from bot.rooms import Rooms
    from bot.router import Router
    from bot.settings import Config, Env


@dataclass(frozen=True)
class ChatDeps:
    env: Env
    config: Config
    router: Router
    directory: Directory
    renderer: Renderer
    rooms: Rooms
    # This replica does the leader's work (polling a platform, for one): without
    # leadership (one process, tests) it does.
    leading: Callable[[], bool]
    # What the logs never show: an adapter adds the secrets it makes up itself.
    secrets: Secrets
