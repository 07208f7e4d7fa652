"""The RBAC of the rendered overlays (deploy/kubernetes/base/rbac.yaml, built with
``kubectl kustomize``) grants exactly what bot/integrations/kube.py uses.

Every Cluster method runs against the fake API server; each recorded request is turned into the
attributes the API server's RBAC authorizer checks (group, resource, subresource, verb,
namespace, name) and must be allowed by the rules bound to the ``pira`` ServiceAccount. Then
every granted (rule, verb, resourceName) must have been needed by at least one request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.integrations.kube import RESTORABLE_KINDS, Cluster, NotADriver
from tests.fakes.kube_api import FakeKubeApi, RecordedRequest
from tests.support.kustomize import OVERLAYS, render

RBAC_KINDS = {"ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
SA = {"kind": "ServiceAccount", "name": "pira", "namespace": "spark"}
_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)(?:/namespaces/(?P<ns>[^/]+))?"
    r"/(?P<resource>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$"
)
# A valid object of every restorable kind: adding a kind to RESTORABLE_KINDS fails this test
# until it has a sample here (and so a replayed apply, and so an RBAC check).
SAMPLES: dict[str, dict[str, Any]] = {
    "ConfigMap": {"data": {"k": "v"}},
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


@dataclass(frozen=True)
class Attributes:
    """What the authorizer sees for one request (k8s.io/apiserver RequestInfo)."""

    group: str
    resource: str
    subresource: str
    verb: str
    namespace: str | None
    name: str | None


@dataclass(frozen=True)
class Grant:
    """One expanded rule: a single verb on a single resource (and name, if restricted)."""

    namespace: str | None  # None: granted cluster-wide (ClusterRole via ClusterRoleBinding)
    group: str
    resource: str  # "pods" or "pods/log"
    verb: str
    name: str | None  # None: any name

    def allows(self, a: Attributes) -> bool:
        resource = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
        return (
            (self.namespace is None or self.namespace == a.namespace)
            and self.group == a.group
            and self.resource == resource
            and self.verb == a.verb
            and (self.name is None or self.name == a.name)
        )


def request_attributes(req: RecordedRequest) -> list[Attributes]:
    """The authorization checks the API server makes for a request."""
    m = _PATH.match(req.path)
    assert m is not None, f"non-resource request {req.method} {req.path} is not expected"
    if req.method == "GET":
        verb = "get" if m["name"] else ("watch" if req.query.get("watch") else "list")
    else:
        verb = {"PATCH": "patch", "DELETE": "delete", "POST": "create", "PUT": "update"}[req.method]
        if req.method == "DELETE" and not m["name"]:
            verb = "deletecollection"
    attrs = [Attributes(m["group"] or "", m["resource"], m["sub"] or "", verb, m["ns"], m["name"])]
    if req.created:  # server-side apply that creates the object is also authorized as create
        attrs.append(Attributes(m["group"] or "", m["resource"], "", "create", m["ns"], m["name"]))
    return attrs


def bound_grants(docs: list[dict[str, Any]]) -> list[Grant]:
    """Expand the rules of every Role/ClusterRole bound to the pira ServiceAccount."""
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs}
    grants: list[Grant] = []
    for binding in docs:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if SA not in binding["subjects"]:
            continue
        ref = binding["roleRef"]
        scope = binding["metadata"].get("namespace")  # None for a ClusterRoleBinding
        role_ns = scope if ref["kind"] == "Role" else None
        role = roles[(ref["kind"], role_ns, ref["name"])]
        for rule in role["rules"]:
            for value in (*rule["apiGroups"], *rule["resources"], *rule["verbs"]):
                assert "*" not in value, f"wildcard in {role['metadata']['name']}: {rule}"
            names = rule.get("resourceNames") or [None]
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for name in names:
                            grants.append(Grant(scope, group, resource, verb, name))
    return grants


def manifest_of_every_restorable_kind() -> str:
    docs = []
    for api_version, kind in RESTORABLE_KINDS:
        name = f"restore-{kind.lower()}"
        docs.append({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}})
        docs[-1].update(SAMPLES[kind])
    return yaml.safe_dump_all(docs)


# kube_api and cluster (seeded platform, 5 s timeout): tests/integration/conftest.py


@pytest.fixture(params=OVERLAYS)
def rbac_docs(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """The RBAC objects of an overlay as ``kubectl apply -k`` would create them."""
    return [d for d in render(request.param) if d["kind"] in RBAC_KINDS]


async def exercise_every_method(cluster: Cluster, tmp_path: Path) -> None:
    await cluster.pods()
    await cluster.pods("failed")
    await cluster.pods("pending")
    await cluster.pod("spark-connect-driver-0")
    await cluster.logs("spark-connect-driver-0", tail=10)
    await cluster.error_lines()
    await cluster.nodes()
    await cluster.top_pods()
    await cluster.top_nodes()
    await cluster.executors()
    await cluster.scale_executors(12)
    await cluster.connect_status()
    await cluster.restart_connect()
    await cluster.rollback_plan()
    await cluster.rollback_connect()
    await cluster.rollout_status()
    await cluster.pods_selected("app.kubernetes.io/name=spark-connect")
    since = datetime.now(UTC) - timedelta(days=1)
    await cluster.warning_events(since)
    await cluster.claims()
    await cluster.recent_changes(since)
    await cluster.kill_driver("etl-nightly-driver")
    with pytest.raises(NotADriver):
        await cluster.kill_driver("spark-connect-executor-0")
    assert not await cluster.pod_gone("spark-connect-driver-0")  # a 404 would fail below
    manifest = tmp_path / "restore.yaml"
    manifest.write_text(manifest_of_every_restorable_kind())
    created = await cluster.apply_manifest(manifest)
    updated = await cluster.apply_manifest(manifest)
    assert all(a.created for a in created) and not any(a.created for a in updated)


def test_samples_cover_every_restorable_kind() -> None:
    assert set(SAMPLES) == {kind for _, kind in RESTORABLE_KINDS}


def test_rbac_binds_the_service_account(rbac_docs: list[dict[str, Any]]) -> None:
    docs = rbac_docs
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"]
    (sa,) = (d for d in docs if d["kind"] == "ServiceAccount")
    assert (sa["metadata"]["name"], sa["metadata"]["namespace"]) == ("pira", "spark")
    (role,) = (d for d in docs if d["kind"] == "Role")
    assert role["metadata"]["namespace"] == "spark"
    (cluster_role,) = (d for d in docs if d["kind"] == "ClusterRole")
    # cluster-wide: only reading nodes and their metrics
    assert {(g.group, g.resource, g.verb) for g in bound_grants(docs) if g.namespace is None} == {
        ("", "nodes", "list"),
        ("metrics.k8s.io", "nodes", "list"),
    }
    assert cluster_role["metadata"]["name"] == "pira-nodes"


async def test_every_request_is_allowed_and_every_grant_is_used(
    cluster: Cluster, kube_api: FakeKubeApi, tmp_path: Path, rbac_docs: list[dict[str, Any]]
) -> None:
    await exercise_every_method(cluster, tmp_path)
    grants = bound_grants(rbac_docs)
    used: set[Grant] = set()
    denied = []
    for req in kube_api.requests:
        assert 200 <= req.status < 300, f"{req.method} {req.path} answered {req.status}"
        for attrs in request_attributes(req):
            matching = [g for g in grants if g.allows(attrs)]
            if not matching:
                denied.append(attrs)
            used.update(matching)
    assert denied == [], "rbac.yaml denies requests the client makes"
    unused = [g for g in grants if g not in used]
    assert unused == [], "rbac.yaml grants more than the client uses"


def test_the_authorizer_model_denies_what_is_not_granted(
    rbac_docs: list[dict[str, Any]],
) -> None:
    grants = bound_grants(rbac_docs)

    def allowed(method: str, path: str, created: bool = False) -> bool:
        req = RecordedRequest(method, path, {}, None, None, None, 200, created)
        return all(any(g.allows(a) for g in grants) for a in request_attributes(req))

    assert allowed(
        "PATCH", "/apis/apps/v1/namespaces/spark/statefulsets/spark-connect-executor/scale"
    )
    assert not allowed("PATCH", "/apis/apps/v1/namespaces/spark/statefulsets/other/scale")
    assert not allowed(
        "PATCH", "/apis/apps/v1/namespaces/spark/statefulsets/spark-connect-executor"
    )
    assert not allowed("PATCH", "/apis/apps/v1/namespaces/spark/deployments/other")
    assert not allowed("DELETE", "/apis/apps/v1/namespaces/spark/deployments/spark-connect")
    assert not allowed("DELETE", "/api/v1/namespaces/kube-system/pods/coredns-1")
    assert not allowed("GET", "/api/v1/namespaces/spark/secrets")
    assert not allowed("DELETE", "/api/v1/namespaces/spark/pods")  # deletecollection
    assert not allowed("GET", "/api/v1/nodes/node-1")  # list, not get, is granted
    assert allowed("PATCH", "/api/v1/namespaces/spark/configmaps/x", created=True)
    assert not allowed("PATCH", "/api/v1/namespaces/other/configmaps/x", created=True)
