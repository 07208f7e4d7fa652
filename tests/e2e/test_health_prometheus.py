"""/health end to end: a real Prometheus (Debian package) scraping the test-driven exporter,
the fake Kubernetes API through a kubeconfig, a real App answering through its router."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.app import App
from tests.fakes.kube_api import FakeKubeApi
from tests.support.cluster_app import Chat, build_app
from tests.support.promstack import Exporter, require_binaries, run_prometheus, wait_for_data

pytestmark = pytest.mark.slow

OOM_RISING = "sum(increase(driver_pod_oom_killed_total[5m])) > 0"


@pytest.fixture
def kube_api() -> Iterator[FakeKubeApi]:
    """Three failed driver pods among six; nodes, executors and Spark Connect healthy."""
    with FakeKubeApi() as api:
        for name in ("etl-a-driver", "etl-b-driver", "etl-c-driver"):
            api.add_pod(name, role="driver", phase="Failed", reason="Error")
        for name in ("report-driver", "adhoc-driver", "spark-connect-driver-0"):
            api.add_pod(name, role="driver")
        api.add_pod("spark-connect-executor-0", role="executor")
        api.add_node("node-1")
        api.add_node("node-2")
        api.add_statefulset("spark-connect-executor", replicas=4, ready=4)
        api.add_deployment("spark-connect", replicas=1, ready=1)
        yield api


async def test_health_with_failed_drivers_and_rising_oom_counter(
    make_app: Callable[..., App], kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    require_binaries("prometheus")
    with Exporter() as exporter, run_prometheus([exporter.target]) as prometheus:
        # increase() needs a sample before the kills: 0 first, then the counter rises
        exporter.set("driver_pod_oom_killed_total", 0)
        exporter.set("executor_removed_total", 0)
        wait_for_data(prometheus.url, "driver_pod_oom_killed_total", lambda v: v == [0.0])
        exporter.set("driver_pod_oom_killed_total", 3)
        wait_for_data(prometheus.url, OOM_RISING, lambda v: len(v) == 1)

        app = build_app(make_app, kube_api, tmp_path, PIRA_PROMETHEUS_URL=prometheus.url)
        await app.start(scheduler=False)
        try:
            chat = Chat(app)
            started = time.monotonic()
            reply = await chat.say("bob", "/health")
            elapsed = time.monotonic() - started
            text = chat.text(reply)
        finally:
            await app.stop()

    assert reply.ok and elapsed < 7
    # the pods
    assert "**Pods:** 7 (3 Failed, 4 Running)" in text
    assert "- Failed: etl-a-driver, etl-b-driver, etl-c-driver" in text
    # the runbook's metrics, from the real Prometheus
    kills = re.search(r"- Driver OOM kills \(5 min\): ([\d.]+)", text)
    assert kills is not None and float(kills.group(1)) > 0, text
    assert "- Executors removed (5 min): 0" in text
    assert "- Job failure ratio (5 min): no data" in text
    # the pattern, with its evidence
    assert re.search(
        r"\*\*Driver OOM\*\*: \d+ driver pod\(s\) OOM-killed in 5 min "
        r"\(driver_pod_oom_killed_total\)",
        text,
    ), text
    assert "Mitigation: Increase driver memory, restart job." in text
    assert "Executor Loss" not in text
    # the severity and why: half the drivers failing is "single team jobs failing" territory
    assert "**Suggested severity: P2** (Medium: Limited impact" in text
    assert "- jobs failing: 3 of 6 Spark driver pods failed or crash-looping" in text
    assert "- runbook pattern Driver OOM matched (evidence above)" in text
    assert "Not checked" not in text
    assert reply.buttons == ()  # Driver OOM's mitigation is not an action PIRA runs
