"""Read-only looks into the cluster for /pods, /logs and /top: what the API server
answered, as data (the handlers word it). Errors a person can act on — nothing
configured, the API server refusing or away, no such pod — are InvalidInput."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from bot.diagnostics import Diagnostics
from bot.domain.incident import InvalidInput
from bot.integrations.kube import (
    Cluster,
    ClusterError,
    NodeUsage,
    NotFound,
    PodInfo,
    PodUsage,
)

__all__ = ["ClusterReads", "PodInfo", "PodList", "PodLog", "Usage"]


@dataclass(frozen=True)
class PodList:
    namespace: str
    selector: str
    pods: list[PodInfo]  # the troubled first: failed, crash-looping, pending, not ready


@dataclass(frozen=True)
class PodLog:
    """Log lines (``[container] `` before each line of a pod with several)."""

    pod: str | None  # None: the error lines of all the platform's pods
    tail: int
    lines: list[str]


@dataclass(frozen=True)
class Usage:
    namespace: str
    pods: list[PodUsage] | None
    nodes: list[NodeUsage] | None
    pods_error: str | None
    nodes_error: str | None


class ClusterReads:
    def __init__(self, diagnostics: Diagnostics) -> None:
        self.diagnostics = diagnostics

    async def cluster(self) -> Cluster:
        return await self.diagnostics.usable_cluster()

    async def pods(self, phase: Literal["failed", "pending"] | None) -> PodList:
        cluster = await self.cluster()
        try:
            found = await cluster.pods(phase)
        except ClusterError as exc:
            raise InvalidInput(str(exc)) from None
        found.sort(key=lambda p: (p.phase != "Failed", not p.crash_looping, p.phase != "Pending",
                                  p.ready, p.name))  # fmt: skip
        return PodList(cluster.namespace, cluster.selector, found)

    async def error_lines(self, tail: int) -> PodLog:
        cluster = await self.cluster()
        try:
            found = await cluster.error_lines(tail=tail)
        except ClusterError as exc:
            raise InvalidInput(str(exc)) from None
        return PodLog(None, tail, [f"{ln.pod}: {ln.text}" for ln in found])

    async def logs(self, name: str, *, tail: int, errors_only: bool) -> PodLog:
        cluster = await self.cluster()
        try:
            try:
                pod = await cluster.pod(name)
            except NotFound:
                raise InvalidInput(
                    f"there is no pod {name} in namespace {cluster.namespace}"
                ) from None
            texts = await asyncio.gather(
                *(cluster.logs(pod.name, tail=tail, container=c) for c in pod.containers)
            )
        except ClusterError as exc:
            raise InvalidInput(str(exc)) from None
        lines: list[str] = []
        for container, text in zip(pod.containers, texts, strict=True):
            prefix = f"[{container}] " if len(pod.containers) > 1 else ""
            lines.extend(prefix + ln for ln in text.splitlines())
        if errors_only:
            lines = [ln for ln in lines if "error" in ln.lower()]
        return PodLog(pod.name, tail, lines)

    async def usage(self, *, pods: bool, nodes: bool) -> Usage:
        """metrics-server's numbers; one part failing is shown, both failing is an error."""
        cluster = await self.cluster()
        results = await asyncio.gather(
            cluster.top_pods() if pods else _nothing(),
            cluster.top_nodes() if nodes else _nothing(),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        for err in errors:
            if not isinstance(err, ClusterError):
                raise err
        if errors and len(errors) == pods + nodes:  # nothing to show
            raise InvalidInput(str(errors[0]))
        pod_usage, node_usage = results
        return Usage(
            namespace=cluster.namespace,
            pods=None if isinstance(pod_usage, BaseException) else pod_usage,
            nodes=None if isinstance(node_usage, BaseException) else node_usage,
            pods_error=str(pod_usage) if isinstance(pod_usage, BaseException) else None,
            nodes_error=str(node_usage) if isinstance(node_usage, BaseException) else None,
        )


async def _nothing() -> None:
    return None
