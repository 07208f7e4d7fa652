"""An App wired to the fake Kubernetes API (through a kubeconfig), for the cluster commands'
tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.app import App
from bot.clock import FakeClock
from bot.messages import Message, Reply, Room
from bot.settings import Config
from tests.fakes.kube_api import FakeKubeApi

PEOPLE = {
    "alice": {"name": "Alice", "roles": ["responder", "operator"]},
    "bob": {"name": "Bob", "roles": ["responder"]},
    "carol": {"name": "Carol", "roles": ["operator"]},
    "root": {"name": "Root", "roles": ["admin"]},
}


def cluster_config(**cluster: Any) -> Config:
    return Config.model_validate({"people": PEOPLE, "cluster": cluster})


def build_app(
    make_app: Callable[..., App],
    kube_api: FakeKubeApi | None,
    tmp_path: Path,
    config: Config | None = None,
    clock: FakeClock | None = None,
    **env: str,
) -> App:
    if kube_api is not None:
        env.setdefault("KUBECONFIG", str(kube_api.write_kubeconfig(tmp_path / "kubeconfig")))
    return make_app(config=config or cluster_config(), clock=clock, env=env)


@dataclass
class Chat:
    """Send commands to an App as configured people, in a room (default: the console)."""

    app: App
    room: Room = field(default_factory=lambda: Room("console", "tty"))

    async def say(self, person: str, text: str, room: Room | None = None) -> Reply:
        actor = self.app.directory.person_actor(person)
        message = Message(platform="console", user_id=person, text=text, room=room or self.room)
        return await self.app.router.handle(message, actor)

    def text(self, reply: Reply, platform: str = "console") -> str:
        return self.app.renderer.render(platform, reply.template, reply.data)

    async def confirmed(self, person: str, text: str) -> Reply:
        """Ask, then confirm as the same person; the reply of the action."""
        prompt = await self.say(person, text)
        assert prompt.ok, self.text(prompt)
        return await self.say(person, prompt.buttons[0].command)
