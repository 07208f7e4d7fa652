"""/health, /pods, /logs, /top, /runbook through the router, against the fake Kubernetes API
(real HTTP through a kubeconfig) and Prometheus that is absent, refusing or hanging."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.app import App
from bot.messages import Room
from tests.fakes.kube_api import FakeKubeApi
from tests.support.cluster_app import Chat, build_app, cluster_config
from tests.support.promstack import LOOPBACK, free_port

# kube_api and chat (the seeded platform, default configuration): tests/integration/conftest.py


# ---- /health ------------------------------------------------------------------------------


async def test_health_reports_the_seeded_platform(chat: Chat) -> None:
    reply = await chat.say("bob", "/health")
    assert reply.ok
    text = chat.text(reply)
    assert "Kubernetes API:** ✅ reachable" in text
    assert "**Pods:** 6 (1 Failed, 1 Pending, 4 Running)" in text
    assert "- Failed: report-driver" in text
    assert "- CrashLoopBackOff: etl-nightly-driver" in text
    assert "- Pending: spark-connect-executor-9" in text
    assert "postgres-0" not in text  # outside the selector
    assert "**Nodes:** 1/2 Ready; not Ready: node-2 (NotReady)" in text
    assert "**Spark Connect:** ✅ 1/1 ready" in text
    assert "**Executors:** ⚠️ 8/10 ready" in text
    assert "Prometheus not configured" in text
    # patterns, each with its evidence
    assert "**Driver OOM**: driver pod(s) killed for memory: etl-nightly-driver" in text
    assert "**Executor Loss**: executors ready 8 of 10 desired" in text
    assert "**Network Timeout**: 1 connection log line(s), e.g. spark-connect-driver-0" in text
    assert "**Storage Issue**: 1 storage log line(s)" in text
    assert "High Load" not in text  # no CPU data: not claimed
    # severity from the runbook's definitions: a NotReady node is a partial cluster failure
    assert "**Suggested severity: P1** (High: Significant degradation" in text
    assert "partial cluster failure: node-2 not Ready (1 of 2 nodes)" in text
    # the actions PIRA can run for the matched mitigations, as guarded commands
    assert [b.command for b in reply.buttons] == ["/scale executors 15", "/restart spark-connect"]
    for platform in ("slack", "telegram"):
        assert "Suggested severity" in chat.text(reply, platform)


async def test_health_lists_the_pods_once_and_reads_the_logs_of_that_listing(
    chat: Chat, kube_api: FakeKubeApi
) -> None:
    kube_api.clear_requests()
    assert (await chat.say("bob", "/health")).ok
    listings = kube_api.requests_matching("GET", r"/namespaces/spark/pods$")
    assert len(listings) == 1  # /pods and the error lines used to list them twice
    assert kube_api.requests_matching("GET", r"/pods/[^/]+/log$")  # the logs were read


async def test_health_in_an_incident_room_keeps_the_pattern_for_the_category(chat: Chat) -> None:
    await chat.say("bob", "/incident p1 nightly ETL down")
    await chat.say("bob", "/incident p2 something else")
    room = Room("console", "tty", incident=1)
    assert (await chat.say("bob", "/health", room)).ok
    assert (await chat.say("bob", "/health", room)).ok  # kept once
    assert (await chat.say("bob", "/health")).ok  # not in a room: about no incident
    # A root cause naming no pattern: the category is what /health saw (the first match).
    assert (await chat.say("bob", "/resolve #1 restarted it", room)).ok
    assert (await chat.say("bob", "/resolve #2 restarted it")).ok
    one = await chat.app.store.run(chat.app.incidents.get, 1)
    two = await chat.app.store.run(chat.app.incidents.get, 2)
    assert (one.category, two.category) == ("driver-oom", "other")
    assert [e.text for e in one.timeline if e.kind == "health"] == [
        "/health matched the runbook pattern Driver OOM"
    ]


async def test_health_button_goes_through_the_guarded_path(
    chat: Chat, kube_api: FakeKubeApi
) -> None:
    reply = await chat.say("bob", "/health")
    scale = next(b for b in reply.buttons if b.command.startswith("/scale"))
    refused = await chat.say("bob", scale.command)  # bob is a responder, not an operator
    assert not refused.ok and "operator" in chat.text(refused)
    prompt = await chat.say("alice", scale.command)
    assert "10 → 15" in chat.text(prompt)
    done = await chat.say("alice", prompt.buttons[0].command)
    assert done.ok
    (patch,) = kube_api.requests_matching("PATCH")
    assert patch.body == {"spec": {"replicas": 15}}


async def test_health_answers_within_the_budget_when_the_api_server_hangs(
    make_app: Callable[..., App], kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    # A per-call timeout longer than the budget: the budget is what must cut.
    app = build_app(make_app, kube_api, tmp_path, config=cluster_config(timeout="20s"))
    await app.start(scheduler=False)
    chat = Chat(app)
    try:
        kube_api.hang()
        started = time.monotonic()
        reply = await chat.say("bob", "/health")
        elapsed = time.monotonic() - started
    finally:
        kube_api.clear_faults()
        await app.stop()
    assert elapsed < 7  # the brief: within 5 s; a generous bound against a regression
    assert reply.ok
    text = chat.text(reply)
    assert "Kubernetes API:** ❔ unknown (no answer within 4.5 s)" in text
    assert "**Pods:** unknown (no answer within 4.5 s)" in text
    assert "**Executors:** unknown" in text
    assert "Not checked (no answer): pods, nodes, Spark Connect, executors, error logs" in text
    assert kube_api.requests  # it did ask


async def test_health_with_api_server_down_says_so(
    make_app: Callable[..., App], tmp_path: Path
) -> None:
    api = FakeKubeApi().start()
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    api.stop()  # nothing listens any more
    app = build_app(make_app, None, tmp_path, KUBECONFIG=str(kubeconfig))
    await app.start(scheduler=False)
    try:
        reply = await Chat(app).say("bob", "/health")
        text = Chat(app).text(reply)
    finally:
        await app.stop()
    assert reply.ok
    assert "cannot reach the API server" in text
    assert "Suggested severity" in text


async def test_health_without_kubernetes_or_prometheus_configured(
    make_app: Callable[..., App], tmp_path: Path
) -> None:
    app = build_app(make_app, None, tmp_path)
    await app.start(scheduler=False)
    try:
        chat = Chat(app)
        text = chat.text(await chat.say("bob", "/health"))
        pods = await chat.say("bob", "/pods")
    finally:
        await app.stop()
    assert "Kubernetes API:** not configured (set KUBECONFIG" in text
    assert "Prometheus not configured" in text
    # Nothing was checked: no "nothing indicates an incident" (issue 14, part 3).
    assert "nothing checked indicates an incident" not in text
    assert "**Suggested severity:** none: nothing could be checked (why is said above)" in text
    assert "Not checked" not in text  # not configured is not "no answer"
    assert not pods.ok and "Kubernetes is not configured" in chat.text(pods)


@pytest.mark.parametrize("prometheus", ["refused", "hanging"])
async def test_health_with_prometheus_unreachable_or_hanging(
    make_app: Callable[..., App],
    kube_api: FakeKubeApi,
    tmp_path: Path,
    hanging_server: str,
    prometheus: str,
) -> None:
    url = hanging_server if prometheus == "hanging" else f"http://{LOOPBACK}:{free_port()}"
    app = build_app(make_app, kube_api, tmp_path, PIRA_PROMETHEUS_URL=url)
    await app.start(scheduler=False)
    try:
        chat = Chat(app)
        started = time.monotonic()
        reply = await chat.say("bob", "/health")
        elapsed = time.monotonic() - started
        text = chat.text(reply)
    finally:
        await app.stop()
    assert elapsed < 7
    assert reply.ok
    why = "did not answer within 4s" if prometheus == "hanging" else "is unreachable"
    assert f"**Metrics:** unknown (Prometheus at {url} {why})" in text
    assert "Driver OOM kills" in text  # listed under "Not checked"
    assert "**Pods:** 6" in text  # the cluster part is unaffected


# ---- /pods /logs /top /runbook ------------------------------------------------------------


async def test_pods_lists_troubled_pods_first(chat: Chat, kube_api: FakeKubeApi) -> None:
    text = chat.text(await chat.say("bob", "/pods"))
    lines = [ln for ln in text.splitlines() if ln.startswith("- ")]
    assert lines[0].startswith("- report-driver: Failed, driver")
    assert lines[1].startswith("- etl-nightly-driver: Running, driver, not ready, restarts 7")
    assert "CrashLoopBackOff, last ended OOMKilled" in lines[1]
    assert len(lines) == 6
    failed = chat.text(await chat.say("bob", "/pods failed"))
    assert "report-driver" in failed and "etl-nightly" not in failed
    assert kube_api.requests[-1].query["fieldSelector"] == "status.phase=Failed"
    bad = await chat.say("bob", "/pods broken")
    assert not bad.ok and "Usage: /pods [failed|pending]" in chat.text(bad)


async def test_logs_error_lines_of_the_platform(chat: Chat) -> None:
    text = chat.text(await chat.say("bob", "/logs"))
    assert "spark-connect-driver-0: ERROR TaskSchedulerImpl: Lost executor 3" in text
    assert "spark-connect-executor-0: error: java.io.IOException" in text
    assert "relation does not exist" not in text  # postgres-0 is not the platform's
    assert "INFO" not in text


async def test_logs_of_one_pod(chat: Chat, kube_api: FakeKubeApi) -> None:
    text = chat.text(await chat.say("bob", "/logs spark-connect-driver-0 --tail 2"))
    assert text.splitlines()[1:] == [
        "ERROR TaskSchedulerImpl: Lost executor 3: Connection refused",
        "INFO DAGScheduler: Job 4 finished",
    ]
    assert kube_api.requests[-1].query["tailLines"] == "2"
    errors = chat.text(await chat.say("bob", "/logs spark-connect-driver-0 errors"))
    assert "Lost executor 3" in errors and "DAGScheduler" not in errors
    missing = await chat.say("bob", "/logs nope")
    assert not missing.ok and chat.text(missing) == "There is no pod nope in namespace spark."
    for bad in ("/logs --tail 0", "/logs --tail x", "/logs a b", "/logs --follow"):
        reply = await chat.say("bob", bad)
        assert not reply.ok and "Usage: /logs" in chat.text(reply), bad


async def test_top(chat: Chat, kube_api: FakeKubeApi) -> None:
    text = chat.text(await chat.say("bob", "/top"))
    assert "- spark-connect-executor-0: CPU 1500m, memory 2.0Gi" in text
    assert "postgres-0" not in text
    assert "- node-1: CPU 7200m (90%), memory 16.0Gi (50%)" in text
    nodes = chat.text(await chat.say("bob", "/top nodes"))
    assert "Pods by CPU" not in nodes and "node-2" in nodes
    kube_api.metrics_available = False
    reply = await chat.say("bob", "/top pods")
    assert not reply.ok and "metrics-server is not installed" in chat.text(reply)


async def test_runbook(chat: Chat) -> None:
    text = chat.text(await chat.say("bob", "/runbook"))
    for name in ("Driver OOM", "Executor Loss", "Network Timeout", "Storage Issue", "High Load"):
        assert f"**{name}**" in text
    assert "Detection: driver_pod_oom_killed_total > 0" in text
    one = chat.text(await chat.say("bob", "/runbook high load"))
    assert "Mitigation: Scale up executors → /scale executors <N> (operator)" in one
    assert "Right-size resources" in one and "Driver OOM" not in one
    assert "Tune memory settings" in chat.text(await chat.say("bob", "/runbook oom"))
    bad = await chat.say("bob", "/runbook cosmic rays")
    assert not bad.ok and "driver-oom, executor-loss" in chat.text(bad)
