"""bot.integrations.kube.Cluster against the protocol-level fake API server (real HTTP)."""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

import pytest
from kubernetes import client

from bot.integrations.kube import (
    Cluster,
    ClusterError,
    ClusterUnavailable,
    Forbidden,
    InvalidRequest,
    ManifestError,
    MetricsUnavailable,
    NotADriver,
    NotFound,
    load_api_client,
)
from tests.fakes.kube_api import TOKEN, FakeKubeApi

SCALE_PATH = "/apis/apps/v1/namespaces/spark/statefulsets/spark-connect-executor/scale"
DEPLOY_PATH = "/apis/apps/v1/namespaces/spark/deployments/spark-connect"


# kube_api and cluster: tests/integration/conftest.py


@pytest.fixture
def cluster_timeout() -> float:
    return 2.0  # the hanging-server test waits for it


def writes(api: FakeKubeApi) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in api.requests if r.method != "GET"]


# --- pods ---------------------------------------------------------------------------------


async def test_pods_lists_the_platform_selector_with_state(
    cluster: Cluster, kube_api: FakeKubeApi
) -> None:
    pods = {p.name: p for p in await cluster.pods()}
    assert "postgres-0" not in pods  # outside the selector
    assert set(pods) == {
        "spark-connect-driver-0",
        "etl-nightly-driver",
        "spark-connect-executor-0",
        "spark-connect-executor-1",
        "report-driver",
        "spark-connect-executor-9",
    }
    crashing = pods["etl-nightly-driver"]
    assert crashing.crash_looping and crashing.waiting_reason == "CrashLoopBackOff"
    assert crashing.restarts == 7 and crashing.last_terminated_reason == "OOMKilled"
    assert crashing.role == "driver" and not crashing.ready
    assert pods["spark-connect-executor-1"].role == "executor"
    assert pods["spark-connect-executor-1"].restarts == 2
    assert (
        pods["spark-connect-driver-0"].ready and pods["spark-connect-driver-0"].phase == "Running"
    )
    (req,) = kube_api.requests
    assert req.path == "/api/v1/namespaces/spark/pods"
    assert req.query == {"labelSelector": "app.kubernetes.io/part-of=spark-k8s"}
    assert req.authorization == f"Bearer {TOKEN}"  # the kubeconfig's credentials were used


@pytest.mark.parametrize(
    ("phase", "expected", "selector"),
    [
        ("failed", ["report-driver"], "status.phase=Failed"),
        ("pending", ["spark-connect-executor-9"], "status.phase=Pending"),
    ],
)
async def test_pods_by_phase_uses_a_field_selector(
    cluster: Cluster, kube_api: FakeKubeApi, phase: str, expected: list[str], selector: str
) -> None:
    pods = await cluster.pods(phase)  # type: ignore[arg-type]
    assert [p.name for p in pods] == expected
    assert kube_api.requests[-1].query["fieldSelector"] == selector


async def test_pod_not_found_and_invalid_name(cluster: Cluster, kube_api: FakeKubeApi) -> None:
    assert (await cluster.pod("report-driver")).phase == "Failed"
    with pytest.raises(NotFound, match="nope"):
        await cluster.pod("nope")
    before = len(kube_api.requests)
    with pytest.raises(InvalidRequest):
        await cluster.pod("../../nodes")
    assert len(kube_api.requests) == before  # refused before any request


# --- logs ---------------------------------------------------------------------------------


async def test_logs_tail(cluster: Cluster, kube_api: FakeKubeApi) -> None:
    text = await cluster.logs("spark-connect-driver-0", tail=1)
    assert text == "INFO DAGScheduler: Job 4 finished\n"
    req = kube_api.requests[-1]
    assert req.path == "/api/v1/namespaces/spark/pods/spark-connect-driver-0/log"
    assert req.query == {"tailLines": "1"}


