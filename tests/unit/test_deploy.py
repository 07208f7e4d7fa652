"""The deploy files agree with each other and with the product's contract."""

from __future__ import annotations

from pathlib import Path

import yaml

from bot.settings import Env

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_deployment_uses_the_least_privilege_account_and_contract_names() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "deployment.yaml").read_text()))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    rbac = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "rbac.yaml").read_text()))
    account = next(d for d in rbac if d["kind"] == "ServiceAccount")
    spec = deployment["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    assert deployment["metadata"]["namespace"] == account["metadata"]["namespace"]
    container = spec["containers"][0]
    names = {e["name"] for e in container["env"]}
    known = {f"PIRA_{f.upper()}" for f in Env.__dataclass_fields__} | {"PIRA_CONFIG"}
    assert names <= known, names - known  # no variable the bot does not read
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    secrets = [e for e in container["env"] if "TOKEN" in e["name"] or "SECRET" in e["name"]]
    assert secrets and all("valueFrom" in e for e in secrets)  # never inline


def test_dockerfile_runs_pira() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["pira"]' in text and "COPY templates" in text
