"""A protocol-level fake of the Kubernetes API server for tests.

The official ``kubernetes`` client talks real HTTP to it through a kubeconfig written by
:meth:`FakeKubeApi.write_kubeconfig`. Paths, content types and JSON shapes follow the real
API server (lists are ``PodList`` …, errors are ``Status`` objects with the API server's
messages), so a client that works here sends what a real cluster expects.
tests/integration/test_fakes_kube.py checks this against the official client.

Usage::

    with FakeKubeApi() as api:
        seed_spark_platform(api)              # or api.add_pod(...), api.add_node(...)
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        ...                                   # run the client
        api.requests_matching("PATCH", "/scale")   # the request log

Served: get/list (label and field selectors, ``limit``/``continue``) of the kinds in
:data:`RESOURCES`; pod logs; delete with preconditions; merge and strategic-merge patches
(maps only) and server-side apply with field ownership (conflicts, ``force``); the ``scale``
subresource; RFC 6902 JSON patch (add, remove, replace, test); ``metrics.k8s.io`` lists.
Not served (answered 405 "not implemented by FakeKubeApi"): create (POST), replace (PUT),
delete of a collection, watch.

Controllers: a Deployment whose pod template changes gets its next ReplicaSet revision
(tests/fakes/kube_rollouts.py), nothing else moves by itself: a test says how a rollout or a
scale went with :meth:`FakeKubeApi.roll_out`, :meth:`FakeKubeApi.stick_rollout` and
:meth:`FakeKubeApi.executors_ready`. Triage objects: :meth:`FakeKubeApi.add_event`,
:meth:`FakeKubeApi.add_pvc`, :meth:`FakeKubeApi.add_configmap`,
:meth:`FakeKubeApi.add_rollout_history`, :meth:`FakeKubeApi.add_statefulset_history`.
Deleting a pod removes it at once (a real kubelet first terminates it).

Failure injection: :meth:`FakeKubeApi.fail` (answer with a status), :meth:`FakeKubeApi.hang`
(hold the request until :meth:`FakeKubeApi.clear_faults` or shutdown) and
:meth:`FakeKubeApi.forbid` (deny a verb like an RBAC authorizer would).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import datetime as dt
import itertools
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.fakes.kube_rollouts import (
    PatchError,
    json_patch,
    make_configmap,
    make_controller_revision,
    make_event,
    make_pvc,
    make_replicaset,
    stamp,
    sync_revisions,
)

Obj = dict[str, Any]
FieldPath = tuple[str, ...]

TOKEN = "fake-token-for-tests"
USER = "system:serviceaccount:spark:pira"  # who TOKEN authenticates as
DRIVER_CONTAINER = "spark-kubernetes-driver"
EXECUTOR_CONTAINER = "spark-kubernetes-executor"


@dataclass(frozen=True)
class Resource:
    """One REST resource the fake serves: (group, version, plural) → kind."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``pods``, ``statefulsets.apps``: how the API server names it in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "pods", "Pod"),
    Resource("", "v1", "nodes", "Node", namespaced=False),
    Resource("", "v1", "configmaps", "ConfigMap"),
    Resource("", "v1", "secrets", "Secret"),
    Resource("", "v1", "services", "Service"),
    Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim"),
    Resource("", "v1", "events", "Event"),
    Resource("apps", "v1", "statefulsets", "StatefulSet"),
    Resource("apps", "v1", "deployments", "Deployment"),
    Resource("apps", "v1", "replicasets", "ReplicaSet"),
    Resource("apps", "v1", "controllerrevisions", "ControllerRevision"),
    Resource("batch", "v1", "jobs", "Job"),
    Resource("batch", "v1", "cronjobs", "CronJob"),
)
_BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
# Kinds whose status is a subresource: writes to the main resource leave status alone.
_STATUS_KINDS = {"Pod", "Node", "Service", "PersistentVolumeClaim", "StatefulSet", "Deployment",
                 "ReplicaSet", "Job", "CronJob"}  # fmt: skip
# Kinds whose strategy sets metadata.generation (bumped when the spec changes).
_GENERATION_KINDS = {"StatefulSet", "Deployment", "Job", "CronJob"}


@dataclass
class RecordedRequest:
    """One request as the fake saw it; ``body`` is parsed JSON/YAML (or None), ``status`` the
    code answered (0 while unanswered, e.g. hanging)."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    body: Any
    authorization: str | None
    status: int = 0
    created: bool = False  # server-side apply that created the object (needs RBAC create)


@dataclass
class _Fault:
    method: str | None
    path_re: re.Pattern[str] | None
    status: int | None  # None → hang
    remaining: int | None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path_re is None or self.path_re.search(path) is not None
        )


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- errors -----------------------------------------------------------------------------------
# Failures are `Status` objects (API conventions: "Response Status Kind"); the messages are the
# API server's (k8s.io/apimachinery/pkg/api/errors), so a client's error text reads the same.


def status_obj(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    """A ``Status`` failure object exactly as the API server returns it. ``None`` details and
    empty detail fields are left out (``omitempty``): a core-group NotFound has no "group"."""
    status: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        status["details"] = {k: v for k, v in details.items() if v not in ("", None, [])}
    status["code"] = code
    return status


class ApiError(Exception):
    """An answer other than success: a ``Status`` object, or ``text`` (text/plain)."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: Obj | None = None,
        *,
        text: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.text = text
        self.status = status_obj(code, reason, message, details)


def _not_found(res: Resource, name: str) -> ApiError:
    details = {"name": name, "group": res.group, "kind": res.plural}
    return ApiError(404, "NotFound", f'{res.qualified} "{name}" not found', details)


def _conflict(res: Resource, name: str, why: str) -> ApiError:
    details = {"name": name, "group": res.group, "kind": res.plural}
    message = f'Operation cannot be fulfilled on {res.qualified} "{name}": {why}'
    return ApiError(409, "Conflict", message, details)


def _invalid(kind: str, group: str, name: str, errors: list[tuple[str, str, str]]) -> ApiError:
    """422 ``Invalid``; ``errors`` are (field, cause type, detail), e.g. ("spec.replicas",
    "FieldValueInvalid", "Invalid value: -1: must be greater than or equal to 0")."""
    texts = [f"{field}: {detail}" for field, _, detail in errors]
    aggregate = texts[0] if len(texts) == 1 else f"[{', '.join(texts)}]"
    qualified = f"{kind}.{group}" if group else kind
    causes = [{"reason": r, "message": d, "field": f} for f, r, d in errors]
    details = {"name": name, "group": group, "kind": kind, "causes": causes}
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {aggregate}', details)


def _forbidden(
    verb: str, group: str, resource: str, sub: str, ns: str | None, name: str | None
) -> ApiError:
    # What the RBAC authorizer's denial looks like (responsewriters.Forbidden).
    full = f"{resource}/{sub}" if sub else resource
    where = f'in the namespace "{ns}"' if ns else "at the cluster scope"
    why = f'User "{USER}" cannot {verb} resource "{full}" in API group "{group}" {where}'
    qualified = f"{resource}.{group}" if group else resource
    message = (
        f'{qualified} "{name}" is forbidden: {why}' if name else f"{qualified} is forbidden: {why}"
    )
    return ApiError(403, "Forbidden", message, {"name": name, "group": group, "kind": resource})


