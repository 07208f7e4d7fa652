"""Who is who: configured people, their roles, their ids per platform, mentions."""

from __future__ import annotations

import html
from dataclasses import dataclass

from bot.settings import PERMISSIONS, Config


@dataclass(frozen=True)
class Actor:
    """The person behind a command. ``key`` is the configured name (``alice``) or,
    for someone not in the configuration, ``<platform>:<id>``."""

    key: str
    name: str
    roles: frozenset[str]
    known: bool

    def has(self, role: str | None) -> bool:
        return role is None or role in self.roles or "admin" in self.roles

    @property
    def handle(self) -> str:
        return self.key if self.known else self.name


class Directory:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._by_platform: dict[tuple[str, str], str] = {}
        for key, person in config.people.items():
            if person.slack:
                self._by_platform[("slack", person.slack)] = key
            if person.telegram is not None:
                self._by_platform[("telegram", str(person.telegram))] = key

    def actor(self, platform: str, user_id: str, user_name: str = "") -> Actor:
        key = user_id if platform == "console" else self._by_platform.get((platform, user_id))
        if key is not None and key in self.config.people:
            return self.person_actor(key)
        roles = {self.config.default_role} if self.config.default_role else set()
        display = user_name or user_id
        return Actor(key=f"{platform}:{user_id}", name=display, roles=frozenset(roles), known=False)

    def person_actor(self, key: str) -> Actor:
        person = self.config.people[key]
        roles = set(person.roles)
        if self.config.default_role:
            roles.add(self.config.default_role)
        return Actor(key=key, name=person.name or key, roles=frozenset(roles), known=True)

    @staticmethod
    def operator_console() -> Actor:
        """The person at the bot's own terminal: every role."""
        return Actor(key="console", name="console", roles=frozenset(PERMISSIONS), known=False)

    def name(self, key: str) -> str:
        person = self.config.people.get(key)
        return (person.name or key) if person else key.partition(":")[2] or key

    def platform_id(self, key: str, platform: str) -> str | None:
        """The person's id on a platform, or None when there is none."""
        if key.startswith(f"{platform}:"):
            return key.partition(":")[2]
        person = self.config.people.get(key)
        if person is None:
            return None
        if platform == "slack":
            return person.slack
        if platform == "telegram":
            return None if person.telegram is None else str(person.telegram)
        return None

    def mention(self, platform: str, key: str) -> str:
        """Markup that notifies the person on that platform (already escaped)."""
        pid = self.platform_id(key, platform)
        if platform == "slack" and pid:
            return f"<@{pid}>"
        if platform == "telegram" and pid and pid.lstrip("-").isdigit():
            return f'<a href="tg://user?id={pid}">{html.escape(self.name(key))}</a>'
        shown = key if key in self.config.people else self.name(key)
        if platform == "telegram":
            return html.escape(f"@{shown}")
        if platform == "slack":
            return "@" + shown.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return f"@{shown}"

    def find(self, written: str) -> str | None:
        """A person as a command wrote them (``alice``, or a Slack mention's id) → key."""
        if written.startswith("slack-id:"):
            return self._by_platform.get(("slack", written.partition(":")[2]))
        return written if written in self.config.people else None

    def not_configured(self, written: str) -> str:
        """What to tell someone who named a person PIRA does not know."""
        name = written.partition(":")[2] if written.startswith("slack-id:") else written
        known = sorted(self.config.people)
        if not known:
            return (
                f"@{name} is not a configured person, and nobody is configured yet: add "
                "people under `people:` in the configuration (e.g. `alice: {name: Alice, "
                "slack: U0ALICE, roles: [responder]}`) and restart PIRA"
            )
        shown = ", ".join(f"@{k}" for k in known[:20]) + (", …" if len(known) > 20 else "")
        return f"@{name} is not a configured person (known: {shown})"

    def resolve_role(self, role: str) -> str | None:
        """A role of the chain (team_lead, …) or a person key → a person key."""
        if role in self.config.people:
            return role
        return self.config.roles.get(role)
