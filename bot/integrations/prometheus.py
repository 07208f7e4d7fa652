"""Async Prometheus queries for ``/health`` and the runbook's detection checks.

Built on ``prometheus-api-client``'s blocking :class:`PrometheusConnect`: every
request runs in a worker thread (:func:`asyncio.to_thread`) under
:func:`asyncio.wait_for` *and* with a ``requests`` timeout, so a hung server
neither blocks the event loop nor leaves threads piling up behind it. Retries
are off: a chat command wants a quick, honest "Prometheus is unreachable", not
a retry storm with back-off.

Errors are typed and carry a short message fit for a chat reply:

* :class:`PrometheusUnavailable` — refused, timed out, not a Prometheus API, 5xx;
* :class:`PrometheusQueryError` — Prometheus rejected the PromQL (HTTP 400/422)
  or the result is not an instant vector / scalar.

The runbook's checks are PromQL strings in :class:`RunbookQueries`, whose
defaults can be overridden from the configuration (``RunbookQueries(**cfg)`` or
``DEFAULT_QUERIES.model_copy(update=...)``). ``$namespace`` in a query is
replaced by :attr:`RunbookQueries.namespace`.
"""

from __future__ import annotations

import ast
import asyncio
import json
import math
import re
from collections.abc import Mapping
from string import Template
from typing import Any, Literal, NamedTuple

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from pydantic import BaseModel, ConfigDict, Field
from urllib3.util.retry import Retry

__all__ = [
    "DEFAULT_QUERIES",
    "CheckName",
    "PrometheusClient",
    "PrometheusError",
    "PrometheusQueryError",
    "PrometheusUnavailable",
    "RunbookQueries",
    "Sample",
]


class PrometheusError(Exception):
    """Base class; ``str(exc)`` is a short human message."""


class PrometheusUnavailable(PrometheusError):
    """Prometheus could not be reached or did not answer in time."""


class PrometheusQueryError(PrometheusError):
    """Prometheus rejected the query, or its result has an unusable shape."""


class Sample(NamedTuple):
    """One element of an instant-query result."""

    labels: dict[str, str]
    value: float


CheckName = Literal[
    "job_failure_ratio",
    "driver_oom_kills",
    "executor_removals",
    "cpu_usage_ratio",
    "job_duration_seconds",
]


class RunbookQueries(BaseModel):
    """PromQL behind the runbook's detection checks (configuration overrides any field).

    * ``job_failure_ratio`` — failed / finished Spark jobs over 5 minutes
      (0..1; P1 above 0.5, P0 at 1). ``spark_job_total`` counts every finished
      job, failed or not.
    * ``driver_oom_kills`` — "Driver OOM": driver pods OOM-killed in 5 minutes.
    * ``executor_removals`` — "Executor Loss": executors removed in 5 minutes.
    * ``cpu_usage_ratio`` — "High Load": CPU used by the platform namespace's
      containers (cAdvisor ``container_cpu_usage_seconds_total``) divided by
      the CPU they requested (kube-state-metrics
      ``kube_pod_container_resource_requests``). Requests, not limits, because
      Spark always sets requests on driver and executor pods, often no limits;
      above 0.9 the executors are saturated and scaling out helps.
    * ``job_duration_seconds`` — mean Spark job duration over 15 minutes;
      compared with ``job_duration_baseline_seconds`` for "performance
      degraded" (>5x slower P1, 2–5x P2).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = "spark"
    job_failure_ratio: str = (
        "sum(increase(spark_job_failed_total[5m])) / sum(increase(spark_job_total[5m]))"
    )
    driver_oom_kills: str = "sum(increase(driver_pod_oom_killed_total[5m]))"
    executor_removals: str = "sum(increase(executor_removed_total[5m]))"
    cpu_usage_ratio: str = (
        'sum(rate(container_cpu_usage_seconds_total{namespace="$namespace",container!=""}[5m]))'
        ' / sum(kube_pod_container_resource_requests{namespace="$namespace",resource="cpu"})'
    )
    job_duration_seconds: str = (
        "sum(rate(spark_job_duration_seconds_sum[15m]))"
        " / sum(rate(spark_job_duration_seconds_count[15m]))"
    )
    job_duration_baseline_seconds: float = Field(default=300.0, gt=0)

    def promql(self, check: CheckName) -> str:
        """The query of ``check`` with ``$namespace`` filled in."""
        text: str = getattr(self, check)
        return Template(text).safe_substitute(namespace=self.namespace)


DEFAULT_QUERIES = RunbookQueries()

_STATUS = re.compile(r"^HTTP Status Code (\d+) \((.*)\)$", re.DOTALL)
_MAX_MESSAGE = 200


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _http_error(exc: PrometheusApiClientException, base_url: str) -> PrometheusError:
    """Turn the library's "HTTP Status Code N (b'...')" into a typed error."""
    match = _STATUS.match(str(exc))
    if not match:
        return PrometheusUnavailable(_short(f"Prometheus at {base_url} failed: {exc}"))
    status = int(match.group(1))
    detail = ""
    try:
        body = ast.literal_eval(match.group(2))
        decoded = json.loads(body)
        if isinstance(decoded, dict):
            detail = str(decoded.get("error", ""))
    except (ValueError, SyntaxError, TypeError):
        detail = ""
    if status in (400, 422):
        return PrometheusQueryError(_short(f"bad query: {detail or f'HTTP {status}'}"))
    suffix = f": {detail}" if detail else ""
    return PrometheusUnavailable(_short(f"Prometheus at {base_url} answered HTTP {status}{suffix}"))


