"""The runbook's patterns and the severity suggestion, rule by rule (bot/patterns.py)."""

from __future__ import annotations

import math

import pytest

from bot.integrations.kube import DeploymentStatus, ExecutorScale, LogLine, NodeInfo, PodInfo
from bot.patterns import PATTERNS, Facts, find_pattern, match, scale_up_target, suggest


def pod(name: str, phase: str = "Running", role: str | None = "driver", **kw: object) -> PodInfo:
    fields: dict[str, object] = {
        "ready": phase == "Running",
        "restarts": 0,
        "waiting_reason": None,
        "last_terminated_reason": None,
        "reason": None,
        "node": "node-1",
        "containers": ("c",),
    }
    fields.update(kw)
    return PodInfo(name=name, phase=phase, role=role, **fields)  # type: ignore[arg-type]


def node(name: str, ready: bool = True) -> NodeInfo:
    return NodeInfo(name, ready, "Ready" if ready else "NotReady", False)


def names(facts: Facts) -> list[str]:
    return [m.pattern.name for m in match(facts)]


def test_the_runbook_table_is_complete() -> None:
    assert [p.name for p in PATTERNS] == [
        "Driver OOM", "Executor Loss", "Network Timeout", "Storage Issue", "High Load"
    ]  # fmt: skip
    assert {p.name: p.action for p in PATTERNS} == {
        "Driver OOM": None,
        "Executor Loss": "scale_up",
        "Network Timeout": "restart_connect",
        "Storage Issue": "restore",
        "High Load": "scale_up",
    }


@pytest.mark.parametrize(
    ("text", "key"),
    [("driver-oom", "driver-oom"), ("Driver OOM", "driver-oom"), ("oom", "driver-oom"),
     ("HIGH_LOAD", "high-load"), ("exec", "executor-loss"), ("storage", "storage"),
     ("network timeout", "network-timeout"), ("nothing", None), ("o", None)],
)  # fmt: skip
def test_find_pattern(text: str, key: str | None) -> None:
    found = find_pattern(text)
    assert (found.key if found else None) == key


def test_nothing_known_matches_nothing_and_suggests_nothing() -> None:
    facts = Facts()
    assert match(facts) == []
    assert suggest(facts, []).severity is None


def test_metric_detections_use_the_runbook_thresholds() -> None:
    assert names(Facts(metrics={"driver_oom_kills": 2.0})) == ["Driver OOM"]
    assert names(Facts(metrics={"driver_oom_kills": 0.0})) == []
    assert names(Facts(metrics={"executor_removals": 1.0})) == ["Executor Loss"]
    assert names(Facts(metrics={"cpu_usage_ratio": 0.95})) == ["High Load"]
    assert names(Facts(metrics={"cpu_usage_ratio": 0.9})) == []  # "> 90%"
    assert names(Facts(metrics={"cpu_usage_ratio": math.nan, "driver_oom_kills": None})) == []


def test_cluster_detections() -> None:
    facts = Facts(
        executors=ExecutorScale("sts", replicas=10, ready_replicas=7, current_replicas=10),
        connect=DeploymentStatus("sc", desired=2, ready=1, updated=2, restarted_at=None),
        error_lines=[
            LogLine("p1", "c", "WARN x: Connection refused: host/10.0.0.1:7077"),
            LogLine("p2", "c", "ERROR java.io.IOException: No space left on device"),
            LogLine("p3", "c", "ERROR NullPointerException"),
        ],
        pods=[pod("d1", "Running", last_terminated_reason="OOMKilled")],
    )
    found = {m.pattern.name: m.evidence for m in match(facts)}
    assert found["Executor Loss"] == ("executors ready 7 of 10 desired",)
    assert found["Network Timeout"][0].startswith("1 connection log line(s), e.g. p1: WARN x")
    assert found["Network Timeout"][1] == "Spark Connect ready 1 of 2"
    assert found["Storage Issue"][0].startswith("1 storage log line(s), e.g. p2:")
    assert found["Driver OOM"] == ("driver pod(s) killed for memory: d1",)


@pytest.mark.parametrize(
    ("facts", "severity", "reason"),
    [
        (Facts(metrics={"job_failure_ratio": 1.0}), "P0", "all Spark jobs failing: 100%"),
        (Facts(metrics={"job_failure_ratio": 0.6}), "P1", "multiple job failures: 60%"),
        (Facts(metrics={"job_failure_ratio": 0.5}), "P2", "some jobs failing: 50%"),
        (Facts(nodes=[node("a", False), node("b", False)]), "P0", "cluster unavailable"),
        (Facts(nodes=[node("a"), node("b", False)]), "P1", "partial cluster failure: b"),
        (Facts(pods=[pod("a", "Failed"), pod("b", "Failed")]), "P0", "all Spark jobs failing"),
        (Facts(pods=[pod("a", "Failed"), pod("b", "Failed"), pod("c")]), "P1", "2 of 3"),
        (Facts(pods=[pod("a", "Failed"), pod("b")]), "P2", "jobs failing: 1 of 2"),
        (Facts(pods=[pod("a", waiting_reason="CrashLoopBackOff"), pod("b"), pod("c")]), "P2",
         "crash-looping"),
        (Facts(connect=DeploymentStatus("sc", 1, 0, 0, None)), "P1", "Spark Connect unavailable"),
        (Facts(slowdown=6.0), "P1", "severe performance degradation: jobs 6.0x slower"),
        (Facts(slowdown=3.0), "P2", "moderate performance degradation"),
        (Facts(slowdown=1.5), None, ""),
        (Facts(pods=[pod("e", "Pending", role="executor")]), "P3", "1 pod(s) Pending (e)"),
        (Facts(pods=[pod("a")], nodes=[node("a")]), None, ""),
    ],
)  # fmt: skip
def test_severity_from_the_runbook_definitions(
    facts: Facts, severity: str | None, reason: str
) -> None:
    suggestion = suggest(facts, match(facts))
    assert suggestion.severity == severity
    if severity:
        assert any(reason in r for r in suggestion.reasons), suggestion.reasons


def test_highest_severity_wins_and_the_rest_is_kept() -> None:
    facts = Facts(
        metrics={"job_failure_ratio": 0.7, "driver_oom_kills": 3.0},
        pods=[pod("e", "Pending", role="executor")],
    )
    suggestion = suggest(facts, match(facts))
    assert suggestion.severity == "P1"
    assert suggestion.reasons == ("multiple job failures: 70% of jobs failed (> 50%)",)
    assert suggestion.also == (
        "runbook pattern Driver OOM matched (evidence above)",
        "1 pod(s) Pending (e)",
    )


@pytest.mark.parametrize(
    ("current", "low", "high", "target"),
    [(10, 1, 50, 15), (0, 1, 50, 1), (1, 1, 50, 2), (40, 1, 50, 50), (49, 1, 50, 50),
     (50, 1, 50, None), (60, 1, 50, None), (0, 5, 50, 5)],
)  # fmt: skip
def test_scale_up_target_stays_within_bounds(
    current: int, low: int, high: int, target: int | None
) -> None:
    assert scale_up_target(current, low, high) == target
