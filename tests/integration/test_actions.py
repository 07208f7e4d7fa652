"""/scale, /restart, /kill, /restore through the router: roles, confirmation, audit, timeline,
and the exact requests the fake Kubernetes API server receives."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from bot.clock import FakeClock
from bot.messages import Room
from bot.settings import Config
from tests.fakes.kube_api import FakeKubeApi
from tests.support.cluster_app import Chat, cluster_config

SCALE = "/apis/apps/v1/namespaces/spark/statefulsets/spark-connect-executor/scale"
DEPLOY = "/apis/apps/v1/namespaces/spark/deployments/spark-connect"


# kube_api, clock and chat: tests/integration/conftest.py


@pytest.fixture
def backups(tmp_path: Path) -> Path:
    folder = tmp_path / "backups"
    folder.mkdir()
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "spark-defaults", "namespace": "spark", "resourceVersion": "42"},
        "data": {"spark.driver.memory": "4g"},
    }
    (folder / "restore-manual.yaml").write_text(yaml.safe_dump(manifest))
    outside = tmp_path / "secret.yaml"
    outside.write_text(yaml.safe_dump({**manifest, "metadata": {"name": "evil"}}))
    os.symlink(outside, folder / "link-out.yaml")
    return folder


@pytest.fixture
def app_config(backups: Path) -> Config:
    return cluster_config(backups_dir=str(backups), executors={"min": 1, "max": 50})


def writes(api: FakeKubeApi) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in api.requests if r.method != "GET"]


def audit(chat: Chat) -> list[tuple[str, str, str, str]]:
    entries = chat.app.router.audit_entries()
    return [(e.actor, e.action, e.outcome, e.detail) for e in reversed(entries)]


# ---- /scale -------------------------------------------------------------------------------


async def test_scale_by_an_operator_after_confirmation(chat: Chat, kube_api: FakeKubeApi) -> None:
    prompt = await chat.say("alice", "/scale executors 20")
    text = chat.text(prompt)
    assert "statefulset spark-connect-executor in spark): 10 → 20 replicas (8 ready now)" in text
    assert writes(kube_api) == []  # nothing before the confirmation
    assert [b.label for b in prompt.buttons] == ["Confirm", "Cancel"]
    done = await chat.say("alice", prompt.buttons[0].command)
    assert done.ok
    assert "10 → 20 desired replicas" in chat.text(done)
    (patch,) = kube_api.requests_matching("PATCH")
    assert patch.path == SCALE
    assert patch.content_type == "application/merge-patch+json"
    assert patch.body == {"spec": {"replicas": 20}}
    assert writes(kube_api) == [("PATCH", SCALE)]  # exactly one write
    sts = kube_api.get("apps/v1", "statefulsets", "spark", "spark-connect-executor")
    assert sts is not None and sts["spec"]["replicas"] == 20
    outcomes = [(actor, outcome) for actor, _, outcome, _ in audit(chat)]
    assert outcomes == [("alice", "requested"), ("alice", "confirmed"), ("alice", "ok")]


async def test_scale_by_a_responder_is_refused_and_audited(
    chat: Chat, kube_api: FakeKubeApi
) -> None:
    reply = await chat.say("bob", "/scale executors 20")
    assert not reply.ok
    assert chat.text(reply) == "/scale needs the operator role; bob does not have it."
    assert audit(chat) == [("bob", "/scale executors 20", "refused", "needs role operator")]
    assert kube_api.requests == []


@pytest.mark.parametrize(
    ("count", "answer"),
    [
        ("0", "Executors must stay between 1 and 50 (cluster.executors in the configuration); "
              "0 is outside."),
        ("-1", "between 1 and 50"),
        ("100000", "between 1 and 50"),
        ("abc", "The executor count must be a whole number, not 'abc'. "
                "Usage: /scale executors <N> [#N]"),
        ("", "The executor count is missing."),
        ("20 30", "Unexpected '30'."),
        ("10", "Executors are already at 10; nothing to do."),
    ],
)  # fmt: skip
async def test_scale_bad_counts_get_clear_answers_and_no_api_call(
    chat: Chat, kube_api: FakeKubeApi, count: str, answer: str
) -> None:
    reply = await chat.say("alice", f"/scale executors {count}")
    assert not reply.ok
    assert answer in chat.text(reply)
    assert not reply.buttons  # no confirmation offered
    assert writes(kube_api) == []


async def test_scale_confirmation_by_someone_else_is_refused(
    chat: Chat, kube_api: FakeKubeApi
) -> None:
    prompt = await chat.say("alice", "/scale executors 20")
    other = await chat.say("carol", prompt.buttons[0].command)  # an operator too
    assert not other.ok
    assert "Only the person who asked for this action can confirm it." in chat.text(other)
    assert writes(kube_api) == []
    assert audit(chat)[-1][:3] == ("carol", "/scale executors 20", "refused")


async def test_scale_confirmation_after_60_seconds_expires(
    chat: Chat, kube_api: FakeKubeApi, clock: FakeClock
) -> None:
    prompt = await chat.say("alice", "/scale executors 20")
    clock.advance(timedelta(seconds=61))
    late = await chat.say("alice", prompt.buttons[0].command)
    assert not late.ok
    assert "expired (60 s); nothing was done" in chat.text(late)
    assert writes(kube_api) == []
    assert audit(chat)[-1][2] == "expired"


async def test_scale_cancelled(chat: Chat, kube_api: FakeKubeApi) -> None:
    prompt = await chat.say("alice", "/scale executors 20")
    reply = await chat.say("alice", prompt.buttons[1].command)
    assert reply.ok and "Cancelled" in chat.text(reply)
    assert writes(kube_api) == []


async def test_scale_failure_is_audited_with_the_api_answer(
    chat: Chat, kube_api: FakeKubeApi
) -> None:
    prompt = await chat.say("alice", "/scale executors 20")
    kube_api.fail(403, method="PATCH", path="/scale")
    reply = await chat.say("alice", prompt.buttons[0].command)
    assert not reply.ok
    text = chat.text(reply)
    assert text.startswith("/scale executors 20 failed; the API server refused it:")
    assert "injected failure 403" in text
    outcomes = [e[2] for e in audit(chat)]
    assert outcomes == ["requested", "confirmed", "failed"]  # audited once, as failed
    assert "not allowed (injected failure 403)" in audit(chat)[-1][3]


# ---- timeline -----------------------------------------------------------------------------


async def test_action_lands_on_the_open_incidents_timeline(
    chat: Chat, kube_api: FakeKubeApi
) -> None:
    declared = await chat.say("alice", "/incident p1 Executors lost")
    assert declared.ok
    await chat.confirmed("alice", "/scale executors 20")
    timeline = chat.text(await chat.say("alice", "/timeline #1"))
    assert "/scale executors 20 by alice: executors 10 → 20" in timeline
    # ... and among the ticket's actions taken (issue 12: the record tells the truth)
    ticket = chat.text(await chat.say("alice", "/incident #1"))
    assert "UTC /scale executors 20 by alice: executors 10 → 20" in ticket
    assert "None recorded yet" not in ticket


async def test_action_in_an_incident_room_and_with_explicit_number(chat: Chat) -> None:
    await chat.say("alice", "/incident p1 One")
    await chat.say("alice", "/incident p2 Two")
    # two open incidents, no room: the action works, no timeline is guessed
    assert (await chat.confirmed("alice", "/scale executors 12")).ok
    room = Room("console", "tty", incident=2)
    prompt = await chat.say("alice", "/restart spark-connect", room=room)
    assert (await chat.say("alice", prompt.buttons[0].command, room=room)).ok
    assert (await chat.confirmed("alice", "/scale #1 executors 14")).ok
    one = chat.text(await chat.say("alice", "/timeline #1"))
    two = chat.text(await chat.say("alice", "/timeline #2"))
    assert "executors 12 → 14" in one and "restart" not in one and "→ 12" not in one
    assert "/restart spark-connect by alice" in two and "executors" not in two
    missing = await chat.say("alice", "/scale #9 executors 15")
    assert not missing.ok and "There is no incident #9." in chat.text(missing)


async def test_action_without_any_incident_still_runs(chat: Chat, kube_api: FakeKubeApi) -> None:
    reply = await chat.confirmed("alice", "/scale executors 20")
    assert reply.ok
    assert len(kube_api.requests_matching("PATCH", SCALE)) == 1


# ---- /restart spark-connect ---------------------------------------------------------------


async def test_restart_sends_what_kubectl_rollout_restart_sends(
    chat: Chat, kube_api: FakeKubeApi, clock: FakeClock
) -> None:
    prompt = await chat.say("alice", "/restart spark-connect")
    assert "Rollout-restart deployment spark-connect in spark (1/1 ready now)" in chat.text(prompt)
    assert writes(kube_api) == []
    done = await chat.say("alice", prompt.buttons[0].command)
    assert done.ok
    stamp = clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"restartedAt {stamp}" in chat.text(done)
    # kubectl rollout restart: one strategic-merge PATCH of the pod template's annotation
    (patch,) = kube_api.requests_matching("PATCH")
    assert patch.path == DEPLOY
    assert patch.content_type == "application/strategic-merge-patch+json"
    assert patch.body == {
        "spec": {
            "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}
        }
    }
    assert writes(kube_api) == [("PATCH", DEPLOY)]
    refused = await chat.say("bob", "/restart spark-connect")
    assert not refused.ok and "operator" in chat.text(refused)
    bad = await chat.say("alice", "/restart everything")
    assert not bad.ok and "Usage: /restart spark-connect" in chat.text(bad)


# ---- /kill --------------------------------------------------------------------------------


async def test_kill_sends_what_kubectl_delete_pod_sends(chat: Chat, kube_api: FakeKubeApi) -> None:
    pod = kube_api.get("v1", "pods", "spark", "etl-nightly-driver")
    assert pod is not None
    prompt = await chat.say("alice", "/kill etl-nightly-driver")
    assert "Delete driver pod etl-nightly-driver in spark (Running, restarts 7)" in chat.text(
        prompt
    )
    assert writes(kube_api) == []
    done = await chat.say("alice", prompt.buttons[0].command)
    assert done.ok and chat.text(done) == "Deleted driver pod etl-nightly-driver in spark."
    (delete,) = kube_api.requests_matching("DELETE")
    assert delete.path == "/api/v1/namespaces/spark/pods/etl-nightly-driver"
    assert delete.body["preconditions"] == {"uid": pod["metadata"]["uid"]}
    assert writes(kube_api) == [("DELETE", "/api/v1/namespaces/spark/pods/etl-nightly-driver")]
    assert kube_api.get("v1", "pods", "spark", "etl-nightly-driver") is None


@pytest.mark.parametrize(
    ("pod", "answer"),
    [
        ("nope", "There is no pod nope in namespace spark."),
        ("spark-connect-executor-0", "is not a Spark driver (spark-role: executor)"),
        ("postgres-0", "is not one of the platform's pods (app.kubernetes.io/part-of=spark-k8s)"),
        ("../nodes", "is not a valid Kubernetes object name"),
    ],
)
async def test_kill_refuses_what_is_not_a_platform_driver(
    chat: Chat, kube_api: FakeKubeApi, pod: str, answer: str
) -> None:
    reply = await chat.say("alice", f"/kill {pod}")
    assert not reply.ok and answer in chat.text(reply)
    assert writes(kube_api) == []
    assert audit(chat)[-1][2] == "rejected"


async def test_kill_of_a_pod_gone_after_confirmation(chat: Chat, kube_api: FakeKubeApi) -> None:
    prompt = await chat.say("alice", "/kill report-driver")
    kube_api.fail(404, method="DELETE")
    reply = await chat.say("alice", prompt.buttons[0].command)
    assert not reply.ok and "pod report-driver" in chat.text(reply)
    assert [e[2] for e in audit(chat)][-2:] == ["confirmed", "failed"]


# ---- /restore -----------------------------------------------------------------------------


async def test_restore_applies_the_named_backup(chat: Chat, kube_api: FakeKubeApi) -> None:
    refused = await chat.say("alice", "/restore restore-manual")  # operator, not admin
    assert not refused.ok and "admin" in chat.text(refused)
    prompt = await chat.say("root", "/restore restore-manual")
    assert "Apply backup restore-manual.yaml to namespace spark" in chat.text(prompt)
    assert "ConfigMap spark-defaults" in chat.text(prompt)
    done = await chat.say("root", prompt.buttons[0].command)
    assert done.ok, chat.text(done)
    assert "ConfigMap spark-defaults created" in chat.text(done)
    (patch,) = kube_api.requests_matching("PATCH")
    assert patch.path == "/api/v1/namespaces/spark/configmaps/spark-defaults"
    assert patch.content_type == "application/apply-patch+yaml"
    assert patch.query["fieldManager"] == "pira" and patch.query["force"] == "true"
    assert "resourceVersion" not in patch.body["metadata"]


@pytest.mark.parametrize(
    ("name", "answer"),
    [
        ("../secret.yaml", "is not a backup name"),
        ("/etc/passwd", "is not a backup name"),
        ("..", "is not a backup name"),
        (".hidden", "is not a backup name"),
        ("link-out", "points outside the backups folder"),
        # the symlink out of the folder is not even listed
        ("missing", "There is no backup 'missing' (available: restore-manual.yaml)."),
    ],
)
async def test_restore_only_from_inside_the_backups_folder(
    chat: Chat, kube_api: FakeKubeApi, name: str, answer: str
) -> None:
    reply = await chat.say("root", f"/restore {name}")
    assert not reply.ok and answer in chat.text(reply), chat.text(reply)
    assert not reply.buttons
    assert writes(kube_api) == []


async def test_restore_with_an_overlong_name_is_answered_and_audited(
    chat: Chat, kube_api: FakeKubeApi
) -> None:
    # Regression: 300 characters raised ENAMETOOLONG out of the router, unaudited.
    name = "b" * 300
    reply = await chat.say("root", f"/restore {name}")
    assert not reply.ok
    assert "A backup name has at most 200 characters, not 300." in chat.text(reply)
    assert writes(kube_api) == []
    [(actor, action, outcome, detail)] = audit(chat)
    assert (actor, outcome) == ("root", "rejected")
    assert action.startswith("/restore bbbb") and "at most 200 characters" in detail
