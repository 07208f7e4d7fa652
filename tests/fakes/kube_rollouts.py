"""Pieces of the fake Kubernetes API server (tests/fakes/kube_api.py) for rollouts and triage:
RFC 6902 JSON patch, the part of the Deployment controller that keeps ReplicaSet revisions,
and builders of the objects /health's triage reads (Events, PersistentVolumeClaims,
ConfigMaps, ReplicaSets, ControllerRevisions).

The Deployment controller here does what ``kubectl rollout undo`` relies on: when a
Deployment's pod template changes, the ReplicaSet whose template (without the
``pod-template-hash`` label) equals the new one becomes the newest revision (max + 1), else a
new ReplicaSet is made with that revision; the Deployment's ``deployment.kubernetes.io/revision``
annotation follows (k8s.io/kubernetes pkg/controller/deployment/sync.go, getNewReplicaSet).
Pods are not made: a test says how the rollout went (FakeKubeApi.roll_out / stick_rollout).
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import uuid
from typing import Any

Obj = dict[str, Any]

REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"


class PatchError(Exception):
    """A JSON patch that cannot be applied; the API server answers 422 with this text."""


def stamp(when: dt.datetime | None = None) -> str:
    return (when or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- RFC 6902 ---------------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f'invalid JSON pointer "{path}"')
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], op: str) -> tuple[Any, str]:
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise PatchError(f"{op} operation does not apply: doc is missing path")
    return node, parts[-1]


def json_patch(doc: Obj, ops: Any) -> Obj:
    """Apply an RFC 6902 patch (add, remove, replace, test) as evanphx/json-patch does: a
    ``replace`` or ``remove`` of a missing key fails, ``add`` creates the last key only."""
    if not isinstance(ops, list):
        raise PatchError("the patch is not a list of operations")
    result = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or op.get("op") not in ("add", "remove", "replace", "test"):
            raise PatchError(f"unsupported operation: {op!r}")
        kind, parts = op["op"], _pointer(str(op.get("path", "")))
        if not parts:
            if kind in ("add", "replace"):
                result = copy.deepcopy(op["value"])
                continue
            raise PatchError(f"{kind} of the whole document is not supported")
        parent, key = _parent(result, parts, kind)
        if isinstance(parent, list):
            index = len(parent) if key == "-" else int(key) if key.isdigit() else -1
            if not 0 <= index <= len(parent) - (kind != "add"):
                raise PatchError(f"{kind} operation does not apply: index out of range")
            if kind == "add":
                parent.insert(index, copy.deepcopy(op["value"]))
            elif kind == "remove":
                del parent[index]
            elif kind == "replace":
                parent[index] = copy.deepcopy(op["value"])
            elif parent[index] != op.get("value"):
                raise PatchError("testing value failed")
            continue
        if not isinstance(parent, dict):
            raise PatchError(f"{kind} operation does not apply: doc is missing path")
        if kind in ("remove", "replace", "test") and key not in parent:
            # evanphx/json-patch's wording (the API server answers it as a 422)
            raise PatchError(
                f"{kind} operation does not apply: doc is missing key: {op['path']}: missing value"
            )
        if kind in ("add", "replace"):
            parent[key] = copy.deepcopy(op["value"])
        elif kind == "remove":
            del parent[key]
        elif parent[key] != op.get("value"):
            raise PatchError("testing value failed")
    return result


# --- the Deployment controller's revisions -----------------------------------------------------


def _without_hash(template: Obj) -> Obj:
    t = copy.deepcopy(template)
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return t


def template_hash(template: Obj) -> str:
    digest = hashlib.sha256(json.dumps(_without_hash(template), sort_keys=True).encode())
    return digest.hexdigest()[:10]


def revision(obj: Obj) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION, ""))
    except ValueError:
        return 0


def owned_by(obj: Obj, owner: Obj) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    uid = owner["metadata"].get("uid")
    return any(r.get("controller") and r.get("uid") == uid for r in refs)


def make_replicaset(deployment: Obj, number: int, *, at: dt.datetime | None = None) -> Obj:
    """The ReplicaSet of revision ``number`` of ``deployment``'s current pod template."""
    meta = deployment["metadata"]
    template = _without_hash(deployment["spec"]["template"])
    digest = template_hash(template)
    template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = digest
    selector = copy.deepcopy(deployment["spec"]["selector"])
    selector.setdefault("matchLabels", {})[HASH_LABEL] = digest
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if not k.startswith("deployment.kubernetes.io/")
    }
    annotations[REVISION] = str(number)
    return {
        "kind": "ReplicaSet",
        "apiVersion": "apps/v1",
        "metadata": {
            "name": f"{meta['name']}-{digest}",
            "namespace": meta["namespace"],
            "labels": dict(template["metadata"]["labels"]),
            "annotations": annotations,
            "creationTimestamp": stamp(at),
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {"replicas": 0, "selector": selector, "template": template},
        "status": {"replicas": 0},
    }


def sync_revisions(deployment: Obj, replicasets: list[Obj]) -> tuple[Obj | None, Obj | None]:
    """After ``deployment``'s template changed: (the ReplicaSet to store, the Deployment to
    store) — the matching old ReplicaSet with its revision bumped, or a new one."""
    owned = [rs for rs in replicasets if owned_by(rs, deployment)]
    newest = max((revision(rs) for rs in owned), default=0)
    wanted = _without_hash(deployment["spec"]["template"])
    match = next((rs for rs in owned if _without_hash(rs["spec"]["template"]) == wanted), None)
    if match is not None and revision(match) == newest:
        return None, None  # already the newest revision (e.g. a no-op template change)
    if match is not None:
        rs = copy.deepcopy(match)
        rs["metadata"].setdefault("annotations", {})[REVISION] = str(newest + 1)
    else:
        rs = make_replicaset(deployment, newest + 1)
    dep = copy.deepcopy(deployment)
    dep["metadata"].setdefault("annotations", {})[REVISION] = str(newest + 1)
    return rs, dep


# --- builders of what /health's triage reads ---------------------------------------------------


def make_event(
    reason: str,
    message: str,
    *,
    kind: str = "Pod",
    name: str,
    namespace: str = "spark",
    type_: str = "Warning",
    count: int = 1,
    at: dt.datetime | None = None,
) -> Obj:
    """A core/v1 Event about ``kind``/``name`` last seen ``at``."""
    when = stamp(at)
    return {
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": {"name": f"{name}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
        "involvedObject": {"kind": kind, "name": name, "namespace": namespace},
        "reason": reason,
        "message": message,
        "type": type_,
        "count": count,
        "firstTimestamp": when,
        "lastTimestamp": when,
        "source": {"component": "kubelet"},
    }


def make_pvc(
    name: str, *, phase: str = "Bound", namespace: str = "spark", size: str = "10Gi"
) -> Obj:
    return {
        "kind": "PersistentVolumeClaim",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
            "storageClassName": "standard",
        },
        "status": {"phase": phase},
    }


