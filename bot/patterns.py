"""The runbook's "Common Incident Patterns" as data, and the severity suggestion.

Pure functions over :class:`Facts` (what /health found): no I/O here, so every
rule is unit-tested on its own. A fact that could not be read is ``None`` and
never counts as evidence either way; the caller lists it as "not checked".
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.domain.severity import SEVERITIES
from bot.integrations.kube import (
    ClaimInfo,
    DeploymentStatus,
    EventInfo,
    ExecutorScale,
    LogLine,
    NodeInfo,
    PodInfo,
)

CPU_HIGH = 0.9  # the runbook's "CPU > 90%"
# Log lines that say the network failed (the runbook's "Connection refused errors").
NETWORK_RE = re.compile(
    r"connection refused|connection reset|connect(ion)? timed out|read timed out|"
    r"no route to host|unknownhostexception|network is unreachable",
    re.IGNORECASE,
)
# Log lines that say data cannot be read or written (the runbook's "Storage Issue").
STORAGE_RE = re.compile(
    r"no space left on device|read-only file system|input/output error|disk quota exceeded|"
    r"failed to mount|filesystemexception|(can ?not|can't|unable to) (read|write)",
    re.IGNORECASE,
)


@dataclass
class Facts:
    """What the cluster and Prometheus said; ``None`` = unknown (no answer / not configured)."""

    pods: list[PodInfo] | None = None
    nodes: list[NodeInfo] | None = None
    connect: DeploymentStatus | None = None
    executors: ExecutorScale | None = None
    error_lines: list[LogLine] | None = None
    claims: list[ClaimInfo] | None = None  # the namespace's PersistentVolumeClaims
    events: list[EventInfo] | None = None  # its recent Warning events
    # RunbookQueries check name → value; a missing key is unknown, a None value is "no data".
    metrics: dict[str, float | None] = field(default_factory=dict)
    slowdown: float | None = None

    def metric(self, name: str) -> float | None:
        value = self.metrics.get(name)
        return None if value is None or math.isnan(value) else value

    @property
    def drivers(self) -> list[PodInfo]:
        return [p for p in self.pods or [] if p.role == "driver"]

    @property
    def failing_drivers(self) -> list[PodInfo]:
        return [p for p in self.drivers if p.phase == "Failed" or p.crash_looping]


def _lines(facts: Facts, regex: re.Pattern[str]) -> list[LogLine]:
    return [ln for ln in facts.error_lines or [] if regex.search(ln.text)]


def _example(lines: list[LogLine], what: str) -> list[str]:
    if not lines:
        return []
    first = lines[0]
    text = first.text.strip()
    text = text if len(text) <= 160 else text[:159] + "…"
    return [f"{len(lines)} {what} log line(s), e.g. {first.pod}: {text}"]


def _oom(facts: Facts) -> list[str]:
    found = []
    kills = facts.metric("driver_oom_kills")
    if kills is not None and kills > 0:
        found.append(f"{kills:.0f} driver pod(s) OOM-killed in 5 min (driver_pod_oom_killed_total)")
    oomed = [p.name for p in facts.drivers if "OOMKilled" in (p.reason, p.last_terminated_reason)]
    if oomed:
        found.append(f"driver pod(s) killed for memory: {_names(oomed)}")
    return found


def _executor_loss(facts: Facts) -> list[str]:
    found = []
    removed = facts.metric("executor_removals")
    if removed is not None and removed > 0:
        found.append(f"{removed:.0f} executor(s) removed in 5 min (executor_removed_total)")
    ex = facts.executors
    if ex is not None and ex.ready_replicas < ex.replicas:
        found.append(f"executors ready {ex.ready_replicas} of {ex.replicas} desired")
    return found


def _network(facts: Facts) -> list[str]:
    found = _example(_lines(facts, NETWORK_RE), "connection")
    c = facts.connect
    if c is not None and c.desired > 0 and c.ready < c.desired:
        found.append(f"Spark Connect ready {c.ready} of {c.desired}")
    return found


# Warning events that say a volume could not be provided or mounted.
STORAGE_EVENTS = ("FailedMount", "FailedAttachVolume", "ProvisioningFailed", "VolumeResizeFailed")


def _storage(facts: Facts) -> list[str]:
    found = _example(_lines(facts, STORAGE_RE), "storage")
    stuck = [f"{c.name} {c.phase}" for c in facts.claims or [] if c.phase in ("Pending", "Lost")]
    if stuck:
        found.append(f"PersistentVolumeClaim(s) not bound: {_names(stuck)}")
    failed = [e for e in facts.events or [] if e.reason in STORAGE_EVENTS]
    if failed:
        first = failed[0]
        found.append(
            f"{len(failed)} volume event(s), e.g. {first.reason} {first.kind} {first.name}: "
            f"{first.message[:120]}"
        )
    return found


def _load(facts: Facts) -> list[str]:
    cpu = facts.metric("cpu_usage_ratio")
    if cpu is not None and cpu > CPU_HIGH:
        return [f"CPU use {cpu:.0%} of requested (> {CPU_HIGH:.0%})"]
    return []


@dataclass(frozen=True)
class Pattern:
    """One row of the runbook's table; ``action`` is what PIRA can run for its mitigation."""

    key: str
    name: str
    detection: str
    mitigation: str
    permanent_fix: str
    action: str | None  # "scale_up" | "restart_connect" | "restore" | None
    evidence: Callable[[Facts], list[str]]


