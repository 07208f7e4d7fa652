"""The objects of deploy/kubernetes/components whose kinds are not built in.

kubernetes-validate has no schema for CloudNativePG's ``Cluster`` or the Prometheus
Operator's kinds: these tests check their apiVersion, kind and the fields PIRA relies on.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

from bot.settings_env import Env
from tests.support.kustomize import KUBE_DIR, ROOT, one, pira_container, render

MONITORING = KUBE_DIR / "components" / "monitoring"
# The component's copy → the file it copies (kustomize loads nothing outside its root).
COPIES = {
    MONITORING / "prometheusrule.yaml": ROOT / "deploy/prometheus/prometheusrule.yaml",
    MONITORING / "pira-prometheusrule.yaml": ROOT / "deploy/prometheus/pira-prometheusrule.yaml",
}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def env_of(container: dict[str, Any], name: str) -> dict[str, Any]:
    (entry,) = (e for e in container["env"] if e["name"] == name)
    return dict(entry)


@pytest.mark.parametrize("copy", sorted(COPIES), ids=lambda p: p.name)
def test_the_components_copy_equals_deploy_prometheus(copy: Path) -> None:
    original = load(COPIES[copy])
    assert load(copy) == original  # groups, and name, labels and namespace too
    assert original["spec"]["groups"]


def test_postgres_is_a_three_instance_cnpg_cluster_pira_connects_to() -> None:
    docs = render("ha", "postgres")
    cluster = one(docs, "Cluster")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    name = cluster["metadata"]["name"]
    spec = cluster["spec"]
    assert spec["instances"] == 3
    # One instance per node, not merely preferred: a node loss takes at most one.
    assert spec["affinity"]["enablePodAntiAffinity"] is True
    assert spec["affinity"]["podAntiAffinityType"] == "required"
    assert spec["affinity"]["topologyKey"] == "kubernetes.io/hostname"
    assert spec["storage"]["size"]
    initdb = spec["bootstrap"]["initdb"]
    # PIRA's URL: the operator's read-write Service, the bootstrapped database, the driver
    # PIRA ships (psycopg 3); user and password: the operator's <name>-app Secret via libpq.
    container = pira_container(docs)
    url_entry = env_of(container, "PIRA_DATABASE_URL")
    assert "valueFrom" not in url_entry
    url = make_url(Env.from_environ({"PIRA_DATABASE_URL": url_entry["value"]}).database_url)
    assert url.drivername == "postgresql+psycopg"
    assert url.host == f"{name}-rw" and url.database == initdb["database"]
    assert url.username is None and url.password is None
    app_secret = {"PGUSER": "username", "PGPASSWORD": "password"}
    for variable, key in app_secret.items():
        ref = env_of(container, variable)["valueFrom"]["secretKeyRef"]
        assert ref == {"name": f"{name}-app", "key": key}
    assert initdb["owner"] == initdb["database"]  # the -app Secret's user owns the database
    assert cluster["metadata"]["namespace"] == one(docs, "Deployment")["metadata"]["namespace"]


def test_prometheus_rules_and_the_service_monitor() -> None:
    docs = render("ha", "monitoring")
    rules = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert {r["metadata"]["name"] for r in rules} == {
        load(original)["metadata"]["name"] for original in COPIES.values()
    }
    for rule in rules:
        assert rule["apiVersion"] == "monitoring.coreos.com/v1"
        assert all(g["name"] and g["rules"] for g in rule["spec"]["groups"])
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = one(docs, "Service", "pira")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    # PIRA's own rules select job="pira": the scrape sets that job label.
    self_rules = yaml.safe_dump(load(COPIES[MONITORING / "pira-prometheusrule.yaml"]))
    assert 'job="pira"' in self_rules
    assert {"action": "replace", "targetLabel": "job", "replacement": "pira"} in endpoint[
        "relabelings"
    ]


def test_alertmanager_config_routes_to_the_webhook_with_the_token_of_the_secret() -> None:
    docs = render("ha", "monitoring")
    config = one(docs, "AlertmanagerConfig")
    assert config["apiVersion"] == "monitoring.coreos.com/v1alpha1"
    spec = config["spec"]
    receivers = {r["name"]: r for r in spec["receivers"]}
    routes = [spec["route"], *spec["route"]["routes"]]
    assert {r["receiver"] for r in routes} == {"pira"}
    (webhook,) = receivers["pira"]["webhookConfigs"]
    assert webhook["sendResolved"] is True
    # The URL: PIRA's Service, across namespaces, on the path the code serves.
    service = one(docs, "Service", "pira")
    target = urlsplit(webhook["url"])
    namespace = service["metadata"]["namespace"]
    assert target.hostname == f"{service['metadata']['name']}.{namespace}.svc"
    assert target.port == service["spec"]["ports"][0]["port"]
    alerts_source = (ROOT / "bot" / "alerts.py").read_text()
    assert f'route("POST", "{target.path}"' in alerts_source
    # The bearer token: the very Secret key PIRA reads PIRA_ALERTMANAGER_TOKEN from.
    authorization = webhook["httpConfig"]["authorization"]
    assert authorization["type"] == "Bearer"
    token = env_of(pira_container(docs), "PIRA_ALERTMANAGER_TOKEN")["valueFrom"]["secretKeyRef"]
    assert authorization["credentials"] == {"name": token["name"], "key": token["key"]}
    assert config["metadata"]["namespace"] == namespace  # secret refs are namespace-local


def test_pira_own_alerts_are_not_routed_through_pira() -> None:
    config = one(render("ha", "monitoring"), "AlertmanagerConfig")
    matchers = config["spec"]["route"]["matchers"]
    assert {"name": "service", "matchType": "!=", "value": "pira"} in matchers
    own = load(COPIES[MONITORING / "pira-prometheusrule.yaml"])
    alerts = [r for g in own["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts and all(r["labels"]["service"] == "pira" for r in alerts)
    platform = load(COPIES[MONITORING / "prometheusrule.yaml"])
    spark = [r for g in platform["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert spark and not any(r.get("labels", {}).get("service") == "pira" for r in spark)
    severities = {r["labels"]["severity"] for r in spark}
    routed = [
        re.compile(m["value"]) for r in config["spec"]["route"]["routes"] for m in r["matchers"]
    ]
    assert any(p.fullmatch(s) for p in routed for s in severities)  # the P0/P1 routes match