def make_configmap(
    name: str,
    data: dict[str, str],
    *,
    namespace: str = "spark",
    changed_at: dt.datetime | None = None,
    manager: str = "kubectl-edit",
    created_at: dt.datetime | None = None,
) -> Obj:
    """A ConfigMap whose last write (managedFields time) was ``changed_at`` by ``manager``."""
    meta: Obj = {"name": name, "namespace": namespace}
    if created_at is not None:
        meta["creationTimestamp"] = stamp(created_at)
    if changed_at is not None:
        meta["managedFields"] = [
            {
                "manager": manager,
                "operation": "Update",
                "apiVersion": "v1",
                "time": stamp(changed_at),
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {f"f:{k}": {} for k in data}},
            }
        ]
    return {"kind": "ConfigMap", "apiVersion": "v1", "metadata": meta, "data": dict(data)}


def make_controller_revision(
    statefulset: Obj, number: int, image: str, *, at: dt.datetime | None = None
) -> Obj:
    """A ControllerRevision of ``statefulset`` (its template with ``image``), as the
    StatefulSet controller stores one per template it ran."""
    meta = statefulset["metadata"]
    template = copy.deepcopy(statefulset["spec"]["template"])
    for c in template["spec"]["containers"]:
        c["image"] = image
    template["$patch"] = "replace"
    digest = template_hash(template)
    labels = dict(statefulset["spec"]["selector"]["matchLabels"])
    labels["controller-revision-hash"] = f"{meta['name']}-{digest}"
    return {
        "kind": "ControllerRevision",
        "apiVersion": "apps/v1",
        "metadata": {
            "name": f"{meta['name']}-{digest}",
            "namespace": meta["namespace"],
            "labels": labels,
            "creationTimestamp": stamp(at),
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "StatefulSet",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                }
            ],
        },
        "data": {"spec": {"template": template}},
        "revision": number,
    }
