"""deploy/prometheus and deploy/alertmanager checked by the real tools.

``promtool check rules``, ``promtool test rules`` (rules_test.yaml),
``amtool check-config``; the PrometheusRule's groups must equal rules.yaml's;
and the conventions PIRA relies on: every alert has ``severity: p0..p3``,
a summary and a description, every runbook pattern has an alert with its
``pattern`` label, and the Alertmanager route sends everything to PIRA's
webhook with a bearer token. The one exception is the dead-man's switch:
``Watchdog`` always fires (``severity: none``) and its route, first, repeats it
to PIRA every minute (tests/e2e/test_watchdog_stack.py proves the pace).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.patterns import PATTERNS
from tests.support.promstack import require_binaries

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "deploy" / "prometheus"
RULES = PROM_DIR / "rules.yaml"
RULE_CR = PROM_DIR / "prometheusrule.yaml"
RULES_TEST = PROM_DIR / "rules_test.yaml"
AM_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yaml"
# PIRA's own health: its rules, their PrometheusRule, their unit tests.
SELF_RULES = PROM_DIR / "pira-rules.yaml"
SELF_CR = PROM_DIR / "pira-prometheusrule.yaml"
SELF_TEST = PROM_DIR / "pira-rules_test.yaml"
TOOL_TIMEOUT = 120
WATCHDOG = "Watchdog"


def run(argv: list[str], cwd: Path) -> str:
    done = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(argv)} failed ({done.returncode}):\n{output}"
    return output


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alerts() -> list[dict[str, Any]]:
    return [rule for group in load(RULES)["groups"] for rule in group["rules"] if "alert" in rule]


def unit_tests_of_a_changed_copy(
    folder: Path, rules: Path, tests: Path, before: str, after: str
) -> str:
    """``promtool test rules`` on a copy of ``rules`` with ``before`` made ``after``: it
    must fail (the unit tests have teeth); returns what promtool said."""
    promtool = require_binaries("promtool")["promtool"]
    text = rules.read_text()
    assert before in text
    (folder / rules.name).write_text(text.replace(before, after))
    (folder / tests.name).write_text(tests.read_text())
    done = subprocess.run(
        [promtool, "test", "rules", tests.name],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
        check=False,
    )
    assert done.returncode != 0
    return done.stdout + done.stderr


# --------------------------------------------------------------------------- tools


def test_promtool_check_rules() -> None:
    promtool = require_binaries("promtool")["promtool"]
    output = run([promtool, "check", "rules", str(RULES)], PROM_DIR)
    assert "SUCCESS" in output


def test_promtool_check_rules_of_the_prometheusrule(tmp_path: Path) -> None:
    promtool = require_binaries("promtool")["promtool"]
    extracted = tmp_path / "from-prometheusrule.yaml"
    extracted.write_text(yaml.safe_dump({"groups": load(RULE_CR)["spec"]["groups"]}))
    assert "SUCCESS" in run([promtool, "check", "rules", str(extracted)], tmp_path)


def test_promtool_unit_tests() -> None:
    promtool = require_binaries("promtool")["promtool"]
    output = run([promtool, "test", "rules", RULES_TEST.name], PROM_DIR)
    assert "SUCCESS" in output


def test_promtool_checks_and_unit_tests_of_piras_own_rules(tmp_path: Path) -> None:
    promtool = require_binaries("promtool")["promtool"]
    assert "SUCCESS" in run([promtool, "check", "rules", str(SELF_RULES)], PROM_DIR)
    assert "SUCCESS" in run([promtool, "test", "rules", SELF_TEST.name], PROM_DIR)
    extracted = tmp_path / "from-prometheusrule.yaml"
    extracted.write_text(yaml.safe_dump({"groups": load(SELF_CR)["spec"]["groups"]}))
    assert "SUCCESS" in run([promtool, "check", "rules", str(extracted)], tmp_path)


def test_piras_own_rules_are_tested_with_cases_that_fire_and_that_stay_quiet(
    tmp_path: Path,
) -> None:
    cases = [c for t in load(SELF_TEST)["tests"] for c in t.get("alert_rule_test", [])]
    names = {r["alert"] for g in load(SELF_RULES)["groups"] for r in g["rules"]}
    assert {c["alertname"] for c in cases if c["exp_alerts"]} == names
    assert {c["alertname"] for c in cases if not c["exp_alerts"]} == names
    # With teeth: a no-leader rule that cannot fire fails them.
    failed = unit_tests_of_a_changed_copy(
        tmp_path, SELF_RULES, SELF_TEST, "sum(pira_leader) == 0", "sum(pira_leader) < 0"
    )
    assert "PiraNoLeader" in failed


def test_piras_own_prometheusrule_groups_equal_its_rules() -> None:
    cr = load(SELF_CR)
    assert (cr["apiVersion"], cr["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert cr["spec"]["groups"] == load(SELF_RULES)["groups"]
    for group in cr["spec"]["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["service"] == "pira", rule["alert"]


def test_amtool_check_config() -> None:
    amtool = require_binaries("amtool")["amtool"]
    output = run([amtool, "check-config", str(AM_CONFIG)], AM_CONFIG.parent)
    assert "SUCCESS" in output


# --------------------------------------------------------------------------- structure


def test_prometheusrule_groups_equal_rules_yaml() -> None:
    cr = load(RULE_CR)
    assert cr["apiVersion"] == "monitoring.coreos.com/v1"
    assert cr["kind"] == "PrometheusRule"
    assert cr["metadata"]["name"]
    assert cr["spec"]["groups"] == load(RULES)["groups"]


def test_every_alert_has_severity_summary_description() -> None:
    found = alerts()
    assert len(found) >= 14
    for rule in found:
        name = rule["alert"]
        assert rule["annotations"]["summary"].strip(), name
        assert rule["annotations"]["description"].strip(), name
        if name == WATCHDOG:
            continue  # the one exception, checked below
        assert rule["labels"]["severity"] in {"p0", "p1", "p2", "p3"}, name
        # Deploy files keep real durations: no zero "for" (tests shorten copies).
        assert rule.get("for"), f"{name} has no for:"
        assert not re.fullmatch(r"0+[smhdwy]?", str(rule["for"])), name


def test_runbook_scenarios_and_patterns_are_covered() -> None:
    by_name = {rule["alert"]: rule for rule in alerts()}
    severities = {name: rule["labels"]["severity"] for name, rule in by_name.items()}
    assert severities["SparkAllJobsFailing"] == "p0"
    assert severities["SparkClusterUnavailable"] == "p0"
    assert severities["SparkJobFailureRateHigh"] == "p1"
    assert severities["SparkJobsSeverelySlow"] == "p1"
    assert severities["SparkJobsSlow"] == "p2"
    # Every row of the runbook's "Common Incident Patterns" (bot/patterns.py holds the
    # table; tests/unit/test_patterns.py checks it against the runbook) has an alert
    # with its name as the pattern label, and no label names another row.
    patterns = {rule["labels"].get("pattern") for rule in by_name.values()} - {None}
    assert patterns == {p.name for p in PATTERNS}
    labelled = {name: rule["labels"].get("pattern") for name, rule in by_name.items()}
    assert labelled == {
        "SparkAllJobsFailing": None,
        "SparkClusterUnavailable": None,
        "SparkJobFailureRateHigh": None,
        "SparkPartialClusterFailure": None,
        "SparkJobsSeverelySlow": None,
        "SparkJobsSlow": None,
        "SparkDriverOOMKilled": "Driver OOM",
        "SparkExecutorLoss": "Executor Loss",
        "SparkHighLoad": "High Load",
        "SparkNetworkTimeout": "Network Timeout",
        "SparkConnectDown": "Network Timeout",
        "SparkPVCNotBound": "Storage Issue",
        "SparkVolumeAlmostFull": "Storage Issue",
        WATCHDOG: None,
    }
    # Spark Connect down is P1 as in PIRA's own suggestion (bot/patterns.py: "Spark
    # Connect unavailable"); the other pattern alerts are P2.
    assert severities["SparkConnectDown"] == "p1"
    for name in ("SparkNetworkTimeout", "SparkPVCNotBound", "SparkVolumeAlmostFull"):
        assert severities[name] == "p2", name


def test_the_watchdog_is_the_one_alert_that_always_fires_and_opens_no_incident() -> None:
    exceptions = [
        rule for rule in alerts() if rule["labels"].get("severity") not in {"p0", "p1", "p2", "p3"}
    ]
    assert [rule["alert"] for rule in exceptions] == [WATCHDOG]
    (watchdog,) = exceptions
    assert watchdog["expr"] == "vector(1)"
    assert watchdog["labels"] == {"severity": "none"}
    assert "for" not in watchdog  # fires from the first evaluation
    assert "dead-man's switch" in watchdog["annotations"]["description"]
    assert "Monitoring is blind" in watchdog["annotations"]["description"]


def test_rules_test_covers_every_alert() -> None:
    cases = [c for t in load(RULES_TEST)["tests"] for c in t.get("alert_rule_test", [])]
    names = {rule["alert"] for rule in alerts()}
    # Each alert fires in a case, and each but the Watchdog stays quiet in another.
    assert {c["alertname"] for c in cases if c.get("exp_alerts")} == names
    assert {c["alertname"] for c in cases if not c.get("exp_alerts")} == names - {WATCHDOG}
    # The Watchdog fires with no data at all, from the first evaluation.
    (no_data,) = [t for t in load(RULES_TEST)["tests"] if not t.get("input_series")]
    first = [c for c in no_data["alert_rule_test"] if c["alertname"] == WATCHDOG]
    assert first and first[0]["eval_time"] == "0m" and first[0]["exp_alerts"]


PER_CLAIM = "by (namespace, persistentvolumeclaim) ("


@pytest.mark.parametrize(
    ("alert", "before", "after"),
    [
        ("SparkNetworkTimeout", '{job="blackbox"} == 0', '{job="blackbox"} < 0'),
        ("SparkConnectDown", '"spark-connect"}) > 0', '"spark-connect"}) >= 0'),
        ("SparkPVCNotBound", 'phase=~"Pending|Lost"', 'phase=~"Pending"'),
        ("SparkVolumeAlmostFull", ") < 0.05", ") < 0.02"),
        # One volume seen by two kubelets counts once (min), not twice (sum).
        ("SparkVolumeAlmostFull", f"min {PER_CLAIM}", f"sum {PER_CLAIM}"),
        (WATCHDOG, "expr: vector(1)", "expr: vector(1) > 1"),
    ],
)  # fmt: skip
def test_promtool_unit_tests_catch_a_broken_pattern_or_watchdog_rule(
    tmp_path: Path, alert: str, before: str, after: str
) -> None:
    failed = unit_tests_of_a_changed_copy(tmp_path, RULES, RULES_TEST, before, after)
    assert f"alertname: {alert}," in failed


def test_alertmanager_routes_to_pira_with_bearer_token() -> None:
    config = load(AM_CONFIG)
    route = config["route"]
    assert route["receiver"] == "pira"
    assert route["group_by"] == ["alertname", "namespace"]
    children = route.get("routes", [])
    # The Watchdog first (below); then PIRA's own alerts, to a receiver that does not
    # go through PIRA.
    assert children[0]["matchers"] == [f'alertname = "{WATCHDOG}"']
    assert children[1]["matchers"] == ['service = "pira"']
    assert children[1]["receiver"] == "pira-fallback"
    (fallback,) = [r for r in config["receivers"] if r["name"] == "pira-fallback"]
    assert "pira:8080" not in yaml.safe_dump(fallback)
    for child in children[:1] + children[2:]:
        assert child["receiver"] == "pira"
    (receiver,) = [r for r in config["receivers"] if r["name"] == "pira"]
    (hook,) = receiver["webhook_configs"]
    assert hook["url"] == "http://pira:8080/alertmanager"
    assert hook["send_resolved"] is True
    auth = hook["http_config"]["authorization"]
    assert auth["type"] == "Bearer"
    assert auth["credentials_file"].startswith("/")
    assert "credentials" not in auth  # the token never lives in the file


def test_the_watchdog_route_comes_first_and_repeats_every_minute() -> None:
    config = load(AM_CONFIG)
    first = config["route"]["routes"][0]
    assert first == {
        "receiver": "pira",
        "matchers": [f'alertname = "{WATCHDOG}"'],
        "group_by": ["alertname"],
        "group_wait": "0s",
        "group_interval": "1m",
        "repeat_interval": "50s",
    }
    # Nothing inhibits it: every inhibit rule targets named alerts, none the Watchdog.
    for rule in config.get("inhibit_rules", []):
        targets = [m for m in rule["target_matchers"] if m.startswith("alertname =")]
        assert targets and all(WATCHDOG not in m for m in targets), rule
    # And Alertmanager itself resolves the Watchdog's labels to that route.
    amtool = require_binaries("amtool")["amtool"]
    output = run(
        [
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={AM_CONFIG}",
            "--tree",
            f"alertname={WATCHDOG}",
            "severity=none",
        ],
        AM_CONFIG.parent,
    )
    assert f'{{alertname="{WATCHDOG}"}}  receiver: pira' in output
    assert 'service="pira"' not in output


@pytest.mark.parametrize(
    "broken",
    [
        "route:\n  receiver: nobody\nreceivers:\n  - name: pira\n",
        "route: {receiver: pira, group_wait: soon}\nreceivers:\n  - name: pira\n",
    ],
)
def test_amtool_rejects_a_broken_config(tmp_path: Path, broken: str) -> None:
    # The check above means something only if amtool does fail on bad input.
    amtool = require_binaries("amtool")["amtool"]
    path = tmp_path / "bad.yaml"
    path.write_text(broken)
    done = subprocess.run(
        [amtool, "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
        check=False,
    )
    assert done.returncode != 0


def test_promtool_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    # rules_test.yaml has teeth: a P1 threshold moved from 50% to 70% fails it.
    failed = unit_tests_of_a_changed_copy(
        tmp_path,
        RULES,
        RULES_TEST,
        "spark:job_failure_ratio:5m > 0.5",
        "spark:job_failure_ratio:5m > 0.7",
    )
    assert "SparkJobFailureRateHigh" in failed


def test_missing_binaries_skip_locally_and_fail_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-tool-pira not installed"):
        require_binaries("no-such-tool-pira")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and no-such-tool-pira"):
        require_binaries("no-such-tool-pira")
