"""Looking into and acting on the Spark cluster (issue 5): /health, patterns, action bounds.

The Kubernetes and Prometheus clients are built here, lazily and once, from the
environment (``KUBECONFIG`` or the in-cluster account; ``PIRA_PROMETHEUS_URL``)
and the ``cluster:`` configuration. ``/health`` asks every backend at once and
answers within :data:`HEALTH_BUDGET` whatever they do: a part that did not
answer in time is shown as unknown, with the reason, never dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.clock import Clock
from bot.domain.incident import InvalidInput
from bot.integrations.kube import Cluster, ClusterError, ClusterUnavailable, load_api_client
from bot.integrations.prometheus import PrometheusClient, PrometheusError
from bot.messages import Button
from bot.patterns import Facts, match, scale_up_target, suggest

if TYPE_CHECKING:
    from bot.settings import Cluster as ClusterConfig
    from bot.settings import Config, Env

log = logging.getLogger("pira.diagnostics")

# /health answers within 5 s: the parts get 4.5 s, rendering and the reply the rest.
HEALTH_BUDGET = 4.5
FIRST = 5  # pods named per group before "and N more"
PROM_CHECKS = {
    "job_failure_ratio": "Job failure ratio (5 min)",
    "driver_oom_kills": "Driver OOM kills (5 min)",
    "executor_removals": "Executors removed (5 min)",
    "cpu_usage_ratio": "CPU used / requested",
}


class NotConfigured(Exception):
    """A backend is not configured (no KUBECONFIG / in-cluster account, no Prometheus URL)."""


@dataclass(frozen=True)
class Part:
    """One backend answer of /health: ``value`` when ok, else why it is unknown."""

    ok: bool
    value: Any = None
    why: str = ""
    configured: bool = True


@dataclass(frozen=True)
class HealthReport:
    """What /health found, for the ``health`` template, and the actions it offers."""

    data: dict[str, Any]
    buttons: tuple[Button, ...]


class Diagnostics:
    def __init__(self, *, config: Config, env: Env, clock: Clock) -> None:
        self.config = config
        self.env = env
        self.clock = clock
        self._cluster: Cluster | None = None
        self._cluster_lock = asyncio.Lock()
        self._prometheus: PrometheusClient | None = None

    @property
    def settings(self) -> ClusterConfig:
        return self.config.cluster

    # ---- clients ---------------------------------------------------------------------------

    @property
    def cluster_configured(self) -> bool:
        return bool(self.env.kubeconfig or self.env.in_cluster)

    async def cluster(self) -> Cluster:
        """The Cluster, built on first use. Raises :class:`NotConfigured` or
        :class:`ClusterUnavailable` (configuration unreadable; retried on the next call)."""
        if self._cluster is not None:
            return self._cluster
        if not self.cluster_configured:
            raise NotConfigured("Kubernetes is not configured (set KUBECONFIG or run in a pod)")
        async with self._cluster_lock:
            if self._cluster is None:
                cfg = self.settings
                # Blocking: reads the kubeconfig (or the service account's files).
                api = await asyncio.to_thread(load_api_client, self.env.kubeconfig)
                self._cluster = Cluster(
                    api,
                    namespace=cfg.namespace,
                    selector=cfg.selector,
                    executor_statefulset=cfg.executors.statefulset,
                    connect_deployment=cfg.connect.deployment,
                    timeout=cfg.timeout.total_seconds(),
                )
                log.info("kubernetes client ready", extra={"namespace": cfg.namespace})
            return self._cluster

    async def usable_cluster(self) -> Cluster:
        """The Cluster, or a short InvalidInput a person can act on (not configured,
        configuration unreadable)."""
        try:
            return await self.cluster()
        except (NotConfigured, ClusterError) as exc:
            raise InvalidInput(str(exc)) from None

    def prometheus(self) -> PrometheusClient | None:
        """The Prometheus client, or None when ``PIRA_PROMETHEUS_URL`` is not set."""
        url = self.env.prometheus_url
        if not url:
            return None
        if self._prometheus is None:
            queries = self.settings.queries
            if "namespace" not in queries.model_fields_set:
                queries = queries.model_copy(update={"namespace": self.settings.namespace})
            self._prometheus = PrometheusClient(
                url,
                timeout=min(self.settings.timeout.total_seconds(), HEALTH_BUDGET),
                queries=queries,
            )
        return self._prometheus

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
        if self._prometheus is not None:
            self._prometheus.close()
            self._prometheus = None

    # ---- /health ---------------------------------------------------------------------------

    async def _parts(self, jobs: dict[str, Callable[[], Awaitable[Any]]]) -> dict[str, Part]:
        """Run every job at once; whatever has not answered after the budget is unknown."""
        tasks = {name: asyncio.ensure_future(job()) for name, job in jobs.items()}
        _, pending = await asyncio.wait(tasks.values(), timeout=HEALTH_BUDGET)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        parts: dict[str, Part] = {}
        for name, task in tasks.items():
            if task in pending:
                parts[name] = Part(False, why=f"no answer within {HEALTH_BUDGET:g} s")
                continue
            exc = task.exception()
            if exc is None:
                parts[name] = Part(True, task.result())
            elif isinstance(exc, NotConfigured):
                parts[name] = Part(False, why="not configured", configured=False)
            elif isinstance(exc, ClusterError | PrometheusError):
                parts[name] = Part(False, why=str(exc))
            else:  # a bug must not cost the whole report; it is logged with its traceback
                log.error("health part failed", exc_info=exc, extra={"part": name})
                parts[name] = Part(False, why=f"internal error ({type(exc).__name__})")
        return parts

    def _jobs(self) -> dict[str, Callable[[], Awaitable[Any]]]:
        async def kube(method: str) -> Any:
            cluster = await self.cluster()
            return await getattr(cluster, method)()

        async def prom(check: str) -> Any:
            client = self.prometheus()
            if client is None:
                raise NotConfigured("PIRA_PROMETHEUS_URL is not set")
            if check == "slowdown":
                return await client.slowdown_factor()
            return await client.check(check)  # type: ignore[arg-type]

        def bind(fn: Callable[[str], Awaitable[Any]], arg: str) -> Callable[[], Awaitable[Any]]:
            return lambda: fn(arg)

        # The pods are listed once: the error lines read the logs of the same listing.
        listing: asyncio.Future[Any] | None = None

        async def pods() -> Any:
            nonlocal listing
            if listing is None:
                listing = asyncio.ensure_future(kube("pods"))
            return await asyncio.shield(listing)

        async def error_lines() -> Any:
            cluster = await self.cluster()
            return await cluster.error_lines(pods=await pods())

        jobs: dict[str, Callable[[], Awaitable[Any]]] = {"pods": pods}
        jobs.update({k: bind(kube, k) for k in ("nodes", "connect_status", "executors")})
        jobs["error_lines"] = error_lines
        for check in (*PROM_CHECKS, "slowdown"):
            jobs[f"prom:{check}"] = bind(prom, check)
        return jobs

    async def health(self) -> HealthReport:
        """The /health report: cluster state, the runbook's metrics, the matching patterns,
        a severity suggestion with its evidence, and buttons for the actions PIRA can run."""
        parts = await self._parts(self._jobs())
        facts = Facts(
            pods=parts["pods"].value,
            nodes=parts["nodes"].value,
            connect=parts["connect_status"].value,
            executors=parts["executors"].value,
            error_lines=parts["error_lines"].value,
            metrics={k: parts[f"prom:{k}"].value for k in PROM_CHECKS if parts[f"prom:{k}"].ok},
            slowdown=parts["prom:slowdown"].value,
        )
        matches = match(facts)
        suggestion = suggest(facts, matches)
        data: dict[str, Any] = {
            "checked_at": self.clock.now().isoformat(),
            "api": _api_line(parts),
            "pods": _pods_data(parts["pods"]),
            "nodes": _nodes_data(parts["nodes"]),
            "connect": _connect_line(parts["connect_status"]),
            "executors": _executors_line(parts["executors"], self.settings),
            "prometheus": _prometheus_data(parts),
            "patterns": [
                {
                    "name": m.pattern.name,
                    "evidence": list(m.evidence),
                    "mitigation": m.pattern.mitigation,
                    "permanent_fix": m.pattern.permanent_fix,
                }
                for m in matches
            ],
            "severity": None,
            "unchecked": [
                label for label, part in _labelled(parts) if not part.ok and part.configured
            ],
            "checked_any": any(part.ok for part in parts.values()),
        }
        if suggestion.severity is not None:
            policy = self.config.policy(suggestion.severity)
            data["severity"] = {
                "level": suggestion.severity,
                "name": policy.name,
                "definition": policy.definition,
                "reasons": list(suggestion.reasons),
                "also": list(suggestion.also),
            }
        buttons = self._buttons(facts, {m.pattern.action for m in matches})
        data["actions"] = [b.command for b in buttons]
        return HealthReport(data=data, buttons=tuple(buttons))

    def _buttons(self, facts: Facts, actions: set[str | None]) -> list[Button]:
        buttons = []
        ex = facts.executors
        if "scale_up" in actions and ex is not None:
            bounds = self.settings.executors
            target = scale_up_target(ex.replicas, bounds.min, bounds.max)
            if target is not None:
                buttons.append(
                    Button(
                        f"Scale executors {ex.replicas} → {target}",
                        f"/scale executors {target}",
                        "primary",
                    )
                )
        if "restart_connect" in actions:
            buttons.append(Button("Restart Spark Connect", "/restart spark-connect", "danger"))
        return buttons

    # ---- action bounds ---------------------------------------------------------------------

    def check_executors(self, n: int) -> None:
        """Refuse an executor count outside ``cluster.executors`` min/max."""
        bounds = self.settings.executors
        if not bounds.min <= n <= bounds.max:
            raise InvalidInput(
                f"executors must stay between {bounds.min} and {bounds.max} "
                f"(cluster.executors in the configuration); {n} is outside"
            )


# ---- /health data helpers (JSON-safe dicts for templates/health.md.j2) ------------------------


def _labelled(parts: dict[str, Part]) -> list[tuple[str, Part]]:
    labels = {
        "pods": "pods",
        "nodes": "nodes",
        "connect_status": "Spark Connect",
        "executors": "executors",
        "error_lines": "error logs",
        **{f"prom:{k}": v for k, v in PROM_CHECKS.items()},
        "prom:slowdown": "job duration",
    }
    return [(labels[k], p) for k, p in parts.items()]


def _unknown(part: Part) -> str:
    return "not configured" if not part.configured else f"unknown ({part.why})"


def _api_line(parts: dict[str, Part]) -> str:
    kube = [parts[k] for k in ("pods", "nodes", "connect_status", "executors")]
    if not kube[0].configured:
        return "not configured (set KUBECONFIG or run PIRA in the cluster)"
    if any(p.ok for p in kube):
        return "✅ reachable"
    return f"❔ unknown ({kube[0].why})"


def _group(label: str, names: list[str]) -> dict[str, Any]:
    return {"label": label, "names": names[:FIRST], "more": max(0, len(names) - FIRST)}


def _pods_data(part: Part) -> dict[str, Any]:
    if not part.ok:
        return {"known": False, "why": _unknown(part)}
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
            groups.append(_group(label, names))
    summary = ", ".join(f"{n} {phase}" for phase, n in sorted(phases.items())) or "none"
    return {"known": True, "total": len(pods), "summary": summary, "groups": groups}


def _nodes_data(part: Part) -> dict[str, Any]:
    if not part.ok:
        return {"known": False, "why": _unknown(part)}
    nodes = part.value
    ready = [n.name for n in nodes if n.ready]
    down = [f"{n.name} ({n.status})" for n in nodes if not n.ready]
    return {"known": True, "ready": len(ready), "total": len(nodes), "down": _group("", down)}


def _connect_line(part: Part) -> str:
    if not part.ok:
        return _unknown(part)
    c = part.value
    mark = "✅" if c.ready >= c.desired else "⚠️"
    return f"{mark} {c.ready}/{c.desired} ready (deployment {c.name})"


def _executors_line(part: Part, cfg: ClusterConfig) -> str:
    if not part.ok:
        return _unknown(part)
    ex = part.value
    mark = "✅" if ex.ready_replicas >= ex.replicas else "⚠️"
    bounds = cfg.executors
    return (
        f"{mark} {ex.ready_replicas}/{ex.replicas} ready (statefulset {ex.statefulset}, "
        f"allowed {bounds.min}–{bounds.max})"
    )


def _prometheus_data(parts: dict[str, Part]) -> dict[str, Any]:
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
            value = _unknown(part)
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


__all__ = ["HEALTH_BUDGET", "ClusterUnavailable", "Diagnostics", "NotConfigured", "Part"]
