"""What the Kubernetes integration returns: small frozen dataclasses, and the names of the
labels and annotations they are read from."""

from __future__ import annotations

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
