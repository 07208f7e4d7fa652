"""Render deploy/kubernetes with ``kubectl kustomize`` (no cluster needed).

:func:`render` builds an overlay, optionally with components added to it, and returns the
objects. Without ``kubectl`` the test is skipped, or fails when the ``CI`` variable is set:
CI must never silently skip the manifests' checks.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBE_DIR = ROOT / "deploy" / "kubernetes"
BASE = KUBE_DIR / "base"
OVERLAYS = ("single", "ha")
COMPONENTS = ("postgres", "monitoring")
TIMEOUT = 60


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        reason = "kubectl not installed (kubectl kustomize renders deploy/kubernetes)"
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false"):
            pytest.fail(f"CI is set and {reason}", pytrace=False)
        pytest.skip(reason)
    return path


def render(overlay: str, *components: str) -> list[dict[str, Any]]:
    """The objects of ``overlays/<overlay>`` with ``components/<c>`` added (a fresh copy)."""
    text = _build(overlay, tuple(components))
    return [doc for doc in yaml.load_all(text, Loader=_Loader) if doc]


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads a bare ``=`` (kustomize writes ``matchType: =``) as a "value" tag."""


_Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: node.value)


@functools.cache
def _build(overlay: str, components: tuple[str, ...]) -> str:
    binary = kubectl()
    target = KUBE_DIR / "overlays" / overlay
    if not components:
        return _kustomize(binary, target)
    # kustomize takes only relative paths; a kustomization elsewhere uses the overlay
    # as its resource and adds the components, as a user's own overlay would.
    with tempfile.TemporaryDirectory(prefix="pira-kustomize-") as tmp:
        here = Path(tmp)
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [os.path.relpath(target, here)],
            "components": [os.path.relpath(KUBE_DIR / "components" / c, here) for c in components],
        }
        (here / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        return _kustomize(binary, here)


def _kustomize(binary: str, target: Path) -> str:
    done = subprocess.run(
        [binary, "kustomize", str(target)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"kubectl kustomize {target} failed:\n{done.stderr}"
    return done.stdout


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The single object of ``kind`` (and ``name``) in ``docs``."""
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{len(found)} objects of kind {kind} named {name}"
    return found[0]


def pira_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec = one(docs, "Deployment", "pira")["spec"]["template"]["spec"]
    (container,) = (c for c in spec["containers"] if c["name"] == "pira")
    return dict(container)