def _unimplemented(what: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", f"{what} is not implemented by FakeKubeApi")


# An unknown path (or an aggregated API without its APIService, e.g. metrics.k8s.io when
# metrics-server is absent) ends in the API server's NotFoundHandler: http.NotFound, plain text.
_NOT_FOUND_PATH = ApiError(404, "NotFound", "404 page not found", text="404 page not found\n")
_NOT_ALLOWED = ApiError(
    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
)


# --- selectors --------------------------------------------------------------------------------

_SET_RE = re.compile(
    r"^\s*(!?)([\w./-]+)\s*(?:(notin|in)\s*\(([^)]*)\)|(==|!=|=)\s*([\w.-]*))?\s*$"
)


def _split_selector(selector: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]


def label_selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Evaluate a label selector (equality- and set-based) the way the API server does."""
    for req in _split_selector(selector):
        m = _SET_RE.match(req)
        if m is None:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {req!r}")
        neg, key, set_op, set_vals, op, value = m.groups()
        if set_op:
            values = {v.strip() for v in set_vals.split(",") if v.strip()}
            ok = labels.get(key) in values if set_op == "in" else labels.get(key) not in values
        elif op in ("=", "=="):
            ok = labels.get(key) == value
        elif op == "!=":
            ok = labels.get(key) != value
        else:
            ok = (key in labels) != bool(neg)
        if not ok:
            return False
    return True


def _field_value(obj: Obj, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return "" if cur is None else str(cur)


# The fields each kind can be selected by (API concepts, "Field selectors": only a few fields
# per kind are indexed). Pods and nodes have their own conversion functions; every other kind
# gets the metav1 default (metadata.name, metadata.namespace).
_POD_FIELDS = (
    *("metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy"),
    *("spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork", "status.phase"),
    *("status.podIP", "status.podIPs", "status.nominatedNodeName"),
)
_FIELD_LABELS = {
    "pods": _POD_FIELDS,
    "nodes": ("metadata.name", "spec.unschedulable"),
    "jobs": ("metadata.name", "metadata.namespace", "status.successful"),
    # core/v1 events (pkg/apis/core/v1 conversion: EventToSelectableFields)
    "events": (
        *("metadata.name", "metadata.namespace", "involvedObject.kind"),
        *("involvedObject.namespace", "involvedObject.name", "involvedObject.uid"),
        *("involvedObject.apiVersion", "involvedObject.resourceVersion"),
        *("involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"),
    ),
}


def _check_field_label(plural: str, key: str) -> None:
    if plural in _FIELD_LABELS:
        if key not in _FIELD_LABELS[plural]:
            raise ApiError(400, "BadRequest", f"field label not supported: {key}")
    elif key not in ("metadata.name", "metadata.namespace"):
        message = (
            f'"{key}" is not a known field selector: only "metadata.name", "metadata.namespace"'
        )
        raise ApiError(400, "BadRequest", message)


def field_selector_matches(selector: str, obj: Obj, plural: str = "pods") -> bool:
    """Evaluate a field selector (``a.b=v``, ``a.b==v``, ``a.b!=v``, comma = and) on an object
    of the resource ``plural``; unsupported fields are refused as the API server does."""
    for req in selector.split(","):
        m = re.match(r"^\s*([\w.]+)\s*(==|!=|=)\s*(.*?)\s*$", req)
        if m is None:
            raise ApiError(400, "BadRequest", f"invalid selector: '{selector}'")
        key, op, value = m.groups()
        _check_field_label(plural, key)
        if (_field_value(obj, key) == value) != (op != "!="):
            return False
    return True


# --- patches ----------------------------------------------------------------------------------


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _strategic_merge_patch(target: Any, patch: Obj) -> Any:
    """A strategic merge patch equals a merge patch for maps; lists (merged by their patch
    merge key) and ``$patch``-style directives need the type's schema: refused loudly rather
    than merged wrongly."""

    def check(value: Any) -> None:
        if isinstance(value, list):
            raise _unimplemented("a strategic merge patch of a list")
        if isinstance(value, dict):
            for key, item in value.items():
                if key.startswith("$"):
                    raise _unimplemented(f"the strategic merge directive {key}")
                check(item)

    check(patch)
    return _merge_patch(target, patch)


# --- field ownership (Server-Side Apply, "Field management") ----------------------------------
# Each object's metadata.managedFields lists managers and the fields they own (FieldsV1:
# {"f:data": {"f:key": {}}}). Simplification: lists are atomic (a real server merges
# associative lists such as containers by key) and the "." / "k:" entries are not used.

_UNOWNED_META = {"name", "namespace", "uid", "resourceVersion", "generation",
                 "creationTimestamp", "managedFields", "selfLink", "deletionTimestamp",
                 "deletionGracePeriodSeconds"}  # fmt: skip
_MISSING = object()


def _leaves(obj: Obj) -> dict[FieldPath, Any]:
    """The fields of an object as field management tracks them: paths to scalars, lists and
    empty maps, without apiVersion/kind, server-set metadata and status."""
    out: dict[FieldPath, Any] = {}

    def walk(value: Any, path: FieldPath) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(item, (*path, key))
        else:
            out[path] = value

    for key, value in obj.items():
        if key in ("apiVersion", "kind", "status"):
            continue
        if key == "metadata" and isinstance(value, dict):
            for mkey, mvalue in value.items():
                if mkey not in _UNOWNED_META:
                    walk(mvalue, ("metadata", mkey))
        else:
            walk(value, (key,))
    return out


def _fields_v1(paths: set[FieldPath]) -> Obj:
    root: Obj = {}
    for path in sorted(paths):
        node = root
        for part in path:
            node = node.setdefault(f"f:{part}", {})
    return root


def _paths_v1(fields: Obj, prefix: FieldPath = ()) -> set[FieldPath]:
    out: set[FieldPath] = set()
    for key, sub in fields.items():
        if key.startswith("f:"):
            path = (*prefix, key[2:])
            inner = _paths_v1(sub, path) if isinstance(sub, dict) else set()
            out |= inner or {path}
    return out


@dataclass
class _Owner:
    """One managedFields entry: a manager's identity and the fields it owns."""

    manager: str
    operation: str  # "Apply" or "Update"
    api_version: str
    subresource: str
    time: str
    fields: set[FieldPath]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.manager, self.operation, self.subresource)

    def describe(self) -> str:
        # as the API server prints a manager in conflict messages (printManager)
        text = f'"{self.manager}"'
        if self.subresource:
            text += f' with subresource "{self.subresource}"'
        return f"{text} using {self.api_version}" if self.operation == "Update" else text

    def entry(self) -> Obj:
        entry: Obj = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": _fields_v1(self.fields),
        }
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry


def _owners(obj: Obj | None) -> list[_Owner]:
    entries = ((obj or {}).get("metadata") or {}).get("managedFields") or []
    return [
        _Owner(
            e.get("manager", ""),
            e.get("operation", "Update"),
            e.get("apiVersion", ""),
            e.get("subresource", ""),
            e.get("time", ""),
            _paths_v1(e.get("fieldsV1") or {}),
        )
        for e in entries
    ]


def _set_owners(obj: Obj, owners: list[_Owner]) -> None:
    entries = [o.entry() for o in owners if o.fields]
    if entries:
        obj["metadata"]["managedFields"] = entries
    else:
        obj["metadata"].pop("managedFields", None)


def _owner(owners: list[_Owner], key: tuple[str, str, str], api_version: str) -> _Owner:
    for owner in owners:
        if owner.key == key:
            owner.api_version, owner.time = api_version, _now()
            return owner
    owner = _Owner(key[0], key[1], api_version, key[2], _now(), set())
    owners.append(owner)
    return owner


def _record_update(new: Obj, old: Obj, manager: str, api_version: str, sub: str = "") -> None:
    """A non-apply write ("Update"): its manager takes over every field it changed; updates
    never conflict."""
    before, after = _leaves(old), _leaves(new)
    changed = {
        p for p in before.keys() | after.keys() if before.get(p, _MISSING) != after.get(p, _MISSING)
    }
    owners = _owners(old)
    for owner in owners:
        owner.fields -= changed
    if changed & after.keys():
        _owner(owners, (manager, "Update", sub), api_version).fields |= changed & after.keys()
    _set_owners(new, owners)


