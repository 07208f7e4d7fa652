"""What /health shows, as JSON-safe data for templates/health.md.j2: each backend's answer
(:class:`Part`) worded, and the runbook's triage beyond pods and workloads — the namespace's
Warning events (OOMKilling, FailedScheduling, Evicted, an exceeded quota), its
PersistentVolumeClaims (Pending or Lost: the Storage pattern's "check PVC"), what changed in
the last 24 h (Deployment and StatefulSet revisions with their images, ConfigMaps written)
and the links the team configured (``links:``) in place of the runbook's port-forward.

Pure functions: bot/diagnostics.py asks the cluster and hands the answers over.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.integrations.kube import ChangeInfo, ClaimInfo, EventInfo

if TYPE_CHECKING:
    from bot.settings import Cluster as ClusterConfig

FIRST = 5  # pods named per group before "and N more"
EVENTS_WINDOW = dt.timedelta(hours=1)  # Warning events last seen this recently
CHANGES_WINDOW = dt.timedelta(hours=24)  # "what changed?"
MESSAGE_CHARS = 160
PROM_CHECKS = {
    "job_failure_ratio": "Job failure ratio (5 min)",
    "driver_oom_kills": "Driver OOM kills (5 min)",
    "executor_removals": "Executors removed (5 min)",
    "cpu_usage_ratio": "CPU used / requested",
}
KUBE_PARTS = ("pods", "nodes", "connect_status", "executors", "events", "claims", "changes")


@dataclass(frozen=True)
class Part:
    """One backend answer of /health: ``value`` when ok, else why it is unknown."""

    ok: bool
    value: Any = None
    why: str = ""
    configured: bool = True


def labelled(parts: dict[str, Part]) -> list[tuple[str, Part]]:
    labels = {
        "pods": "pods",
        "nodes": "nodes",
        "connect_status": "Spark Connect",
        "executors": "executors",
        "error_lines": "error logs",
        "events": "events",
        "claims": "volume claims",
        "changes": "recent changes",
        **{f"prom:{k}": v for k, v in PROM_CHECKS.items()},
        "prom:slowdown": "job duration",
    }
    return [(labels[k], p) for k, p in parts.items()]


def unknown(part: Part) -> str:
    return "not configured" if not part.configured else f"unknown ({part.why})"


def api_line(parts: dict[str, Part]) -> str:
    kube = [parts[k] for k in KUBE_PARTS if k in parts]
    if not kube[0].configured:
        return "not configured (set KUBECONFIG or run PIRA in the cluster)"
    if any(p.ok for p in kube):
        return "✅ reachable"
    return f"❔ unknown ({kube[0].why})"


def group(label: str, names: list[str]) -> dict[str, Any]:
    return {"label": label, "names": names[:FIRST], "more": max(0, len(names) - FIRST)}


def pods_data(part: Part) -> dict[str, Any]:
    if not part.ok:
        return {"known": False, "why": unknown(part)}
    pods = part.value
    phases: dict[str, int] = {}
    for p in pods:
        phases[p.phase] = phases.get(p.phase, 0) + 1
    groups = []
    for label, names in (
        ("Failed", [p.name for p in pods if p.phase == "Failed"]),
        ("CrashLoopBackOff", [p.name for p in pods if p.crash_looping]),
        ("Pending", [p.name for p in pods if p.phase == "Pending"]),
    ):
        if names:
            groups.append(group(label, names))
    summary = ", ".join(f"{n} {phase}" for phase, n in sorted(phases.items())) or "none"
    return {"known": True, "total": len(pods), "summary": summary, "groups": groups}


def nodes_data(part: Part) -> dict[str, Any]:
    if not part.ok:
        return {"known": False, "why": unknown(part)}
    nodes = part.value
    ready = [n.name for n in nodes if n.ready]
    down = [f"{n.name} ({n.status})" for n in nodes if not n.ready]
    return {"known": True, "ready": len(ready), "total": len(nodes), "down": group("", down)}


def connect_line(part: Part) -> str:
    if not part.ok:
        return unknown(part)
    c = part.value
    mark = "✅" if c.ready >= c.desired else "⚠️"
    return f"{mark} {c.ready}/{c.desired} ready (deployment {c.name})"


def executors_line(part: Part, cfg: ClusterConfig) -> str:
    if not part.ok:
        return unknown(part)
    ex = part.value
    mark = "✅" if ex.ready_replicas >= ex.replicas else "⚠️"
    bounds = cfg.executors
    return (
        f"{mark} {ex.ready_replicas}/{ex.replicas} ready (statefulset {ex.statefulset}, "
        f"allowed {bounds.min}–{bounds.max})"
    )


def prometheus_data(parts: dict[str, Part]) -> dict[str, Any]:
    first = parts["prom:job_failure_ratio"]
    if not first.configured:
        return {"configured": False, "down": None, "rows": []}
    failed = {parts[f"prom:{c}"].why for c in PROM_CHECKS if not parts[f"prom:{c}"].ok}
    if len(failed) == 1 and not any(parts[f"prom:{c}"].ok for c in PROM_CHECKS):
        return {"configured": True, "down": f"unknown ({failed.pop()})", "rows": []}
    rows = []
    for check, label in PROM_CHECKS.items():
        part = parts[f"prom:{check}"]
        if not part.ok:
            value = unknown(part)
        elif part.value is None:
            value = "no data"
        elif check in ("job_failure_ratio", "cpu_usage_ratio"):
            value = f"{part.value:.0%}"
        else:
            value = f"{part.value:g}"
        rows.append({"label": label, "value": value})
    slow = parts["prom:slowdown"]
    if slow.ok and slow.value is not None:
        rows.append({"label": "Job duration vs baseline", "value": f"{slow.value:.1f}x"})
    return {"configured": True, "down": None, "rows": rows}


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"


def events_data(part: Part) -> dict[str, Any]:
    """Warning events grouped by reason, the most frequent first, each with an example."""
    if not part.ok:
        return {"known": False, "why": unknown(part)}
    events: list[EventInfo] = part.value
    by_reason: dict[str, list[EventInfo]] = {}
    for ev in events:  # newest first: the first of each reason is its example
        by_reason.setdefault(ev.reason, []).append(ev)
    groups: list[dict[str, Any]] = []
    for reason, found in by_reason.items():
        first = found[0]
        groups.append(
            {
                "reason": reason,
                "count": sum(e.count for e in found),
                "objects": len({(e.kind, e.name) for e in found}),
                "example": f"{first.kind} {first.name}: {_short(first.message)}",
            }
        )
    groups.sort(key=lambda g: (-g["count"], g["reason"]))
    window = f"{EVENTS_WINDOW.total_seconds() / 3600:g} h"
    return {"known": True, "window": window, "groups": groups[:FIRST],
            "more": max(0, len(groups) - FIRST)}  # fmt: skip


def claims_data(part: Part) -> dict[str, Any]:
    """The claims that are not Bound, named with their size and class."""
    if not part.ok:
        return {"known": False, "why": unknown(part)}
    claims: list[ClaimInfo] = part.value
    problems = []
    for c in claims:
        if c.phase == "Bound":
            continue
        detail = ", ".join(x for x in (c.size, c.storage_class) if x)
        problems.append(f"{c.name} {c.phase}" + (f" ({detail})" if detail else ""))
    bound = sum(c.phase == "Bound" for c in claims)
    return {"known": True, "total": len(claims), "bound": bound, "problems": problems}


def changes_data(part: Part) -> dict[str, Any]:
    if not part.ok:
        return {"known": False, "why": unknown(part)}
    changes: list[ChangeInfo] = part.value
    items = [{"at": c.at.isoformat(), "text": f"{c.kind} {c.name} {c.what}"} for c in changes]
    return {"known": True, "lines": items[:10], "more": max(0, len(items) - 10)}


def links_data(links: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": name, "url": url} for name, url in links.items()]
