"""Looking into and acting on the Spark cluster (issue 5): /health, patterns, action bounds.

The Kubernetes and Prometheus clients are built here, lazily and once, from the
environment (``KUBECONFIG`` or the in-cluster account; ``PIRA_PROMETHEUS_URL``)
and the ``cluster:`` configuration. ``/health`` asks every backend at once and
answers within :data:`HEALTH_BUDGET` whatever they do: a part that did not
answer in time is shown as unknown, with the reason, never dropped.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.clock import Clock
from bot.domain.incident import InvalidInput
from bot.integrations.kube import Cluster, ClusterError, ClusterUnavailable, load_api_client
from bot.integrations.prometheus import PrometheusClient, PrometheusError
from bot.messages import Button
from bot.patterns import Facts, match, scale_up_target, suggest
from bot.triage import (
    CHANGES_WINDOW,
    EVENTS_WINDOW,
    PROM_CHECKS,
    Part,
    api_line,
    changes_data,
    claims_data,
    connect_line,
    events_data,
    executors_line,
    labelled,
    links_data,
    nodes_data,
    pods_data,
    prometheus_data,
)

if TYPE_CHECKING:
    from bot.settings import Cluster as ClusterConfig
    from bot.settings import Config, Env

log = logging.getLogger("pira.diagnostics")

# /health answers within 5 s: the parts get 4.5 s, rendering and the reply the rest.
HEALTH_BUDGET = 4.5


class NotConfigured(Exception):
    """A backend is not configured (no KUBECONFIG / in-cluster account, no Prometheus URL)."""


@dataclass(frozen=True)
class HealthReport:
    """What /health found, for the ``health`` template, and the actions it offers."""

    data: dict[str, Any]
    buttons: tuple[Button, ...]
    facts: Facts = field(default_factory=Facts)  # what the report was made of


@dataclass(frozen=True)
class Scope:
    """/health narrowed to what an alert names (bot/arrival.py): the pods, their logs, events,
    claims and changes are read in ``namespace`` (None: the configured one) with ``selector``
    (None: the configured one; "": every pod of the namespace), only the pods named ``pods``
    when given; nodes, Spark Connect, the executors and Prometheus stay the platform's."""

    namespace: str | None = None
    selector: str | None = None
    pods: tuple[str, ...] = ()


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

    async def _scoped(self, scope: Scope | None) -> Cluster:
        """The Cluster, or a view of it in the scope's namespace and selector (same client)."""
        cluster = await self.cluster()
        if scope is None or (scope.namespace is None and scope.selector is None):
            return cluster
        view = copy.copy(cluster)  # shares the client and its threads; never closed itself
        view.namespace = scope.namespace or cluster.namespace
        view.selector = cluster.selector if scope.selector is None else scope.selector
        return view

    def _jobs(self, scope: Scope | None = None) -> dict[str, Callable[[], Awaitable[Any]]]:
        async def kube(method: str) -> Any:
            cluster = await self.cluster()
            return await getattr(cluster, method)()

        async def scoped(method: str, *args: Any) -> Any:
            return await getattr(await self._scoped(scope), method)(*args)

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
                listing = asyncio.ensure_future(scoped("pods"))
            found = await asyncio.shield(listing)
            if scope is not None and scope.pods:
                found = [p for p in found if p.name in scope.pods]
            return found

        async def error_lines() -> Any:
            cluster = await self._scoped(scope)
            return await cluster.error_lines(pods=await pods())

        jobs: dict[str, Callable[[], Awaitable[Any]]] = {"pods": pods}
        jobs.update({k: bind(kube, k) for k in ("nodes", "connect_status", "executors")})
        jobs["error_lines"] = error_lines
        # the runbook's triage beyond pods and workloads (bot/triage.py words it)
        now = self.clock.now()

        async def events() -> Any:
            found = await scoped("warning_events", now - EVENTS_WINDOW)
            if scope is None or (scope.selector is None and not scope.pods):
                return found
            # Scoped to some pods: the other pods' events are another story.
            try:
                names = {p.name for p in await pods()}
            except Exception:  # the pods part says why; the events are shown unfiltered
                return found
            return [e for e in found if e.kind != "Pod" or e.name in names]

        async def claims() -> Any:
            return await scoped("claims")

        async def changes() -> Any:
            return await scoped("recent_changes", now - CHANGES_WINDOW)

        jobs.update(events=events, claims=claims, changes=changes)
        for check in (*PROM_CHECKS, "slowdown"):
            jobs[f"prom:{check}"] = bind(prom, check)
        return jobs

    async def health(self, scope: Scope | None = None) -> HealthReport:
        """The /health report: cluster state, the runbook's metrics, the matching patterns,
        a severity suggestion with its evidence, and buttons for the actions PIRA can run
        (``scope``: narrowed to what an alert names)."""
        parts = await self._parts(self._jobs(scope))
        facts = Facts(
            pods=parts["pods"].value,
            nodes=parts["nodes"].value,
            connect=parts["connect_status"].value,
            executors=parts["executors"].value,
            error_lines=parts["error_lines"].value,
            claims=parts["claims"].value,
            events=parts["events"].value,
            metrics={k: parts[f"prom:{k}"].value for k in PROM_CHECKS if parts[f"prom:{k}"].ok},
            slowdown=parts["prom:slowdown"].value,
        )
        matches = match(facts)
        suggestion = suggest(facts, matches)
        data: dict[str, Any] = {
            "checked_at": self.clock.now().isoformat(),
            "api": api_line(parts),
            "pods": pods_data(parts["pods"]),
            "nodes": nodes_data(parts["nodes"]),
            "connect": connect_line(parts["connect_status"]),
            "executors": executors_line(parts["executors"], self.settings),
            "claims": claims_data(parts["claims"]),
            "events": events_data(parts["events"]),
            "changes": changes_data(parts["changes"]),
            "links": links_data(self.config.links),
            "prometheus": prometheus_data(parts),
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
                label for label, part in labelled(parts) if not part.ok and part.configured
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
        return HealthReport(data=data, buttons=tuple(buttons), facts=facts)

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


__all__ = [
    "HEALTH_BUDGET",
    "ClusterUnavailable",
    "Diagnostics",
    "HealthReport",
    "NotConfigured",
    "Part",
    "Scope",
]
