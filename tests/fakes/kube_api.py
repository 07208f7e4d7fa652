"""A protocol-level fake of the Kubernetes API server for tests.

The official ``kubernetes`` client talks real HTTP to it through a kubeconfig written by
:meth:`FakeKubeApi.write_kubeconfig`. Paths, content types and JSON shapes follow the real
API server (lists are ``PodList`` …, errors are ``Status`` objects), so a client that works
here sends what a real cluster expects.

Usage::

    with FakeKubeApi() as api:
        seed_spark_platform(api)              # or api.add_pod(...), api.add_node(...)
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        ...                                   # run the client
        api.requests_matching("PATCH", "/scale")   # the request log

Failure injection: :meth:`FakeKubeApi.fail` (answer with a status) and :meth:`FakeKubeApi.hang`
(hold the request until :meth:`FakeKubeApi.clear_faults` or shutdown).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import itertools
import json
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

Obj = dict[str, Any]

TOKEN = "fake-token-for-tests"
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


RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "pods", "Pod"),
    Resource("", "v1", "nodes", "Node", namespaced=False),
    Resource("", "v1", "configmaps", "ConfigMap"),
    Resource("", "v1", "secrets", "Secret"),
    Resource("", "v1", "services", "Service"),
    Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim"),
    Resource("apps", "v1", "statefulsets", "StatefulSet"),
    Resource("apps", "v1", "deployments", "Deployment"),
    Resource("batch", "v1", "jobs", "Job"),
    Resource("batch", "v1", "cronjobs", "CronJob"),
)
_BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}


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


def status_obj(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    """A ``Status`` failure object exactly as the API server returns it."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details or {},
        "code": code,
    }


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.status = status_obj(code, reason, message, details)


