"""``kubectl rollout undo deployment/<connect>`` through the API, and the reads that tell how
an action went (a Deployment's rollout status, the pods of a workload, a pod gone).

The rollback sends what kubectl's DeploymentRollbacker sends (kubernetes/kubectl,
pkg/polymorphichelpers/rollback.go, read at dee3483a3d6a): GET the Deployment; LIST the
namespace's ReplicaSets with the Deployment's selector (``labelSelector``) and keep those it
controls (deploymentutil.GetAllReplicaSets); take the second-highest
``deployment.kubernetes.io/revision`` (deploymentRevision with toRevision 0); refuse a paused
Deployment; skip when that template already equals the Deployment's (equalIgnoreHash); then
one PATCH ``application/json-patch+json`` of two ops: replace ``/spec/template`` with the
ReplicaSet's template without its ``pod-template-hash`` label, and replace
``/metadata/annotations`` with the Deployment's annotations of ``annotationsToSkip`` plus the
ReplicaSet's other annotations (getDeploymentPatch). Where kubectl prints "skipped
rollback", PIRA refuses and changes nothing.
"""

from __future__ import annotations

from typing import Any

from bot.integrations.kube_errors import InvalidRequest, NotFound, RollbackRefused
from bot.integrations.kube_models import PodInfo, RollbackPlan, RolloutStatus
from bot.integrations.kube_reads import KubeReads, pod_info
from bot.integrations.kube_triage import images, revision_of

HASH_LABEL = "pod-template-hash"  # appsv1.DefaultDeploymentUniqueLabelKey
# rollback.go annotationsToSkip: kept from the Deployment, never copied from the ReplicaSet
ANNOTATIONS_TO_SKIP = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        "deployment.kubernetes.io/revision",
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)


def selector_string(selector: Any) -> str:
    """metav1.LabelSelectorAsSelector(...).String(): requirements sorted by key."""
    parts: list[tuple[str, str]] = [
        (k, f"{k}={v}") for k, v in (selector.match_labels or {}).items()
    ]
    for expr in selector.match_expressions or []:
        values = ",".join(sorted(expr.values or []))
        text = {
            "In": f"{expr.key} in ({values})",
            "NotIn": f"{expr.key} notin ({values})",
            "Exists": expr.key,
            "DoesNotExist": f"!{expr.key}",
        }.get(expr.operator)
        if text is None:
            raise InvalidRequest(f"unsupported selector operator {expr.operator}")
        parts.append((expr.key, text))
    return ",".join(text for _, text in sorted(parts))


def _template_without_hash(template: dict[str, Any]) -> dict[str, Any]:
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    labels.pop(HASH_LABEL, None)
    meta = dict(template.get("metadata") or {})
    if labels:
        meta["labels"] = labels
    else:
        meta.pop("labels", None)
    return {**template, "metadata": meta}


