"""The fake API server's rollout and triage parts (tests/fakes/kube_rollouts.py) against the
official ``kubernetes`` client: the lists /health's triage reads deserialize with no key the
models do not declare, events are selected by type, RFC 6902 patches apply or are refused
as the API server refuses them, and a changed pod template makes the next revision."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import config
from kubernetes.client.exceptions import BadRequestException, UnprocessableEntityException

from tests.fakes.kube_api import FakeKubeApi
from tests.integration.test_fakes_kube import NS, Clients

JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
REVISION = "deployment.kubernetes.io/revision"


@pytest.fixture
def k8s(kubeconfig: Path) -> Iterator[Clients]:
    api = config.new_client_from_config(config_file=str(kubeconfig), persist_config=False)
    yield Clients(api)
    api.close()


def test_the_triage_lists_deserialize_into_the_clients_models(
    k8s: Clients, kube_api: FakeKubeApi
) -> None:
    kube_api.add_pvc("spark-shuffle", phase="Pending")
    when = datetime.now(UTC) - timedelta(hours=1)
    kube_api.add_configmap("spark-defaults", {"a": "1"}, changed_at=when)
    events = k8s.answer(
        k8s.core.list_namespaced_event, "CoreV1EventList", NS, field_selector="type=Warning"
    )
    (event,) = events.items
    assert (event.reason, event.involved_object.kind, event.involved_object.name) == (
        "BackOff",
        "Pod",
        "etl-nightly-driver",
    )
    assert event.last_timestamp is not None and event.count == 1
    claims = k8s.answer(
        k8s.core.list_namespaced_persistent_volume_claim, "V1PersistentVolumeClaimList", NS
    )
    assert {(c.metadata.name, c.status.phase) for c in claims.items} == {
        ("spark-connect-data", "Bound"),
        ("spark-shuffle", "Pending"),
    }
    maps = k8s.answer(k8s.core.list_namespaced_config_map, "V1ConfigMapList", NS)
    (changed,) = [m for m in maps.items if m.metadata.name == "spark-defaults"]
    (entry,) = changed.metadata.managed_fields
    assert (entry.manager, entry.time) == ("kubectl-edit", when.replace(microsecond=0))
    sets = k8s.answer(k8s.apps.list_namespaced_replica_set, "V1ReplicaSetList", NS)
    assert sorted(rs.metadata.annotations[REVISION] for rs in sets.items) == ["1", "2"]
    for rs in sets.items:
        (owner,) = rs.metadata.owner_references
        assert (owner.kind, owner.name, owner.controller) == ("Deployment", "spark-connect", True)
        assert "pod-template-hash" in rs.spec.template.metadata.labels
    revisions = k8s.answer(
        k8s.apps.list_namespaced_controller_revision, "V1ControllerRevisionList", NS
    )
    assert sorted(r.revision for r in revisions.items) == [1, 2]
    images = {r.data["spec"]["template"]["spec"]["containers"][0]["image"] for r in revisions.items}
    assert images == {"apache/spark:3.5.0", "apache/spark:3.5.1"}


def test_events_are_selected_by_their_indexed_fields_only(k8s: Clients) -> None:
    normal = k8s.core.list_namespaced_event(NS, field_selector="type=Normal")
    assert normal.items == []
    backoff = k8s.core.list_namespaced_event(NS, field_selector="reason=BackOff")
    assert len(backoff.items) == 1
    with pytest.raises(BadRequestException) as caught:
        k8s.core.list_namespaced_event(NS, field_selector="message=x")
    assert "field label not supported: message" in str(caught.value.body)


def test_json_patch_applies_or_is_refused_whole(k8s: Clients, kube_api: FakeKubeApi) -> None:
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/spec/replicas", "value": 1},
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/metadata/labels/team", "value": "data"},
    ]
    dep = k8s.apps.patch_namespaced_deployment("spark-connect", NS, ops, _content_type=JSON_PATCH)
    assert dep.spec.replicas == 3 and dep.metadata.labels["team"] == "data"
    assert dep.metadata.generation == 2  # the spec changed
    missing = [
        {"op": "replace", "path": "/spec/replicas", "value": 5},
        {"op": "replace", "path": "/metadata/labels/nope", "value": "x"},
    ]
    with pytest.raises(UnprocessableEntityException) as caught:
        k8s.apps.patch_namespaced_deployment("spark-connect", NS, missing, _content_type=JSON_PATCH)
    assert "doc is missing key: /metadata/labels/nope" in str(caught.value.body)
    after = kube_api.get("apps/v1", "deployments", NS, "spark-connect")
    assert after is not None and after["spec"]["replicas"] == 3  # nothing of it applied
    with pytest.raises(UnprocessableEntityException):
        k8s.apps.patch_namespaced_deployment(
            "spark-connect", NS, [{"op": "test", "path": "/spec/replicas", "value": 1}],
            _content_type=JSON_PATCH,
        )  # fmt: skip


def test_a_changed_pod_template_makes_the_next_revision(
    k8s: Clients, kube_api: FakeKubeApi
) -> None:
    restart = {"spec": {"template": {"metadata": {"annotations": {"x": "1"}}}}}
    k8s.apps.patch_namespaced_deployment("spark-connect", NS, restart, _content_type=STRATEGIC)
    dep = kube_api.get("apps/v1", "deployments", NS, "spark-connect")
    assert dep is not None and dep["metadata"]["annotations"][REVISION] == "3"
    sets = kube_api.objects("apps/v1", "replicasets")
    assert sorted(int(rs["metadata"]["annotations"][REVISION]) for rs in sets) == [1, 2, 3]
    # back to revision 1's template: its ReplicaSet becomes revision 4, no new one is made
    (first,) = [rs for rs in sets if rs["metadata"]["annotations"][REVISION] == "1"]
    template = first["spec"]["template"]
    del template["metadata"]["labels"]["pod-template-hash"]
    ops = [{"op": "replace", "path": "/spec/template", "value": template}]
    k8s.apps.patch_namespaced_deployment("spark-connect", NS, ops, _content_type=JSON_PATCH)
    sets = kube_api.objects("apps/v1", "replicasets")
    revisions = {rs["metadata"]["name"]: rs["metadata"]["annotations"][REVISION] for rs in sets}
    assert revisions[first["metadata"]["name"]] == "4"
    assert sorted(revisions.values()) == ["2", "3", "4"]
    dep = kube_api.get("apps/v1", "deployments", NS, "spark-connect")
    assert dep is not None and dep["metadata"]["annotations"][REVISION] == "4"
