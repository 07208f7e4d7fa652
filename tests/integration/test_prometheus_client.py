"""bot.integrations.prometheus against a real Prometheus, and rules → Alertmanager → webhook.

The stack (one per module, ~10 s to first data): the test-driven exporter,
a real Alertmanager configured from deploy/alertmanager/alertmanager.yaml
(webhook URL pointed at a loopback receiver in this file, the bearer token
from a temporary file, group_wait shortened), and a real Prometheus scraping
the exporter every second and evaluating a *test copy* of
deploy/prometheus/rules.yaml: the recording rules plus SparkDriverOOMKilled
with its ``for: 1m`` shortened to ``1s``. The deploy file itself keeps its
real durations; only the copy generated here is shortened.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from bot.integrations.alertmanager import (
    group_severity,
    group_started_at,
    group_title,
    parse_payload,
)
from bot.integrations.prometheus import (
    PrometheusClient,
    PrometheusQueryError,
    PrometheusUnavailable,
    RunbookQueries,
)
from tests.support.promstack import (
    LOOPBACK,
    Exporter,
    ManagedProcess,
    alertmanager_config_for_test,
    free_port,
    require_binaries,
    rules_for_test,
    run_alertmanager,
    run_prometheus,
    wait_for_data,
    webhook_receiver,
)

pytestmark = pytest.mark.slow

E2E_ALERT = "SparkDriverOOMKilled"
TOKEN = "test-token-5f1c"


# --------------------------------------------------------------------------- receiver


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A loopback HTTP server recording every POST (answers 200)."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.requests)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    def record(path: str, headers: dict[str, str], body: bytes) -> None:
        with state.lock:
            state.requests.append(Received(path, headers, body))

    with webhook_receiver(record) as url:
        state.url = url
        yield state


# --------------------------------------------------------------------------- stack


@dataclass
class Stack:
    exporter: Exporter
    prometheus: ManagedProcess
    alertmanager: ManagedProcess
    receiver: Receiver


@pytest.fixture(scope="module")
def stack(receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_binaries("prometheus", "alertmanager")
    tmp = tmp_path_factory.mktemp("promstack")
    token_file = tmp / "token"
    token_file.write_text(TOKEN + "\n")
    rules = rules_for_test(tmp / "rules.yaml", E2E_ALERT)
    with (
        Exporter() as exporter,
        run_alertmanager(alertmanager_config_for_test(receiver.url, token_file)) as alertmanager,
        run_prometheus(
            [exporter.target], rule_files=[rules], alertmanager=alertmanager.url
        ) as prometheus,
    ):
        # The e2e alert needs a 0 sample before the OOM kill: increase() needs two.
        exporter.set("driver_pod_oom_killed_total", 0)
        wait_for_data(prometheus.url, "up", lambda v: v == [1.0], timeout=30)
        yield Stack(exporter, prometheus, alertmanager, receiver)


# --------------------------------------------------------------------------- client


async def test_query_returns_the_exporters_value(stack: Stack) -> None:
    stack.exporter.set("driver_pod_oom_killed_total", 3, namespace="query-test")
    promql = 'driver_pod_oom_killed_total{namespace="query-test"}'
    wait_for_data(stack.prometheus.url, promql, lambda v: v == [3.0], timeout=30)

    client = PrometheusClient(stack.prometheus.url, timeout=3)
    try:
        samples = await client.query(promql)
        assert len(samples) == 1
        labels, value = samples[0]
        assert value == 3.0
        assert labels["namespace"] == "query-test"
        assert labels["job"] == "spark"
        assert labels["__name__"] == "driver_pod_oom_killed_total"

        assert await client.scalar(promql) == 3.0
        assert await client.scalar("sum(driver_pod_oom_killed_total)") == 3.0
        assert await client.scalar("no_such_metric_anywhere") is None
        assert await client.scalar("vector(1) + 1", reduce="first") == 2.0
        assert await client.query("scalar(vector(7))") == [({}, 7.0)]
    finally:
        client.close()


async def test_default_runbook_checks_against_real_data(stack: Stack) -> None:
    ex = stack.exporter
    # 60 % of finished jobs fail; executors use 3.8 of 4 requested cores; a
    # mean job takes 1500 s against a 300 s baseline (5x).
    ex.set_rate("spark_job_total", 10.0, namespace="checks")
    ex.set_rate("spark_job_failed_total", 6.0, namespace="checks")
    ex.set_rate("container_cpu_usage_seconds_total", 3.8, pod="exec-1", container="executor")
    ex.set("kube_pod_container_resource_requests", 4, pod="exec-1", container="executor",
           resource="cpu")  # fmt: skip
    ex.set_rate("spark_job_duration_seconds_count", 1.0, namespace="checks")
    ex.set_rate("spark_job_duration_seconds_sum", 1500.0, namespace="checks")
    wait_for_data(
        stack.prometheus.url,
        "count(rate(spark_job_duration_seconds_sum[1m]) > 0)"
        " + count(rate(container_cpu_usage_seconds_total[1m]) > 0)",
        lambda v: v == [2.0],
        timeout=30,
    )

    client = PrometheusClient(
        stack.prometheus.url,
        timeout=3,
        queries=RunbookQueries(job_duration_baseline_seconds=300),
    )
    try:
        # Ratios of two increases/rates over the same window are exact from
        # the second scrape on.
        ratio = await client.check("job_failure_ratio")
        assert ratio is not None and ratio == pytest.approx(0.6, abs=0.05)
        slowdown = await client.slowdown_factor()
        assert slowdown is not None and slowdown == pytest.approx(5.0, abs=0.3)
        assert await client.check("cpu_usage_ratio") is not None
    finally:
        client.close()

    # CPU is rate / requests: rate() divides by the whole window, so 5m of a
    # few seconds' history reads near 0. Configuration overrides the query;
    # the same expression over 5s is exact once 5 s of samples exist.
    default_cpu = RunbookQueries().cpu_usage_ratio
    assert "[5m]" in default_cpu
    short = RunbookQueries(cpu_usage_ratio=default_cpu.replace("[5m]", "[5s]"))
    wait_for_data(
        stack.prometheus.url,
        short.promql("cpu_usage_ratio"),
        lambda v: len(v) == 1 and abs(v[0] - 0.95) < 0.05,
        timeout=30,
    )
    custom = PrometheusClient(stack.prometheus.url, timeout=3, queries=short)
    elsewhere = PrometheusClient(
        stack.prometheus.url, timeout=3, queries=short.model_copy(update={"namespace": "other"})
    )
    try:
        cpu = await custom.check("cpu_usage_ratio")
        assert cpu is not None and cpu == pytest.approx(0.95, abs=0.05)
        # $namespace is filled in from the configuration: no data elsewhere.
        assert await elsewhere.check("cpu_usage_ratio") is None
    finally:
        custom.close()
        elsewhere.close()


async def test_bad_promql_is_a_query_error(stack: Stack) -> None:
    client = PrometheusClient(stack.prometheus.url, timeout=3)
    try:
        with pytest.raises(PrometheusQueryError, match=r"bad query: .*parse error"):
            await client.query("sum(")
        with pytest.raises(PrometheusQueryError, match="range vector"):
            await client.query("up[1m]")
    finally:
        client.close()


async def test_closed_port_is_unavailable_quickly() -> None:
    port = free_port()  # nothing listens there
    client = PrometheusClient(f"http://{LOOPBACK}:{port}", timeout=5)
    started = time.monotonic()
    try:
        with pytest.raises(PrometheusUnavailable, match="unreachable"):
            await client.query("up")
    finally:
        client.close()
    assert time.monotonic() - started < 2.0


async def test_hanging_server_times_out(hanging_server: str) -> None:
    timeout = 1.0
    client = PrometheusClient(hanging_server, timeout=timeout)
    loop_blocked_for = 0.0

    async def ticker() -> None:
        # The event loop must stay free while the request hangs.
        nonlocal loop_blocked_for
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            loop_blocked_for = max(loop_blocked_for, now - last - 0.05)
            last = now

    tick = asyncio.create_task(ticker())
    started = time.monotonic()
    try:
        with pytest.raises(PrometheusUnavailable, match="did not answer within 1s"):
            await client.query("up")
        elapsed = time.monotonic() - started
        # Several calls at once time out together, not one after the other.
        started_many = time.monotonic()
        results = await asyncio.gather(
            *(client.query("up") for _ in range(3)), return_exceptions=True
        )
        elapsed_many = time.monotonic() - started_many
    finally:
        tick.cancel()
        client.close()
    assert timeout <= elapsed + 0.05 < timeout + 2
    assert all(isinstance(r, PrometheusUnavailable) for r in results)
    assert elapsed_many < timeout + 2
    assert loop_blocked_for < 0.5


# --------------------------------------------------------------------------- end to end


def _firing_payloads(receiver: Receiver) -> list[tuple[Received, dict[str, Any]]]:
    found = []
    for request in receiver.snapshot():
        try:
            body = json.loads(request.body)
        except ValueError:
            continue
        if body.get("commonLabels", {}).get("alertname") == E2E_ALERT and any(
            a.get("status") == "firing" and a.get("labels", {}).get("namespace") == "spark"
            for a in body.get("alerts", [])
        ):
            found.append((request, body))
    return found


@pytest.mark.real_clock  # compares the alert's startsAt with this process's clock
def test_oom_rule_fires_and_reaches_the_webhook(stack: Stack) -> None:
    before = time.time()
    stack.exporter.set("driver_pod_oom_killed_total", 2)
    wait_for_data(
        stack.prometheus.url,
        f'ALERTS{{alertname="{E2E_ALERT}",alertstate="firing",namespace="spark"}}',
        lambda v: v == [1.0],
        timeout=30,
    )

    deadline = time.monotonic() + 30
    while not (found := _firing_payloads(stack.receiver)):
        assert time.monotonic() < deadline, (
            f"no {E2E_ALERT} notification within 30s; got {len(stack.receiver.snapshot())}"
            f" other request(s); alertmanager log:\n{stack.alertmanager.log_tail()}"
        )
        time.sleep(0.2)

    request, body = found[0]
    assert request.path == "/alertmanager"
    assert request.headers.get("Authorization") == f"Bearer {TOKEN}"
    assert request.headers.get("Content-Type", "").startswith("application/json")
    assert body["version"] == "4"
    assert body["receiver"] == "pira"

    payload = parse_payload(request.body)
    assert payload.status == "firing"
    assert payload.group_labels == {"alertname": E2E_ALERT, "namespace": "spark"}
    assert E2E_ALERT in payload.group_key
    assert payload.truncated_alerts == 0
    (alert,) = payload.alerts
    assert alert.labels["severity"] == "p2"
    assert alert.labels["pattern"] == "Driver OOM"
    assert alert.starts_at is not None
    assert alert.ends_at is None or alert.ends_at > alert.starts_at
    assert alert.fingerprint
    assert alert.generator_url.startswith(stack.prometheus.url)
    assert group_title(payload) == "Spark driver pod OOM-killed in spark"
    assert group_severity(payload) == "P2"
    started = group_started_at(payload)
    assert started is not None and before - 5 <= started.timestamp() <= time.time()
    assert "2 Spark driver pod(s) were OOM-killed" in alert.annotations["description"]
