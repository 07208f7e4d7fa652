"""Whether the people the escalation can page are really reachable: ``/escalation
verify`` checks the configuration (bot/oncall.py), then asks every running platform
about every person it has an id for (Slack ``users.info``, Telegram ``getChat``: a
Telegram user who never opened the bot cannot be messaged).

Each question has a timeout and at most ``CONCURRENCY`` are in flight: a platform that
does not answer is reported as "could not check", never waited for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.logs import scrub_tokens
from bot.messages import Destination
from bot.outbox import CheckFailed, Contacts

log = logging.getLogger("pira.contacts")

CONCURRENCY = 8
# A platform that prints every page where it runs: everyone is reachable there.
EVERYONE = {"console": "console: everyone is reachable (it prints every page)"}


@dataclass(frozen=True)
class Verification:
    """What ``/escalation verify`` found: targets that cannot be reached, and those
    that can (each ``"@who (where): how"``); ``unchecked``: what a platform could not
    tell; ``people``: who the configuration can page (person → where they are named)."""

    gaps: list[str]
    reachable: list[str]
    unchecked: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    people: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Answer:
    person: str
    platform: str
    reason: str | None  # None: reachable
    checked: bool = True


def _label(platform: str) -> str:
    return platform.capitalize()


async def _ask(
    platform: Contacts, person: str, timeout: float, slots: asyncio.Semaphore
) -> _Answer:
    async with slots:
        try:
            reason = await asyncio.wait_for(platform.unreachable(person), timeout)
        except TimeoutError:
            return _Answer(person, platform.name, "could not check: timeout", checked=False)
        except CheckFailed as exc:
            return _Answer(person, platform.name, f"could not check: {exc}", checked=False)
        except Exception as exc:  # a network error, an unexpected answer: said, not raised
            brief = scrub_tokens(f"{type(exc).__name__}: {exc}")[:200]
            log.warning(
                "contact check failed",
                extra={"platform": platform.name, "person": person, "error": brief},
            )
            return _Answer(person, platform.name, f"could not check: {brief}", checked=False)
        return _Answer(person, platform.name, reason)


async def confirm(
    found: Verification,
    platforms: Sequence[Contacts],
    *,
    timeout: float,
    concurrency: int = CONCURRENCY,
) -> Verification:
    """``found`` with the platforms' answers about its reachable people: a person a
    platform cannot message is a gap (with the platform's reason), one it could not
    ask about is unchecked; the others stay reachable, on the platforms that said so."""
    slots = asyncio.Semaphore(concurrency)
    asked = [
        (person, platform)
        for person in found.people
        for platform in platforms
        if platform.name not in EVERYONE and platform.reaches(Destination.dm(person))
    ]
    answers = await asyncio.gather(*(_ask(p, person, timeout, slots) for person, p in asked))
    by_person: dict[str, list[_Answer]] = {}
    for answer in answers:
        by_person.setdefault(answer.person, []).append(answer)
    gaps = list(found.gaps)
    unchecked = list(found.unchecked)
    reachable = [r for r in found.reachable if not _about(r, by_person)]
    for person, where in found.people.items():
        mine = by_person.get(person)
        if not mine:
            continue
        head = f"@{person} ({where})"
        good = [a.platform for a in mine if a.reason is None]
        for a in mine:
            if a.reason is not None:
                line = f"{head}: {_label(a.platform)}: {a.reason}"
                (gaps if a.checked else unchecked).append(line)
        if good:
            reachable.append(f"{head}: {', '.join(good)} (the platform confirms)")
    notes = [*found.notes, *(EVERYONE[p.name] for p in platforms if p.name in EVERYONE)]
    return Verification(
        gaps=gaps, reachable=reachable, unchecked=unchecked, notes=notes, people=found.people
    )


def _about(line: str, asked: dict[str, list[_Answer]]) -> bool:
    """Whether a configuration-only ``reachable`` line is about a person the platforms
    answered for (their line is replaced by the platforms' answers)."""
    return any(line.startswith(f"@{person} (") for person in asked)
