"""Restoring objects from a backup manifest, by server-side apply, limited to a few kinds."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from bot.integrations.kube_client import NAME_RE, KubeBase
from bot.integrations.kube_errors import ClusterError, ManifestError
from bot.integrations.kube_models import AppliedObject

FIELD_MANAGER = "pira"


@dataclass(frozen=True)
class RestorableKind:
    group: str  # API group ("" = core), as in RBAC rules
    resource: str  # plural, as in RBAC rules
    api: Callable[[client.ApiClient], Any]
    method: str  # name of the typed *_with_http_info patch method


# The kinds a restore manifest may contain. Least privilege: RBAC grants patch/create on exactly
# these resources, so a new kind needs a row here and a rule in deploy/kubernetes/base/rbac.yaml.
RESTORABLE_KINDS: Mapping[tuple[str, str], RestorableKind] = {
    ("v1", "ConfigMap"): RestorableKind(
        "", "configmaps", client.CoreV1Api, "patch_namespaced_config_map_with_http_info"
    ),
    ("v1", "PersistentVolumeClaim"): RestorableKind(
        "",
        "persistentvolumeclaims",
        client.CoreV1Api,
        "patch_namespaced_persistent_volume_claim_with_http_info",
    ),
    ("batch/v1", "Job"): RestorableKind(
        "batch", "jobs", client.BatchV1Api, "patch_namespaced_job_with_http_info"
    ),
}
# Server-populated fields a `kubectl get -o yaml` backup carries; apply rejects or trips on them.
_SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields",
                  "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds")  # fmt: skip


class KubeRestore(KubeBase):
    """The restore calls of :class:`~bot.integrations.kube.Cluster`."""

    def read_manifest(self, path: str | os.PathLike[str]) -> list[dict[str, Any]]:
        """Parse and check a (multi-document, or ``kind: List``) manifest without applying it.

        Raises :class:`ManifestError` naming the first offending object."""
        try:
            docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d is not None]
        except (OSError, yaml.YAMLError) as exc:
            raise ManifestError(f"cannot read manifest {Path(path).name}: {exc}") from None
        objects: list[dict[str, Any]] = []
        for doc in docs:
            items = (
                doc.get("items") if isinstance(doc, dict) and doc.get("kind") == "List" else None
            )
            objects.extend(items if isinstance(items, list) else [doc])
        for obj in objects:
            if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
                raise ManifestError("manifest entry is not a Kubernetes object")
            kind, name = obj.get("kind"), obj["metadata"].get("name")
            if (obj.get("apiVersion"), kind) not in RESTORABLE_KINDS:
                allowed = ", ".join(sorted(k for _, k in RESTORABLE_KINDS))
                raise ManifestError(f"{kind} {name}: kind not allowed in a restore ({allowed})")
            if not isinstance(name, str) or not NAME_RE.fullmatch(name):
                raise ManifestError(f"{kind}: missing or invalid metadata.name")
            if obj["metadata"].get("namespace") not in (None, self.namespace):
                raise ManifestError(f"{kind} {name}: namespace must be {self.namespace}")
        return objects

    async def apply_manifest(self, path: str | os.PathLike[str]) -> list[AppliedObject]:
        """Server-side apply (field manager ``pira``, conflicts forced: a restore must win) of
        every object of a manifest, in order. Everything is checked before anything is sent.

        Raises :class:`ManifestError`; a failure part-way names what was already applied."""
        objects = await asyncio.to_thread(self.read_manifest, path)
        applied: list[AppliedObject] = []
        for obj in objects:
            kind_info = RESTORABLE_KINDS[(obj["apiVersion"], obj["kind"])]
            body = {k: v for k, v in obj.items() if k != "status"}
            meta = {k: v for k, v in obj["metadata"].items() if k not in _SERVER_FIELDS}
            body["metadata"] = meta | {"namespace": self.namespace}
            what = f"apply {obj['kind']} {meta['name']}"
            fn = getattr(kind_info.api(self._api_client), kind_info.method)
            try:
                _, code, _ = await self._call(
                    what, fn, meta["name"], self.namespace, body, field_manager=FIELD_MANAGER,
                    force=True, _content_type="application/apply-patch+yaml",
                )  # fmt: skip
            except ClusterError as exc:
                if not applied:
                    raise
                done = ", ".join(f"{a.kind} {a.name}" for a in applied)
                raise type(exc)(f"{exc} (already applied: {done})", exc.status) from None
            applied.append(AppliedObject(obj["kind"], meta["name"], created=code == 201))
        return applied
