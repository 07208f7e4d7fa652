"""The Slack app manifest, built from the router's commands so it never drifts from them.

``pira slack manifest --url https://pira.example.com`` prints it;
``deploy/slack/manifest.yaml`` is its output for the example URL (a test checks).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import yaml

EXAMPLE_URL = "https://pira.example.com"
EVENTS_PATH = "/slack/events"

BOT_SCOPES = [
    "app_mentions:read",  # @pira /ack in a thread (slash commands cannot be used there)
    "channels:history",  # look for a post whose answer was lost before resending it
    "channels:join",  # join the incidents channel / a re-found incident-N
    "channels:manage",  # create incident-N and invite responders
    "channels:read",  # find incident-N again after a crash
    "chat:write",
    "chat:write.public",
    "commands",
    "files:write",  # postmortems, review invites and report charts, uploaded then shared
    "groups:history",
    "im:history",
    "im:write",  # direct-message pages
    "users:read",
]


def events_url(base: str) -> str:
    """``https://host[/prefix]`` (or the full events URL) → the events URL."""
    parts = urlsplit(base.strip())
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {base!r}")
    path = parts.path.rstrip("/")
    if not path.endswith(EVENTS_PATH):
        path += EVENTS_PATH
    return f"{parts.scheme}://{parts.netloc}{path}"


def _commands() -> list[tuple[str, str, str]]:
    from handlers import all_commands

    found = [(c.name, c.summary, c.usage) for c in all_commands()]
    found += [
        ("confirm", "Confirm a destructive action (the code the bot gave you)", "/confirm CODE"),
        ("cancel", "Cancel a destructive action", "/cancel CODE"),
        ("pira", "Any PIRA command, e.g. /pira status mitigating", "/pira <command> [args]"),
    ]
    return found


def manifest(base_url: str = EXAMPLE_URL, *, name: str = "PIRA") -> dict[str, Any]:
    url = events_url(base_url)
    commands = []
    for command, summary, usage in _commands():
        hint = usage.split(" ", 1)[1] if " " in usage else ""
        entry: dict[str, Any] = {
            "command": f"/{command}",
            "url": url,
            "description": (summary or command)[:100],
            "should_escape": True,  # mentions arrive as <@U…>, the router reads them
        }
        if hint:
            entry["usage_hint"] = hint[:100]
        commands.append(entry)
    return {
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": {
            "name": name,
            "description": "Incident response runbook bot: declare, page, escalate, resolve",
            "background_color": "#7a1f1f",
        },
        "features": {
            "bot_user": {"display_name": name.lower(), "always_online": True},
            "slash_commands": commands,
        },
        "oauth_config": {"scopes": {"bot": BOT_SCOPES}},
        "settings": {
            "event_subscriptions": {"request_url": url, "bot_events": ["app_mention"]},
            "interactivity": {"is_enabled": True, "request_url": url},
            "org_deploy_enabled": False,
            "socket_mode_enabled": False,
            "token_rotation_enabled": False,
        },
    }


def manifest_yaml(base_url: str = EXAMPLE_URL) -> str:
    head = (
        "# Slack app manifest for PIRA. Regenerate for your URL with:\n"
        "#   pira slack manifest --url https://your-host\n"
        "# For Socket Mode set settings.socket_mode_enabled: true (the URLs are then unused).\n"
    )
    return head + yaml.safe_dump(manifest(base_url), sort_keys=False, allow_unicode=True, width=100)