def _not_found(res: Resource, name: str) -> ApiError:
    group = res.group or ""
    what = f"{res.plural}.{group}" if group else res.plural
    return ApiError(
        404,
        "NotFound",
        f'{what} "{name}" not found',
        {"name": name, "group": group, "kind": res.plural},
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
    return "" if cur is None else str(cur)


def field_selector_matches(selector: str, obj: Obj) -> bool:
    """Evaluate a field selector (``a.b=v``, ``a.b==v``, ``a.b!=v``, comma = and)."""
    for req in selector.split(","):
        m = re.match(r"^\s*([\w.]+)\s*(==|!=|=)\s*(.*?)\s*$", req)
        if m is None:
            raise ApiError(400, "BadRequest", f"invalid field selector: {req!r}")
        key, op, value = m.groups()
        if key not in ("metadata.name", "metadata.namespace", "status.phase", "spec.nodeName"):
            raise ApiError(
                400, "BadRequest", f'field label not supported: "{key}"'
            )  # the real server only indexes a few fields per kind
        if (_field_value(obj, key) == value) != (op != "!="):
            return False
    return True


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 merge; for the map-only patches clients send here it equals strategic merge."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


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
_MERGE_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
_APPLY_TYPE = "application/apply-patch+yaml"
_METRICS_GV = "metrics.k8s.io/v1beta1"
_NOT_FOUND_PATH = ApiError(404, "NotFound", "the server could not find the requested resource")


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
        with self.api._lock:
            self.api.requests.append(rec)
        try:
            if raw:
                try:
                    rec.body = yaml.safe_load(raw) if ctype == _APPLY_TYPE else json.loads(raw)
                except ValueError as exc:
                    raise ApiError(400, "BadRequest", f"invalid body: {exc}") from None
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
            code, payload = self._route(method, url.path, query, rec)
        except ApiError as err:
            code, payload = err.status["code"], err.status
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
        self, method: str, path: str, query: dict[str, str], rec: RecordedRequest
    ) -> tuple[int, Obj | str]:
        is_discovery = path in ("/version", "/api", "/apis", "/api/v1") or bool(
            re.fullmatch(r"/apis/[^/]+/[^/]+", path)
        )
        if method == "GET" and is_discovery:
            return 200, self._discovery(path)
        if path.startswith(f"/apis/{_METRICS_GV}/"):
            return 200, self._metrics(method, path, query)
        m = _PATH_RE.match(path)
        if m is None:
            raise _NOT_FOUND_PATH
        group = "" if m["core"] else m["group"]
        res = _BY_PATH.get((group, m["core"] or m["version"], m["plural"]))
        if res is None or (res.namespaced is False and m["ns"] is not None):
            raise _NOT_FOUND_PATH
        ns, name, sub = m["ns"], m["name"], m["sub"]
        if name is None:
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", f"{method} on a collection")
            return 200, self._list(res, ns, query)
        if sub is None:
            if method == "GET":
                return 200, self._get(res, ns, name)
            if method == "DELETE":
                return 200, self._delete(res, ns, name, rec.body)
            if method == "PATCH":
                return self._patch(res, ns, name, query, rec)
        elif sub == "log" and res.plural == "pods" and method == "GET":
            return 200, self._log(ns or "", name, query)
        elif sub == "scale" and res.plural in ("statefulsets", "deployments"):
            if method == "GET":
                return 200, self._scale(res, ns, name)
            if method == "PATCH":
                return 200, self._patch_scale(res, ns, name, rec)
        raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method: {method}")

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
        items = []
        for obj in self.api._list(res, ns):
            labels = obj["metadata"].get("labels") or {}
            if "labelSelector" in query and not label_selector_matches(
                query["labelSelector"], labels
            ):
                continue
            if "fieldSelector" in query and not field_selector_matches(query["fieldSelector"], obj):
                continue
            items.append(obj)
        return items

    def _list(self, res: Resource, ns: str | None, query: dict[str, str]) -> Obj:
        items = self._select(res, ns, query)
        for obj in items:  # the real server leaves kind/apiVersion off list items
            obj.pop("kind", None)
            obj.pop("apiVersion", None)
        rv = str(next(self.api._rv))
        return {
            "kind": f"{res.kind}List",
            "apiVersion": res.api_version,
            "metadata": {"resourceVersion": rv},
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
        if pod["status"].get("phase") == "Pending":
            raise ApiError(
                400,
                "BadRequest",
                f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating',
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

    def _metrics(self, method: str, path: str, query: dict[str, str]) -> Obj:
        if not self.api.metrics_available:
            raise _NOT_FOUND_PATH  # what the aggregator answers when no APIService serves it
        if method != "GET":
            raise ApiError(405, "MethodNotAllowed", "metrics are read-only")
        meta = {"resourceVersion": ""}
        now = _now()
        if path == f"/apis/{_METRICS_GV}/nodes":
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
        m = re.fullmatch(rf"/apis/{re.escape(_METRICS_GV)}/namespaces/([^/]+)/pods", path)
        if m is None:
            raise _NOT_FOUND_PATH
        items = []
        for pod in self._select(_BY_PATH[("", "v1", "pods")], m[1], query):
            with self.api._lock:
                usage = self.api._pod_metrics.get((m[1], pod["metadata"]["name"]))
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
        with self.api._lock:
            obj = self._get(res, ns, name)
            want_uid = ((body or {}).get("preconditions") or {}).get("uid")
            if want_uid is not None and want_uid != obj["metadata"]["uid"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f"Precondition failed: UID in precondition: {want_uid}, "
                    f"UID in object meta: {obj['metadata']['uid']}",
                )
            del self.api._objects[(res.api_version, res.plural, ns, name)]
        obj["metadata"]["deletionTimestamp"] = _now()
        obj["metadata"]["deletionGracePeriodSeconds"] = 30
        return obj

    def _store(self, res: Resource, ns: str | None, name: str, obj: Obj) -> Obj:
        obj["metadata"]["resourceVersion"] = str(next(self.api._rv))
        self.api._objects[(res.api_version, res.plural, ns, name)] = obj
        return copy.deepcopy(obj)

    def _patch(
        self, res: Resource, ns: str | None, name: str, query: dict[str, str], rec: RecordedRequest
    ) -> tuple[int, Obj]:
        body = rec.body
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "patch body must be an object")
        if rec.content_type == _APPLY_TYPE:
            return self._apply(res, ns, name, query, rec, body)
        if rec.content_type not in _MERGE_TYPES:
            accepted = ", ".join((*_MERGE_TYPES, _APPLY_TYPE))
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - "
                f"accepted media types include: {accepted}",
            )
        with self.api._lock:
            obj = self._get(res, ns, name)
            patched = _merge_patch(obj, body)
            patched["metadata"]["name"] = name
            if patched.get("spec") != obj.get("spec") and "generation" in obj["metadata"]:
                patched["metadata"]["generation"] = obj["metadata"]["generation"] + 1
            return 200, self._store(res, ns, name, patched)

    def _apply(
        self,
        res: Resource,
        ns: str | None,
        name: str,
        query: dict[str, str],
        rec: RecordedRequest,
        body: Obj,
    ) -> tuple[int, Obj]:
        manager = query.get("fieldManager")
        if not manager:
            raise ApiError(400, "BadRequest", "fieldManager is required for apply requests")
        if body.get("apiVersion") != res.api_version or body.get("kind") != res.kind:
            raise ApiError(
                400,
                "BadRequest",
                f"the API version in the data ({body.get('apiVersion')}) or kind "
                f"({body.get('kind')}) does not match the expected {res.api_version} {res.kind}",
            )
        meta = body.get("metadata") or {}
        if meta.get("name") != name:
            raise ApiError(
                400,
                "BadRequest",
                f"the name of the object ({meta.get('name')}) "
                f"does not match the name on the URL ({name})",
            )
        if meta.get("namespace") not in (None, ns):
            raise ApiError(
                400,
                "BadRequest",
                "the namespace of the provided object does not "
                "match the namespace sent on the request",
            )
        if "managedFields" in meta:
            raise ApiError(400, "BadRequest", "metadata.managedFields must be nil")
        if res.kind == "Job" and not _field_value(body, "spec.template.spec.containers"):
            raise ApiError(
                422,
                "Invalid",
                f'Job.batch "{name}" is invalid: spec.template.spec.containers: Required value',
            )
        entry = {
            "manager": manager,
            "operation": "Apply",
            "apiVersion": res.api_version,
            "time": _now(),
            "fieldsType": "FieldsV1",
            "fieldsV1": {},
        }
        with self.api._lock:
            existing = self.api.get(res.api_version, res.plural, ns, name)
            if existing is None:
                obj = copy.deepcopy(body)
                obj["metadata"] = dict(meta, uid=str(uuid.uuid4()), creationTimestamp=_now())
                if ns is not None:
                    obj["metadata"]["namespace"] = ns
                rec.created = True
            else:
                obj = _merge_patch(existing, {k: v for k, v in body.items() if k != "status"})
            obj["metadata"]["managedFields"] = [entry]
            return (201 if rec.created else 200), self._store(res, ns, name, obj)

    def _patch_scale(self, res: Resource, ns: str | None, name: str, rec: RecordedRequest) -> Obj:
        if rec.content_type not in _MERGE_TYPES:
            raise ApiError(
                415, "UnsupportedMediaType", f"unsupported patch type {rec.content_type}"
            )
        replicas = ((rec.body or {}).get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ApiError(
                422,
                "Invalid",
                f'Scale.autoscaling "{name}" is invalid: spec.replicas: '
                f"Invalid value: {replicas!r}: must be greater than or equal to 0",
            )
        with self.api._lock:
            obj = self._get(res, ns, name)
            obj["spec"]["replicas"] = replicas
            obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
            self._store(res, ns, name, obj)
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
        self._connections: set[socket.socket] = set()
        self._release = threading.Event()
        self._rv = itertools.count(1000)
        self.metrics_available = True
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

    def add_pod(self, name: str, **kwargs: Any) -> Obj:
        return self.put(make_pod(name, **kwargs))

    def add_node(self, name: str, **kwargs: Any) -> Obj:
        return self.put(make_node(name, **kwargs))

    def add_statefulset(self, name: str, replicas: int, ready: int, ns: str = "spark") -> Obj:
        return self.put(_workload("StatefulSet", name, ns, replicas, ready))

    def add_deployment(self, name: str, replicas: int, ready: int, ns: str = "spark") -> Obj:
        return self.put(_workload("Deployment", name, ns, replicas, ready))

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
        self._release.set()

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
    def _resource_for_kind(self, api_version: str, kind: str) -> Resource:
        for res in RESOURCES:
            if res.api_version == api_version and res.kind == kind:
                return res
        raise KeyError(f"{api_version} {kind} is not served by the fake")

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
            for (api_version, plural, obj_ns, _name), obj in sorted(
                self._objects.items(), key=lambda kv: (kv[0][2] or "", kv[0][3])
            ):
                same_kind = api_version == res.api_version and plural == res.plural
                if same_kind and (ns is None or obj_ns == ns):
                    yield copy.deepcopy(obj)


def seed_spark_platform(api: FakeKubeApi, ns: str = "spark") -> None:
    """A small realistic platform: drivers (one crash-looping), executors, a failed and a pending
    pod, an unrelated pod outside the selector, two nodes (one NotReady), the executor
    StatefulSet (10 desired / 8 ready), the Spark Connect Deployment, logs and metrics."""
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