def _unchanged(new: Obj, old: Obj) -> bool:
    """Whether a write changes nothing but managedFields timestamps."""

    def comparable(obj: Obj) -> Obj:
        meta = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
        meta["managedFields"] = [
            {k: v for k, v in entry.items() if k != "time"}
            for entry in meta.get("managedFields", [])
        ]
        return {**obj, "metadata": meta}

    return comparable(new) == comparable(old)


def _delete_path(obj: Obj, path: FieldPath) -> None:
    node: Any = obj
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(path[-1], None)


def _user_agent_manager(user_agent: str | None) -> str:
    # Without ?fieldManager= an update is recorded under the User-Agent's product name.
    return (user_agent or "unknown").split("/")[0][:128]


# --- validation -------------------------------------------------------------------------------

_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    f"used for validation is '{_SUBDOMAIN}')"
)


def _validate(res: Resource, name: str, new: Obj, old: Obj | None) -> None:
    """The API server's create/update validation for the kinds the bot writes; raises 422."""
    errors: list[tuple[str, str, str]] = []
    if old is None and (len(name) > 253 or not re.fullmatch(_SUBDOMAIN, name)):
        errors.append(
            ("metadata.name", "FieldValueInvalid", f'Invalid value: "{name}": {_SUBDOMAIN_MSG}')
        )
    spec = new.get("spec") or {}
    if res.kind in ("StatefulSet", "Deployment"):
        replicas = spec.get("replicas")
        if isinstance(replicas, int) and replicas < 0:
            detail = f"Invalid value: {replicas}: must be greater than or equal to 0"
            errors.append(("spec.replicas", "FieldValueInvalid", detail))
    if res.kind == "Job":
        pod_spec = (spec.get("template") or {}).get("spec") or {}
        if not pod_spec.get("containers"):
            errors.append(("spec.template.spec.containers", "FieldValueRequired", "Required value"))
        policy = pod_spec.get("restartPolicy") or "Always"  # the pod template default
        if policy not in ("OnFailure", "Never"):
            detail = f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"'
            errors.append(("spec.template.spec.restartPolicy", "FieldValueNotSupported", detail))
        old_template = ((old or {}).get("spec") or {}).get("template")
        if old is not None and spec.get("template") != old_template:
            # a Job's pod template is immutable (the real message prints the whole template)
            errors.append(
                ("spec.template", "FieldValueInvalid", "Invalid value: ...: field is immutable")
            )
    if res.kind == "PersistentVolumeClaim":
        if not spec.get("accessModes"):
            detail = "Required value: at least 1 access mode is required"
            errors.append(("spec.accessModes", "FieldValueRequired", detail))
        if "storage" not in ((spec.get("resources") or {}).get("requests") or {}):
            errors.append(("spec.resources[storage]", "FieldValueRequired", "Required value"))
        if old is not None:

            def frozen(s: Obj, previous: Obj) -> Obj:  # what may not change after creation
                s = {k: v for k, v in s.items() if k != "resources"}
                if not previous.get("volumeName"):  # the binder sets it once
                    s.pop("volumeName", None)
                return s

            old_spec = old.get("spec") or {}
            if frozen(spec, old_spec) != frozen(old_spec, old_spec):
                detail = (
                    "Forbidden: spec is immutable after creation except resources.requests "
                    "and volumeAttributesClassName for bound claims"
                )  # the real message goes on with a diff of the two specs
                errors.append(("spec", "FieldValueForbidden", detail))
    if errors:
        raise _invalid(res.kind, res.group, name, errors)


# --- object builders --------------------------------------------------------------------------


def make_pod(
    name: str,
    *,
    namespace: str = "spark",
    phase: str = "Running",
    labels: dict[str, str] | None = None,
    role: str | None = None,
    restarts: int = 0,
    waiting_reason: str | None = None,
    last_terminated_reason: str | None = None,
    containers: tuple[str, ...] | None = None,
    node: str | None = "node-1",
    reason: str | None = None,
) -> Obj:
    """A Pod shaped like the API server's; ``role`` sets the ``spark-role`` label."""
    labels = dict(labels if labels is not None else {"app.kubernetes.io/part-of": "spark-k8s"})
    if role is not None:
        labels["spark-role"] = role
    if containers is None:
        containers = (DRIVER_CONTAINER if role == "driver" else EXECUTOR_CONTAINER,)
    statuses = []
    for cname in containers:
        if waiting_reason is not None or phase == "Pending":
            state: Obj = {"waiting": {"reason": waiting_reason or "ContainerCreating"}}
        elif phase in ("Failed", "Succeeded"):
            code = 1 if phase == "Failed" else 0
            state = {"terminated": {"exitCode": code, "reason": reason or "Error"}}
        else:
            state = {"running": {"startedAt": _now()}}
        cstatus: Obj = {
            "name": cname,
            "image": "apache/spark:3.5.1",
            "imageID": "docker.io/apache/spark@sha256:" + "0" * 64,
            "ready": "running" in state,
            "started": "running" in state,
            "restartCount": restarts,
            "state": state,
            "lastState": {},
        }
        if last_terminated_reason is not None:
            cstatus["lastState"] = {
                "terminated": {"exitCode": 137, "reason": last_terminated_reason}
            }
        statuses.append(cstatus)
    status: Obj = {"phase": phase, "containerStatuses": statuses, "startTime": _now()}
    if reason is not None:
        status["reason"] = reason
    spec: Obj = {"containers": [{"name": c, "image": "apache/spark:3.5.1"} for c in containers]}
    if node is not None:
        spec["nodeName"] = node
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": spec,
        "status": status,
    }


def make_node(name: str, *, ready: bool | None = True, cpu: str = "8", memory: str = "32Gi") -> Obj:
    """A Node; ``ready=None`` gives the ``Unknown`` condition of an unreachable kubelet."""
    cond = "Unknown" if ready is None else ("True" if ready else "False")
    return {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {
            "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [
                {
                    "type": "MemoryPressure",
                    "status": "False",
                    "reason": "KubeletHasSufficientMemory",
                },
                {
                    "type": "Ready",
                    "status": cond,
                    "reason": "KubeletReady" if ready else "KubeletNotReady",
                    "lastTransitionTime": _now(),
                },
            ],
        },
    }


def _workload(kind: str, name: str, namespace: str, replicas: int, ready: int) -> Obj:
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "spark-k8s"}
    spec: Obj = {
        "replicas": replicas,
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": name, "image": "apache/spark:3.5.1"}]},
        },
    }
    status: Obj = {"replicas": replicas, "readyReplicas": ready, "observedGeneration": 1}
    if kind == "StatefulSet":
        spec["serviceName"] = name
        status.update(currentReplicas=replicas, updatedReplicas=replicas)
    else:
        status.update(updatedReplicas=replicas, availableReplicas=ready)
    return {
        "kind": kind,
        "apiVersion": "apps/v1",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "generation": 1},
        "spec": spec,
        "status": status,
    }


# --- the HTTP handler -------------------------------------------------------------------------

_PATH_RE = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)"
    r"(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$"
)
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
_JSON_PATCH = "application/json-patch+json"
_MERGE_PATCH = "application/merge-patch+json"
_STRATEGIC_PATCH = "application/strategic-merge-patch+json"
_APPLY_TYPE = "application/apply-patch+yaml"
# What a built-in resource accepts for PATCH, in the order the API server lists them.
_PATCH_TYPES = (_JSON_PATCH, _MERGE_PATCH, _STRATEGIC_PATCH, _APPLY_TYPE)
_METRICS_GV = "metrics.k8s.io/v1beta1"


def _verb(method: str, name: str | None, query: dict[str, str]) -> str:
    """The authorization verb of a request (k8s.io/apiserver RequestInfo)."""
    if method == "GET":
        return "get" if name else ("watch" if query.get("watch") in ("1", "true") else "list")
    if method == "DELETE":
        return "delete" if name else "deletecollection"
    return {"PATCH": "patch", "POST": "create", "PUT": "update"}.get(method, method.lower())