async def test_error_lines_grep_the_platform_pods(cluster: Cluster, kube_api: FakeKubeApi) -> None:
    lines = await cluster.error_lines(tail=50)
    found = {(ln.pod, ln.text) for ln in lines}
    assert found == {
        ("spark-connect-driver-0", "ERROR TaskSchedulerImpl: Lost executor 3: Connection refused"),
        ("spark-connect-executor-0", "error: java.io.IOException: No space left on device"),
    }
    log_reqs = kube_api.requests_matching("GET", r"/log$")
    assert all(r.query["tailLines"] == "50" for r in log_reqs)
    assert all("container" in r.query for r in log_reqs)
    logged = {r.path.split("/")[-2] for r in log_reqs}
    assert "postgres-0" not in logged  # outside the selector
    assert "spark-connect-executor-9" not in logged  # pending: no container to read


# --- nodes and metrics --------------------------------------------------------------------


async def test_nodes_ready_and_not_ready(cluster: Cluster, kube_api: FakeKubeApi) -> None:
    kube_api.add_node("node-3", ready=None)
    nodes = {n.name: n for n in await cluster.nodes()}
    assert nodes["node-1"].ready and nodes["node-1"].status == "Ready"
    assert not nodes["node-2"].ready and nodes["node-2"].status == "NotReady"
    assert nodes["node-3"].status == "Unknown"


async def test_top_pods_and_nodes(cluster: Cluster, kube_api: FakeKubeApi) -> None:
    pods = await cluster.top_pods()
    assert [(p.name, p.cpu_millicores, p.memory_bytes) for p in pods] == [
        ("spark-connect-executor-0", 1500, 2 * 1024**3),
        ("spark-connect-driver-0", 250, 1024**3),
    ]
    req = kube_api.requests_matching("GET", "metrics.k8s.io")[0]
    assert req.path == "/apis/metrics.k8s.io/v1beta1/namespaces/spark/pods"
    assert req.query["labelSelector"] == "app.kubernetes.io/part-of=spark-k8s"
    nodes = {n.name: n for n in await cluster.top_nodes()}
    assert nodes["node-1"].cpu_millicores == 7200 and nodes["node-1"].cpu_percent == 90.0
    assert nodes["node-1"].memory_bytes == 16 * 1024**3 and nodes["node-1"].memory_percent == 50.0
    assert nodes["node-2"].cpu_percent == 25.0


async def test_metrics_server_absent(cluster: Cluster, kube_api: FakeKubeApi) -> None:
    kube_api.metrics_available = False
    with pytest.raises(MetricsUnavailable, match="metrics-server"):
        await cluster.top_pods()
    with pytest.raises(MetricsUnavailable):
        await cluster.top_nodes()
    assert kube_api.requests_matching("GET", "metrics.k8s.io")[0].status == 404


# --- executors and Spark Connect ----------------------------------------------------------


async def test_executor_scale_status(cluster: Cluster) -> None:
    scale = await cluster.executors()
    assert (scale.statefulset, scale.replicas, scale.ready_replicas) == (
        "spark-connect-executor",
        10,
        8,
    )


async def test_scale_sends_exactly_one_merge_patch_to_the_scale_subresource(
    cluster: Cluster, kube_api: FakeKubeApi
) -> None:
    assert await cluster.scale_executors(20) == 20
    assert writes(kube_api) == [("PATCH", SCALE_PATH)]
    (patch,) = kube_api.requests_matching("PATCH")
    assert patch.content_type == "application/merge-patch+json"
    assert patch.body == {"spec": {"replicas": 20}}
    sts = kube_api.get("apps/v1", "statefulsets", "spark", "spark-connect-executor")
    assert sts is not None and sts["spec"]["replicas"] == 20
    assert (await cluster.executors()).replicas == 20


@pytest.mark.parametrize("bad", [-1, True, 2.5])
async def test_scale_refuses_bad_counts_without_a_request(
    cluster: Cluster, kube_api: FakeKubeApi, bad: object
) -> None:
    with pytest.raises(InvalidRequest):
        await cluster.scale_executors(bad)  # type: ignore[arg-type]
    assert kube_api.requests == []


async def test_scale_of_missing_statefulset(cluster: Cluster, kube_api: FakeKubeApi) -> None:
    cluster.executor_statefulset = "nope"
    with pytest.raises(NotFound):
        await cluster.scale_executors(3)


