"""Typed command arguments: a cursor over a command's text that handlers' parsers read
word by word (``a.incident()``, ``a.severity()``, ``a.integer(...)``). Bad input raises
:class:`UsageError`, which the router answers with the command's usage line."""

from __future__ import annotations

import re
from collections.abc import Iterable

from bot.domain.incident import InvalidInput, parse_severity


class UsageError(InvalidInput):
    """The arguments do not parse; the router adds the command's usage line."""


class Args:
    """A cursor over a command's argument text, for declaring typed parsers."""

    def __init__(self, text: str) -> None:
        self.rest = text.strip()

    def incident(self) -> int | None:
        """An optional leading ``#N``."""
        m = re.match(r"#(\d{1,9})\b\s*", self.rest)
        if m is None:
            if re.match(r"#\S", self.rest):
                raise UsageError(f"{self.rest.split()[0]!r} is not an incident number (#N)")
            return None
        self.rest = self.rest[m.end() :]
        return int(m.group(1))

    def peek(self) -> str | None:
        return self.rest.split(None, 1)[0] if self.rest else None

    def word(self, what: str) -> str:
        """The next word; words are separated by any white space (tab, no-break space)."""
        if not self.rest:
            raise UsageError(f"{what} is missing")
        head, *tail = self.rest.split(None, 1)
        self.rest = tail[0].strip() if tail else ""
        return head

    def severity(self) -> str:
        return parse_severity(self.word("the severity (p0-p3)"))

    def choice(self, what: str, choices: Iterable[str]) -> str:
        options = tuple(choices)
        value = self.word(what).lower()
        if value not in options:
            raise UsageError(f"{value!r} is not one of: {', '.join(options)}")
        return value

    def integer(self, what: str, *, low: int | None = None, high: int | None = None) -> int:
        raw = self.word(what)
        if not re.fullmatch(r"[+-]?\d{1,9}", raw):
            raise UsageError(f"{what} must be a whole number, not {raw!r}")
        value = int(raw)
        if low is not None and value < low:
            raise UsageError(f"{what} must be at least {low}")
        if high is not None and value > high:
            raise UsageError(f"{what} must be at most {high}")
        return value

    def person(self, what: str = "the person") -> str:
        raw = self.word(what)
        m = re.fullmatch(r"<@([A-Z0-9]+)(?:\|[^>]*)?>", raw)  # a Slack mention
        if m:
            return "slack-id:" + m.group(1)
        if not raw.startswith("@") or len(raw) < 2:
            raise UsageError(f"{what} must be written @name, not {raw!r}")
        return raw[1:]

    def text(self, what: str) -> str:
        if not self.rest:
            raise UsageError(f"{what} is missing")
        value, self.rest = self.rest, ""
        return value

    def optional_text(self) -> str | None:
        value, self.rest = self.rest, ""
        return value or None

    def end(self) -> None:
        if self.rest:
            raise UsageError(f"unexpected {self.rest[:40]!r}")
