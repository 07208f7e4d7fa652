"""The console on a terminal and in a pipe: how posts look, the prompt, the banner.

Posts are rendered for the console as the runbook writes them (Markdown: ``**bold**``,
``*italic*``); here they are shown for where they go:

- ``markdown``: as rendered (the tests' in-process driver reads it so);
- ``plain`` (stdin or stdout not a terminal: a pipe, a script): the Markdown
  emphasis removed, no colour, no prompt;
- ``terminal``: bold and italic, the tag in colour (rich), a prompt with line
  editing, history and completion (prompt_toolkit); posts that arrive while a line is
  being typed are printed above it, the line kept.

Whatever the style, each post starts with its destination tag, ``[#incidents]``,
``[#incident-3]``, ``[DM @alice]`` — the first thing on its first line (a contract).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import IO

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from rich.console import Console
from rich.text import Text

from bot.domain.severity import SEVERITIES

_BOLD = re.compile(r"\*\*(.+?)\*\*", re.DOTALL)
_ITALIC = re.compile(r"(?<![*\w])\*(?!\s)([^*\n]+?)\*(?![*\w])")
_TAG_STYLES = {"reply": "bold green", "DM": "bold magenta"}

STYLES = ("markdown", "plain", "terminal")


def plain(text: str) -> str:
    """Markdown emphasis removed: ``**Status:** ok`` → ``Status: ok``."""
    return _ITALIC.sub(r"\1", _BOLD.sub(r"\1", text))


def terminal_text(tag: str, text: str) -> Text:
    """The post for a terminal: its tag in colour, then the text with its emphasis."""
    style = _TAG_STYLES.get(tag.split(" ", 1)[0], "bold cyan")
    out = Text()
    out.append(f"[{tag}]", style=style)
    out.append(" ")
    position = 0
    for m in _BOLD.finditer(text):
        _italics(out, text[position : m.start()])
        out.append(m.group(1), style="bold")
        position = m.end()
    _italics(out, text[position:])
    return out


def _italics(out: Text, text: str) -> None:
    position = 0
    for m in _ITALIC.finditer(text):
        out.append(text[position : m.start()])
        out.append(m.group(1), style="italic")
        position = m.end()
    out.append(text[position:])


class Screen:
    """Writes posts in one of :data:`STYLES`; one write a post (never interleaved)."""

    def __init__(self, out: IO[str] | None, style: str = "markdown") -> None:
        if style not in STYLES:
            raise ValueError(style)
        self.style = style
        self._out = out
        # The terminal's console follows sys.stdout at each print: under the prompt it
        # is prompt_toolkit's proxy, which prints above the line being typed.
        self._rich = Console(
            file=out, force_terminal=True, highlight=False, soft_wrap=True, emoji=False
        )

    def write(self, tag: str, text: str, out: IO[str]) -> None:
        if self.style == "terminal":
            self._rich.file = out
            self._rich.print(terminal_text(tag, text))
            self._rich.print()
            return
        shown = plain(text) if self.style == "plain" else text
        out.write(f"[{tag}] {shown}\n\n")
        out.flush()


class Commands(Completer):
    """Completion of the first word (a command), then severities, people (``@``) and
    open incidents (``#N``); ``names`` and ``numbers`` are asked at each completion."""

    def __init__(
        self,
        commands: Iterable[str],
        people: Iterable[str],
        numbers: Callable[[], Iterable[int]],
    ) -> None:
        self.commands = sorted(f"/{c}" for c in commands)
        self.people = sorted(f"@{p}" for p in people)
        self.numbers = numbers

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterator[Completion]:
        before = document.text_before_cursor
        word = before.split(" ")[-1] if before else ""
        if " " not in before.lstrip():
            choices: Iterable[str] = self.commands
        else:
            choices = [
                *(s.lower() for s in SEVERITIES),
                *self.people,
                *(f"#{n}" for n in self.numbers()),
            ]
        for choice in choices:
            if choice.startswith(word) and choice != word:
                yield Completion(choice, start_position=-len(word))


def banner(
    *,
    database: str,
    config: str | None,
    actor: str,
    roles: Iterable[str],
    log_file: str,
) -> str:
    """What the console says before its first prompt."""
    held = ", ".join(roles) or "no role: read-only commands"
    configuration = (
        config if config else "none: the runbook's defaults (pira config init writes a file)"
    )
    return "\n".join(
        (
            "PIRA — the incident-response runbook of a Spark platform, in a console.",
            f"  database:       {database}",
            f"  configuration:  {configuration}",
            f"  you act as:     {actor} ({held})",
            f"  log:            {log_file} (warnings and errors are shown here too)",
            "Type /help for the commands; Tab completes; Ctrl-D quits.",
            "",
        )
    )
