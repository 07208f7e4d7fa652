"""The official ``kubernetes`` client against the fake API server (tests/fakes/kube_api.py).

Every call bot/integrations/kube.py makes is made here with the real client, configured from
the kubeconfig the fake writes. For each, the fake's answer must deserialize into the
client's typed model with the fields the bot reads and carry no key the model does not
declare (the models drop unknown keys silently, so a misspelt field would read as None).
Failures must be what a real API server sends: the status code, a ``Status`` object with the
API server's reason, message and details, and the client's exception class for that code.
The comments name the Kubernetes API documentation concept each real-server rule comes from.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import (
    ApiException,
    BadRequestException,
    ConflictException,
    ForbiddenException,
    NotFoundException,
    ServiceException,
    UnauthorizedException,
    UnprocessableEntityException,
)
from kubernetes.utils import parse_quantity

from bot.integrations.kube import FIELD_MANAGER, RESTART_ANNOTATION, RESTORABLE_KINDS
from tests.fakes.kube_api import TOKEN, USER, FakeKubeApi

Obj = dict[str, Any]
NS = "spark"
PLATFORM = "app.kubernetes.io/part-of=spark-k8s"
EXECUTORS = "spark-connect-executor"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
UNSUPPORTED_MEDIA_TYPE = (
    "the body of the request was in an unknown format - accepted media types include: "
    "application/json-patch+json, application/merge-patch+json, "
    "application/strategic-merge-patch+json, application/apply-patch+yaml"
)
EXCEPTIONS: dict[int, type[ApiException]] = {
    400: BadRequestException,
    401: UnauthorizedException,
    403: ForbiddenException,
    404: NotFoundException,
    409: ConflictException,
    422: UnprocessableEntityException,
}
# A valid object of every kind a restore may apply: a new restorable kind fails
# test_samples_cover_every_restorable_kind until it has one (and so a contract check).
SAMPLES: dict[str, dict[str, Any]] = {
    "ConfigMap": {"data": {"spark.executor.memory": "4g"}},
    "PersistentVolumeClaim": {
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    },
    "Job": {
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "restore", "image": "busybox:1.36"}],
                }
            }
        }
    },
}


class Clients:
    """The typed API classes the bot uses, over one ApiClient. Any, as in the bot: the
    models type every field Optional, and a check of None is what these tests are for."""

    def __init__(self, api_client: Any) -> None:
        self.api_client = api_client
        self.core: Any = client.CoreV1Api(api_client)
        self.apps: Any = client.AppsV1Api(api_client)
        self.batch: Any = client.BatchV1Api(api_client)
        self.custom: Any = client.CustomObjectsApi(api_client)

    def answer(self, call: Callable[..., Any], klass: str, *args: Any, **kwargs: Any) -> Any:
        """Make the call, check the raw answer has no key ``klass`` does not declare, then
        deserialize it the way the client does (``ApiClient.deserialize``)."""
        response = call(*args, _preload_content=False, **kwargs)
        text = response.data.decode()
        assert unknown_fields(json.loads(text), klass) == [], f"keys {klass} does not declare"
        return self.api_client.deserialize(text, klass, response.headers.get("Content-Type"))


@pytest.fixture
def api_client(kubeconfig: Path) -> Iterator[Any]:
    api = config.new_client_from_config(config_file=str(kubeconfig), persist_config=False)
    yield api
    api.close()


@pytest.fixture
def k8s(api_client: Any) -> Clients:
    return Clients(api_client)


def unknown_fields(data: Any, klass: str, path: str = "") -> list[str]:
    """Paths of the keys in ``data`` that the client's model ``klass`` does not declare."""
    if data is None:
        return []
    if klass.startswith("List["):
        inner = klass[len("List[") : -1]
        return [
            u for i, item in enumerate(data) for u in unknown_fields(item, inner, f"{path}[{i}]")
        ]
    if klass.startswith("Dict["):
        inner = klass.split(", ", 1)[1][:-1]
        return [u for k, v in data.items() for u in unknown_fields(v, inner, f"{path}.{k}")]
    model = getattr(client.models, klass, None)
    if model is None:  # str, int, bool, datetime, object
        return []
    declared = {key: model.openapi_types[attr] for attr, key in model.attribute_map.items()}
    found = []
    for key, value in data.items():
        if key in declared:
            found += unknown_fields(value, declared[key], f"{path}.{key}")
        else:
            found.append(f"{path}.{key}")
    return found


def refusal(call: Callable[..., Any], *args: Any, **kwargs: Any) -> ApiException:
    with pytest.raises(ApiException) as info:
        call(*args, **kwargs)
    return info.value


def body_of(exc: ApiException) -> Any:
    assert exc.body is not None
    return json.loads(exc.body)