async def test_restart_sends_the_kubectl_restartedat_patch(
    cluster: Cluster, kube_api: FakeKubeApi
) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    stamp = await cluster.restart_connect()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp)
    when = dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    assert before <= when <= dt.datetime.now(dt.UTC)
    assert writes(kube_api) == [("PATCH", DEPLOY_PATH)]
    (patch,) = kube_api.requests_matching("PATCH")
    assert patch.content_type == "application/strategic-merge-patch+json"
    assert patch.body == {
        "spec": {
            "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}
        }
    }
    status = await cluster.connect_status()
    assert status.restarted_at == stamp and (status.desired, status.ready) == (1, 1)


async def test_restart_refuses_a_paused_deployment(cluster: Cluster, kube_api: FakeKubeApi) -> None:
    dep = kube_api.get("apps/v1", "deployments", "spark", "spark-connect")
    assert dep is not None
    dep["spec"]["paused"] = True
    kube_api.put(dep)
    with pytest.raises(InvalidRequest, match="paused"):
        await cluster.restart_connect()
    assert writes(kube_api) == []


# --- kill ---------------------------------------------------------------------------------


async def test_kill_deletes_a_driver_with_a_uid_precondition(
    cluster: Cluster, kube_api: FakeKubeApi
) -> None:
    pod = kube_api.get("v1", "pods", "spark", "etl-nightly-driver")
    assert pod is not None
    killed = await cluster.kill_driver("etl-nightly-driver")
    assert killed.name == "etl-nightly-driver"
    assert writes(kube_api) == [("DELETE", "/api/v1/namespaces/spark/pods/etl-nightly-driver")]
    (delete,) = kube_api.requests_matching("DELETE")
    assert delete.body["preconditions"] == {"uid": pod["metadata"]["uid"]}
    assert kube_api.get("v1", "pods", "spark", "etl-nightly-driver") is None


@pytest.mark.parametrize("name", ["spark-connect-executor-0", "postgres-0"])
async def test_kill_refuses_pods_that_are_not_platform_drivers(
    cluster: Cluster, kube_api: FakeKubeApi, name: str
) -> None:
    with pytest.raises(NotADriver, match=name):
        await cluster.kill_driver(name)
    assert writes(kube_api) == []
    assert kube_api.get("v1", "pods", "spark", name) is not None


async def test_kill_unknown_pod(cluster: Cluster, kube_api: FakeKubeApi) -> None:
    with pytest.raises(NotFound):
        await cluster.kill_driver("no-such-driver")
    assert writes(kube_api) == []


# --- failures -----------------------------------------------------------------------------


async def test_hanging_api_server_fails_within_the_timeout(
    cluster: Cluster, kube_api: FakeKubeApi
) -> None:
    kube_api.hang()
    start = time.monotonic()
    with pytest.raises(ClusterUnavailable, match="no answer within 2s"):
        await cluster.pods()
    assert time.monotonic() - start < cluster.timeout + 2
    time.sleep(0.5)  # let the worker thread's own socket timeout fire
    assert len(kube_api.requests) == 1  # a read timeout is never retried


@pytest.mark.parametrize(
    ("status", "error"), [(500, ClusterError), (403, Forbidden), (503, ClusterUnavailable)]
)
async def test_api_errors_become_typed_errors(
    cluster: Cluster, kube_api: FakeKubeApi, status: int, error: type[ClusterError]
) -> None:
    kube_api.fail(status, method="PATCH", path="/scale$")
    with pytest.raises(error) as info:
        await cluster.scale_executors(5)
    assert type(info.value) is error and info.value.status == status
    assert "Traceback" not in str(info.value) and "\n" not in str(info.value)
    assert (await cluster.executors()).replicas == 10  # GETs unaffected, nothing changed


async def test_connection_refused(cluster: Cluster, kube_api: FakeKubeApi) -> None:
    await cluster.nodes()  # leaves a pooled keep-alive connection behind
    kube_api.stop()
    with pytest.raises(ClusterUnavailable, match="cannot reach") as info:
        await cluster.nodes()
    assert "Connection refused" in str(info.value) and "object at 0x" not in str(info.value)


# --- restore ------------------------------------------------------------------------------