def _float(raw: Any) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise PrometheusQueryError(_short(f"result is not a number: {raw!r}")) from None


def _samples(result: Any) -> list[Sample]:
    """Instant vector → samples; a scalar result ``[ts, "v"]`` → one label-less sample."""
    if not isinstance(result, list):
        raise PrometheusUnavailable("unexpected answer from Prometheus")
    if len(result) == 2 and not isinstance(result[0], dict):
        return [Sample({}, _float(result[1]))]
    samples: list[Sample] = []
    for item in result:
        if not isinstance(item, dict):
            raise PrometheusUnavailable("unexpected answer from Prometheus")
        if "value" not in item:
            raise PrometheusQueryError(
                "range vector result: wrap it in a function such as increase() or rate()"
            )
        labels = {str(k): str(v) for k, v in dict(item.get("metric", {})).items()}
        samples.append(Sample(labels, _float(item["value"][1])))
    return samples


class PrometheusClient:
    """An async facade over :class:`PrometheusConnect` for one Prometheus.

    ``timeout`` (seconds) bounds every call: the HTTP request's connect and
    read timeouts, and the wait in the event loop. At most ``max_concurrency``
    requests run in worker threads at once; further calls wait their turn
    (their wait counts towards their own timeout).
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 5.0,
        headers: Mapping[str, str] | None = None,
        queries: RunbookQueries = DEFAULT_QUERIES,
        max_concurrency: int = 4,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.queries = queries
        self._slots = asyncio.Semaphore(max_concurrency)
        self._connect = PrometheusConnect(
            url=self.base_url,
            headers=dict(headers) if headers else None,
            retry=Retry(total=0, redirect=False, raise_on_status=False),
            timeout=timeout,  # seconds; requests accepts a float
        )

    def close(self) -> None:
        """Release the pooled HTTP connections."""
        self._connect._session.close()

    def _blocking_query(self, promql: str) -> Any:
        try:
            return self._connect.custom_query(promql)
        except PrometheusApiClientException as exc:
            raise _http_error(exc, self.base_url) from None
        except requests.exceptions.Timeout:
            raise PrometheusUnavailable(
                f"Prometheus at {self.base_url} did not answer within {self.timeout:g}s"
            ) from None
        except requests.exceptions.ConnectionError:
            raise PrometheusUnavailable(f"Prometheus at {self.base_url} is unreachable") from None
        except requests.exceptions.RequestException as exc:
            raise PrometheusUnavailable(
                _short(f"Prometheus at {self.base_url} failed: {type(exc).__name__}")
            ) from None
        except (KeyError, TypeError, ValueError):
            # 200 but not the Prometheus API's JSON shape (wrong base URL, a proxy page).
            raise PrometheusUnavailable(
                f"{self.base_url} did not answer like the Prometheus API"
            ) from None

    def _worker_done(self, worker: asyncio.Future[Any]) -> None:
        self._slots.release()
        if not worker.cancelled():
            worker.exception()  # retrieved: an abandoned worker's error is not "never retrieved"

    async def query(self, promql: str) -> list[Sample]:
        """Run an instant query; a list of ``(labels, value)`` (empty when no data)."""
        if not promql.strip():
            raise PrometheusQueryError("bad query: empty")

        async def run() -> Any:
            # The slot is released when the worker thread ends, not when the
            # caller gives up: a timed-out request still holds its thread until
            # the requests timeout ends it, and must keep counting.
            await self._slots.acquire()
            try:
                worker = asyncio.ensure_future(asyncio.to_thread(self._blocking_query, promql))
            except BaseException:
                self._slots.release()
                raise
            worker.add_done_callback(self._worker_done)
            return await asyncio.shield(worker)

        try:
            result = await asyncio.wait_for(run(), timeout=self.timeout)
        except TimeoutError:
            raise PrometheusUnavailable(
                f"Prometheus at {self.base_url} did not answer within {self.timeout:g}s"
            ) from None
        return _samples(result)

    async def scalar(self, promql: str, *, reduce: Literal["sum", "first"] = "sum") -> float | None:
        """One number: the sum (or the first) of the result's values.

        ``None`` when the result is empty or every value is NaN (e.g. a ratio
        of two zero rates: no jobs ran).
        """
        values = [s.value for s in await self.query(promql) if not math.isnan(s.value)]
        if not values:
            return None
        return values[0] if reduce == "first" else math.fsum(values)

    async def check(self, name: CheckName) -> float | None:
        """The value of one runbook check (see :class:`RunbookQueries`)."""
        return await self.scalar(self.queries.promql(name))

    async def slowdown_factor(self) -> float | None:
        """Mean job duration divided by the configured baseline (``None`` without data).

        Above 5 the runbook calls it P1 ("severe performance degradation"),
        between 2 and 5 P2.
        """
        duration = await self.check("job_duration_seconds")
        if duration is None:
            return None
        return duration / self.queries.job_duration_baseline_seconds