def assert_status(
    exc: ApiException, code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> None:
    """The answer is exactly the API server's ``Status`` failure object (API conventions,
    "Response Status Kind") and the client raised its exception class for ``code``."""
    assert exc.status == code
    assert type(exc) is EXCEPTIONS.get(code, ServiceException if code >= 500 else ApiException)
    assert exc.headers is not None and exc.headers["Content-Type"] == "application/json"
    body = body_of(exc)
    expected: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        expected["details"] = details
    assert body == expected
    assert unknown_fields(body, "V1Status") == []
    status: Any = client.V1Status.from_dict(body)
    assert (status.code, status.reason, status.message) == (code, reason, message)


def invalid(kind: str, group: str, name: str, *errors: tuple[str, str, str]) -> tuple[str, Obj]:
    """The message and details of a 422 ``Invalid`` (errors: field, cause, detail)."""
    qualified = f"{kind}.{group}" if group else kind
    texts = [f"{field}: {detail}" for field, _, detail in errors]
    aggregate = texts[0] if len(texts) == 1 else f"[{', '.join(texts)}]"
    details: Obj = {
        "kind": kind,
        "causes": [{"reason": r, "message": d, "field": f} for f, r, d in errors],
    }
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    return f'{qualified} "{name}" is invalid: {aggregate}', details


def applied(kind: str, name: str, **content: Any) -> Obj:
    api_version = next(v for v, k in RESTORABLE_KINDS if k == kind)
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}, **content}


def owners(obj: Any) -> dict[tuple[str, str, str], Obj]:
    """managedFields as {(manager, operation, subresource): fieldsV1}."""
    return {
        (e.manager, e.operation, e.subresource or ""): e.fields_v1
        for e in obj.metadata.managed_fields or []
    }


# --- connection and authentication ------------------------------------------------------------


def test_the_kubeconfig_points_the_client_at_the_fake(
    api_client: Any, k8s: Clients, kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    assert api_client.configuration.host == kube_api.url
    k8s.core.list_namespaced_pod(NS)
    assert kube_api.requests[-1].authorization == f"Bearer {TOKEN}"
    # a wrong token: 401 before anything else (API access control: authentication first)
    config_file = tmp_path / "bad-kubeconfig"
    doc = yaml.safe_load(kube_api.write_kubeconfig(config_file).read_text())
    doc["users"][0]["user"]["token"] = "wrong"
    config_file.write_text(yaml.safe_dump(doc))
    bad_client = config.new_client_from_config(str(config_file), persist_config=False)
    bad: Any = client.CoreV1Api(bad_client)
    try:
        exc = refusal(bad.read_namespaced_pod, "nope", NS)
    finally:
        bad_client.close()
    assert_status(exc, 401, "Unauthorized", "Unauthorized")


# --- pods -------------------------------------------------------------------------------------


def test_pod_list_has_the_fields_the_bot_reads(k8s: Clients) -> None:
    pods = k8s.answer(k8s.core.list_namespaced_pod, "V1PodList", NS, label_selector=PLATFORM)
    assert pods.kind == "PodList" and pods.api_version == "v1"
    assert pods.metadata.resource_version  # a list carries the collection's resourceVersion
    by_name = {p.metadata.name: p for p in pods.items}
    assert set(by_name) == {
        "spark-connect-driver-0",
        "etl-nightly-driver",
        "spark-connect-executor-0",
        "spark-connect-executor-1",
        "report-driver",
        "spark-connect-executor-9",
    }
    crashing = by_name["etl-nightly-driver"]
    assert crashing.kind is None and crashing.api_version is None  # items carry neither
    assert crashing.metadata.labels["spark-role"] == "driver" and crashing.metadata.uid
    assert [c.name for c in crashing.spec.containers] == ["spark-kubernetes-driver"]
    assert crashing.spec.node_name == "node-1" and crashing.status.phase == "Running"
    (cstatus,) = crashing.status.container_statuses
    assert (cstatus.ready, cstatus.restart_count) == (False, 7)
    assert cstatus.state.waiting.reason == "CrashLoopBackOff"
    assert cstatus.last_state.terminated.reason == "OOMKilled"
    failed = by_name["report-driver"]
    assert (failed.status.phase, failed.status.reason) == ("Failed", "Error")
    assert failed.status.container_statuses[0].state.terminated.exit_code == 1
    pending = by_name["spark-connect-executor-9"]
    assert pending.spec.node_name is None
    assert pending.status.container_statuses[0].state.waiting.reason == "ContainerCreating"
    # the typed call the bot makes reads the same
    typed = k8s.core.list_namespaced_pod(NS, label_selector=PLATFORM)
    assert sorted(p.metadata.name for p in typed.items) == sorted(by_name)


def test_read_pod_and_not_found(k8s: Clients) -> None:
    pod = k8s.answer(k8s.core.read_namespaced_pod, "V1Pod", "report-driver", NS)
    assert (pod.kind, pod.api_version, pod.metadata.namespace) == ("Pod", "v1", NS)
    assert pod.metadata.creation_timestamp is not None and pod.metadata.resource_version
    # core group: no "group" in the details (StatusDetails fields are omitempty)
    assert_status(
        refusal(k8s.core.read_namespaced_pod, "nope", NS),
        404,
        "NotFound",
        'pods "nope" not found',
        {"name": "nope", "kind": "pods"},
    )
    assert_status(
        refusal(k8s.apps.read_namespaced_stateful_set, "nope", NS),
        404,
        "NotFound",
        'statefulsets.apps "nope" not found',
        {"name": "nope", "group": "apps", "kind": "statefulsets"},
    )


def names(listing: Any) -> list[str]:
    return [item.metadata.name for item in listing.items]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        # API concepts, "Labels and Selectors": equality- and set-based requirements, ANDed
        (f"{PLATFORM},spark-role=driver",
         ["etl-nightly-driver", "report-driver", "spark-connect-driver-0"]),
        ("spark-role==executor", ["spark-connect-executor-0", "spark-connect-executor-1",
                                  "spark-connect-executor-9"]),
        ("spark-role!=executor",  # != and notin also match objects without the label
         ["etl-nightly-driver", "postgres-0", "report-driver", "spark-connect-driver-0"]),
        ("spark-role notin (executor,driver)", ["postgres-0"]),
        ("spark-role in (driver),app.kubernetes.io/part-of",
         ["etl-nightly-driver", "report-driver", "spark-connect-driver-0"]),
        ("!spark-role", ["postgres-0"]),
        ("app=postgres,spark-role", []),
    ],
)  # fmt: skip
def test_label_selectors(k8s: Clients, selector: str, expected: list[str]) -> None:
    assert names(k8s.core.list_namespaced_pod(NS, label_selector=selector)) == expected


