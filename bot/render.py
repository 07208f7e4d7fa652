"""Jinja2 rendering per platform: console (the runbook's markdown as written),
Slack mrkdwn, Telegram HTML.

Templates in ``templates/`` are written once, in the runbook's markdown
(``**bold**``, ``*italic*``). Markup is translated per platform in the template
*source* when it is loaded, so it never touches user text; every value a
template prints is escaped for its platform by ``finalize``. A title such as
``<!channel>`` or ``<b>x</b>`` therefore reaches the chat as text.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup

from bot.domain.incident import clean, time_text

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
if not TEMPLATES.is_dir():  # installed as a package: templates shipped beside bot/
    TEMPLATES = Path(__file__).resolve().parent / "templates"

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![*\w])\*(?!\s)([^*\n]+?)\*(?![*\w])")


def _escape_console(text: str) -> str:
    return clean(text)


def _escape_slack(text: str) -> str:
    # Slack's own rule: only &, < and > are control characters in mrkdwn; escaping
    # them turns <!channel>, <@U123> and links in user text into plain text.
    return clean(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_telegram(text: str) -> str:
    return html.escape(clean(text), quote=False)


_MARKUP: dict[str, tuple[Callable[[str], str], str, str, str, str]] = {
    # platform: (escape, bold open, bold close, italic open, italic close)
    "console": (_escape_console, "**", "**", "*", "*"),
    "slack": (_escape_slack, "*", "*", "_", "_"),
    "telegram": (_escape_telegram, "<b>", "</b>", "<i>", "</i>"),
}


class _PlatformLoader(jinja2.FileSystemLoader):
    def __init__(self, path: Path, platform: str) -> None:
        super().__init__(str(path))
        self.platform = platform

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        _, b1, b2, i1, i2 = _MARKUP[self.platform]
        if self.platform != "console":
            source = _BOLD.sub(lambda m: f"\x00B{m.group(1)}\x00b", source)
            source = _ITALIC.sub(lambda m: f"{i1}{m.group(1)}{i2}", source)
            source = source.replace("\x00B", b1).replace("\x00b", b2)
        return source, filename, uptodate


class Renderer:
    """Three Jinja2 environments, built once. ``mention`` and ``time`` filters are
    platform-aware; all other values are escaped."""

    def __init__(
        self,
        *,
        tz: ZoneInfo,
        mention: Callable[[str, str], str],
        templates: Path = TEMPLATES,
    ) -> None:
        self.tz = tz
        self._mention = mention
        self._envs = {p: self._build(p, templates) for p in _MARKUP}

    def _build(self, platform: str, path: Path) -> jinja2.Environment:
        escape = _MARKUP[platform][0]

        def finalize(value: Any) -> Any:
            if isinstance(value, Markup):
                return str(value)
            if value is None:
                return ""
            return escape(str(value))

        env = jinja2.Environment(
            loader=_PlatformLoader(path, platform),
            autoescape=False,
            finalize=finalize,
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["time"] = self._time
        env.filters["mention"] = lambda person: (
            Markup(self._mention(platform, str(person))) if person else ""
        )
        return env

    def _time(self, value: str | datetime | None) -> str:
        if not value:
            return "—"
        when = datetime.fromisoformat(value) if isinstance(value, str) else value
        return time_text(when, self.tz)

    def render(self, platform: str, template: str, data: dict[str, Any]) -> str:
        # A notifier (ntfy, PagerDuty, a webhook) gets the plain text the console prints.
        env = self._envs.get(platform) or self._envs["console"]
        text = env.get_template(f"{template}.md.j2").render(**data)
        return re.sub(r"\n{3,}", "\n\n", text).strip()
