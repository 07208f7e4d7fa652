"""What the bot changes in the cluster on a responder's confirmed command: kill a driver pod,
scale the executors, rollout-restart Spark Connect."""

from __future__ import annotations

import datetime as dt
from typing import Any

from kubernetes import client

from bot.integrations.kube_errors import InvalidRequest, NotADriver
from bot.integrations.kube_models import RESTART_ANNOTATION, ROLE_LABEL, PodInfo
from bot.integrations.kube_reads import KubeReads, pod_info


class KubeActions(KubeReads):
    """The writing calls of :class:`~bot.integrations.kube.Cluster` (besides restore)."""

    async def kill_driver(self, name: str) -> PodInfo:
        """Delete one Spark driver pod of the platform (namespace + selector + spark-role=driver).

        Raises :class:`NotFound` (no such pod) or :class:`NotADriver` (another pod: untouched)."""
        self._check_name(name)
        found: Any = await self._call(
            f"pod {name}",
            self._core.list_namespaced_pod,
            self.namespace,
            label_selector=f"{self.selector},{ROLE_LABEL}=driver",
            field_selector=f"metadata.name={name}",
        )
        if not found.items:
            other = await self.pod(name)  # raises NotFound when there is no such pod at all
            raise NotADriver(
                f"pod {name} is not a Spark driver of the platform (role: {other.role or 'none'})"
            )
        # The uid precondition makes sure we delete the pod we checked, not a namesake
        # recreated in between.
        options = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid=found.items[0].metadata.uid)
        )
        deleted = await self._call(
            f"delete pod {name}",
            self._core.delete_namespaced_pod,
            name,
            self.namespace,
            body=options,
        )
        return pod_info(deleted)

    async def scale_executors(self, replicas: int) -> int:
        """Set the executor StatefulSet's desired replicas (one merge PATCH of its scale
        subresource, as ``kubectl scale`` does); returns the desired count the server stored.

        Bounds are the caller's business; negative counts raise :class:`InvalidRequest`."""
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise InvalidRequest(f"replicas must be a whole number ≥ 0, not {replicas!r}")
        name = self.executor_statefulset
        scale: Any = await self._call(
            f"scale statefulset {name}",
            self._apps.patch_namespaced_stateful_set_scale,
            name,
            self.namespace,
            {"spec": {"replicas": replicas}},
            _content_type="application/merge-patch+json",
        )
        return int(scale.spec.replicas)

    async def restart_connect(self, now: dt.datetime | None = None) -> str:
        """``kubectl rollout restart deployment/<connect>``: one strategic-merge PATCH setting
        the pod template's restartedAt annotation (RFC 3339, UTC). Returns that timestamp.

        Raises :class:`NotFound`, or :class:`InvalidRequest` when the Deployment is paused."""
        name = self.connect_deployment
        dep = await self._call(
            f"deployment {name}", self._apps.read_namespaced_deployment, name, self.namespace
        )
        if dep.spec.paused:  # kubectl refuses too: a paused Deployment would not roll
            raise InvalidRequest(f"deployment {name} is paused; resume its rollout first")
        stamp = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTART_ANNOTATION: stamp}}}}}
        await self._call(
            f"restart deployment {name}",
            self._apps.patch_namespaced_deployment,
            name,
            self.namespace,
            patch,
            _content_type="application/strategic-merge-patch+json",
        )
        return stamp