def test_a_bad_label_selector_is_a_bad_request(k8s: Clients) -> None:
    exc = refusal(k8s.core.list_namespaced_pod, NS, label_selector="spark-role in driver")
    assert exc.status == 400 and type(exc) is BadRequestException
    body = body_of(exc)
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "BadRequest", 400)
    assert body["message"].startswith("unable to parse requirement: ")


def test_field_selectors(k8s: Clients) -> None:
    # the query kill_driver makes: one pod, by name, only if it is a platform driver
    driver = f"{PLATFORM},spark-role=driver"
    one = k8s.core.list_namespaced_pod(
        NS, label_selector=driver, field_selector="metadata.name=etl-nightly-driver"
    )
    assert names(one) == ["etl-nightly-driver"]
    not_a_driver = k8s.core.list_namespaced_pod(
        NS, label_selector=driver, field_selector="metadata.name=spark-connect-executor-0"
    )
    assert names(not_a_driver) == []
    # pods(phase=...)
    failed = k8s.core.list_namespaced_pod(
        NS, label_selector=PLATFORM, field_selector="status.phase=Failed"
    )
    assert names(failed) == ["report-driver"]
    not_running = k8s.core.list_namespaced_pod(
        NS, field_selector="status.phase!=Running,spec.nodeName=node-2"
    )
    assert names(not_running) == ["report-driver"]
    # API concepts, "Field selectors": only the fields a kind indexes; others are refused
    assert_status(
        refusal(k8s.core.list_namespaced_pod, NS, field_selector="spec.containers=x"),
        400,
        "BadRequest",
        "field label not supported: spec.containers",
    )
    assert_status(
        refusal(k8s.core.list_namespaced_config_map, NS, field_selector="data.k=v"),
        400,
        "BadRequest",
        '"data.k" is not a known field selector: only "metadata.name", "metadata.namespace"',
    )
    assert names(k8s.core.list_node(field_selector="metadata.name=node-2")) == ["node-2"]


def test_lists_come_in_chunks_with_limit_and_continue(k8s: Clients) -> None:
    # The bot lists without `limit` (its lists are small); a real server pages when asked
    # (API concepts, "Retrieving large results sets in chunks"), and so does the fake.
    everything = names(k8s.core.list_namespaced_pod(NS))
    assert len(everything) == 7 and everything == sorted(everything)  # key order
    first = k8s.answer(k8s.core.list_namespaced_pod, "V1PodList", NS, limit=3)
    assert names(first) == everything[:3]
    assert first.metadata.var_continue and first.metadata.remaining_item_count == 4
    second = k8s.core.list_namespaced_pod(NS, limit=3, _continue=first.metadata.var_continue)
    assert names(second) == everything[3:6] and second.metadata.remaining_item_count == 1
    # the pages of one list are one snapshot: the first page's resourceVersion
    assert second.metadata.resource_version == first.metadata.resource_version
    last = k8s.core.list_namespaced_pod(NS, limit=3, _continue=second.metadata.var_continue)
    assert names(last) == everything[6:]
    assert last.metadata.var_continue is None and last.metadata.remaining_item_count is None
    # with a selector the limit counts matches, and no remainingItemCount is given
    selected = k8s.core.list_namespaced_pod(NS, label_selector=PLATFORM, limit=4)
    assert len(selected.items) == 4 and selected.metadata.var_continue
    assert selected.metadata.remaining_item_count is None
    exc = refusal(k8s.core.list_namespaced_pod, NS, limit=3, _continue="not-a-token")
    assert exc.status == 400 and body_of(exc)["reason"] == "BadRequest"
    assert body_of(exc)["message"].startswith("invalid continue token: ")


# --- pod logs ---------------------------------------------------------------------------------


def test_pod_logs(k8s: Clients, kube_api: FakeKubeApi) -> None:
    text = k8s.core.read_namespaced_pod_log("spark-connect-driver-0", NS, tail_lines=2)
    assert text == (
        "ERROR TaskSchedulerImpl: Lost executor 3: Connection refused\n"
        "INFO DAGScheduler: Job 4 finished\n"
    )
    response = k8s.core.read_namespaced_pod_log(
        "spark-connect-driver-0", NS, container="spark-kubernetes-driver", _preload_content=False
    )
    assert response.headers["Content-Type"] == "text/plain"  # plain text, not JSON
    assert response.data.decode().count("\n") == 3
    # a restarting container (CrashLoopBackOff) serves its previous instance's log
    assert k8s.core.read_namespaced_pod_log("etl-nightly-driver", NS) == ""
    # a pod not yet scheduled has no kubelet to ask: the log is empty
    assert k8s.core.read_namespaced_pod_log("spark-connect-executor-9", NS) == ""