def _etcd_key(obj: Obj) -> str:
    meta = obj["metadata"]
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]


def _encode_continue(start: str, rv: str) -> str:
    token = {"v": "meta.k8s.io/v1", "rv": int(rv), "start": start}
    return base64.urlsafe_b64encode(json.dumps(token).encode()).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if data.get("v") != "meta.k8s.io/v1" or not isinstance(data.get("start"), str):
            raise ValueError("unsupported continue token version or start key")
        return data["start"], str(int(data["rv"]))
    except (ValueError, TypeError, KeyError, AttributeError, binascii.Error) as exc:
        message = f"invalid continue token: continue key is not valid: {exc}"
        raise ApiError(400, "BadRequest", message) from None


class _Handler(BaseHTTPRequestHandler):
    api: FakeKubeApi  # set on the subclass FakeKubeApi creates
    protocol_version = "HTTP/1.1"  # keep-alive, as urllib3 pools connections

    def setup(self) -> None:
        super().setup()
        with self.api._lock:
            self.api._connections.add(self.connection)

    def finish(self) -> None:
        with self.api._lock:
            self.api._connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr noise
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip() or None
        rec = RecordedRequest(
            method, url.path, query, ctype, None, self.headers.get("Authorization")
        )
        body_error = None
        if raw:
            try:
                rec.body = yaml.safe_load(raw) if ctype == _APPLY_TYPE else json.loads(raw)
            except (ValueError, yaml.YAMLError) as exc:
                what = "error decoding YAML" if ctype == _APPLY_TYPE else "error decoding body"
                body_error = f"{what}: {exc}"
        with self.api._lock:
            self.api.requests.append(rec)
        if self.api.latency:  # a distant API server (benchmarks): each answer this late
            time.sleep(self.api.latency)
        try:
            # the API server's filter order: authentication, then the handler
            if rec.authorization != f"Bearer {TOKEN}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            fault = self.api._take_fault(method, url.path)
            if fault is not None and fault.status is None:
                self.api._release.wait(60)
                self.close_connection = True
                return
            if fault is not None and fault.status is not None:
                code = fault.status
                raise ApiError(code, _REASONS.get(code, "Unknown"), f"injected failure {code}")
            code, payload = self._route(method, url.path, query, rec, body_error)
        except ApiError as err:
            code, payload = err.code, (err.text if err.text is not None else err.status)
        rec.status = code
        if isinstance(payload, str):
            self._send(code, payload.encode(), "text/plain")
        else:
            self._send(code, json.dumps(payload).encode(), "application/json")

    def _send(self, code: int, data: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        rec: RecordedRequest,
        body_error: str | None,
    ) -> tuple[int, Obj | str]:
        is_discovery = path in ("/version", "/api", "/apis", "/api/v1") or bool(
            re.fullmatch(r"/apis/[^/]+/[^/]+", path)
        )
        if method == "GET" and is_discovery:
            return 200, self._discovery(path)
        m = _PATH_RE.match(path)
        if m is None:
            raise _NOT_FOUND_PATH
        group = "" if m["core"] else m["group"]
        version = m["core"] or m["version"]
        ns, plural, name, sub = m["ns"], m["plural"], m["name"], m["sub"]
        # authorization comes before routing: a denied request is 403 even for a missing object
        self.api._authorize(_verb(method, name, query), group, plural, sub or "", ns, name)
        if f"{group}/{version}" == _METRICS_GV:
            return 200, self._metrics(method, ns, plural, name, query)
        res = _BY_PATH.get((group, version, plural))
        if res is None or (res.namespaced is False and ns is not None):
            raise _NOT_FOUND_PATH
        if name is None:
            if method == "GET":
                if query.get("watch") in ("1", "true"):
                    raise _unimplemented("watch")
                return 200, self._list(res, ns, query)
            if method in ("POST", "DELETE"):
                raise _unimplemented(f"{method} on a collection")
            raise _NOT_ALLOWED
        if sub is None:
            if method == "GET":
                return 200, self._get(res, ns, name)
            if method == "DELETE":
                if body_error:
                    raise ApiError(400, "BadRequest", body_error)
                return 200, self._delete(res, ns, name, rec.body)
            if method == "PATCH":
                return self._patch(res, ns, name, None, query, rec, body_error)
            if method == "PUT":
                raise _unimplemented("PUT (replace)")
        elif sub == "log" and res.plural == "pods" and method == "GET":
            return 200, self._log(ns or "", name, query)
        elif sub == "scale" and res.plural in ("statefulsets", "deployments"):
            if method == "GET":
                return 200, self._scale(res, ns, name)
            if method == "PATCH":
                return self._patch(res, ns, name, "scale", query, rec, body_error)
        raise _NOT_ALLOWED

    # discovery
    def _discovery(self, path: str) -> Obj:
        groups = sorted({r.group for r in RESOURCES if r.group})
        if path == "/version":
            return {"major": "1", "minor": "31", "gitVersion": "v1.31.4", "platform": "linux/amd64"}
        if path == "/api":
            addr = {"clientCIDR": "0.0.0.0/0", "serverAddress": self.api.url[len("http://") :]}
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [addr]}
        if path == "/apis":
            gvs = [f"{g}/v1" for g in groups]
            if self.api.metrics_available:
                gvs.append(_METRICS_GV)
            items = []
            for gv in gvs:
                ver = {"groupVersion": gv, "version": gv.split("/")[1]}
                items.append({"name": gv.split("/")[0], "versions": [ver], "preferredVersion": ver})
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": items}
        gv = "v1" if path == "/api/v1" else path[len("/apis/") :]
        served = [r for r in RESOURCES if r.api_version == gv]
        if not served:
            raise _NOT_FOUND_PATH
        verbs = ["get", "list", "create", "update", "patch", "delete", "watch"]
        resources: list[Obj] = []
        subresources = {
            "pods": ("log", "Pod"),
            "statefulsets": ("scale", "Scale"),
            "deployments": ("scale", "Scale"),
        }
        for r in served:
            resources.append(
                {
                    "name": r.plural,
                    "singularName": r.kind.lower(),
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": verbs,
                }
            )
            if r.plural in subresources:
                sub, kind = subresources[r.plural]
                sub_verbs = ["get"] if sub == "log" else ["get", "patch", "update"]
                resources.append(
                    {
                        "name": f"{r.plural}/{sub}",
                        "singularName": "",
                        "namespaced": True,
                        "kind": kind,
                        "verbs": sub_verbs,
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": gv,
            "resources": resources,
        }

    # reads
    def _select(self, res: Resource, ns: str | None, query: dict[str, str]) -> list[Obj]:
        labels_sel, fields_sel = query.get("labelSelector"), query.get("fieldSelector")
        if fields_sel:  # refused even when nothing would be compared
            for req in fields_sel.split(","):
                key = re.split(r"==|!=|=", req, maxsplit=1)[0].strip()
                _check_field_label(res.plural, key)
        items = []
        for obj in self.api._list(res, ns):
            labels = obj["metadata"].get("labels") or {}
            if labels_sel and not label_selector_matches(labels_sel, labels):
                continue
            if fields_sel and not field_selector_matches(fields_sel, obj, res.plural):
                continue
            items.append(obj)
        return items

    def _list(self, res: Resource, ns: str | None, query: dict[str, str]) -> Obj:
        try:
            limit = int(query.get("limit") or 0)
        except ValueError:
            raise ApiError(400, "BadRequest", f"invalid limit: {query['limit']!r}") from None
        rv = str(next(self.api._rv))
        items = self._select(res, ns, query)
        # API concepts, "Retrieving large results sets in chunks": items come in key order
        # (namespace/name); a page of `limit` carries an opaque `continue` token naming where
        # the next page starts, and remainingItemCount when the list has no selector.
        if query.get("continue"):
            start, rv = _decode_continue(query["continue"])
            items = [obj for obj in items if _etcd_key(obj) >= start]
        meta: Obj = {"resourceVersion": rv}
        if 0 < limit < len(items):
            meta["continue"] = _encode_continue(_etcd_key(items[limit - 1]) + "\x00", rv)
            if not query.get("labelSelector") and not query.get("fieldSelector"):
                meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        for obj in items:  # the real server leaves kind/apiVersion off list items
            obj.pop("kind", None)
            obj.pop("apiVersion", None)
        return {
            "kind": f"{res.kind}List",
            "apiVersion": res.api_version,
            "metadata": meta,
            "items": items,
        }

    def _get(self, res: Resource, ns: str | None, name: str) -> Obj:
        obj = self.api.get(res.api_version, res.plural, ns, name)
        if obj is None:
            raise _not_found(res, name)
        return obj

    def _log(self, ns: str, name: str, query: dict[str, str]) -> str:
        pod = self._get(_BY_PATH[("", "v1", "pods")], ns, name)
        names = [c["name"] for c in pod["spec"]["containers"]]
        container = query.get("container")
        if container is None:
            if len(names) != 1:
                raise ApiError(
                    400,
                    "BadRequest",
                    f"a container name must be specified for pod {name}, "
                    f"choose one of: [{' '.join(names)}]",
                )
            container = names[0]
        if container not in names:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
        if not pod["spec"].get("nodeName"):
            return ""  # not scheduled: the API server has no kubelet to ask, the log is empty
        # the kubelet's answer for a container that never ran (validateContainerLogStatus);
        # a restarting one (CrashLoopBackOff) serves its previous instance's log
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        cstatus: Obj = next((s for s in statuses if s.get("name") == container), {})
        state, last = cstatus.get("state") or {}, cstatus.get("lastState") or {}
        if not state.get("running") and not state.get("terminated") and not last.get("terminated"):
            reason = (state.get("waiting") or {}).get("reason")
            detail = {
                "ErrImagePull": ": image can't be pulled",
                "ImagePullBackOff": ": trying and failing to pull image",
            }.get(reason or "", f": {reason}" if reason else " - no logs yet")
            raise ApiError(
                400,
                "BadRequest",
                f'container "{container}" in pod "{name}" is waiting to start{detail}',
            )
        with self.api._lock:
            text = self.api._logs.get((ns, name, container), "")
        if "tailLines" in query:
            tail = int(query["tailLines"])
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-tail:]) if tail > 0 else ""
        return text

    def _scale(self, res: Resource, ns: str | None, name: str) -> Obj:
        obj = self._get(res, ns, name)
        meta = {
            k: obj["metadata"][k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
        }
        selector = ",".join(f"{k}={v}" for k, v in obj["spec"]["selector"]["matchLabels"].items())
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": meta,
            "spec": {"replicas": obj["spec"]["replicas"]},
            "status": {"replicas": obj["status"].get("replicas", 0), "selector": selector},
        }

    def _metrics(
        self, method: str, ns: str | None, plural: str, name: str | None, query: dict[str, str]
    ) -> Obj:
        if not self.api.metrics_available:
            raise _NOT_FOUND_PATH  # no APIService for metrics.k8s.io: the aggregator has no route
        if (
            plural not in ("pods", "nodes")
            or name is not None
            or (plural == "nodes") != (ns is None)
        ):
            raise _NOT_FOUND_PATH
        if method != "GET":
            raise _NOT_ALLOWED  # metrics are read-only
        meta = {"resourceVersion": ""}
        now = _now()
        if plural == "nodes":
            with self.api._lock:
                node_items = [
                    {
                        "metadata": {"name": n, "creationTimestamp": now},
                        "timestamp": now,
                        "window": "20.027s",
                        "usage": dict(u),
                    }
                    for n, u in sorted(self.api._node_metrics.items())
                ]
            return {
                "kind": "NodeMetricsList",
                "apiVersion": _METRICS_GV,
                "metadata": meta,
                "items": node_items,
            }
        items = []
        for pod in self._select(_BY_PATH[("", "v1", "pods")], ns, query):
            with self.api._lock:
                usage = self.api._pod_metrics.get((ns or "", pod["metadata"]["name"]))
            if usage is None:
                continue
            pmeta = {k: pod["metadata"].get(k) for k in ("name", "namespace", "labels")}
            pmeta["creationTimestamp"] = now
            containers = [{"name": c, "usage": dict(u)} for c, u in usage.items()]
            items.append(
                {"metadata": pmeta, "timestamp": now, "window": "15.012s", "containers": containers}
            )
        return {
            "kind": "PodMetricsList",
            "apiVersion": _METRICS_GV,
            "metadata": meta,
            "items": items,
        }

    # writes
    def _delete(self, res: Resource, ns: str | None, name: str, body: Any) -> Obj:
        preconditions = (body.get("preconditions") or {}) if isinstance(body, dict) else {}
        with self.api._lock:
            obj = self._get(res, ns, name)
            # DeleteOptions.preconditions: the storage layer refuses with a Conflict
            key = f"/registry/{res.plural}/{ns}/{name}" if ns else f"/registry/{res.plural}/{name}"
            meta = obj["metadata"]
            for field, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
                want = preconditions.get(field)
                if want is not None and want != meta.get(field):
                    raise _conflict(
                        res,
                        name,
                        f"StorageError: invalid object, Code: 4, Key: {key}, ResourceVersion: 0, "
                        f"AdditionalErrorMsg: Precondition failed: {label} in precondition: "
                        f"{want}, {label} in object meta: {meta.get(field)}",
                    )
            del self.api._objects[(res.api_version, res.plural, ns, name)]
        obj["metadata"]["deletionTimestamp"] = _now()
        obj["metadata"]["deletionGracePeriodSeconds"] = 30
        return obj

    def _store(
        self, res: Resource, ns: str | None, name: str, obj: Obj, old: Obj | None = None
    ) -> Obj:
        if old is not None and _unchanged(obj, old):
            return copy.deepcopy(old)  # a no-op write is not stored: same resourceVersion
        obj["metadata"]["resourceVersion"] = str(next(self.api._rv))
        self.api._objects[(res.api_version, res.plural, ns, name)] = obj
        return copy.deepcopy(obj)

    def _patch(
        self,
        res: Resource,
        ns: str | None,
        name: str,
        sub: str | None,
        query: dict[str, str],
        rec: RecordedRequest,
        body_error: str | None,
    ) -> tuple[int, Obj]:
        # The API server's PATCH handler checks, in order: the media type (415), the
        # PatchOptions (422: fieldManager is required for apply, force only for apply), then
        # decodes the body (400).
        ctype = rec.content_type
        if ctype not in _PATCH_TYPES:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types "
                f"include: {', '.join(_PATCH_TYPES)}",
            )
        errors = []
        if ctype != _APPLY_TYPE and "force" in query:
            errors.append(
                (
                    "force",
                    "FieldValueForbidden",
                    "Forbidden: may not be specified for non-apply patch",
                )
            )
        if ctype == _APPLY_TYPE and not query.get("fieldManager"):
            errors.append(
                (
                    "fieldManager",
                    "FieldValueRequired",
                    "Required value: is required for apply patch",
                )
            )
        if errors:
            raise _invalid("PatchOptions", "meta.k8s.io", "", errors)
        if body_error:
            raise ApiError(400, "BadRequest", body_error)
        body = rec.body
        if ctype == _JSON_PATCH:
            if sub is not None:
                raise _unimplemented("JSON patch of a subresource")
            return 200, self._json_patch(res, ns, name, query, body)
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "error decoding patch: the patch is not an object")
        if sub == "scale":
            if ctype == _APPLY_TYPE:
                raise _unimplemented("server-side apply of the scale subresource")
            manager = query.get("fieldManager") or _user_agent_manager(
                self.headers.get("User-Agent")
            )
            return 200, self._patch_scale(res, ns, name, body, ctype, manager)
        if ctype == _APPLY_TYPE:
            return self._apply(res, ns, name, query, rec, body)
        manager = query.get("fieldManager") or _user_agent_manager(self.headers.get("User-Agent"))
        with self.api._lock:
            old = self._get(res, ns, name)  # a non-apply patch never creates: 404
            want_rv = (body.get("metadata") or {}).get("resourceVersion")
            if want_rv is not None and want_rv != old["metadata"].get("resourceVersion"):
                # optimistic concurrency (API concepts, "Resource versions")
                raise _conflict(
                    res,
                    name,
                    "the object has been modified; please apply your changes to the latest "
                    "version and try again",
                )
            merge = _strategic_merge_patch if ctype == _STRATEGIC_PATCH else _merge_patch
            new = merge(old, body)
            new["metadata"] = dict(new.get("metadata") or {}, name=name)
            for field in ("uid", "creationTimestamp", "namespace", "generation"):
                if field in old["metadata"]:
                    new["metadata"][field] = old["metadata"][field]
            if res.kind in _STATUS_KINDS:  # status is its own subresource
                new.pop("status", None)
                if "status" in old:
                    new["status"] = old["status"]
            return 200, self._update(res, ns, name, new, old, manager)

    def _json_patch(
        self, res: Resource, ns: str | None, name: str, query: dict[str, str], ops: Any
    ) -> Obj:
        """RFC 6902 (``kubectl rollout undo`` sends one): the patched object replaces the
        stored one; an operation that does not apply is 422 with json-patch's message."""
        manager = query.get("fieldManager") or _user_agent_manager(self.headers.get("User-Agent"))
        with self.api._lock:
            old = self._get(res, ns, name)
            try:
                new = json_patch(old, ops)
            except PatchError as exc:
                raise ApiError(422, "Invalid", str(exc)) from None
            new["metadata"] = dict(new.get("metadata") or {}, name=name)
            for field in ("uid", "creationTimestamp", "namespace", "generation",
                          "resourceVersion", "managedFields"):  # fmt: skip
                if field in old["metadata"]:
                    new["metadata"][field] = old["metadata"][field]
            if res.kind in _STATUS_KINDS:
                new.pop("status", None)
                if "status" in old:
                    new["status"] = old["status"]
            return self._update(res, ns, name, new, old, manager)

    def _update(
        self, res: Resource, ns: str | None, name: str, new: Obj, old: Obj, manager: str
    ) -> Obj:
        """Store a patched object (the caller holds the lock): generation, validation,
        managed fields; a Deployment whose pod template changed gets its next revision."""
        if new.get("spec") != old.get("spec") and res.kind in _GENERATION_KINDS:
            new["metadata"]["generation"] = old["metadata"].get("generation", 0) + 1
        _validate(res, name, new, old)
        _record_update(new, old, manager, res.api_version)
        if res.kind == "Deployment" and new["spec"].get("template") != old["spec"].get("template"):
            rs_res = _BY_PATH[("apps", "v1", "replicasets")]
            rs, dep = sync_revisions(new, list(self.api._list(rs_res, ns)))
            if rs is not None and dep is not None:
                self.api.put(rs)
                new = dep
        return self._store(res, ns, name, new, old)

    def _apply(
        self,
        res: Resource,
        ns: str | None,
        name: str,
        query: dict[str, str],
        rec: RecordedRequest,
        body: Obj,
    ) -> tuple[int, Obj]:
        """Server-side apply: create or merge, the applier owning what it applied; fields
        owned by another manager with another value conflict unless ``force``; fields this
        manager applied before and no longer does are removed unless someone else owns them."""
        manager = query["fieldManager"]
        force = query.get("force", "").lower() == "true"
        if body.get("apiVersion") != res.api_version or body.get("kind") != res.kind:
            group, _, version = str(body.get("apiVersion") or "").rpartition("/")
            raise ApiError(
                400,
                "BadRequest",
                f"invalid object type: {group}/{version}, Kind={body.get('kind') or ''}",
            )
        meta = body.get("metadata") or {}
        if "managedFields" in meta:
            raise ApiError(400, "BadRequest", "metadata.managedFields must be nil")
        applied = _leaves(body)
        with self.api._lock:
            existing = self.api.get(res.api_version, res.plural, ns, name)
            if existing is None:
                # apply that creates is also authorized as create
                self.api._authorize("create", res.group, res.plural, "", ns, name)
            owners = _owners(existing)
            mine = _owner(owners, (manager, "Apply", ""), res.api_version)
            previous = set(mine.fields)
            live = _leaves(existing) if existing else {}
            conflicts = [
                (owner, path)
                for owner in owners
                if owner is not mine
                for path in sorted(owner.fields & applied.keys())
                if live.get(path, _MISSING) != applied[path]
            ]
            if conflicts and not force:
                raise self._apply_conflict(conflicts)
            for owner, path in conflicts:  # forced: the applier takes them over
                owner.fields.discard(path)
            if meta.get("name") != name:
                raise ApiError(
                    400,
                    "BadRequest",
                    f"the name of the object ({meta.get('name') or ''}) "
                    f"does not match the name on the URL ({name})",
                )
            if meta.get("namespace") not in (None, ns):
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not "
                    "match the namespace sent on the request",
                )
            content = {k: v for k, v in body.items() if k != "status"}
            if existing is None:
                obj = copy.deepcopy(content)
                obj["metadata"] = dict(meta, uid=str(uuid.uuid4()), creationTimestamp=_now())
                if ns is not None:
                    obj["metadata"]["namespace"] = ns
                if res.kind in _GENERATION_KINDS:
                    obj["metadata"]["generation"] = 1
            else:
                obj = _merge_patch(existing, content)
                others = set().union(*(o.fields for o in owners if o is not mine))
                for path in previous - applied.keys() - others:
                    _delete_path(obj, path)
                if obj.get("spec") != existing.get("spec") and res.kind in _GENERATION_KINDS:
                    obj["metadata"]["generation"] = existing["metadata"].get("generation", 0) + 1
            mine.fields = set(applied)
            _validate(res, name, obj, existing)
            _set_owners(obj, owners)
            rec.created = existing is None
            return (201 if rec.created else 200), self._store(res, ns, name, obj, existing)

    @staticmethod
    def _apply_conflict(conflicts: list[tuple[_Owner, FieldPath]]) -> ApiError:
        # Server-Side Apply, "Conflicts": 409 naming each manager and field (NewApplyConflict)
        def field(path: FieldPath) -> str:
            return "." + ".".join(path)

        causes = []
        for owner, path in conflicts:
            message = f"conflict with {owner.describe()}"
            causes.append(
                {"reason": "FieldManagerConflict", "message": message, "field": field(path)}
            )
        if len(conflicts) == 1:
            owner, path = conflicts[0]
            message = (
                f"Apply failed with 1 conflict: conflict with {owner.describe()}: {field(path)}"
            )
        else:
            lines = []
            for described in sorted({o.describe() for o, _ in conflicts}):
                lines.append(f"conflicts with {described}:")
                lines += [f"- {field(p)}" for o, p in conflicts if o.describe() == described]
            message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
        return ApiError(409, "Conflict", message, {"causes": causes})

    def _patch_scale(
        self, res: Resource, ns: str | None, name: str, body: Obj, ctype: str, manager: str
    ) -> Obj:
        # The scale subresource: the patch applies to the Scale object, only spec.replicas
        # reaches the workload.
        with self.api._lock:
            scale = self._scale(res, ns, name)
            merge = _strategic_merge_patch if ctype == _STRATEGIC_PATCH else _merge_patch
            replicas = (merge(scale, body).get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                detail = f"Invalid value: {replicas!r}: must be greater than or equal to 0"
                error = ("spec.replicas", "FieldValueInvalid", detail)
                raise _invalid("Scale", "autoscaling", name, [error])
            obj = self._get(res, ns, name)
            old = copy.deepcopy(obj)
            if obj["spec"].get("replicas") != replicas:
                obj["spec"]["replicas"] = replicas
                obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
            _record_update(obj, old, manager, res.api_version, "scale")
            self._store(res, ns, name, obj, old)
            return self._scale(res, ns, name)


# --- the server -------------------------------------------------------------------------------


class FakeKubeApi:
    """In-memory Kubernetes API server on 127.0.0.1 (random port), thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._objects: dict[tuple[str, str, str | None, str], Obj] = {}
        self._logs: dict[tuple[str, str, str], str] = {}
        self._pod_metrics: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
        self._node_metrics: dict[str, dict[str, str]] = {}
        self._faults: list[_Fault] = []
        self._denied: set[tuple[str, str, str]] = set()  # (verb, group, resource[/sub])
        self._connections: set[socket.socket] = set()
        self._release = threading.Event()
        self._rv = itertools.count(1000)
        self.metrics_available = True
        self.latency = 0.0  # seconds added to every answer
        self.requests: list[RecordedRequest] = []
        handler = type("Handler", (_Handler,), {"api": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # lifecycle
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeKubeApi:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()  # let hanging handlers finish
        self._server.shutdown()
        self._server.server_close()
        with self._lock:  # like a real shutdown: pooled keep-alive connections die too
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FakeKubeApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_kubeconfig(self, path: Path, namespace: str = "spark") -> Path:
        """Write a kubeconfig pointing at this server (bearer token :data:`TOKEN`)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "pira", "user": {"token": TOKEN}}],
            "contexts": [
                {
                    "name": "fake",
                    "context": {"cluster": "fake", "user": "pira", "namespace": namespace},
                }
            ],
            "current-context": "fake",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # state
    def put(self, obj: Obj) -> Obj:
        """Store any object of a served kind (fills uid/resourceVersion/creationTimestamp)."""
        res = self._resource_for_kind(obj["apiVersion"], obj["kind"])
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now())
        meta["resourceVersion"] = str(next(self._rv))
        ns = meta.get("namespace") if res.namespaced else None
        with self._lock:
            self._objects[(res.api_version, res.plural, ns, meta["name"])] = obj
        return obj

    def get(self, api_version: str, plural: str, namespace: str | None, name: str) -> Obj | None:
        with self._lock:
            obj = self._objects.get((api_version, plural, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def objects(self, api_version: str, plural: str, namespace: str | None = "spark") -> list[Obj]:
        """Copies of the stored objects of a kind (in a namespace; None: everywhere)."""
        return list(self._list(self._resource_for_plural(api_version, plural), namespace))

    def add_pod(self, name: str, **kwargs: Any) -> Obj:
        return self.put(make_pod(name, **kwargs))

    def add_node(self, name: str, **kwargs: Any) -> Obj:
        return self.put(make_node(name, **kwargs))

    def add_statefulset(self, name: str, replicas: int, ready: int, ns: str = "spark") -> Obj:
        return self.put(_workload("StatefulSet", name, ns, replicas, ready))

    def add_deployment(self, name: str, replicas: int, ready: int, ns: str = "spark") -> Obj:
        return self.put(_workload("Deployment", name, ns, replicas, ready))

    # triage objects and rollouts (tests/fakes/kube_rollouts.py)
    def add_event(self, reason: str, message: str, **kwargs: Any) -> Obj:
        """A core/v1 Event (``name``: the object it is about, ``kind``, ``at``, ``type_``)."""
        return self.put(make_event(reason, message, **kwargs))

    def add_pvc(self, name: str, phase: str = "Bound", ns: str = "spark") -> Obj:
        return self.put(make_pvc(name, phase=phase, namespace=ns))

    def add_configmap(self, name: str, data: dict[str, str], **kwargs: Any) -> Obj:
        """A ConfigMap; ``changed_at``/``manager``: its last write (managedFields)."""
        obj = self.put(make_configmap(name, data, **kwargs))
        if "created_at" in kwargs:  # put() fills only a missing one
            obj["metadata"]["creationTimestamp"] = stamp(kwargs["created_at"])
        return obj

    def add_rollout_history(
        self,
        deployment: str,
        images: list[str],
        *,
        at: list[dt.datetime] | None = None,
        ns: str = "spark",
    ) -> Obj:
        """Revisions 1..N of a Deployment, one ReplicaSet per image (created ``at``), the
        Deployment running the last: what ``kubectl set image`` N-1 times leaves."""
        key = ("apps/v1", "deployments", ns, deployment)
        with self._lock:
            dep = self._objects[key]
            for number, image in enumerate(images, 1):
                for c in dep["spec"]["template"]["spec"]["containers"]:
                    c["image"] = image
                when = at[number - 1] if at else None
                self.put(make_replicaset(dep, number, at=when))
            dep["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = (
                str(len(images))
            )
            dep["metadata"]["resourceVersion"] = str(next(self._rv))
            return copy.deepcopy(dep)

    def add_statefulset_history(
        self,
        statefulset: str,
        images: list[str],
        *,
        at: list[dt.datetime] | None = None,
        ns: str = "spark",
    ) -> None:
        """ControllerRevisions 1..N of a StatefulSet, one per image, the last one current."""
        key = ("apps/v1", "statefulsets", ns, statefulset)
        with self._lock:
            sts = self._objects[key]
            for number, image in enumerate(images, 1):
                when = at[number - 1] if at else None
                self.put(make_controller_revision(sts, number, image, at=when))
                for c in sts["spec"]["template"]["spec"]["containers"]:
                    c["image"] = image

    def executors_ready(self, name: str, ready: int, ns: str = "spark") -> None:
        """The StatefulSet's controller and kubelets got ``ready`` pods Ready."""
        self._set_status("statefulsets", name, ns, lambda obj: {
            "replicas": ready, "readyReplicas": ready, "currentReplicas": ready,
            "updatedReplicas": ready, "availableReplicas": ready,
        })  # fmt: skip

    def roll_out(self, deployment: str, ns: str = "spark") -> None:
        """The Deployment's rollout completed: every replica updated, ready and available."""

        def done(obj: Obj) -> Obj:
            n = obj["spec"].get("replicas", 1)
            progressing = {"type": "Progressing", "status": "True",
                           "reason": "NewReplicaSetAvailable"}  # fmt: skip
            return {"replicas": n, "updatedReplicas": n, "readyReplicas": n,
                    "availableReplicas": n, "conditions": [progressing]}  # fmt: skip

        self._set_status("deployments", deployment, ns, done)

    def stick_rollout(
        self,
        deployment: str,
        pods: int = 2,
        reason: str = "CrashLoopBackOff",
        *,
        deadline_exceeded: bool = False,
        ns: str = "spark",
    ) -> None:
        """The new ReplicaSet's ``pods`` pods wait in ``reason`` (restarting), the old ones
        stay; with ``deadline_exceeded`` the controller gave up (ProgressDeadlineExceeded)."""
        with self._lock:
            dep = self._objects[("apps/v1", "deployments", ns, deployment)]
            labels = dict(dep["spec"]["template"]["metadata"].get("labels") or {})
            labels["pod-template-hash"] = "stuck"
            for i in range(pods):
                pod = make_pod(
                    f"{deployment}-stuck-{i}",
                    namespace=ns,
                    labels=labels,
                    waiting_reason=reason,
                    restarts=3,
                    containers=(deployment,),
                )
                self.put(pod)

        def stuck(obj: Obj) -> Obj:
            n = obj["spec"].get("replicas", 1)
            status: Obj = {"replicas": n + pods, "updatedReplicas": pods,
                           "readyReplicas": n, "availableReplicas": n,
                           "unavailableReplicas": pods}  # fmt: skip
            if deadline_exceeded:
                status["conditions"] = [{"type": "Progressing", "status": "False",
                                         "reason": "ProgressDeadlineExceeded"}]  # fmt: skip
            return status

        self._set_status("deployments", deployment, ns, stuck)

    def _set_status(self, plural: str, name: str, ns: str, status: Callable[[Obj], Obj]) -> None:
        with self._lock:
            obj = self._objects[("apps/v1", plural, ns, name)]
            generation = obj["metadata"].get("generation", 1)
            obj["status"] = {**obj.get("status", {}), **status(obj)}
            obj["status"]["observedGeneration"] = generation
            obj["metadata"]["resourceVersion"] = str(next(self._rv))

    def set_logs(
        self, pod: str, text: str, container: str | None = None, ns: str = "spark"
    ) -> None:
        """Log text of a pod's container (default: its first container)."""
        if container is None:
            obj = self.get("v1", "pods", ns, pod)
            assert obj is not None, f"add pod {pod} first"
            container = obj["spec"]["containers"][0]["name"]
        with self._lock:
            self._logs[(ns, pod, container)] = text

    def set_pod_metrics(
        self, pod: str, usage: dict[str, dict[str, str]], ns: str = "spark"
    ) -> None:
        """Per-container usage, e.g. ``{"c": {"cpu": "250000000n", "memory": "524288Ki"}}``."""
        with self._lock:
            self._pod_metrics[(ns, pod)] = usage

    def set_node_metrics(self, node: str, cpu: str, memory: str) -> None:
        with self._lock:
            self._node_metrics[node] = {"cpu": cpu, "memory": memory}

    # failure injection
    def fail(
        self,
        status: int,
        *,
        method: str | None = None,
        path: str | None = None,
        times: int | None = None,
    ) -> None:
        """Answer matching requests with ``status`` (``path``: regex searched in the URL path;
        ``times``: only the next N matching requests)."""
        with self._lock:
            self._faults.append(_Fault(method, re.compile(path) if path else None, status, times))

    def hang(self, *, method: str | None = None, path: str | None = None) -> None:
        """Hold matching requests unanswered until :meth:`clear_faults` or :meth:`stop`."""
        self._release.clear()
        with self._lock:
            self._faults.append(_Fault(method, re.compile(path) if path else None, None, None))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._denied.clear()
        self._release.set()

    def forbid(self, verb: str, resource: str, group: str = "") -> None:
        """Deny ``verb`` on ``resource`` (``"pods"``, ``"pods/log"``,
        ``"statefulsets/scale"``) of API ``group`` as an RBAC authorizer without a matching
        rule would: 403 with the API server's message, before anything else is looked at.
        A server-side apply that would create an object needs ``create`` too."""
        with self._lock:
            self._denied.add((verb, group, resource))

    # request log
    def requests_matching(self, method: str | None = None, path: str = "") -> list[RecordedRequest]:
        """Recorded requests with this method whose path matches the regex ``path``."""
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method) and re.search(path, r.path)
            ]

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    # internals used by the handler
    def _resource_for_plural(self, api_version: str, plural: str) -> Resource:
        for res in RESOURCES:
            if res.api_version == api_version and res.plural == plural:
                return res
        raise KeyError(f"{api_version} {plural} is not served by the fake")

    def _resource_for_kind(self, api_version: str, kind: str) -> Resource:
        for res in RESOURCES:
            if res.api_version == api_version and res.kind == kind:
                return res
        raise KeyError(f"{api_version} {kind} is not served by the fake")

    def _authorize(
        self, verb: str, group: str, resource: str, sub: str, ns: str | None, name: str | None
    ) -> None:
        full = f"{resource}/{sub}" if sub else resource
        with self._lock:
            denied = (verb, group, full) in self._denied
        if denied:
            raise _forbidden(verb, group, resource, sub, ns, name)

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def _list(self, res: Resource, ns: str | None) -> Iterator[Obj]:
        with self._lock:
            # in storage key order (namespace/name), as lists and their pages come
            for (api_version, plural, obj_ns, _name), obj in sorted(
                self._objects.items(), key=lambda kv: _etcd_key(kv[1])
            ):
                same_kind = api_version == res.api_version and plural == res.plural
                if same_kind and (ns is None or obj_ns == ns):
                    yield copy.deepcopy(obj)