class KubeRollback(KubeReads):
    """The rollback and the outcome reads of :class:`~bot.integrations.kube.Cluster`."""

    async def _previous(self) -> tuple[Any, Any, RollbackPlan]:
        """The Deployment, the ReplicaSet of its previous revision, and the plan.

        Raises :class:`NotFound` or :class:`RollbackRefused` (paused, no previous revision,
        already at that template)."""
        name = self.connect_deployment
        dep: Any = await self._call(
            f"deployment {name}", self._apps.read_namespaced_deployment, name, self.namespace
        )
        found: Any = await self._call(
            f"replicasets of deployment {name}",
            self._apps.list_namespaced_replica_set,
            self.namespace,
            label_selector=selector_string(dep.spec.selector),
        )
        uid = dep.metadata.uid
        owned = [
            rs
            for rs in found.items
            if any(r.controller and r.uid == uid for r in rs.metadata.owner_references or [])
        ]
        ranked = sorted(
            ((n, rs) for rs in owned if (n := revision_of(rs)) is not None),
            key=lambda pair: pair[0],
            reverse=True,
        )
        if len(ranked) < 2:
            raise RollbackRefused(f"deployment {name} has no previous revision to roll back to")
        target, rs = ranked[1]
        if dep.spec.paused:
            raise RollbackRefused(
                f"deployment {name} is paused; resume its rollout first, then roll back"
            )
        serialize = self._api_client.sanitize_for_serialization
        current = _template_without_hash(serialize(dep.spec.template))
        wanted = _template_without_hash(serialize(rs.spec.template))
        if current == wanted:
            raise RollbackRefused(
                f"deployment {name} already runs the template of revision {target}; "
                "nothing to roll back"
            )
        plan = RollbackPlan(
            deployment=name,
            current_revision=revision_of(dep),
            target_revision=target,
            images_from=images(dep.spec.template),
            images_to=images(rs.spec.template),
            replicaset=rs.metadata.name,
        )
        return dep, rs, plan

    async def rollback_plan(self) -> RollbackPlan:
        """What :meth:`rollback_connect` would do, changing nothing."""
        _, _, plan = await self._previous()
        return plan

    async def rollback_connect(self) -> RollbackPlan:
        """``kubectl rollout undo deployment/<connect>`` (see the module's docstring): the
        Deployment back to its previous revision. Returns what was done.

        Raises :class:`NotFound` or :class:`RollbackRefused` (nothing changed)."""
        dep, rs, plan = await self._previous()
        serialize = self._api_client.sanitize_for_serialization
        template = _template_without_hash(serialize(rs.spec.template))
        annotations = {
            k: v for k, v in (dep.metadata.annotations or {}).items() if k in ANNOTATIONS_TO_SKIP
        }
        annotations.update(
            (k, v)
            for k, v in (rs.metadata.annotations or {}).items()
            if k not in ANNOTATIONS_TO_SKIP
        )
        patch = [
            {"op": "replace", "path": "/spec/template", "value": template},
            {"op": "replace", "path": "/metadata/annotations", "value": annotations},
        ]
        await self._call(
            f"roll back deployment {plan.deployment}",
            self._apps.patch_namespaced_deployment,
            plan.deployment,
            self.namespace,
            patch,
            _content_type="application/json-patch+json",
        )
        return plan

    # --- how an action went -------------------------------------------------------------------

    async def rollout_status(self) -> RolloutStatus:
        """The Spark Connect Deployment's rollout. Raises :class:`NotFound`."""
        name = self.connect_deployment
        dep: Any = await self._call(
            f"deployment {name}", self._apps.read_namespaced_deployment, name, self.namespace
        )
        status = dep.status
        conditions = (status.conditions or []) if status else []
        stalled = any(
            c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded" for c in conditions
        )
        generation = dep.metadata.generation or 0
        return RolloutStatus(
            name=name,
            desired=dep.spec.replicas if dep.spec.replicas is not None else 1,
            updated=(status.updated_replicas or 0) if status else 0,
            ready=(status.ready_replicas or 0) if status else 0,
            available=(status.available_replicas or 0) if status else 0,
            total=(status.replicas or 0) if status else 0,
            observed=bool(status) and (status.observed_generation or 0) >= generation,
            deadline_exceeded=stalled,
            selector=selector_string(dep.spec.selector),
        )

    async def pods_selected(self, selector: str) -> list[PodInfo]:
        """The namespace's pods matching a label selector (a workload's pods)."""
        found: Any = await self._call(
            "list pods", self._core.list_namespaced_pod, self.namespace, label_selector=selector
        )
        return [pod_info(p) for p in found.items]

    async def pod_gone(self, name: str, uid: str | None = None) -> bool:
        """Whether the pod ``name`` (with ``uid``, when given) no longer exists."""
        self._check_name(name)
        try:
            pod: Any = await self._call(
                f"pod {name}", self._core.read_namespaced_pod, name, self.namespace
            )
        except NotFound:
            return True
        return uid is not None and pod.metadata.uid != uid