def test_pod_log_refusals(k8s: Clients, kube_api: FakeKubeApi) -> None:
    kube_api.add_pod("two-containers", containers=("spark", "sidecar"))
    kube_api.add_pod("pulling", role="executor", waiting_reason="ImagePullBackOff")
    kube_api.add_pod("creating", role="executor", phase="Pending")  # on node-1
    for name, container, message in [
        (
            "two-containers",
            None,
            "a container name must be specified for pod two-containers, "
            "choose one of: [spark sidecar]",
        ),
        (
            "spark-connect-driver-0",
            "nope",
            "container nope is not valid for pod spark-connect-driver-0",
        ),
        # the kubelet's answer for a container that has not run yet
        (
            "pulling",
            None,
            'container "spark-kubernetes-executor" in pod "pulling" is waiting to start: '
            "trying and failing to pull image",
        ),
        (
            "creating",
            None,
            'container "spark-kubernetes-executor" in pod "creating" is waiting to start: '
            "ContainerCreating",
        ),
    ]:
        exc = refusal(k8s.core.read_namespaced_pod_log, name, NS, container=container)
        assert_status(exc, 400, "BadRequest", message)
    assert_status(
        refusal(k8s.core.read_namespaced_pod_log, "nope", NS),
        404,
        "NotFound",
        'pods "nope" not found',
        {"name": "nope", "kind": "pods"},
    )


# --- pod deletion -----------------------------------------------------------------------------


def test_delete_pod_with_a_uid_precondition(k8s: Clients, kube_api: FakeKubeApi) -> None:
    name = "etl-nightly-driver"
    uid = k8s.core.read_namespaced_pod(name, NS).metadata.uid
    wrong = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="0-0-0"))
    # DeleteOptions.preconditions: a mismatch is a Conflict from the storage layer
    assert_status(
        refusal(k8s.core.delete_namespaced_pod, name, NS, body=wrong),
        409,
        "Conflict",
        f'Operation cannot be fulfilled on pods "{name}": StorageError: invalid object, '
        f"Code: 4, Key: /registry/pods/{NS}/{name}, ResourceVersion: 0, AdditionalErrorMsg: "
        f"Precondition failed: UID in precondition: 0-0-0, UID in object meta: {uid}",
        {"name": name, "kind": "pods"},
    )
    assert k8s.core.read_namespaced_pod(name, NS).metadata.uid == uid  # untouched
    right = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid))
    deleted = k8s.answer(k8s.core.delete_namespaced_pod, "V1Pod", name, NS, body=right)
    # a pod's delete answers with the pod, marked for graceful deletion
    assert deleted.metadata.uid == uid and deleted.metadata.deletion_timestamp is not None
    assert deleted.spec.containers[0].name == "spark-kubernetes-driver"
    assert kube_api.requests[-1].body == {"preconditions": {"uid": uid}}
    assert refusal(k8s.core.read_namespaced_pod, name, NS).status == 404
    assert_status(
        refusal(k8s.core.delete_namespaced_pod, name, NS, body=right),
        404,
        "NotFound",
        f'pods "{name}" not found',
        {"name": name, "kind": "pods"},
    )


# --- nodes and metrics ------------------------------------------------------------------------


def test_node_list_has_the_fields_the_bot_reads(k8s: Clients) -> None:
    nodes = k8s.answer(k8s.core.list_node, "V1NodeList")
    assert nodes.kind == "NodeList"
    by_name = {n.metadata.name: n for n in nodes.items}
    assert set(by_name) == {"node-1", "node-2"}
    ready = {c.type: c.status for c in by_name["node-2"].status.conditions}
    assert ready["Ready"] == "False"
    assert {c.type: c.status for c in by_name["node-1"].status.conditions}["Ready"] == "True"
    assert by_name["node-1"].metadata.namespace is None  # cluster-scoped
    assert not by_name["node-1"].spec.unschedulable
    allocatable = by_name["node-2"].status.allocatable
    assert (parse_quantity(allocatable["cpu"]), parse_quantity(allocatable["memory"])) == (
        4,
        16 * 1024**3,
    )


def test_resource_metrics(k8s: Clients, kube_api: FakeKubeApi) -> None:
    # metrics.k8s.io has no model in the client: the shape is checked against the
    # PodMetrics / NodeMetrics types of the Resource Metrics API.
    pods = k8s.custom.list_namespaced_custom_object(
        "metrics.k8s.io", "v1beta1", NS, "pods", label_selector=PLATFORM
    )
    assert (pods["kind"], pods["apiVersion"]) == ("PodMetricsList", "metrics.k8s.io/v1beta1")
    assert {i["metadata"]["name"] for i in pods["items"]} == {
        "spark-connect-driver-0",
        "spark-connect-executor-0",
    }  # postgres-0 has metrics but is outside the selector
    for item in pods["items"]:
        assert set(item) == {"metadata", "timestamp", "window", "containers"}
        assert set(item["metadata"]) <= {"name", "namespace", "labels", "creationTimestamp"}
        for container in item["containers"]:
            assert set(container) == {"name", "usage"}
            assert set(container["usage"]) == {"cpu", "memory"}
            parse_quantity(container["usage"]["cpu"])  # valid quantities, e.g. 250000000n
            parse_quantity(container["usage"]["memory"])
    nodes = k8s.custom.list_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes")
    assert nodes["kind"] == "NodeMetricsList"
    for item in nodes["items"]:
        assert set(item) == {"metadata", "timestamp", "window", "usage"}
        assert parse_quantity(item["usage"]["cpu"]) > 0
    # No metrics-server: no APIService for metrics.k8s.io, so the path is simply unknown and
    # the API server's not-found handler answers in plain text, not with a Status.
    kube_api.metrics_available = False
    exc = refusal(k8s.custom.list_cluster_custom_object, "metrics.k8s.io", "v1beta1", "nodes")
    assert (exc.status, type(exc)) == (404, NotFoundException)
    assert exc.body == "404 page not found\n"
    assert exc.headers is not None and exc.headers["Content-Type"] == "text/plain"


