"""The Spark platform's Kubernetes cluster, through the official ``kubernetes`` client.

:class:`Cluster` wraps one private :class:`kubernetes.client.ApiClient` (never the global default
client). Every call runs in a worker thread, bounded by ``timeout`` both on the event loop
(``asyncio.wait_for``) and on the socket (``_request_timeout``) so timed-out threads end too.
Results are small frozen dataclasses; failures are :class:`ClusterError` subclasses whose
``str()`` is a short message fit for a chat reply.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.utils import parse_quantity
from urllib3.exceptions import HTTPError, ReadTimeoutError
from urllib3.util.retry import Retry

T = TypeVar("T")
FIELD_MANAGER = "pira"
RESTART_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
ROLE_LABEL = "spark-role"
_PHASES = {"failed": "Failed", "pending": "Pending"}
_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


class ClusterError(Exception):
    """Base of every error of this module; ``str(err)`` is a one-line, user-facing message,
    ``status`` the HTTP status of the API server's answer when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ClusterUnavailable(ClusterError):
    """The API server could not be reached or did not answer within the timeout."""


class NotFound(ClusterError):
    """The named object does not exist."""


class Forbidden(ClusterError):
    """The bot's service account may not do this (see deploy/kubernetes/rbac.yaml)."""


class InvalidRequest(ClusterError):
    """The request was refused as invalid (bad name, bad value, conflict)."""


class NotADriver(ClusterError):
    """The pod exists but is not a Spark driver of the platform; it was not touched."""


class MetricsUnavailable(ClusterError):
    """metrics.k8s.io is not served (metrics-server absent or down)."""


class ManifestError(ClusterError):
    """A manifest to apply is unreadable or contains something the bot may not apply."""


@dataclass(frozen=True)
class PodInfo:
    name: str
    phase: str  # Pending / Running / Succeeded / Failed / Unknown
    role: str | None  # value of the spark-role label: "driver", "executor" or None
    ready: bool
    restarts: int
    waiting_reason: str | None  # e.g. CrashLoopBackOff, ImagePullBackOff
    last_terminated_reason: str | None  # e.g. OOMKilled
    reason: str | None  # pod-level reason, e.g. Evicted
    node: str | None
    containers: tuple[str, ...]

    @property
    def crash_looping(self) -> bool:
        return self.waiting_reason == "CrashLoopBackOff"


@dataclass(frozen=True)
class NodeInfo:
    name: str
    ready: bool
    status: str  # "Ready", "NotReady" or "Unknown" (kubelet unreachable)
    unschedulable: bool


@dataclass(frozen=True)
class ExecutorScale:
    statefulset: str
    replicas: int  # desired (spec)
    ready_replicas: int
    current_replicas: int


@dataclass(frozen=True)
class DeploymentStatus:
    name: str
    desired: int
    ready: int
    updated: int
    restarted_at: str | None  # the restartedAt annotation of the pod template, if any


@dataclass(frozen=True)
class LogLine:
    pod: str
    container: str
    text: str


@dataclass(frozen=True)
class PodUsage:
    name: str
    cpu_millicores: int
    memory_bytes: int


@dataclass(frozen=True)
class NodeUsage:
    name: str
    cpu_millicores: int
    memory_bytes: int
    cpu_percent: float | None  # of allocatable; None when the node is not listed
    memory_percent: float | None


@dataclass(frozen=True)
class AppliedObject:
    kind: str
    name: str
    created: bool  # False: an existing object was updated ("configured")


@dataclass(frozen=True)
class RestorableKind:
    group: str  # API group ("" = core), as in RBAC rules
    resource: str  # plural, as in RBAC rules
    api: Callable[[client.ApiClient], Any]
    method: str  # name of the typed *_with_http_info patch method


# The kinds a restore manifest may contain. Least privilege: RBAC grants patch/create on exactly
# these resources, so a new kind needs a row here and a rule in deploy/kubernetes/rbac.yaml.
RESTORABLE_KINDS: Mapping[tuple[str, str], RestorableKind] = {
    ("v1", "ConfigMap"): RestorableKind(
        "", "configmaps", client.CoreV1Api, "patch_namespaced_config_map_with_http_info"
    ),
    ("v1", "PersistentVolumeClaim"): RestorableKind(
        "",
        "persistentvolumeclaims",
        client.CoreV1Api,
        "patch_namespaced_persistent_volume_claim_with_http_info",
    ),
    ("batch/v1", "Job"): RestorableKind(
        "batch", "jobs", client.BatchV1Api, "patch_namespaced_job_with_http_info"
    ),
}
# Server-populated fields a `kubectl get -o yaml` backup carries; apply rejects or trips on them.
_SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields",
                  "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds")  # fmt: skip


