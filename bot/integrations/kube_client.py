"""The connection to the cluster: a private ApiClient, and :class:`KubeBase`, which runs every
call of :class:`~bot.integrations.kube.Cluster` in a worker thread with a timeout.

The calls themselves are in kube_reads.py, kube_actions.py and kube_restore.py.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self, TypeVar

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError, ReadTimeoutError
from urllib3.util.retry import Retry

from bot.integrations.kube_errors import ClusterError, ClusterUnavailable, InvalidRequest, translate

T = TypeVar("T")
# Threads (and pooled connections) for the API server's calls, per cluster client.
API_THREADS = 16
NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


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
    cfg.connection_pool_maxsize = API_THREADS
    return client.ApiClient(cfg)


class KubeBase:
    """The platform's slice of one cluster (``namespace`` + label ``selector``) and the one way
    to call its API server: :meth:`_call`. See :class:`~bot.integrations.kube.Cluster`."""

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
        # The client is synchronous: its calls run on threads of their own, as many as the
        # connection pool, so /health's independent calls go out together (asyncio's
        # default executor has min(32, CPUs + 4) threads, shared with everything else).
        self._threads = ThreadPoolExecutor(API_THREADS, thread_name_prefix="pira-kube")

    @classmethod
    def from_environment(
        cls, *, kubeconfig: str | os.PathLike[str] | None = None, **kwargs: Any
    ) -> Self:
        """:func:`load_api_client` + the constructor's keyword arguments."""
        return cls(load_api_client(kubeconfig), **kwargs)

    def close(self) -> None:
        self._api_client.close()
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        kwargs["_request_timeout"] = float(self.timeout)
        try:
            call = functools.partial(fn, *args, **kwargs)
            running = asyncio.get_running_loop().run_in_executor(self._threads, call)
            return await asyncio.wait_for(running, self.timeout)
        except TimeoutError:
            raise ClusterUnavailable(f"{what}: no answer within {self.timeout:g}s") from None
        except ApiException as exc:
            raise translate(exc, what) from None
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

    @staticmethod
    def _check_name(name: str) -> None:
        if not NAME_RE.fullmatch(name):
            raise InvalidRequest(f"{name!r} is not a valid Kubernetes object name")