def test_an_unknown_api_is_not_found(k8s: Clients) -> None:
    exc = refusal(k8s.custom.list_namespaced_custom_object, "example.com", "v1", NS, "widgets")
    assert (exc.status, exc.body) == (404, "404 page not found\n")


# --- the executor StatefulSet and its scale subresource ---------------------------------------


def test_statefulset_and_scale_subresource(k8s: Clients, kube_api: FakeKubeApi) -> None:
    sts = k8s.answer(k8s.apps.read_namespaced_stateful_set, "V1StatefulSet", EXECUTORS, NS)
    assert (sts.spec.replicas, sts.status.ready_replicas, sts.status.replicas) == (10, 8, 10)
    generation = sts.metadata.generation
    scale = k8s.answer(k8s.apps.read_namespaced_stateful_set_scale, "V1Scale", EXECUTORS, NS)
    assert (scale.kind, scale.api_version) == ("Scale", "autoscaling/v1")
    assert (scale.spec.replicas, scale.status.replicas) == (10, 10)
    assert scale.status.selector == f"app.kubernetes.io/name={EXECUTORS},{PLATFORM}"
    # what scale_executors sends: a merge patch of the Scale (API concepts, "scale subresource")
    patched = k8s.answer(
        k8s.apps.patch_namespaced_stateful_set_scale,
        "V1Scale",
        EXECUTORS,
        NS,
        {"spec": {"replicas": 12}},
        _content_type=MERGE,
    )
    assert patched.spec.replicas == 12
    sts = k8s.apps.read_namespaced_stateful_set(EXECUTORS, NS)
    assert sts.spec.replicas == 12 and sts.metadata.generation == generation + 1
    # Field management: the update is recorded under the client's User-Agent, for "scale"
    assert owners(sts)[("OpenAPI-Generator", "Update", "scale")] == {"f:spec": {"f:replicas": {}}}
    # the same count again changes nothing: no new generation, no new resourceVersion
    again = k8s.apps.patch_namespaced_stateful_set_scale(
        EXECUTORS, NS, {"spec": {"replicas": 12}}, _content_type=MERGE
    )
    assert again.metadata.resource_version == patched.metadata.resource_version
    assert (
        k8s.apps.read_namespaced_stateful_set(EXECUTORS, NS).metadata.generation == generation + 1
    )


def test_scale_refusals(k8s: Clients) -> None:
    message, details = invalid(
        "Scale",
        "autoscaling",
        EXECUTORS,
        (
            "spec.replicas",
            "FieldValueInvalid",
            "Invalid value: -1: must be greater than or equal to 0",
        ),
    )
    exc = refusal(
        k8s.apps.patch_namespaced_stateful_set_scale,
        EXECUTORS,
        NS,
        {"spec": {"replicas": -1}},
        _content_type=MERGE,
    )
    assert_status(exc, 422, "Invalid", message, details)
    # API concepts, "Patch": a PATCH needs one of the patch media types
    exc = refusal(
        k8s.apps.patch_namespaced_stateful_set_scale,
        EXECUTORS,
        NS,
        {"spec": {"replicas": 3}},
        _content_type="application/json",
    )
    assert_status(exc, 415, "UnsupportedMediaType", UNSUPPORTED_MEDIA_TYPE)
    exc = refusal(
        k8s.apps.patch_namespaced_stateful_set_scale,
        "nope",
        NS,
        {"spec": {"replicas": 3}},
        _content_type=MERGE,
    )
    assert_status(
        exc,
        404,
        "NotFound",
        'statefulsets.apps "nope" not found',
        {"name": "nope", "group": "apps", "kind": "statefulsets"},
    )
    assert k8s.apps.read_namespaced_stateful_set(EXECUTORS, NS).spec.replicas == 10


# --- the Spark Connect Deployment: rollout restart --------------------------------------------


