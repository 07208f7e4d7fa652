"""A verb the code uses that the rendered Role lacks fails the RBAC check.

tests/integration/test_rbac.py replays every Cluster method against the fake API server and
checks the requests against the rendered overlays' RBAC. Here each verb of the rendered Role
and ClusterRole is taken away in turn: the same replay must then be denied something.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from bot.integrations.kube import Cluster
from tests.fakes.kube_api import FakeKubeApi
from tests.integration.test_rbac import (
    RBAC_KINDS,
    bound_grants,
    exercise_every_method,
    request_attributes,
)
from tests.support.kustomize import COMPONENTS, OVERLAYS, render


def denied(docs: list[dict[str, Any]], kube_api: FakeKubeApi) -> list[Any]:
    grants = bound_grants(docs)
    return [
        attrs
        for req in kube_api.requests
        for attrs in request_attributes(req)
        if not any(g.allows(attrs) for g in grants)
    ]


async def test_every_verb_of_the_rendered_roles_is_needed(
    cluster: Cluster, kube_api: FakeKubeApi, tmp_path: Path
) -> None:
    await exercise_every_method(cluster, tmp_path)
    docs = [d for d in render("single") if d["kind"] in RBAC_KINDS]
    assert denied(docs, kube_api) == []
    removals = 0
    for i, doc in enumerate(docs):
        if doc["kind"] not in ("Role", "ClusterRole"):
            continue
        for r, rule in enumerate(doc["rules"]):
            for verb in rule["verbs"]:
                lacking = copy.deepcopy(docs)
                lacking[i]["rules"][r]["verbs"].remove(verb)
                missing = denied(lacking, kube_api)
                assert missing, f"{doc['kind']} without {verb} on {rule['resources']} passes"
                assert all(a.verb == verb for a in missing)
                removals += 1
    assert removals >= 10


def test_every_build_has_the_same_rbac() -> None:
    def rbac(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(
            (d for d in docs if d["kind"] in RBAC_KINDS),
            key=lambda d: (d["kind"], d["metadata"]["name"]),
        )

    single = rbac(render("single"))
    assert len(single) == len(RBAC_KINDS)
    for overlay in OVERLAYS:
        assert rbac(render(overlay)) == single
    assert rbac(render("ha", *COMPONENTS)) == single  # the components grant PIRA nothing