PATTERNS: tuple[Pattern, ...] = (
    Pattern("driver-oom", "Driver OOM", "driver_pod_oom_killed_total > 0",
            "Increase driver memory, restart job", "Tune memory settings", None, _oom),
    Pattern("executor-loss", "Executor Loss", "executor_removed_total > 0",
            "Increase executor count, retry", "Fix root cause, add retries", "scale_up",
            _executor_loss),
    Pattern("network-timeout", "Network Timeout", "Connection refused errors",
            "Restart pods, check network", "Fix network policy", "restart_connect", _network),
    Pattern("storage", "Storage Issue", "Can't read/write data",
            "Check PVC, restore from backup", "Fix storage configuration", "restore", _storage),
    Pattern("high-load", "High Load", "CPU > 90%, slow jobs", "Scale up executors",
            "Right-size resources", "scale_up", _load),
)  # fmt: skip


def find_pattern(text: str) -> Pattern | None:
    """A pattern by key (``driver-oom``) or name, case-insensitive; a unique prefix is enough."""
    needle = re.sub(r"[\s_]+", "-", text.strip().lower())
    exact = [p for p in PATTERNS if needle in (p.key, p.name.lower().replace(" ", "-"))]
    if exact:
        return exact[0]
    loose = [p for p in PATTERNS if p.key.startswith(needle) or needle in p.name.lower()]
    return loose[0] if len(loose) == 1 else None


@dataclass(frozen=True)
class Match:
    pattern: Pattern
    evidence: tuple[str, ...]


def match(facts: Facts) -> list[Match]:
    """The patterns whose detection holds, each with its evidence."""
    found = []
    for pattern in PATTERNS:
        evidence = pattern.evidence(facts)
        if evidence:
            found.append(Match(pattern, tuple(evidence)))
    return found


@dataclass(frozen=True)
class Suggestion:
    severity: str | None  # None: nothing indicates an incident
    reasons: tuple[str, ...]  # why this severity
    also: tuple[str, ...]  # lower-severity findings


def _names(names: list[str], first: int = 5) -> str:
    shown = ", ".join(names[:first])
    return shown + (f" and {len(names) - first} more" if len(names) > first else "")


def suggest(facts: Facts, matches: list[Match]) -> Suggestion:
    """The runbook's severity definitions applied to the facts; the highest wins."""
    found: list[tuple[str, str]] = []
    ratio = facts.metric("job_failure_ratio")
    if ratio is not None:
        if ratio >= 0.999:
            found.append(("P0", f"all Spark jobs failing: {ratio:.0%} of jobs in 5 min failed"))
        elif ratio > 0.5:
            found.append(("P1", f"multiple job failures: {ratio:.0%} of jobs failed (> 50%)"))
        elif ratio > 0:
            found.append(("P2", f"some jobs failing: {ratio:.0%} of jobs failed"))
    if facts.nodes:
        down = [n.name for n in facts.nodes if not n.ready]
        if len(down) == len(facts.nodes):
            found.append(("P0", f"cluster unavailable: no node is Ready ({_names(down)})"))
        elif down:
            found.append(
                ("P1", f"partial cluster failure: {_names(down)} not Ready "
                       f"({len(down)} of {len(facts.nodes)} nodes)")
            )  # fmt: skip
    drivers, failing = facts.drivers, facts.failing_drivers
    if failing:
        share = f"{len(failing)} of {len(drivers)} Spark driver pods failed or crash-looping"
        if len(failing) == len(drivers) and len(drivers) > 1:
            found.append(("P0", f"all Spark jobs failing: {share}"))
        elif len(failing) * 2 > len(drivers):
            found.append(("P1", f"multiple job failures: {share} (> 50%)"))
        else:
            found.append(("P2", f"jobs failing: {share} ({_names([p.name for p in failing])})"))
    c = facts.connect
    if c is not None and c.desired > 0 and c.ready == 0:
        found.append(("P1", f"Spark Connect unavailable: 0 of {c.desired} replicas ready"))
    slow = facts.slowdown
    if slow is not None and slow > 5:
        found.append(("P1", f"severe performance degradation: jobs {slow:.1f}x slower"))
    elif slow is not None and slow >= 2:
        found.append(("P2", f"moderate performance degradation: jobs {slow:.1f}x slower"))
    for m in matches:
        found.append(("P2", f"runbook pattern {m.pattern.name} matched (evidence above)"))
    pending = [p.name for p in facts.pods or [] if p.phase == "Pending"]
    if pending:
        found.append(("P3", f"{len(pending)} pod(s) Pending ({_names(pending)})"))
    if not found:
        return Suggestion(None, (), ())
    top = min(found, key=lambda f: SEVERITIES.index(f[0]))[0]
    reasons = tuple(dict.fromkeys(r for s, r in found if s == top))
    also = tuple(dict.fromkeys(r for s, r in found if s != top))
    return Suggestion(top, reasons, also)


def scale_up_target(current: int, low: int, high: int) -> int | None:
    """The executor count a "scale up" button proposes: +50 % (at least +1), within bounds;
    None when already at the maximum."""
    if current >= high:
        return None
    return max(low, min(high, max(current + 1, math.ceil(current * 1.5))))
