"""What the Kubernetes integration returns: small frozen dataclasses, and the names of the
labels and annotations they are read from."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

RESTART_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
ROLE_LABEL = "spark-role"


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
class EventInfo:
    """A Warning event of the namespace (``kubectl get events``), about ``kind``/``name``."""

    reason: str  # e.g. FailedScheduling, Evicted, OOMKilling, FailedCreate
    kind: str
    name: str
    message: str
    count: int
    last_seen: dt.datetime | None


@dataclass(frozen=True)
class ClaimInfo:
    """A PersistentVolumeClaim: ``phase`` Pending / Bound / Lost."""

    name: str
    phase: str
    storage_class: str | None
    size: str | None


@dataclass(frozen=True)
class ChangeInfo:
    """Something that changed in the namespace: a Deployment or StatefulSet revision (with
    its images before → after) or a ConfigMap written, ``at`` when."""

    at: dt.datetime
    kind: str  # "deployment", "statefulset", "configmap"
    name: str
    what: str  # e.g. "revision 3: spark=apache/spark:3.5.1 → spark=apache/spark:3.5.2"


@dataclass(frozen=True)
class RollbackPlan:
    """What ``/rollback`` would do: the Deployment from its current revision (images
    ``images_from``) back to the previous one (``images_to``, ReplicaSet ``replicaset``)."""

    deployment: str
    current_revision: int | None
    target_revision: int
    images_from: tuple[str, ...]
    images_to: tuple[str, ...]
    replicaset: str


@dataclass(frozen=True)
class RolloutStatus:
    """A Deployment's rollout, read as ``kubectl rollout status`` reads it."""

    name: str
    desired: int
    updated: int
    ready: int
    available: int
    total: int  # status.replicas: old and new pods
    observed: bool  # the controller has seen the latest spec (observedGeneration)
    deadline_exceeded: bool  # Progressing=False, ProgressDeadlineExceeded
    selector: str  # the Deployment's pods, as a label selector

    @property
    def complete(self) -> bool:
        return (
            self.observed
            and self.updated >= self.desired
            and self.total <= self.updated
            and self.available >= self.updated
        )