MANIFEST = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: spark-defaults, namespace: spark}
data: {spark.executor.memory: 4g}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: spark-data
  uid: 0b0b0b0b-0000-0000-0000-000000000000
  resourceVersion: "42"
  creationTimestamp: "2026-01-01T00:00:00Z"
  managedFields: [{manager: kubectl}]
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 100Gi}}
status: {phase: Bound}
---
"""


async def test_apply_manifest_server_side(
    cluster: Cluster, kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    meta = {"name": "spark-defaults", "namespace": "spark"}
    kube_api.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {}})
    path = tmp_path / "restore.yaml"
    path.write_text(MANIFEST)
    applied = await cluster.apply_manifest(path)
    assert [(a.kind, a.name, a.created) for a in applied] == [
        ("ConfigMap", "spark-defaults", False),
        ("PersistentVolumeClaim", "spark-data", True),
    ]
    patches = kube_api.requests_matching("PATCH")
    assert [r.path for r in patches] == [
        "/api/v1/namespaces/spark/configmaps/spark-defaults",
        "/api/v1/namespaces/spark/persistentvolumeclaims/spark-data",
    ]
    for req in patches:
        assert req.content_type == "application/apply-patch+yaml"
        assert req.query == {"fieldManager": "pira", "force": "true"}
    pvc_body = patches[1].body
    assert "status" not in pvc_body
    assert set(pvc_body["metadata"]) == {"name", "namespace"}
    cm = kube_api.get("v1", "configmaps", "spark", "spark-defaults")
    assert cm is not None and cm["data"] == {"spark.executor.memory": "4g"}


async def test_apply_kind_list(cluster: Cluster, kube_api: FakeKubeApi, tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text(
        "apiVersion: v1\nkind: List\nitems:\n"
        "- apiVersion: batch/v1\n  kind: Job\n  metadata: {name: restore-data}\n"
        "  spec:\n    template:\n      spec:\n        restartPolicy: Never\n"
        "        containers: [{name: restore, image: 'busybox:1.36'}]\n"
    )
    applied = await cluster.apply_manifest(path)
    assert [(a.kind, a.name) for a in applied] == [("Job", "restore-data")]
    assert kube_api.get("batch/v1", "jobs", "spark", "restore-data") is not None


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n", "not allowed"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: kube-system}\n",
         "namespace"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n", "metadata.name"),
        ("- not\n- an object\n", "not a Kubernetes object"),
        ("key: [unclosed\n", "cannot read"),
    ],
)  # fmt: skip
async def test_apply_refuses_bad_manifests_before_sending_anything(
    cluster: Cluster, kube_api: FakeKubeApi, tmp_path: Path, doc: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(MANIFEST + doc)  # valid objects first: still nothing may be applied
    with pytest.raises(ManifestError, match=message):
        await cluster.apply_manifest(path)
    assert kube_api.requests == []


async def test_apply_failure_part_way_names_what_was_applied(
    cluster: Cluster, kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    kube_api.fail(500, path="persistentvolumeclaims")
    path = tmp_path / "restore.yaml"
    path.write_text(MANIFEST)
    with pytest.raises(ClusterError, match="already applied: ConfigMap spark-defaults"):
        await cluster.apply_manifest(path)


# --- configuration ------------------------------------------------------------------------


def test_loader_reads_kubeconfig_env_and_leaves_the_default_client_alone(
    kube_api: FakeKubeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default_host = client.Configuration.get_default_copy().host
    monkeypatch.setenv("KUBECONFIG", str(kube_api.write_kubeconfig(tmp_path / "kc")))
    api_client = load_api_client()
    try:
        assert api_client.configuration.host == kube_api.url
    finally:
        api_client.close()
    assert client.Configuration.get_default_copy().host == default_host


async def test_invalid_job_is_refused_by_the_server(
    cluster: Cluster, kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec: {}\n")
    with pytest.raises(InvalidRequest, match=r"spec\.template"):
        await cluster.apply_manifest(path)


def test_loader_without_any_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ClusterUnavailable, match="KUBECONFIG"):
        load_api_client()
    (tmp_path / "broken").write_text("clusters: [")
    with pytest.raises(ClusterUnavailable, match="cannot load"):
        load_api_client(tmp_path / "broken")
