"""Root-cause categories: the runbook's "Common Incident Patterns", or ``other``.

An incident's category is matched from its root-cause text when it is resolved
("OOM", "out of memory" → Driver OOM) and can be set with ``/category``; repeat
incidents are those of the same category (never ``other``) within 30 days.
"""

from __future__ import annotations

import re
from typing import Any

from bot.domain.incident import InvalidInput

# key → the runbook's name, in the order the text is matched (the first match wins:
# an OOM is reported as such even when the text also says the load was high).
CATEGORIES: dict[str, str] = {
    "driver-oom": "Driver OOM",
    "executor-loss": "Executor Loss",
    "network-timeout": "Network Timeout",
    "storage-issue": "Storage Issue",
    "high-load": "High Load",
    "other": "Other",
}
_MATCH: dict[str, re.Pattern[str]] = {
    "driver-oom": re.compile(
        r"\boom(killed)?\b|out of memory|outofmemory|java heap|heap space|gc overhead|"
        r"memory limit",
        re.IGNORECASE,
    ),
    "executor-loss": re.compile(
        r"executors? (were |was )?(lost|loss|killed|removed|died|evicted|preempted)|"
        r"lost executors?|executor loss|nodes?( pool)?( \w+)? (lost|died|drained|exhausted)|"
        r"spot (instance|node)s? (reclaimed|interrupted)|preempt",
        re.IGNORECASE,
    ),
    "network-timeout": re.compile(
        r"connection (refused|reset|timed out)|timed? ?out|network|dns|no route to host|"
        r"unreachable|network ?policy",
        re.IGNORECASE,
    ),
    "storage-issue": re.compile(
        r"disk|storage|volume|\bpvc\b|no space left|read-only file ?system|"
        r"(can ?not|can't|unable to) (read|write)|\bs3\b|i/o error|quota",
        re.IGNORECASE,
    ),
    "high-load": re.compile(
        r"high load|\bcpu\b|overload|saturat|throttl|backlog|too many (jobs|requests)|"
        r"slow jobs|under-?provisioned|right-?siz",
        re.IGNORECASE,
    ),
}
_WORDS = re.compile(r"[^a-z0-9]+")


def categorize(text: str) -> str:
    """The category a root-cause text describes, else ``other``."""
    for key, pattern in _MATCH.items():
        if pattern.search(text):
            return key
    return "other"


def categorize_seen(title: str, alertname: str | None) -> str:
    """The category of what an alert saw, for a root cause that names none: its
    alertname split into words (``SparkDriverOOMKilled`` → "Spark Driver OOM Killed"),
    then the incident's title (an alert's summary)."""
    if alertname:
        words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", alertname)
        found = categorize(words)
        if found != "other":
            return found
    return categorize(title)


def resolved_category(root_cause: str, title: str, details: dict[str, Any]) -> str:
    """An incident's category at resolution: from its root cause; when that names none,
    what ``/health`` matched in its room, then its alerts' runbook ``pattern`` label,
    their alertname, its title."""
    found = categorize(root_cause)
    if found != "other":
        return found
    labels = details.get("labels") or {}
    pattern = categorize(str(labels.get("pattern") or ""))
    if pattern != "other":
        return details.get("seen_category") or pattern
    return details.get("seen_category") or categorize_seen(title, labels.get("alertname"))


def parse_category(text: str) -> str:
    """``driver-oom``, ``Driver OOM``, ``driver_oom``, ``oom`` … → the category's key."""
    words = _WORDS.sub("-", text.strip().lower()).strip("-")
    aliases = {"oom": "driver-oom", "network": "network-timeout", "storage": "storage-issue"}
    key = aliases.get(words, words)
    if key not in CATEGORIES:
        raise InvalidInput(f"{text!r} is not a category; one of: {', '.join(CATEGORIES)}")
    return key
