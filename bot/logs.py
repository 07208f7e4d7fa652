"""Structured logs: one JSON object a line on stderr, secrets scrubbed."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_SURROGATE = re.compile("[\ud800-\udfff]")
_TOKENISH = re.compile(r"(xox[abpr]-[\w-]+|xapp-[\w-]+|\d{6,12}:[\w-]{30,}|Bearer\s+\S+)")


def scrub_tokens(text: str) -> str:
    """Anything shaped like a Slack or Telegram token or a bearer credential → ***."""
    return _TOKENISH.sub("***", text)


class Secrets:
    """The values this process must never log (its tokens and signing secrets): held
    by the log formatter that scrubs them, handed to whoever learns a new one."""

    def __init__(self) -> None:
        self._values: list[str] = []

    def add(self, value: str | None) -> None:
        if value and len(value) >= 4 and value not in self._values:
            self._values.append(value)

    def scrub(self, text: str) -> str:
        for secret in self._values:
            text = text.replace(secret, "***")
        return scrub_tokens(text)


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: Secrets) -> None:
        super().__init__()
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                event[key] = value
        if record.exc_info:
            # Kept on one line: the exception's type and message, and where it came from.
            exc = record.exc_info[1]
            event["error"] = f"{type(exc).__name__}: {exc}"
            tb = record.exc_info[2]
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            if tb is not None:
                event["at"] = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
        # Lone surrogates (bytes that were not UTF-8) would make the line unwritable.
        return _SURROGATE.sub(
            "\ufffd", self.secrets.scrub(json.dumps(event, default=str, ensure_ascii=False))
        )


class TerminalFormatter(logging.Formatter):
    """For a person at the console: ``pira: warning: <event> (key=value, …)``, one line,
    scrubbed like the JSON lines."""

    def __init__(self, secrets: Secrets) -> None:
        super().__init__()
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        extra = [
            f"{k}={v}"
            for k, v in record.__dict__.items()
            if k not in _STANDARD and not k.startswith("_")
        ]
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            extra.append(f"error={type(exc).__name__}: {exc}")
        line = f"pira: {record.levelname.lower()}: {record.getMessage()}"
        if extra:
            line += f" ({', '.join(extra)})"
        return _SURROGATE.sub("\ufffd", self.secrets.scrub(line.replace("\n", " ")))


def setup(
    level: str = "INFO", secrets: Secrets | None = None, *, log_file: Path | None = None
) -> Secrets:
    """JSON lines on stderr; returns the secrets its lines are scrubbed of. With
    ``log_file`` (the console): the JSON lines go to that file, and only warnings and
    errors reach the terminal, one readable line each."""
    secrets = secrets or Secrets()
    root = logging.getLogger()
    if log_file is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter(secrets))
        root.handlers[:] = [handler]
    else:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.setFormatter(JsonFormatter(secrets))
        to_terminal = logging.StreamHandler(sys.stderr)
        to_terminal.setLevel(logging.WARNING)
        to_terminal.setFormatter(TerminalFormatter(secrets))
        root.handlers[:] = [to_file, to_terminal]
    root.setLevel(level)
    # Libraries' chatter (every HTTP request, every scheduler wake-up) is not an event.
    for noisy in ("httpx", "apscheduler", "aiohttp.access", "alembic", "telegram", "slack_bolt"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return secrets
