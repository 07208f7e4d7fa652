"""What the bot reads from the cluster: pods, logs, nodes, resource usage, workloads."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Literal

from kubernetes.utils import parse_quantity

from bot.integrations.kube_client import KubeBase
from bot.integrations.kube_errors import (
    ClusterUnavailable,
    InvalidRequest,
    MetricsUnavailable,
    NotFound,
)
from bot.integrations.kube_models import (
    RESTART_ANNOTATION,
    ROLE_LABEL,
    DeploymentStatus,
    ExecutorScale,
    LogLine,
    NodeInfo,
    NodeUsage,
    PodInfo,
    PodUsage,
)

_PHASES = {"failed": "Failed", "pending": "Pending"}


def pod_info(pod: Any) -> PodInfo:
    """A :class:`PodInfo` from the client's V1Pod."""
    meta, spec, status = pod.metadata, pod.spec, pod.status
    statuses = (status.container_statuses or []) if status else []
    waiting = next((s.state.waiting.reason for s in statuses if s.state and s.state.waiting), None)
    ended = [s.last_state.terminated for s in statuses if s.last_state]
    last = next((t.reason for t in ended if t), None)
    return PodInfo(
        name=meta.name,
        phase=(status.phase if status else None) or "Unknown",
        role=(meta.labels or {}).get(ROLE_LABEL),
        ready=bool(statuses) and all(s.ready for s in statuses),
        restarts=sum(s.restart_count or 0 for s in statuses),
        waiting_reason=waiting,
        last_terminated_reason=last,
        reason=status.reason if status else None,
        node=spec.node_name if spec else None,
        containers=tuple(c.name for c in spec.containers) if spec else (),
    )


def _millicores(q: str) -> int:
    return int(parse_quantity(q) * 1000)


def _bytes(q: str) -> int:
    return int(parse_quantity(q))


def _percent(used: int, total: Decimal | None) -> float | None:
    return round(100.0 * used / float(total), 1) if total else None


