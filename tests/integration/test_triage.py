"""/health's triage beyond pods and workloads (issue 17, part 2), through the router against the
fake Kubernetes API: Warning events, PersistentVolumeClaims (a Pending one matches the
runbook's Storage pattern), what changed in the last 24 h, and the configured links."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from bot.app import App
from bot.clock import FakeClock
from bot.settings import Config
from tests.fakes.kube_api import FakeKubeApi
from tests.support.cluster_app import PEOPLE, Chat, build_app

# kube_api, clock and chat (the seeded platform, default configuration):
# tests/integration/conftest.py


async def health(chat: Chat) -> str:
    reply = await chat.say("bob", "/health")
    assert reply.ok
    return chat.text(reply)


async def test_a_pending_pvc_shows_in_health_and_matches_the_storage_pattern(
    chat: Chat, kube_api: FakeKubeApi
) -> None:
    kube_api.set_logs("spark-connect-executor-0", "INFO Executor: all good\n")  # no log evidence
    before = await health(chat)
    assert "**Volume claims:** 1/1 Bound" in before
    assert "Storage Issue" not in before  # a Bound claim is no evidence
    kube_api.add_pvc("spark-shuffle", phase="Pending")
    kube_api.add_pvc("spark-history", phase="Lost")
    text = await health(chat)
    assert (
        "**Volume claims:** 1/3 Bound; not bound: spark-history Lost (10Gi, standard), "
        "spark-shuffle Pending (10Gi, standard)"
    ) in text
    assert (
        "**Storage Issue**: PersistentVolumeClaim(s) not bound: spark-history Lost, "
        "spark-shuffle Pending\n  Mitigation: Check PVC, restore from backup."
    ) in text
    assert "runbook pattern Storage Issue matched" in text


async def test_health_shows_the_namespaces_warning_events_of_the_last_hour(
    chat: Chat, kube_api: FakeKubeApi, clock: FakeClock
) -> None:
    now = clock.now()
    scheduling = "0/2 nodes are available: 2 Insufficient memory."
    kube_api.add_event("FailedScheduling", scheduling, name="spark-connect-executor-9",
                       count=3, at=now - timedelta(minutes=2))  # fmt: skip
    kube_api.add_event("FailedScheduling", scheduling, name="spark-connect-executor-10",
                       count=2, at=now - timedelta(minutes=5))  # fmt: skip
    kube_api.add_event("Evicted", "The node was low on resource: memory.",
                       name="spark-connect-executor-4", at=now - timedelta(minutes=7))  # fmt: skip
    quota = 'pods "etl-driver" is forbidden: exceeded quota: spark-quota'
    kube_api.add_event("FailedCreate", quota, kind="Job", name="etl", at=now)
    kube_api.add_event("OOMKilling", "Memory cgroup out of memory: Killed process 4242 (java)",
                       kind="Node", name="node-1", at=now - timedelta(minutes=1))  # fmt: skip
    kube_api.add_event("FailedMount", "old news", name="x", at=now - timedelta(hours=2))
    kube_api.add_event("Pulled", "image pulled", name="y", type_="Normal", at=now)
    kube_api.clear_requests()
    text = await health(chat)
    assert "**Warning events (1 h):**\n" in text
    # grouped by reason, the most frequent first, with the newest as example
    assert (
        "- FailedScheduling ×5: Pod spark-connect-executor-9: 0/2 nodes are available: "
        "2 Insufficient memory.\n- BackOff ×1:"
    ) in text
    assert "- Evicted ×1: Pod spark-connect-executor-4: The node was low on resource" in text
    assert f"- FailedCreate ×1: Job etl: {quota}" in text
    assert "- OOMKilling ×1: Node node-1: Memory cgroup out of memory" in text
    assert "old news" not in text  # last seen two hours ago
    assert "Pulled" not in text  # a Normal event
    assert "FailedMount" not in text
    (listing,) = kube_api.requests_matching("GET", r"/namespaces/spark/events$")
    assert listing.query["fieldSelector"] == "type=Warning"  # Normal events never travel


async def test_health_answers_what_changed_in_the_last_24_hours(
    chat: Chat, kube_api: FakeKubeApi, clock: FakeClock
) -> None:
    now = clock.now()
    days = [now - timedelta(days=3), now - timedelta(days=2), now - timedelta(hours=2)]
    images = ["apache/spark:3.5.0", "apache/spark:3.5.1", "apache/spark:3.5.2"]
    kube_api.add_rollout_history("spark-connect", images, at=days)
    kube_api.add_statefulset_history(
        "spark-connect-executor", images[:2], at=[days[0], now - timedelta(minutes=30)]
    )
    kube_api.add_configmap("spark-connect-conf", {"a": "1"}, created_at=now - timedelta(days=9))
    kube_api.add_configmap(
        "spark-defaults", {"spark.driver.memory": "8g"}, changed_at=now - timedelta(hours=3)
    )
    kube_api.add_configmap(
        "spark-old", {"x": "1"}, changed_at=now - timedelta(hours=30), manager="helm"
    )
    text = await health(chat)
    assert (
        "**Changed in the last 24 h:**\n"
        "- 2026-11-30 08:30 UTC statefulset spark-connect-executor revision 2: "
        "spark-connect-executor=apache/spark:3.5.0 → spark-connect-executor=apache/spark:3.5.1\n"
        "- 2026-11-30 07:00 UTC deployment spark-connect revision 3: "
        "spark-connect=apache/spark:3.5.1 → spark-connect=apache/spark:3.5.2\n"
        "- 2026-11-30 06:00 UTC configmap spark-defaults changed by kubectl-edit\n"
    ) in text
    assert "revision 2: spark-connect=" not in text  # two days ago
    assert "spark-old" not in text and "spark-connect-conf" not in text


async def test_health_shows_the_configured_links_and_a_part_it_may_not_read(
    make_app: Callable[..., App], kube_api: FakeKubeApi, tmp_path: Path, clock: FakeClock
) -> None:
    links = {"spark_ui": "https://spark.example.com", "grafana": "https://grafana.example.com/d/x"}
    config = Config.model_validate({"people": PEOPLE, "links": links})
    app = build_app(make_app, kube_api, tmp_path, config=config, clock=clock)
    await app.start(scheduler=False)
    try:
        kube_api.forbid("list", "events")
        text = await health(Chat(app))
    finally:
        await app.stop()
    assert (
        "**Links:** spark_ui: https://spark.example.com  |  "
        "grafana: https://grafana.example.com/d/x"
    ) in text
    assert '**Warning events:** unknown (list events: not allowed (events is forbidden: User "' in (
        text
    )
    assert "**Volume claims:** 1/1 Bound" in text  # the rest is still there
    assert "Not checked (no answer): events" in text