def test_deployment_and_rollout_restart_patch(k8s: Clients, kube_api: FakeKubeApi) -> None:
    dep = kube_api.get("apps/v1", "deployments", NS, "spark-connect")
    assert dep is not None
    dep["spec"]["template"]["metadata"]["annotations"] = {"keep": "me"}
    kube_api.put(dep)
    before = k8s.answer(k8s.apps.read_namespaced_deployment, "V1Deployment", "spark-connect", NS)
    assert (before.spec.replicas, before.spec.paused) == (1, None)
    assert (before.status.ready_replicas, before.status.updated_replicas) == (1, 1)
    # what restart_connect sends, like kubectl rollout restart: a strategic merge patch
    stamp = "2026-12-01T10:00:00Z"
    patch = {"spec": {"template": {"metadata": {"annotations": {RESTART_ANNOTATION: stamp}}}}}
    after = k8s.answer(
        k8s.apps.patch_namespaced_deployment,
        "V1Deployment",
        "spark-connect",
        NS,
        patch,
        _content_type=STRATEGIC,
    )
    # maps merge: the annotation is added, the other one kept
    assert after.spec.template.metadata.annotations == {"keep": "me", RESTART_ANNOTATION: stamp}
    assert after.metadata.generation == before.metadata.generation + 1
    assert after.status == before.status
    assert after.metadata.resource_version != before.metadata.resource_version
    # status is a subresource: a patch of the main resource cannot change it
    ignored = k8s.apps.patch_namespaced_deployment(
        "spark-connect", NS, {"status": {"readyReplicas": 0}}, _content_type=MERGE
    )
    assert ignored.status.ready_replicas == 1
    assert ignored.metadata.resource_version == after.metadata.resource_version  # no-op
    # a paused Deployment reads as paused (restart_connect refuses it)
    dep = kube_api.get("apps/v1", "deployments", NS, "spark-connect")
    assert dep is not None
    dep["spec"]["paused"] = True
    kube_api.put(dep)
    assert k8s.apps.read_namespaced_deployment("spark-connect", NS).spec.paused is True


def test_deployment_patch_refusals(k8s: Clients) -> None:
    patch = {"spec": {"template": {"metadata": {"annotations": {"a": "b"}}}}}
    # PatchOptions: force belongs to apply only
    message, details = invalid(
        "PatchOptions",
        "meta.k8s.io",
        "",
        ("force", "FieldValueForbidden", "Forbidden: may not be specified for non-apply patch"),
    )
    exc = refusal(
        k8s.apps.patch_namespaced_deployment,
        "spark-connect",
        NS,
        patch,
        force=True,
        _content_type=STRATEGIC,
    )
    assert_status(exc, 422, "Invalid", message, details)
    exc = refusal(k8s.apps.patch_namespaced_deployment, "nope", NS, patch, _content_type=STRATEGIC)
    assert_status(
        exc,
        404,
        "NotFound",
        'deployments.apps "nope" not found',
        {"name": "nope", "group": "apps", "kind": "deployments"},
    )
    # optimistic concurrency (API concepts, "Resource versions"): a stale resourceVersion
    stale = {"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 2}}
    exc = refusal(
        k8s.apps.patch_namespaced_deployment, "spark-connect", NS, stale, _content_type=MERGE
    )
    assert_status(
        exc,
        409,
        "Conflict",
        'Operation cannot be fulfilled on deployments.apps "spark-connect": the object has been '
        "modified; please apply your changes to the latest version and try again",
        {"name": "spark-connect", "group": "apps", "kind": "deployments"},
    )
    message, details = invalid(
        "Deployment",
        "apps",
        "spark-connect",
        (
            "spec.replicas",
            "FieldValueInvalid",
            "Invalid value: -1: must be greater than or equal to 0",
        ),
    )
    exc = refusal(
        k8s.apps.patch_namespaced_deployment,
        "spark-connect",
        NS,
        {"spec": {"replicas": -1}},
        _content_type=MERGE,
    )
    assert_status(exc, 422, "Invalid", message, details)
    assert k8s.apps.read_namespaced_deployment("spark-connect", NS).spec.replicas == 1


def test_the_fake_refuses_what_it_does_not_model(k8s: Clients) -> None:
    # A strategic merge of a list needs the type's patch merge keys: refused, not guessed.
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}
    exc = refusal(
        k8s.apps.patch_namespaced_deployment, "spark-connect", NS, patch, _content_type=STRATEGIC
    )
    assert exc.status == 405 and "not implemented by FakeKubeApi" in body_of(exc)["message"]


# --- server-side apply of the restorable kinds ------------------------------------------------


def test_samples_cover_every_restorable_kind() -> None:
    assert set(SAMPLES) == {kind for _, kind in RESTORABLE_KINDS}


@pytest.mark.parametrize(("api_version", "kind"), sorted(RESTORABLE_KINDS))
def test_server_side_apply_creates_then_updates(
    k8s: Clients, api_client: Any, api_version: str, kind: str
) -> None:
    restorable = RESTORABLE_KINDS[(api_version, kind)]
    apply = getattr(restorable.api(api_client), restorable.method)  # the bot's exact method
    name = f"restore-{kind.lower()}"
    body = applied(kind, name, **SAMPLES[kind])
    obj, code, _ = apply(
        name, NS, body, field_manager=FIELD_MANAGER, force=True, _content_type=APPLY
    )
    assert code == 201  # Server-Side Apply creates what does not exist
    assert type(obj).__name__ == f"V1{kind}" and obj.metadata.name == name
    assert obj.metadata.namespace == NS and obj.metadata.uid
    ((manager, operation, sub),) = owners(obj)
    assert (manager, operation, sub) == (FIELD_MANAGER, "Apply", "")
    again, code, _ = apply(
        name, NS, body, field_manager=FIELD_MANAGER, force=True, _content_type=APPLY
    )
    assert code == 200 and again.metadata.uid == obj.metadata.uid
    # nothing changed: the object is not written again
    assert again.metadata.resource_version == obj.metadata.resource_version
    raw = k8s.answer(
        getattr(restorable.api(api_client), restorable.method.removesuffix("_with_http_info")),
        f"V1{kind}",
        name,
        NS,
        body,
        field_manager=FIELD_MANAGER,
        force=True,
        _content_type=APPLY,
    )
    assert raw.metadata.name == name