def load_api_client(kubeconfig: str | os.PathLike[str] | None = None) -> client.ApiClient:
    """A private ApiClient from, in order: ``kubeconfig``, ``$KUBECONFIG``, the in-cluster
    service account, ``~/.kube/config``. Blocking (reads files); call it at start-up.

    Raises :class:`ClusterUnavailable` when no configuration is usable."""
    cfg = client.Configuration()
    path = os.fspath(kubeconfig) if kubeconfig else os.environ.get("KUBECONFIG")
    in_cluster = not path and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    home = Path("~/.kube/config").expanduser()
    if not path and not in_cluster and home.exists():
        path = str(home)
    try:
        if path:
            config.load_kube_config(
                config_file=path, client_configuration=cfg, persist_config=False
            )
        elif in_cluster:
            config.load_incluster_config(client_configuration=cfg)
        else:
            raise ClusterUnavailable("no Kubernetes configuration: set KUBECONFIG or run in a pod")
    except (ConfigException, OSError, yaml.YAMLError) as exc:
        raise ClusterUnavailable(f"cannot load the Kubernetes configuration: {exc}") from None
    # Retry refused connections once, never a read: a retried read timeout would keep the
    # worker thread (and a PATCH/DELETE) going for several timeouts after the caller gave up.
    cfg.retries = Retry(total=1, connect=1, read=0, status=0, other=0, redirect=0)
    return client.ApiClient(cfg)


def _api_message(exc: ApiException) -> str:
    try:
        message = str(yaml.safe_load(exc.body or "")["message"])
    except (TypeError, KeyError, yaml.YAMLError):
        message = str(exc.reason or "")
    return message[:300]


def _translate(exc: ApiException, what: str) -> ClusterError:
    message, code = _api_message(exc), exc.status
    if code == 404:
        return NotFound(f"{what}: not found", code)
    if code in (401, 403):
        return Forbidden(f"{what}: not allowed ({message})", code)
    if code in (400, 409, 422):
        return InvalidRequest(f"{what}: refused ({message})", code)
    if code in (502, 503, 504):
        return ClusterUnavailable(f"{what}: API server unavailable ({code} {message})", code)
    return ClusterError(f"{what}: API server error {code} ({message})", code)


def _pod_info(pod: Any) -> PodInfo:
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


