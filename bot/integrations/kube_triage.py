"""What the runbook's triage asks of the namespace beyond pods and workloads: Warning events,
PersistentVolumeClaims and what changed recently (Deployment and StatefulSet revisions with
their images, ConfigMaps written). Read-only lists of the namespace."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from bot.integrations.kube_client import KubeBase
from bot.integrations.kube_models import ChangeInfo, ClaimInfo, EventInfo

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
# A namespace's events can be many: one page is enough for a chat summary.
EVENTS_LIMIT = 500


def images(template: Any) -> tuple[str, ...]:
    """``container=image`` of a pod template (typed model or plain dict)."""
    if isinstance(template, dict):
        containers = ((template.get("spec") or {}).get("containers")) or []
        return tuple(f"{c.get('name')}={c.get('image')}" for c in containers)
    spec = template.spec if template is not None else None
    return tuple(f"{c.name}={c.image}" for c in (spec.containers if spec else []) or [])


def revision_of(obj: Any) -> int | None:
    value = (obj.metadata.annotations or {}).get(REVISION_ANNOTATION)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def controller_of(obj: Any) -> tuple[str, str, str] | None:
    """(kind, name, uid) of the object's controller (ownerReferences controller: true)."""
    for ref in obj.metadata.owner_references or []:
        if ref.controller:
            return ref.kind, ref.name, ref.uid
    return None


def _aware(when: dt.datetime | None) -> dt.datetime | None:
    if when is None:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _history(
    kind: str, items: list[tuple[str, int, dt.datetime | None, tuple[str, ...]]], since: dt.datetime
) -> list[ChangeInfo]:
    """Revisions (owner, number, created, images) made since ``since``, each with the
    images of the owner's revision before it."""
    changes = []
    by_owner: dict[str, list[tuple[int, dt.datetime | None, tuple[str, ...]]]] = {}
    for owner, number, at, imgs in items:
        by_owner.setdefault(owner, []).append((number, at, imgs))
    for owner, revisions in by_owner.items():
        revisions.sort(key=lambda r: r[0])
        for i, (number, at, imgs) in enumerate(revisions):
            if at is None or at < since:
                continue
            before = revisions[i - 1][2] if i > 0 else ()
            if before and before != imgs:
                what = f"revision {number}: {', '.join(before)} → {', '.join(imgs)}"
            elif before:
                what = f"revision {number}: pod template changed, images {', '.join(imgs)}"
            else:
                what = f"revision {number}: {', '.join(imgs)}"
            changes.append(ChangeInfo(at, kind, owner, what))
    return changes


class KubeTriage(KubeBase):
    """The triage reads of :class:`~bot.integrations.kube.Cluster`."""

    async def warning_events(self, since: dt.datetime) -> list[EventInfo]:
        """The namespace's Warning events last seen at or after ``since``, newest first
        (OOMKilling, FailedScheduling, Evicted, FailedCreate for an exceeded quota, …)."""
        found: Any = await self._call(
            "list events",
            self._core.list_namespaced_event,
            self.namespace,
            field_selector="type=Warning",
            limit=EVENTS_LIMIT,
        )
        events = []
        for ev in found.items:
            series = ev.series.last_observed_time if ev.series else None
            last = _aware(
                series or ev.last_timestamp or ev.event_time or ev.metadata.creation_timestamp
            )
            if last is not None and last < since:
                continue
            obj = ev.involved_object
            count = (ev.series.count if ev.series else None) or ev.count or 1
            events.append(
                EventInfo(
                    reason=ev.reason or "Unknown",
                    kind=obj.kind or "",
                    name=obj.name or "",
                    message=(ev.message or "").strip(),
                    count=count,
                    last_seen=last,
                )
            )
        far_past = dt.datetime.min.replace(tzinfo=dt.UTC)
        return sorted(events, key=lambda e: e.last_seen or far_past, reverse=True)

    async def claims(self) -> list[ClaimInfo]:
        """Every PersistentVolumeClaim of the namespace (a Pending or Lost one stops the pods
        that mount it)."""
        found: Any = await self._call(
            "list persistentvolumeclaims",
            self._core.list_namespaced_persistent_volume_claim,
            self.namespace,
        )
        claims = []
        for pvc in found.items:
            spec, status = pvc.spec, pvc.status
            requests = (spec.resources.requests or {}) if spec and spec.resources else {}
            claims.append(
                ClaimInfo(
                    name=pvc.metadata.name,
                    phase=(status.phase if status else None) or "Unknown",
                    storage_class=spec.storage_class_name if spec else None,
                    size=requests.get("storage"),
                )
            )
        return claims

    async def recent_changes(self, since: dt.datetime) -> list[ChangeInfo]:
        """What changed in the namespace at or after ``since``, newest first: Deployment
        revisions (their ReplicaSets), StatefulSet revisions (ControllerRevisions), both
        with images before → after, and ConfigMaps written (managedFields times)."""
        # Three independent lists, asked together (one round trip, not three).
        lists: tuple[Any, Any, Any] = await asyncio.gather(
            self._call(
                "list replicasets",
                self._apps.list_namespaced_replica_set,
                self.namespace,
                label_selector=self.selector,
            ),
            self._call(
                "list controllerrevisions",
                self._apps.list_namespaced_controller_revision,
                self.namespace,
                label_selector=self.selector,
            ),
            self._call("list configmaps", self._core.list_namespaced_config_map, self.namespace),
        )
        rs_list, cr_list, cm_list = lists
        deployments = []
        for rs in rs_list.items:
            owner, number = controller_of(rs), revision_of(rs)
            if owner is None or owner[0] != "Deployment" or number is None:
                continue
            created = _aware(rs.metadata.creation_timestamp)
            deployments.append((owner[1], number, created, images(rs.spec.template)))
        statefulsets = []
        for cr in cr_list.items:
            owner = controller_of(cr)
            if owner is None or owner[0] != "StatefulSet":
                continue
            template = ((cr.data or {}).get("spec") or {}).get("template") or {}
            created = _aware(cr.metadata.creation_timestamp)
            statefulsets.append((owner[1], int(cr.revision), created, images(template)))
        changes = _history("deployment", deployments, since)
        changes += _history("statefulset", statefulsets, since)
        for cm in cm_list.items:
            writes = [
                (_aware(m.time), m.manager)
                for m in cm.metadata.managed_fields or []
                if m.time is not None
            ]
            created = _aware(cm.metadata.creation_timestamp)
            last = max(writes, key=lambda w: w[0] or since, default=(created, None))
            if last[0] is None or last[0] < since:
                continue
            by = f" by {last[1]}" if last[1] else ""
            verb = "created" if writes == [] or last[0] == created else "changed"
            changes.append(ChangeInfo(last[0], "configmap", cm.metadata.name, f"{verb}{by}"))
        return sorted(changes, key=lambda c: c.at, reverse=True)