def test_server_side_apply_owns_fields(k8s: Clients) -> None:
    patch = k8s.core.patch_namespaced_config_map

    def apply(manager: str, data: dict[str, str], force: bool | None = None) -> Any:
        body = applied("ConfigMap", "spark-defaults", data=data)
        return patch(
            "spark-defaults", NS, body, field_manager=manager, force=force, _content_type=APPLY
        )

    created = apply("kubectl", {"a": "1", "b": "2"})
    assert owners(created)[("kubectl", "Apply", "")] == {"f:data": {"f:a": {}, "f:b": {}}}
    # Server-Side Apply, "Conflicts": another manager's field with another value
    message = 'Apply failed with 1 conflict: conflict with "kubectl": .data.a'
    cause = {
        "reason": "FieldManagerConflict",
        "message": 'conflict with "kubectl"',
        "field": ".data.a",
    }
    assert_status(
        refusal(apply, FIELD_MANAGER, {"a": "9"}), 409, "Conflict", message, {"causes": [cause]}
    )
    message = 'Apply failed with 2 conflicts: conflicts with "kubectl":\n- .data.a\n- .data.b'
    exc = refusal(apply, FIELD_MANAGER, {"a": "9", "b": "9"})
    assert exc.status == 409 and body_of(exc)["message"] == message
    # the same value is no conflict: both own it
    shared = apply(FIELD_MANAGER, {"a": "1"})
    assert owners(shared)[(FIELD_MANAGER, "Apply", "")] == {"f:data": {"f:a": {}}}
    # forced, the applier wins and takes the field over (what a restore does)
    forced = apply(FIELD_MANAGER, {"a": "9"}, force=True)
    assert forced.data == {"a": "9", "b": "2"}
    assert owners(forced)[("kubectl", "Apply", "")] == {"f:data": {"f:b": {}}}
    # a field no longer applied, owned by nobody else, is removed
    assert apply("kubectl", {}).data == {"a": "9"}
    # an update (a non-apply patch) also owns what it changed, under its field manager
    edited = patch(
        "spark-defaults",
        NS,
        {"data": {"c": "3"}},
        field_manager="kubectl-edit",
        _content_type=MERGE,
    )
    assert owners(edited)[("kubectl-edit", "Update", "")] == {"f:data": {"f:c": {}}}
    message = 'Apply failed with 1 conflict: conflict with "kubectl-edit" using v1: .data.c'
    exc = refusal(apply, FIELD_MANAGER, {"a": "9", "c": "4"})
    assert exc.status == 409 and body_of(exc)["message"] == message
    assert k8s.core.read_namespaced_config_map("spark-defaults", NS).data == {"a": "9", "c": "3"}