class KubeReads(KubeBase):
    """The read-only calls of :class:`~bot.integrations.kube.Cluster`."""

    # --- pods ---------------------------------------------------------------------------------

    async def pods(self, phase: Literal["failed", "pending"] | None = None) -> list[PodInfo]:
        """The platform's pods (namespace + selector), optionally only Failed / Pending ones."""
        field_selector = f"status.phase={_PHASES[phase]}" if phase else None
        result = await self._call(
            "list pods",
            self._core.list_namespaced_pod,
            self.namespace,
            label_selector=self.selector,
            field_selector=field_selector,
        )
        return [pod_info(p) for p in result.items]

    async def pod(self, name: str) -> PodInfo:
        """One pod of the namespace. Raises :class:`NotFound`."""
        self._check_name(name)
        pod = await self._call(f"pod {name}", self._core.read_namespaced_pod, name, self.namespace)
        return pod_info(pod)

    async def logs(self, pod: str, tail: int = 100, container: str | None = None) -> str:
        """The last ``tail`` lines of a pod's log (its only container unless ``container``)."""
        self._check_name(pod)
        return await self._call(
            f"logs of {pod}",
            self._core.read_namespaced_pod_log,
            pod,
            self.namespace,
            container=container,
            tail_lines=tail,
        )

    async def error_lines(
        self, tail: int = 50, pattern: str = "error", pods: list[PodInfo] | None = None
    ) -> list[LogLine]:
        """``kubectl logs -l <selector> --tail=<tail> | grep -i <pattern>``, per container
        (``pods``: the platform's pods when the caller listed them already).

        Pods whose containers have not started (or vanished meanwhile) are skipped."""
        needle = pattern.lower()
        listed = await self.pods() if pods is None else pods
        pods = [p for p in listed if p.phase not in ("Pending", "Unknown")]

        async def one(pod: str, container: str) -> list[LogLine]:
            async with self._log_slots:
                try:
                    text = await self.logs(pod, tail=tail, container=container)
                except (NotFound, InvalidRequest):
                    return []
            return [LogLine(pod, container, ln) for ln in text.splitlines() if needle in ln.lower()]

        chunks = await asyncio.gather(*(one(p.name, c) for p in pods for c in p.containers))
        return [line for chunk in chunks for line in chunk]

    # --- nodes and metrics --------------------------------------------------------------------

    async def nodes(self) -> list[NodeInfo]:
        # Any: the models type every field Optional, the API server always fills these
        result: Any = await self._call("list nodes", self._core.list_node)
        nodes = []
        for node in result.items:
            conditions = node.status.conditions or []
            cond = next((c for c in conditions if c.type == "Ready"), None)
            value = cond.status if cond else "Unknown"
            status = {"True": "Ready", "False": "NotReady"}.get(value, "Unknown")
            unschedulable = bool(node.spec and node.spec.unschedulable)
            nodes.append(NodeInfo(node.metadata.name, value == "True", status, unschedulable))
        return nodes

    async def _metrics(self, what: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        try:
            return await self._call(what, fn, "metrics.k8s.io", "v1beta1", *args, **kw)
        except (NotFound, ClusterUnavailable) as exc:
            if exc.status not in (404, 503):
                raise  # the API server itself is unreachable, not just metrics-server
            raise MetricsUnavailable(
                "resource metrics are not available: metrics-server is not installed or not "
                "ready (metrics.k8s.io)"
            ) from None

    async def top_pods(self) -> list[PodUsage]:
        """CPU / memory of the platform's pods (``kubectl top pods -l``), busiest CPU first.

        Raises :class:`MetricsUnavailable`."""
        data = await self._metrics(
            "pod metrics",
            self._custom.list_namespaced_custom_object,
            self.namespace,
            "pods",
            label_selector=self.selector,
        )
        usage = []
        for item in data.get("items", []):
            containers = [c.get("usage", {}) for c in item.get("containers", [])]
            cpu = sum(_millicores(u.get("cpu", "0")) for u in containers)
            mem = sum(_bytes(u.get("memory", "0")) for u in containers)
            usage.append(PodUsage(item["metadata"]["name"], cpu, mem))
        return sorted(usage, key=lambda u: (-u.cpu_millicores, u.name))

    async def top_nodes(self) -> list[NodeUsage]:
        """CPU / memory of every node with % of allocatable (``kubectl top nodes``).

        Raises :class:`MetricsUnavailable`."""
        nodes: Any
        data, nodes = await asyncio.gather(
            self._metrics("node metrics", self._custom.list_cluster_custom_object, "nodes"),
            self._call("list nodes", self._core.list_node),
        )
        allocatable = {n.metadata.name: (n.status.allocatable or {}) for n in nodes.items}
        usage = []
        for item in data.get("items", []):
            name = item["metadata"]["name"]
            cpu = _millicores(item["usage"]["cpu"])
            mem = _bytes(item["usage"]["memory"])
            alloc = allocatable.get(name, {})
            cpu_total = parse_quantity(alloc["cpu"]) * 1000 if "cpu" in alloc else None
            mem_total = parse_quantity(alloc["memory"]) if "memory" in alloc else None
            usage.append(
                NodeUsage(name, cpu, mem, _percent(cpu, cpu_total), _percent(mem, mem_total))
            )
        return usage

    # --- workloads ----------------------------------------------------------------------------

    async def executors(self) -> ExecutorScale:
        """Desired / ready replicas of the executor StatefulSet. Raises :class:`NotFound`."""
        name = self.executor_statefulset
        sts = await self._call(
            f"statefulset {name}", self._apps.read_namespaced_stateful_set, name, self.namespace
        )
        status = sts.status
        return ExecutorScale(
            name,
            replicas=sts.spec.replicas or 0,
            ready_replicas=(status.ready_replicas or 0) if status else 0,
            current_replicas=(status.replicas or 0) if status else 0,
        )

    async def connect_status(self) -> DeploymentStatus:
        """Replicas of the Spark Connect Deployment. Raises :class:`NotFound`."""
        name = self.connect_deployment
        dep = await self._call(
            f"deployment {name}", self._apps.read_namespaced_deployment, name, self.namespace
        )
        status = dep.status
        annotations = (dep.spec.template.metadata and dep.spec.template.metadata.annotations) or {}
        return DeploymentStatus(
            name,
            desired=dep.spec.replicas if dep.spec.replicas is not None else 1,
            ready=(status.ready_replicas or 0) if status else 0,
            updated=(status.updated_replicas or 0) if status else 0,
            restarted_at=annotations.get(RESTART_ANNOTATION),
        )
