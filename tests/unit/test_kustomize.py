"""deploy/kubernetes renders, validates against Kubernetes' schemas and agrees with the code.

Both overlays (and ha with the optional components) are built with ``kubectl kustomize``;
every built-in object is validated strictly with kubernetes-validate; the pod's environment,
probes and ports are checked against bot/settings_env.py and bot/web.py. The kinds that are
not built in are checked in tests/unit/test_kustomize_crds.py, the Role in
tests/integration/test_rbac.py.
"""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from prometheus_client import CollectorRegistry

from bot.settings import load_config
from bot.settings_env import Env
from bot.web import WebServer
from tests.support.kustomize import (
    BASE,
    COMPONENTS,
    OVERLAYS,
    ROOT,
    kubectl,
    one,
    pira_container,
    render,
)

# Kubernetes versions the built-in objects must be valid for: the oldest kept, the newest.
VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
NOT_BUILT_IN = {"Cluster", "PrometheusRule", "ServiceMonitor", "AlertmanagerConfig"}
BUILDS = [pytest.param(o, (), id=o) for o in OVERLAYS] + [
    pytest.param("ha", COMPONENTS, id="+".join(("ha", *COMPONENTS)))
]
LIBPQ_ENV = {"PGUSER", "PGPASSWORD"}  # read by libpq (psycopg) itself, not by PIRA


def env_vars_the_code_reads() -> set[str]:
    """The ``PIRA_*`` names that ``Env.from_environ`` reads, from its source."""
    tree = ast.parse((ROOT / "bot" / "settings_env.py").read_text())
    (method,) = (
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == "from_environ"
    )
    return {
        node.value
        for node in ast.walk(method)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.fullmatch(r"PIRA_[A-Z_]+", node.value)
    }


def optional_in_comment() -> set[str]:
    """``# optional: PIRA_X ...`` lines of the base Deployment: read by PIRA, not set here."""
    text = (BASE / "deployment.yaml").read_text()
    return set(re.findall(r"^#\s+optional:\s+(PIRA_[A-Z_]+)", text, re.MULTILINE))


def literal_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def get_routes() -> set[str]:
    async def ping() -> None:
        return None

    server = WebServer(CollectorRegistry(), ping=ping)
    return {
        route.resource.canonical
        for route in server.web.router.routes()
        if route.method == "GET" and route.resource is not None
    }