def test_server_side_apply_refusals(k8s: Clients, kube_api: FakeKubeApi) -> None:
    patch = k8s.core.patch_namespaced_config_map
    body = applied("ConfigMap", "c", data={"k": "v"})
    # PatchOptions: apply needs a field manager
    message, details = invalid(
        "PatchOptions",
        "meta.k8s.io",
        "",
        ("fieldManager", "FieldValueRequired", "Required value: is required for apply patch"),
    )
    assert_status(
        refusal(patch, "c", NS, body, _content_type=APPLY), 422, "Invalid", message, details
    )
    for wrong, answer in [
        ({**body, "kind": "Secret"}, "invalid object type: /v1, Kind=Secret"),
        ({**body, "apiVersion": "v2"}, "invalid object type: /v2, Kind=ConfigMap"),
        (
            {**body, "metadata": {"name": "c", "managedFields": [{"manager": "x"}]}},
            "metadata.managedFields must be nil",
        ),
        (
            {**body, "metadata": {"name": "other"}},
            "the name of the object (other) does not match the name on the URL (c)",
        ),
        (
            {**body, "metadata": {"name": "c", "namespace": "kube-system"}},
            "the namespace of the provided object does not match the namespace sent on the request",
        ),
    ]:
        exc = refusal(patch, "c", NS, wrong, field_manager=FIELD_MANAGER, _content_type=APPLY)
        assert_status(exc, 400, "BadRequest", answer)
    assert kube_api.get("v1", "configmaps", NS, "c") is None  # nothing was created
    # create validation: object names are DNS subdomains
    message, details = invalid(
        "ConfigMap",
        "",
        "Bad_Name",
        (
            "metadata.name",
            "FieldValueInvalid",
            'Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower '
            "case alphanumeric characters, '-' or '.', and must start and end with an "
            "alphanumeric character (e.g. 'example.com', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ),
    )
    bad_name = applied("ConfigMap", "Bad_Name", data={})
    exc = refusal(patch, "Bad_Name", NS, bad_name, field_manager=FIELD_MANAGER, _content_type=APPLY)
    assert_status(exc, 422, "Invalid", message, details)


def test_server_side_apply_validates_jobs_and_claims(k8s: Clients, kube_api: FakeKubeApi) -> None:
    apply_job = k8s.batch.patch_namespaced_job
    message, details = invalid(
        "Job",
        "batch",
        "j",
        ("spec.template.spec.containers", "FieldValueRequired", "Required value"),
        (
            "spec.template.spec.restartPolicy",
            "FieldValueNotSupported",
            'Unsupported value: "Always": supported values: "OnFailure", "Never"',
        ),
    )
    exc = refusal(
        apply_job,
        "j",
        NS,
        applied("Job", "j", spec={}),
        field_manager=FIELD_MANAGER,
        _content_type=APPLY,
    )
    assert_status(exc, 422, "Invalid", message, details)
    job = applied("Job", "j", **SAMPLES["Job"])
    apply_job("j", NS, job, field_manager=FIELD_MANAGER, _content_type=APPLY)
    # a Job's pod template cannot change after creation
    changed = json.loads(json.dumps(job))
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:1.37"
    exc = refusal(apply_job, "j", NS, changed, field_manager=FIELD_MANAGER, _content_type=APPLY)
    immutable = "Invalid value: ...: field is immutable"  # the real one prints the template
    assert exc.status == 422 and body_of(exc)["details"]["causes"] == [
        {"reason": "FieldValueInvalid", "message": immutable, "field": "spec.template"}
    ]
    stored = kube_api.get("batch/v1", "jobs", NS, "j")
    assert stored is not None and stored["spec"] == job["spec"]
    # a claim's spec is immutable but for its storage request
    apply_pvc = k8s.core.patch_namespaced_persistent_volume_claim
    pvc = applied("PersistentVolumeClaim", "data", **SAMPLES["PersistentVolumeClaim"])
    apply_pvc("data", NS, pvc, field_manager=FIELD_MANAGER, _content_type=APPLY)
    bigger = json.loads(json.dumps(pvc))
    bigger["spec"]["resources"]["requests"]["storage"] = "2Gi"
    grown = apply_pvc("data", NS, bigger, field_manager=FIELD_MANAGER, _content_type=APPLY)
    assert grown.spec.resources.requests == {"storage": "2Gi"}
    other_mode = json.loads(json.dumps(bigger))
    other_mode["spec"]["accessModes"] = ["ReadWriteMany"]
    exc = refusal(
        apply_pvc, "data", NS, other_mode, field_manager=FIELD_MANAGER, _content_type=APPLY
    )
    body = body_of(exc)
    assert (exc.status, body["reason"], body["details"]["causes"][0]["field"]) == (
        422,
        "Invalid",
        "spec",
    )
    assert body["message"].startswith(
        'PersistentVolumeClaim "data" is invalid: spec: Forbidden: spec is immutable after creation'
    )


# --- authorization ----------------------------------------------------------------------------


def test_rbac_denials_are_forbidden_with_the_api_servers_message(
    k8s: Clients, kube_api: FakeKubeApi
) -> None:
    # Authorization comes before everything but authentication: a denied request is 403
    # even for an object that does not exist (RBAC, "Forbidden" message of the authorizer).
    kube_api.forbid("delete", "pods")
    kube_api.forbid("list", "nodes")
    kube_api.forbid("patch", "statefulsets/scale", group="apps")
    kube_api.forbid("create", "configmaps")
    who = f'User "{USER}"'
    for call, args, message, details in [
        (
            k8s.core.delete_namespaced_pod,
            ("nope", NS),
            f'pods "nope" is forbidden: {who} cannot delete resource "pods" in API group "" '
            f'in the namespace "{NS}"',
            {"name": "nope", "kind": "pods"},
        ),
        (
            k8s.core.list_node,
            (),
            f'nodes is forbidden: {who} cannot list resource "nodes" in API group "" at the '
            "cluster scope",
            {"kind": "nodes"},
        ),
    ]:
        assert_status(refusal(call, *args), 403, "Forbidden", message, details)
    exc = refusal(
        k8s.apps.patch_namespaced_stateful_set_scale,
        EXECUTORS,
        NS,
        {"spec": {"replicas": 3}},
        _content_type=MERGE,
    )
    assert_status(
        exc,
        403,
        "Forbidden",
        f'statefulsets.apps "{EXECUTORS}" is forbidden: {who} cannot patch resource '
        f'"statefulsets/scale" in API group "apps" in the namespace "{NS}"',
        {"name": EXECUTORS, "group": "apps", "kind": "statefulsets"},
    )
    # an apply that would create needs create too; one that updates does not
    body = applied("ConfigMap", "fresh", data={})
    exc = refusal(
        k8s.core.patch_namespaced_config_map,
        "fresh",
        NS,
        body,
        field_manager=FIELD_MANAGER,
        _content_type=APPLY,
    )
    assert exc.status == 403 and 'cannot create resource "configmaps"' in body_of(exc)["message"]
    kube_api.put(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fresh", "namespace": NS}}
    )
    updated = k8s.core.patch_namespaced_config_map(
        "fresh", NS, body, field_manager=FIELD_MANAGER, _content_type=APPLY
    )
    assert updated.metadata.name == "fresh"
    assert k8s.core.read_namespaced_pod("spark-connect-driver-0", NS).metadata.name  # get: allowed


# --- failure injection ------------------------------------------------------------------------


def test_injected_failures_are_status_objects(k8s: Clients, kube_api: FakeKubeApi) -> None:
    kube_api.fail(503, method="GET", path="/pods$", times=1)
    exc = refusal(k8s.core.list_namespaced_pod, NS)
    assert_status(exc, 503, "ServiceUnavailable", "injected failure 503")
    assert len(k8s.core.list_namespaced_pod(NS).items) == 7  # only once
