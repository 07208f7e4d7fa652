"""The deploy files agree with each other and with the product's contract."""

from __future__ import annotations

from pathlib import Path

import yaml

from bot.settings import Env

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_deployment_uses_the_least_privilege_account_and_contract_names() -> None:
    base = DEPLOY / "kubernetes" / "base"  # the overlays: tests/unit/test_kustomize.py
    docs = list(yaml.safe_load_all((base / "deployment.yaml").read_text()))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    rbac = list(yaml.safe_load_all((base / "rbac.yaml").read_text()))
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


def test_dockerfile_builds_a_wheel_and_runs_it_as_a_user() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    build, runtime = text.split("\nFROM ")[1:]  # two stages
    assert build.startswith("python:3.11-slim AS build") and "pip wheel" in build
    assert "COPY templates" in build  # into the wheel, as package data
    assert runtime.startswith("python:3.11-slim AS runtime")
    # The runtime stage holds the wheel only: no source tree, no build tools.
    assert "COPY --from=build /dist /dist" in runtime
    assert not any(f"COPY {d}" in runtime for d in ("bot", "handlers", "templates", "."))
    assert "USER 10001" in runtime and "HEALTHCHECK" in runtime and "/healthz" in runtime
    assert 'ENTRYPOINT ["pira"]' in runtime and 'CMD ["run"]' in runtime
    assert "org.opencontainers.image.title" in runtime
