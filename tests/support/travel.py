"""Moving PIRA's clock for a whole test run, to prove that no test depends on the date.

``PIRA_TEST_TRAVEL=2026-12-06T23:59:30+00:00 pytest -m clock`` starts the run at that
moment (time-machine, ticking: time flows on from there). Processes the tests start
(``pira console``, ``pira run``) travel by the same offset: they are launched through
this module (``pira_command``), which moves their clock before the CLI runs.

Only PIRA's clock moves: Prometheus, Alertmanager and PostgreSQL keep the real time,
so the tests that depend on PIRA's clock are the ones marked ``clock``.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta

ENV = "PIRA_TEST_TRAVEL"
_offset: timedelta | None = None


def destination() -> datetime | None:
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    when = datetime.fromisoformat(raw)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def start() -> datetime | None:
    """Travel this process (pytest's) to ``PIRA_TEST_TRAVEL``; remember the offset."""
    global _offset
    when = destination()
    if when is None:
        return None
    import time_machine

    _offset = when - datetime.now(UTC)
    time_machine.travel(when, tick=True).start()
    return when


def traveling() -> bool:
    return _offset is not None


def rotation_from_today(*members: str, now: datetime | None = None) -> dict[str, object]:
    """A rotation whose first shift (``members[0]`` primary, ``members[1]`` secondary)
    began today at 00:00 UTC and lasts a week: who is on call, computed from now."""
    today = (now or datetime.now(UTC)).astimezone(UTC)
    weekday = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[today.weekday()]
    return {
        "members": list(members),
        "every": "7d",
        "handoff": f"{weekday} 00:00",
        "start": today.date().isoformat(),
    }


def pira_command(*args: str) -> list[str]:
    """The command line that runs ``pira <args>``, moved by the run's offset if any."""
    if _offset is None:
        return [sys.executable, "-m", "bot", *args]
    seconds = f"{_offset.total_seconds():.6f}"
    return [sys.executable, "-m", "tests.support.travel", seconds, *args]


def _main() -> None:
    import time_machine

    offset = timedelta(seconds=float(sys.argv[1]))
    time_machine.travel(datetime.now(UTC) + offset, tick=True).start()
    from bot.cli import main

    sys.exit(main(sys.argv[2:]))


if __name__ == "__main__":
    _main()
