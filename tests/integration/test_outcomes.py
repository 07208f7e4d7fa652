"""/rollback spark-connect (issue 17, part 3) and the outcome PIRA reports after an action
(part 4), through the router against the fake Kubernetes API.

The rollback must send what ``kubectl rollout undo deployment/spark-connect`` sends
(kubernetes/kubectl pkg/polymorphichelpers/rollback.go, DeploymentRollbacker): GET the
Deployment, LIST the ReplicaSets with its selector, one JSON patch of /spec/template and
/metadata/annotations. The outcome watch polls in the background: a test changes the fake
cluster, moves the clock, and waits for the watch to finish (an event, not a sleep).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from bot.clock import FakeClock
from tests.fakes.kube_api import FakeKubeApi
from tests.support.cluster_app import Chat
from tests.support.driver import Driver

DEPLOY = "/apis/apps/v1/namespaces/spark/deployments/spark-connect"
REPLICASETS = "/apis/apps/v1/namespaces/spark/replicasets"
SELECTOR = "app.kubernetes.io/name=spark-connect,app.kubernetes.io/part-of=spark-k8s"

# kube_api, clock and chat (the seeded platform: spark-connect at revision 2 = 3.5.1, revision
# 1 = 3.5.0): tests/integration/conftest.py


@pytest.fixture(autouse=True)
def quick_watch(chat: Chat) -> None:
    chat.app.actions.watch.poll = 0.01  # look often: the tests wait for the outcome


async def outcome(chat: Chat) -> None:
    """Wait until every outcome watch has written its line."""
    await asyncio.wait_for(chat.app.actions.watch.idle(), 10)


async def looked(api: FakeKubeApi, times: int = 2) -> None:
    """Wait until the watch has listed the pods ``times`` more times (a full look each)."""
    pods = r"/namespaces/spark/pods$"
    seen = len(api.requests_matching("GET", pods))
    async with asyncio.timeout(10):
        while len(api.requests_matching("GET", pods)) < seen + times:
            await asyncio.sleep(0.01)


def writes(api: FakeKubeApi) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in api.requests if r.method != "GET"]


async def timeline(chat: Chat, number: int = 1) -> list[str]:
    incident = await chat.app.store.run(chat.app.incidents.get, number)
    return [e.text for e in incident.timeline]


# ---- /rollback spark-connect ----------------------------------------------------------------


async def test_rollback_sends_what_kubectl_rollout_undo_sends(
    chat: Chat, kube_api: FakeKubeApi
) -> None:
    # revision 1's ReplicaSet carries a change-cause: kubectl restores it onto the Deployment
    (rev1,) = [
        rs
        for rs in kube_api.objects("apps/v1", "replicasets")
        if rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    ]
    rev1["metadata"]["annotations"]["kubernetes.io/change-cause"] = "release 41"
    kube_api.put(rev1)
    dep = kube_api.get("apps/v1", "deployments", "spark", "spark-connect")
    assert dep is not None
    dep["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = "{}"
    kube_api.put(dep)
    await chat.say("alice", "/incident p1 Spark Connect broken after the upgrade")
    kube_api.clear_requests()
    prompt = await chat.say("alice", "/rollback spark-connect")
    assert (
        "Roll back deployment spark-connect in spark from revision 2 "
        "(spark-connect=apache/spark:3.5.1) to revision 1 (spark-connect=apache/spark:3.5.0): "
        "its pods are replaced one by one; Spark Connect sessions on them end."
    ) in chat.text(prompt)
    assert [b.label for b in prompt.buttons] == ["Confirm", "Cancel"]
    assert writes(kube_api) == []  # nothing before the confirmation
    kube_api.clear_requests()
    done = await chat.say("alice", prompt.buttons[0].command)
    assert done.ok, chat.text(done)
    assert (
        "Rolled back deployment spark-connect: revision 2 (spark-connect=apache/spark:3.5.1) "
        "→ revision 1 (spark-connect=apache/spark:3.5.0)."
    ) in chat.text(done)
    # kubectl's requests, in its order (the outcome watch's reads come after)
    sent = [(r.method, r.path, r.query.get("labelSelector")) for r in kube_api.requests]
    assert sent[:3] == [
        ("GET", DEPLOY, None),
        ("GET", REPLICASETS, SELECTOR),
        ("PATCH", DEPLOY, None),
    ]
    assert writes(kube_api) == [("PATCH", DEPLOY)]  # exactly one write
    (patch,) = kube_api.requests_matching("PATCH")
    assert patch.content_type == "application/json-patch+json"
    template = {
        "metadata": {
            "labels": {
                "app.kubernetes.io/name": "spark-connect",
                "app.kubernetes.io/part-of": "spark-k8s",
            }
        },  # without pod-template-hash
        "spec": {"containers": [{"name": "spark-connect", "image": "apache/spark:3.5.0"}]},
    }
    assert patch.body == [
        {"op": "replace", "path": "/spec/template", "value": template},
        {
            "op": "replace",
            "path": "/metadata/annotations",
            "value": {  # the Deployment's skipped annotations + the ReplicaSet's others
                "deployment.kubernetes.io/revision": "2",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                "kubernetes.io/change-cause": "release 41",
            },
        },
    ]
    after = kube_api.get("apps/v1", "deployments", "spark", "spark-connect")
    assert after is not None
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == "apache/spark:3.5.0"
    # the controller made revision 1's ReplicaSet the newest: revision 3
    assert after["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert (
        "/rollback spark-connect by alice: spark-connect revision 2 "
        "(spark-connect=apache/spark:3.5.1) → revision 1 (spark-connect=apache/spark:3.5.0)"
    ) in await timeline(chat)
    audited = [(e.actor, e.action, e.outcome) for e in reversed(chat.app.router.audit_entries())]
    assert audited[-3:] == [
        ("alice", "/rollback spark-connect", "requested"),
        ("alice", "/rollback spark-connect", "confirmed"),
        ("alice", "/rollback spark-connect", "ok"),
    ]


async def test_rollback_by_a_responder_is_refused_and_audited(
    chat: Chat, kube_api: FakeKubeApi
) -> None:
    reply = await chat.say("bob", "/rollback spark-connect")
    assert not reply.ok
    assert chat.text(reply) == "/rollback needs the operator role; bob does not have it."
    entries = chat.app.router.audit_entries()
    assert [(e.actor, e.action, e.outcome) for e in entries] == [
        ("bob", "/rollback spark-connect", "refused")
    ]
    assert kube_api.requests == []


async def test_rollback_of_a_paused_deployment_or_without_history_changes_nothing(
    chat: Chat, kube_api: FakeKubeApi
) -> None:
    dep = kube_api.get("apps/v1", "deployments", "spark", "spark-connect")
    assert dep is not None
    dep["spec"]["paused"] = True
    kube_api.put(dep)
    paused = await chat.say("alice", "/rollback spark-connect")
    assert not paused.ok and not paused.buttons
    assert "Deployment spark-connect is paused; resume its rollout first" in chat.text(paused)
    # a new Deployment of the same name owns none of the old ReplicaSets: no history
    kube_api.add_deployment("spark-connect", replicas=1, ready=1)
    fresh = await chat.say("alice", "/rollback spark-connect")
    assert not fresh.ok
    assert "has no previous revision to roll back to" in chat.text(fresh)
    bad = await chat.say("alice", "/rollback executors")
    assert not bad.ok and "spark-connect" in chat.text(bad)
    assert writes(kube_api) == []


async def test_rollback_refused_by_the_api_server_is_answered_and_audited_as_failed(
    chat: Chat, kube_api: FakeKubeApi
) -> None:
    prompt = await chat.say("alice", "/rollback spark-connect")
    kube_api.forbid("patch", "deployments", "apps")
    done = await chat.say("alice", prompt.buttons[0].command)
    assert not done.ok
    assert "/rollback spark-connect failed; the API server refused it" in chat.text(done)
    assert chat.app.router.audit_entries()[0].outcome == "failed"
    assert not chat.app.actions.watch.finished and not chat.app.actions.watch._tasks


# ---- outcomes -------------------------------------------------------------------------------


async def test_scale_reports_executors_ready_on_the_timeline_and_in_the_room(
    chat: Chat, kube_api: FakeKubeApi, clock: FakeClock
) -> None:
    driver = Driver(chat.app)  # prints the posts
    await chat.say("alice", "/incident p1 Executors lost")
    done = await chat.confirmed("alice", "/scale executors 20")
    assert done.ok  # answered without waiting for the executors
    assert "PIRA posts the outcome once it is clear" in chat.text(done)
    assert not [t for t in await timeline(chat) if "Ready" in t]
    clock.advance(timedelta(seconds=48))
    kube_api.executors_ready("spark-connect-executor", 20)
    await outcome(chat)
    line = "/scale executors 20 → executors 20/20 Ready after 48 s"
    assert line in await timeline(chat)
    posts = await driver.posts()
    assert [p.tag for p in posts if line in p.text] == ["#incident-1"]


async def test_a_stuck_rollout_is_reported_when_the_time_is_up(
    chat: Chat, kube_api: FakeKubeApi, clock: FakeClock
) -> None:
    await chat.say("alice", "/incident p1 Spark Connect down")
    assert (await chat.confirmed("alice", "/restart spark-connect")).ok
    kube_api.stick_rollout("spark-connect", pods=2, reason="CrashLoopBackOff")
    clock.advance(timedelta(minutes=4))
    await looked(kube_api)  # the watch looked again after the clock moved: still going
    assert not chat.app.actions.watch.finished
    clock.advance(timedelta(minutes=1))  # cluster.watch_outcome: 5m by default
    await outcome(chat)
    assert (
        "/restart spark-connect → rollout stuck: 2 pods CrashLoopBackOff (after 5 min)"
        in await timeline(chat)
    )
    events = (await chat.app.store.run(chat.app.incidents.get, 1)).timeline
    assert [e.kind for e in events if "rollout stuck" in e.text] == ["action"]


async def test_a_rollout_that_completes_and_one_past_its_deadline(
    chat: Chat, kube_api: FakeKubeApi, clock: FakeClock
) -> None:
    await chat.say("alice", "/incident p1 Spark Connect broken")
    assert (await chat.confirmed("alice", "/rollback spark-connect")).ok
    clock.advance(timedelta(seconds=30))
    kube_api.roll_out("spark-connect")
    await outcome(chat)
    assert (
        "/rollback spark-connect → rollout of spark-connect complete: 1/1 Ready after 30 s"
        in await timeline(chat)
    )
    # the controller gives up before PIRA's limit: stuck at once
    assert (await chat.confirmed("alice", "/rollback spark-connect")).ok
    kube_api.stick_rollout("spark-connect", pods=1, reason="ImagePullBackOff",
                           deadline_exceeded=True)  # fmt: skip
    await outcome(chat)
    assert (
        "/rollback spark-connect → rollout stuck: 1 pod ImagePullBackOff (after 0 s)"
        in await timeline(chat)
    )


async def test_kill_reports_the_pod_gone_and_without_an_incident_posts_to_incidents(
    chat: Chat, kube_api: FakeKubeApi
) -> None:
    driver = Driver(chat.app)
    assert (await chat.confirmed("alice", "/kill etl-nightly-driver")).ok
    await outcome(chat)
    posts = await driver.posts()
    line = "/kill etl-nightly-driver → driver pod etl-nightly-driver gone after 0 s"
    assert [(p.tag, p.text) for p in posts] == [("#incidents", line)]


async def test_watch_outcome_0s_watches_nothing(chat: Chat, kube_api: FakeKubeApi) -> None:
    chat.app.actions.watch.limit = timedelta(0)
    done = await chat.confirmed("alice", "/scale executors 20")
    assert "/health shows the outcome" in chat.text(done)
    kube_api.clear_requests()
    await outcome(chat)
    assert not chat.app.actions.watch.finished and kube_api.requests == []
