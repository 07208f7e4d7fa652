"""The Spark platform's Kubernetes cluster, through the official ``kubernetes`` client.

:class:`Cluster` wraps one private :class:`kubernetes.client.ApiClient` (never the global default
client). Every call runs in a worker thread, bounded by ``timeout`` both on the event loop
(``asyncio.wait_for``) and on the socket (``_request_timeout``) so timed-out threads end too.
Results are small frozen dataclasses; failures are :class:`ClusterError` subclasses whose
``str()`` is a short message fit for a chat reply.

This module is the integration's public face; the code lives beside it:

- kube_client.py: :func:`load_api_client` and the call wrapper (:class:`KubeBase`)
- kube_errors.py: the errors and the translation of the API server's error answers
- kube_models.py: the returned dataclasses
- kube_reads.py: pods, logs, nodes, resource usage, workload status
- kube_actions.py: kill a driver, scale the executors, restart Spark Connect
- kube_restore.py: apply a backup manifest (and the kinds it may contain)
- kube_triage.py: Warning events, PersistentVolumeClaims, recent changes (for /health)
- kube_rollback.py: roll Spark Connect back a revision; rollout status and pods (outcomes)
"""

from __future__ import annotations

from bot.integrations.kube_actions import KubeActions
from bot.integrations.kube_client import load_api_client
from bot.integrations.kube_errors import (
    ClusterError,
    ClusterUnavailable,
    Forbidden,
    InvalidRequest,
    ManifestError,
    MetricsUnavailable,
    NotADriver,
    NotFound,
    RollbackRefused,
)
from bot.integrations.kube_models import (
    RESTART_ANNOTATION,
    ROLE_LABEL,
    AppliedObject,
    ChangeInfo,
    ClaimInfo,
    DeploymentStatus,
    EventInfo,
    ExecutorScale,
    LogLine,
    NodeInfo,
    NodeUsage,
    PodInfo,
    PodUsage,
    RollbackPlan,
    RolloutStatus,
)
from bot.integrations.kube_restore import (
    FIELD_MANAGER,
    RESTORABLE_KINDS,
    KubeRestore,
    RestorableKind,
)
from bot.integrations.kube_rollback import KubeRollback
from bot.integrations.kube_triage import KubeTriage

__all__ = [
    "FIELD_MANAGER",
    "RESTART_ANNOTATION",
    "RESTORABLE_KINDS",
    "ROLE_LABEL",
    "AppliedObject",
    "ChangeInfo",
    "ClaimInfo",
    "Cluster",
    "ClusterError",
    "ClusterUnavailable",
    "DeploymentStatus",
    "EventInfo",
    "ExecutorScale",
    "Forbidden",
    "InvalidRequest",
    "LogLine",
    "ManifestError",
    "MetricsUnavailable",
    "NodeInfo",
    "NodeUsage",
    "NotADriver",
    "NotFound",
    "PodInfo",
    "PodUsage",
    "RestorableKind",
    "RollbackPlan",
    "RollbackRefused",
    "RolloutStatus",
    "load_api_client",
]


class Cluster(KubeActions, KubeRestore, KubeTriage, KubeRollback):
    """The platform's slice of one cluster: ``namespace`` + label ``selector``.

    Construct with an ApiClient (see :func:`load_api_client`) or use :meth:`from_environment`.
    Every method may raise :class:`ClusterUnavailable`, :class:`Forbidden` or
    :class:`ClusterError`; the others are listed per method."""