def test_without_kubectl_ci_fails_and_a_laptop_skips(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no kubectl there
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set and kubectl not installed"):
        kubectl()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        kubectl()


def test_the_env_parser_finds_what_the_code_reads() -> None:
    names = env_vars_the_code_reads()
    assert {"PIRA_CONFIG", "PIRA_HTTP_HOST", "PIRA_DATABASE_URL", "PIRA_LOG_FILE"} <= names
    assert all(n.startswith("PIRA_") for n in names)


@pytest.mark.parametrize(("overlay", "components"), BUILDS)
def test_every_built_in_object_validates(overlay: str, components: tuple[str, ...]) -> None:
    docs = render(overlay, *components)
    built_in = [d for d in docs if d["kind"] not in NOT_BUILT_IN]
    assert {d["kind"] for d in built_in} >= {"Deployment", "Service", "ConfigMap", "Role"}
    for version in VERSIONS:
        for doc in built_in:
            kubernetes_validate.validate(doc, version, strict=True)
    for doc in docs:  # everything not built in is known to the CRD checks
        if doc["kind"] in NOT_BUILT_IN:
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(doc, VERSIONS[-1], strict=True)
    for doc in docs:
        assert doc["metadata"].get("namespace") in ("spark", None), doc["metadata"]


def test_the_validation_is_strict() -> None:
    docs = render("single")
    deployment = copy.deepcopy(one(docs, "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)
    del deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"]
    deployment["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


@pytest.mark.parametrize(("overlay", "components"), BUILDS)
def test_every_variable_the_code_reads_is_set_or_listed_optional(
    overlay: str, components: tuple[str, ...]
) -> None:
    container = pira_container(render(overlay, *components))
    names = [e["name"] for e in container["env"]]
    assert len(names) == len(set(names)), names
    read = env_vars_the_code_reads()
    optional = optional_in_comment()
    assert optional <= read, optional - read  # the comment lists no stale names
    assert not set(names) & (optional - {"PIRA_DATABASE_URL"}), "set and listed optional"
    assert read <= set(names) | optional, read - set(names) - optional
    assert set(names) <= read | LIBPQ_ENV, set(names) - read  # nothing the bot ignores
    assert "PIRA_DATABASE_URL" in names  # every overlay chooses the database


@pytest.mark.parametrize(("overlay", "components"), BUILDS)
def test_the_pod_listens_where_the_probes_and_the_service_look(
    overlay: str, components: tuple[str, ...]
) -> None:
    docs = render(overlay, *components)
    container = pira_container(docs)
    env = Env.from_environ(literal_env(container))
    assert literal_env(container)["PIRA_HTTP_HOST"] == "0.0.0.0"
    assert env.http_host == "0.0.0.0"  # reachable from the kubelet and the Service
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": env.http_port}
    routes = get_routes()
    probes = {k: container[k]["httpGet"] for k in container if k.endswith("Probe")}
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    for probe in probes.values():
        assert probe["path"] in routes, probe
        assert ports.get(probe["port"], probe["port"]) == env.http_port
    service = one(docs, "Service", "pira")
    (port,) = service["spec"]["ports"]
    assert ports.get(port["targetPort"], port["targetPort"]) == env.http_port
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_config_is_mounted_where_pira_config_points_and_loads(
    overlay: str, tmp_path: Path
) -> None:
    docs = render(overlay)
    deployment = one(docs, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    container = pira_container(docs)
    path = Path(literal_env(container)["PIRA_CONFIG"])
    (mount,) = (m for m in container["volumeMounts"] if Path(m["mountPath"]) == path.parent)
    (volume,) = (v for v in spec["volumes"] if v["name"] == mount["name"])
    config_map = one(docs, "ConfigMap", volume["configMap"]["name"])
    assert config_map["metadata"]["name"].startswith("pira-config-")  # hashed: rolls pods
    text = config_map["data"][path.name]
    (tmp_path / path.name).write_text(text)
    warnings: list[str] = []
    config = load_config(tmp_path / path.name, warnings=warnings, strict=True)
    assert warnings == []
    # The rules file comes with the image and no volume hides it.
    rules = config.alertmanager.rules_file
    assert rules is not None
    assert f"COPY deploy/prometheus/rules.yaml {rules}" in (ROOT / "deploy/Dockerfile").read_text()
    assert not any(Path(rules).is_relative_to(m["mountPath"]) for m in container["volumeMounts"])
    # The Role names the objects of the configuration's cluster section.
    role = one(docs, "Role", "pira")
    names = {n for rule in role["rules"] for n in rule.get("resourceNames", [])}
    assert names == {config.cluster.executors.statefulset, config.cluster.connect.deployment}
    assert role["metadata"]["namespace"] == config.cluster.namespace


@pytest.mark.parametrize(("overlay", "components"), BUILDS)
def test_secrets_come_from_secrets_and_the_pod_runs_as_the_image_user(
    overlay: str, components: tuple[str, ...]
) -> None:
    docs = render(overlay, *components)
    container = pira_container(docs)
    secret_like = [e for e in container["env"] if re.search("TOKEN|SECRET|PASSWORD", e["name"])]
    assert secret_like and all("secretKeyRef" in e.get("valueFrom", {}) for e in secret_like)
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    user = re.search(r"^USER (\d+)$", (ROOT / "deploy/Dockerfile").read_text(), re.MULTILINE)
    assert user is not None and spec["securityContext"]["runAsUser"] == int(user[1])
    assert spec["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert spec["topologySpreadConstraints"]


def test_single_is_one_replica_on_sqlite_on_a_claim() -> None:
    docs = render("single")
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = pira_container(docs)
    url = Env.from_environ(literal_env(container)).database_url
    assert url.startswith("sqlite:////")
    database = Path(url.removeprefix("sqlite:///"))
    (mount,) = (m for m in container["volumeMounts"] if database.is_relative_to(m["mountPath"]))
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    claim = volumes[mount["name"]]["persistentVolumeClaim"]["claimName"]
    pvc = one(docs, "PersistentVolumeClaim", claim)
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "PodDisruptionBudget" not in {d["kind"] for d in docs}


def test_ha_is_three_replicas_on_a_database_of_a_secret() -> None:
    docs = render("ha")
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    container = pira_container(docs)
    (url,) = (e for e in container["env"] if e["name"] == "PIRA_DATABASE_URL")
    assert url["valueFrom"]["secretKeyRef"] == {"name": "pira", "key": "database-url"}
    pod = deployment["spec"]["template"]
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert pdb["spec"]["maxUnavailable"] == 1  # a drain leaves two of three
    (term,) = pod["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    selector = term["podAffinityTerm"]["labelSelector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert not [d for d in docs if d["kind"] in NOT_BUILT_IN]  # components are opt-in