class Cluster:
    """The platform's slice of one cluster: ``namespace`` + label ``selector``.

    Construct with an ApiClient (see :func:`load_api_client`) or use :meth:`from_environment`.
    Every method may raise :class:`ClusterUnavailable`, :class:`Forbidden` or
    :class:`ClusterError`; the others are listed per method."""

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        namespace: str = "spark",
        selector: str = "app.kubernetes.io/part-of=spark-k8s",
        executor_statefulset: str = "spark-connect-executor",
        connect_deployment: str = "spark-connect",
        timeout: float = 10.0,
        max_log_requests: int = 5,
    ) -> None:
        self.namespace = namespace
        self.selector = selector
        self.executor_statefulset = executor_statefulset
        self.connect_deployment = connect_deployment
        self.timeout = timeout
        self._api_client = api_client
        self._core = client.CoreV1Api(api_client)
        self._apps = client.AppsV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        # like kubectl's --max-log-requests: bounds the log fan-out over many pods
        self._log_slots = asyncio.Semaphore(max_log_requests)

    @classmethod
    def from_environment(
        cls, *, kubeconfig: str | os.PathLike[str] | None = None, **kwargs: Any
    ) -> Cluster:
        """:func:`load_api_client` + the constructor's keyword arguments."""
        return cls(load_api_client(kubeconfig), **kwargs)

    def close(self) -> None:
        self._api_client.close()

    async def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        kwargs["_request_timeout"] = float(self.timeout)
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn, *args, **kwargs), self.timeout)
        except TimeoutError:
            raise ClusterUnavailable(f"{what}: no answer within {self.timeout:g}s") from None
        except ApiException as exc:
            raise _translate(exc, what) from None
        except ValueError:  # the models' validation of an answer (pydantic ValidationError)
            raise ClusterError(f"{what}: unexpected answer from the API server") from None
        except HTTPError as exc:  # refused, reset, or the socket timeout fired first
            cause = getattr(exc, "reason", None) or exc
            if isinstance(cause, TimeoutError | ReadTimeoutError):
                raise ClusterUnavailable(f"{what}: no answer within {self.timeout:g}s") from None
            host = self._api_client.configuration.host
            detail = str(cause).rsplit(": ", 1)[-1][:200]  # drop urllib3's object reprs
            raise ClusterUnavailable(
                f"{what}: cannot reach the API server {host} ({detail})"
            ) from None

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
        return [_pod_info(p) for p in result.items]

    async def pod(self, name: str) -> PodInfo:
        """One pod of the namespace. Raises :class:`NotFound`."""
        self._check_name(name)
        pod = await self._call(f"pod {name}", self._core.read_namespaced_pod, name, self.namespace)
        return _pod_info(pod)

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
        return _pod_info(deleted)

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

    async def error_lines(self, tail: int = 50, pattern: str = "error") -> list[LogLine]:
        """``kubectl logs -l <selector> --tail=<tail> | grep -i <pattern>``, per container.

        Pods whose containers have not started (or vanished meanwhile) are skipped."""
        needle = pattern.lower()
        pods = [p for p in await self.pods() if p.phase not in ("Pending", "Unknown")]

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

    # --- restore ------------------------------------------------------------------------------

    def read_manifest(self, path: str | os.PathLike[str]) -> list[dict[str, Any]]:
        """Parse and check a (multi-document, or ``kind: List``) manifest without applying it.

        Raises :class:`ManifestError` naming the first offending object."""
        try:
            docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d is not None]
        except (OSError, yaml.YAMLError) as exc:
            raise ManifestError(f"cannot read manifest {Path(path).name}: {exc}") from None
        objects: list[dict[str, Any]] = []
        for doc in docs:
            items = (
                doc.get("items") if isinstance(doc, dict) and doc.get("kind") == "List" else None
            )
            objects.extend(items if isinstance(items, list) else [doc])
        for obj in objects:
            if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
                raise ManifestError("manifest entry is not a Kubernetes object")
            kind, name = obj.get("kind"), obj["metadata"].get("name")
            if (obj.get("apiVersion"), kind) not in RESTORABLE_KINDS:
                allowed = ", ".join(sorted(k for _, k in RESTORABLE_KINDS))
                raise ManifestError(f"{kind} {name}: kind not allowed in a restore ({allowed})")
            if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
                raise ManifestError(f"{kind}: missing or invalid metadata.name")
            if obj["metadata"].get("namespace") not in (None, self.namespace):
                raise ManifestError(f"{kind} {name}: namespace must be {self.namespace}")
        return objects

    async def apply_manifest(self, path: str | os.PathLike[str]) -> list[AppliedObject]:
        """Server-side apply (field manager ``pira``, conflicts forced: a restore must win) of
        every object of a manifest, in order. Everything is checked before anything is sent.

        Raises :class:`ManifestError`; a failure part-way names what was already applied."""
        objects = await asyncio.to_thread(self.read_manifest, path)
        applied: list[AppliedObject] = []
        for obj in objects:
            kind_info = RESTORABLE_KINDS[(obj["apiVersion"], obj["kind"])]
            body = {k: v for k, v in obj.items() if k != "status"}
            meta = {k: v for k, v in obj["metadata"].items() if k not in _SERVER_FIELDS}
            body["metadata"] = meta | {"namespace": self.namespace}
            what = f"apply {obj['kind']} {meta['name']}"
            fn = getattr(kind_info.api(self._api_client), kind_info.method)
            try:
                _, code, _ = await self._call(
                    what, fn, meta["name"], self.namespace, body, field_manager=FIELD_MANAGER,
                    force=True, _content_type="application/apply-patch+yaml",
                )  # fmt: skip
            except ClusterError as exc:
                if not applied:
                    raise
                done = ", ".join(f"{a.kind} {a.name}" for a in applied)
                raise type(exc)(f"{exc} (already applied: {done})", exc.status) from None
            applied.append(AppliedObject(obj["kind"], meta["name"], created=code == 201))
        return applied

    @staticmethod
    def _check_name(name: str) -> None:
        if not _NAME_RE.fullmatch(name):
            raise InvalidRequest(f"{name!r} is not a valid Kubernetes object name")
