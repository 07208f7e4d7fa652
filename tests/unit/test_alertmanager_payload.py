"""Alertmanager webhook payloads: parsing, validation and the pure helpers.

Fixtures under tests/fixtures/alertmanager/:
* am-0.25-driver-oom-{firing,resolved}.json — captured from the real
  Alertmanager 0.25 (Debian) driven by a real Prometheus evaluating
  deploy/prometheus/rules.yaml's SparkDriverOOMKilled (the capture ran a
  test copy with a 5s window so that it resolved quickly; see generatorURL);
* mixed-group-critical.json — hand-written: resolved + firing alerts,
  nanosecond and non-UTC timestamps, unknown fields, truncated alerts;
* no-severity-no-summary.json — hand-written: no severity label, no summary.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.integrations.alertmanager import (
    AlertmanagerPayload,
    PayloadError,
    SeverityMapping,
    group_severity,
    group_started_at,
    group_title,
    parse_payload,
    severity_from_labels,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "alertmanager"


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def doc(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(raw(name))
    return data


def reason_of(data: Any) -> str:
    body = data if isinstance(data, bytes | str) else json.dumps(data)
    with pytest.raises(PayloadError) as info:
        parse_payload(body)
    assert str(info.value) == info.value.reason
    assert len(info.value.reason) <= 200
    return info.value.reason


# --------------------------------------------------------------------------- real captures


def test_real_firing_payload() -> None:
    payload = parse_payload(raw("am-0.25-driver-oom-firing.json"))
    assert isinstance(payload, AlertmanagerPayload)
    assert payload.version == "4"
    assert payload.receiver == "pira"
    assert payload.status == "firing"
    assert payload.group_key == '{}:{alertname="SparkDriverOOMKilled", namespace="spark"}'
    assert payload.group_labels == {"alertname": "SparkDriverOOMKilled", "namespace": "spark"}
    assert payload.common_labels["pattern"] == "Driver OOM"
    assert payload.external_url.startswith("http://127.0.0.1:")
    assert payload.truncated_alerts == 0
    (alert,) = payload.alerts
    assert alert.firing and alert.status == "firing"
    assert alert.alertname == "SparkDriverOOMKilled"
    assert alert.summary == "Spark driver pod OOM-killed in spark"
    assert alert.ends_at is None  # "0001-01-01T00:00:00Z"
    assert alert.starts_at is not None and alert.starts_at.tzinfo is not None
    assert alert.fingerprint == "e275c15db4859951"
    assert alert.generator_url.startswith("http://127.0.0.1:")
    assert payload.firing_alerts == [alert]
    assert payload.resolved_alerts == []

    assert group_title(payload) == "Spark driver pod OOM-killed in spark"
    assert group_severity(payload) == "P2"
    assert group_started_at(payload) == alert.starts_at


def test_real_resolved_payload_keeps_its_end_time() -> None:
    firing = parse_payload(raw("am-0.25-driver-oom-firing.json"))
    payload = parse_payload(raw("am-0.25-driver-oom-resolved.json"))
    assert payload.status == "resolved"
    (alert,) = payload.alerts
    assert not alert.firing
    assert alert.starts_at is not None
    assert alert.ends_at is not None and alert.ends_at > alert.starts_at
    # The same alert and group as the firing notification: dedup keys match.
    assert alert.fingerprint == firing.alerts[0].fingerprint
    assert payload.group_key == firing.group_key
    assert payload.firing_alerts == []
    # No firing alert: the title comes from the first (resolved) one.
    assert group_title(payload) == "Spark driver pod OOM-killed in spark"


# --------------------------------------------------------------------------- hand-written


def test_mixed_group() -> None:
    payload = parse_payload(raw("mixed-group-critical.json"))
    assert payload.truncated_alerts == 2
    assert [a.status for a in payload.alerts] == ["resolved", "firing", "firing"]
    resolved, exec7, driver = payload.alerts
    # Nanoseconds are cut to microseconds; offsets are kept.
    assert resolved.starts_at == datetime(2026, 11, 29, 8, 40, 12, tzinfo=UTC)
    assert resolved.starts_at.utcoffset() == timedelta(hours=1)
    assert resolved.ends_at == datetime(2026, 11, 29, 9, 58, 12, 500000, tzinfo=UTC)
    assert exec7.starts_at == datetime(2026, 11, 29, 9, 51, 3, 123456, tzinfo=UTC)
    assert exec7.ends_at is None and driver.ends_at is None
    assert exec7.annotations == {}

    # First *firing* alert has no summary → its alertname.
    assert group_title(payload) == "KubePodCrashLooping"
    # Most severe firing alert: "Critical" → P0 (the resolved warning does not count).
    assert group_severity(payload) == "P0"
    # Earliest start over all alerts, whatever their offsets.
    assert group_started_at(payload) == resolved.starts_at
    # Unknown fields are ignored, not kept.
    assert "someFutureField" not in payload.model_dump(by_alias=True)


def test_no_severity_label_and_no_summary() -> None:
    payload = parse_payload(raw("no-severity-no-summary.json"))
    assert group_title(payload) == "SparkConnectSlowQueries"
    assert group_severity(payload) == "P2"
    assert group_severity(payload, SeverityMapping(default="P3")) == "P3"
    assert payload.alerts[0].generator_url == ""


def test_parse_accepts_str_and_bytes() -> None:
    text = raw("no-severity-no-summary.json").decode()
    assert parse_payload(text) == parse_payload(text.encode())


def test_models_are_immutable() -> None:
    payload = parse_payload(raw("am-0.25-driver-oom-firing.json"))
    with pytest.raises(ValueError):
        payload.status = "resolved"


# --------------------------------------------------------------------------- rejections


def test_malformed_json() -> None:
    assert reason_of(b'{"version": "4",').startswith("malformed JSON")
    assert reason_of(b"\xff\xfe garbage").startswith("malformed JSON")
    assert reason_of(b"").startswith("malformed JSON")


def test_not_an_object() -> None:
    assert reason_of(b"[1, 2]") == "payload must be a JSON object"
    assert reason_of(b'"4"') == "payload must be a JSON object"


@pytest.mark.parametrize("version", ["3", 4, "", None, "4.0"])
def test_wrong_version(version: Any) -> None:
    data = doc("no-severity-no-summary.json")
    data["version"] = version
    reason = reason_of(data)
    assert reason.startswith("unsupported payload version")
    assert 'expected "4"' in reason


def test_missing_version() -> None:
    data = doc("no-severity-no-summary.json")
    del data["version"]
    assert reason_of(data) == 'missing field version (expected "4")'


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("groupKey",), "missing field groupKey"),
        (("alerts",), "missing field alerts"),
        (("status",), "missing field status"),
        (("receiver",), "missing field receiver"),
        (("alerts", 0, "startsAt"), "missing field alerts[0].startsAt"),
        (("alerts", 0, "fingerprint"), "missing field alerts[0].fingerprint"),
        (("alerts", 0, "labels"), "missing field alerts[0].labels"),
        (("alerts", 0, "status"), "missing field alerts[0].status"),
    ],
)
def test_missing_required_field(path: tuple[Any, ...], expected: str) -> None:
    data = doc("mixed-group-critical.json")
    target: Any = data
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    assert reason_of(data) == expected


@pytest.mark.parametrize(
    ("mutate", "expected_start"),
    [
        (lambda d: d.update(alerts={"a": 1}), "invalid field alerts:"),
        (lambda d: d.update(groupKey=""), "invalid field groupKey:"),
        (lambda d: d.update(status="pending"), "invalid field status:"),
        (
            lambda d: d["alerts"][1].update(startsAt="yesterday"),
            "invalid field alerts[1].startsAt:",
        ),
        (
            lambda d: d["alerts"][1].update(startsAt="2026-11-29T09:51:03"),
            "invalid field alerts[1].startsAt:",
        ),
        (lambda d: d["alerts"][1].update(endsAt="soon"), "invalid field alerts[1].endsAt:"),
        (lambda d: d["alerts"][2]["labels"].update(pod=3), "invalid field alerts[2].labels.pod:"),
        (lambda d: d.update(truncatedAlerts=-1), "invalid field truncatedAlerts:"),
    ],
)
def test_invalid_field(mutate: Any, expected_start: str) -> None:
    data = doc("mixed-group-critical.json")
    mutate(data)
    assert reason_of(data).startswith(expected_start)


def test_several_errors_are_counted() -> None:
    data = doc("mixed-group-critical.json")
    del data["groupKey"]
    del data["receiver"]
    assert reason_of(data) == "missing field groupKey (and 1 more)"


def test_optional_fields_default() -> None:
    data = {
        "version": "4",
        "groupKey": "{}:{}",
        "receiver": "pira",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "X"},
                "startsAt": "2026-11-29T10:00:00+02:00",
                "fingerprint": "abc",
            }
        ],
    }
    payload = parse_payload(json.dumps(data))
    assert payload.group_labels == {} and payload.common_annotations == {}
    assert payload.truncated_alerts == 0 and payload.external_url == ""
    assert payload.alerts[0].ends_at is None
    starts_at = payload.alerts[0].starts_at
    assert starts_at is not None and starts_at.utcoffset() == timedelta(hours=2)
    assert group_started_at(payload) == datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


def test_empty_group() -> None:
    data = doc("no-severity-no-summary.json")
    data["alerts"] = []
    data["commonLabels"] = {"severity": "P1"}
    payload = parse_payload(json.dumps(data))
    assert group_started_at(payload) is None
    assert group_title(payload) == "SparkConnectSlowQueries"  # from groupLabels
    assert group_severity(payload) == "P1"  # from commonLabels


# --------------------------------------------------------------------------- severity


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("p0", "P0"),
        ("P1", "P1"),
        (" p2 ", "P2"),
        ("p3", "P3"),
        ("critical", "P0"),
        ("CRITICAL", "P0"),
        ("page", "P0"),
        ("high", "P1"),
        ("error", "P1"),
        ("warning", "P2"),
        ("Warning", "P2"),
        ("info", "P3"),
        ("none", "P3"),
        ("p4", "P2"),
        ("bananas", "P2"),
        ("", "P2"),
    ],
)
def test_severity_default_mapping(value: str, expected: str) -> None:
    assert severity_from_labels({"severity": value}) == expected


def test_severity_missing_label_uses_default() -> None:
    assert severity_from_labels({"alertname": "X"}) == "P2"
    assert severity_from_labels({}, SeverityMapping(default="P3")) == "P3"


def test_severity_configurable_mapping() -> None:
    mapping = SeverityMapping.model_validate(
        {"label": "priority", "aliases": {"Sev1": "P0", "SEV2": "P1"}, "default": "P3"}
    )
    assert severity_from_labels({"priority": "sev1"}, mapping) == "P0"
    assert severity_from_labels({"priority": "Sev2"}, mapping) == "P1"
    assert severity_from_labels({"priority": "p1"}, mapping) == "P1"  # p0..p3 always work
    # Only the configured label counts, and the defaults' aliases are replaced.
    assert severity_from_labels({"severity": "critical"}, mapping) == "P3"
    assert severity_from_labels({"priority": "critical"}, mapping) == "P3"


def test_severity_mapping_rejects_unknown_severity() -> None:
    with pytest.raises(ValueError):
        SeverityMapping.model_validate({"aliases": {"critical": "P5"}})
    with pytest.raises(ValueError):
        SeverityMapping.model_validate({"default": "high"})


def test_group_severity_takes_the_most_severe_firing_alert() -> None:
    data = doc("mixed-group-critical.json")
    data["alerts"][2]["labels"]["severity"] = "p3"
    data["alerts"][0]["labels"]["severity"] = "p0"  # resolved: does not count
    payload = parse_payload(json.dumps(data))
    assert group_severity(payload) == "P2"  # the firing warning


def test_title_prefers_first_firing_summary() -> None:
    data = doc("mixed-group-critical.json")
    data["alerts"][1]["annotations"]["summary"] = "  Executor pod crash looping  "
    assert group_title(parse_payload(json.dumps(data))) == "Executor pod crash looping"


def test_started_at_compares_across_offsets() -> None:
    data = doc("no-severity-no-summary.json")
    first = dict(data["alerts"][0])
    second = {**first, "fingerprint": "x2", "startsAt": "2026-11-29T09:30:00+02:00"}
    data["alerts"] = [first, second]
    started = group_started_at(parse_payload(json.dumps(data)))
    assert started == datetime(2026, 11, 29, 7, 30, tzinfo=UTC)
    assert started is not None and started.utcoffset() == timedelta(hours=2)