def seed_spark_platform(api: FakeKubeApi, ns: str = "spark") -> None:
    """A small realistic platform: drivers (one crash-looping), executors, a failed and a pending
    pod, an unrelated pod outside the selector, two nodes (one NotReady), the executor
    StatefulSet (10 desired / 8 ready) and the Spark Connect Deployment with two revisions
    each (apache/spark 3.5.0 → 3.5.1), a Bound claim, a ConfigMap, a BackOff Warning event,
    logs and metrics."""
    api.add_pod("spark-connect-driver-0", role="driver", namespace=ns)
    api.add_pod(
        "etl-nightly-driver",
        role="driver",
        restarts=7,
        waiting_reason="CrashLoopBackOff",
        last_terminated_reason="OOMKilled",
        namespace=ns,
    )
    api.add_pod("spark-connect-executor-0", role="executor", namespace=ns)
    api.add_pod("spark-connect-executor-1", role="executor", restarts=2, namespace=ns)
    api.add_pod(
        "report-driver", role="driver", phase="Failed", reason="Error", namespace=ns, node="node-2"
    )
    api.add_pod(
        "spark-connect-executor-9", role="executor", phase="Pending", namespace=ns, node=None
    )
    api.add_pod("postgres-0", labels={"app": "postgres"}, containers=("postgres",), namespace=ns)
    api.add_node("node-1", ready=True)
    api.add_node("node-2", ready=False, cpu="4", memory="16Gi")
    api.add_statefulset("spark-connect-executor", replicas=10, ready=8, ns=ns)
    api.add_deployment("spark-connect", replicas=1, ready=1, ns=ns)
    # history: the image went 3.5.0 → 3.5.1 (so /rollback has a revision to go back to)
    api.add_rollout_history("spark-connect", ["apache/spark:3.5.0", "apache/spark:3.5.1"], ns=ns)
    api.add_statefulset_history(
        "spark-connect-executor", ["apache/spark:3.5.0", "apache/spark:3.5.1"], ns=ns
    )
    api.add_pvc("spark-connect-data", ns=ns)
    api.add_configmap("spark-connect-conf", {"spark.executor.memory": "4g"}, namespace=ns)
    api.add_event(
        "BackOff", "Back-off restarting failed container", name="etl-nightly-driver", namespace=ns
    )
    api.set_logs(
        "spark-connect-driver-0",
        "INFO SparkContext: Running Spark version 3.5.1\n"
        "ERROR TaskSchedulerImpl: Lost executor 3: Connection refused\n"
        "INFO DAGScheduler: Job 4 finished\n",
        ns=ns,
    )
    api.set_logs(
        "spark-connect-executor-0",
        "INFO Executor: Starting executor ID 0\n"
        "error: java.io.IOException: No space left on device\n",
        ns=ns,
    )
    api.set_logs("postgres-0", "ERROR: relation does not exist\n", ns=ns)
    api.set_pod_metrics(
        "spark-connect-driver-0",
        {DRIVER_CONTAINER: {"cpu": "250000000n", "memory": "1048576Ki"}},
        ns,
    )
    api.set_pod_metrics(
        "spark-connect-executor-0", {EXECUTOR_CONTAINER: {"cpu": "1500m", "memory": "2Gi"}}, ns
    )
    api.set_pod_metrics("postgres-0", {"postgres": {"cpu": "10m", "memory": "100Mi"}}, ns)
    api.set_node_metrics("node-1", cpu="7200000000n", memory="16777216Ki")
    api.set_node_metrics("node-2", cpu="1", memory="4Gi")
