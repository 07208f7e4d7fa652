"""Root-cause categories: the runbook's patterns matched from the root-cause text."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.domain.categories import CATEGORIES, categorize, categorize_seen, parse_category
from bot.domain.incident import InvalidInput

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules.yaml"


def pattern_alerts() -> list[dict[str, Any]]:
    """The shipped alerts that carry a runbook ``pattern`` label."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [r for g in groups for r in g["rules"] if "pattern" in r.get("labels", {})]


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("driver OOM on the nightly job", "driver-oom"),
        ("Driver pod OOMKilled", "driver-oom"),
        ("java.lang.OutOfMemoryError: Java heap space", "driver-oom"),
        ("ran out of memory, and the load was high", "driver-oom"),  # the first pattern wins
        ("executors lost when the spot nodes were reclaimed", "executor-loss"),
        ("node pool B exhausted", "executor-loss"),
        ("connection refused by the metastore", "network-timeout"),
        ("DNS resolution timed out", "network-timeout"),
        ("no space left on device on the shuffle PVC", "storage-issue"),
        ("CPU at 98% on every node, slow jobs", "high-load"),
        ("a bad config deploy", "other"),
        ("", "other"),
    ],
)
def test_the_root_cause_text_names_its_pattern(text: str, category: str) -> None:
    assert categorize(text) == category


@pytest.mark.parametrize(
    ("given", "key"),
    [
        ("driver-oom", "driver-oom"),
        ("Driver OOM", "driver-oom"),
        ("executor_loss", "executor-loss"),
        ("oom", "driver-oom"),
        ("OTHER", "other"),
        (" High Load ", "high-load"),
    ],
)
def test_a_category_is_named_as_a_person_would(given: str, key: str) -> None:
    assert parse_category(given) == key and key in CATEGORIES


def test_an_unknown_category_is_a_short_error_naming_the_choices() -> None:
    with pytest.raises(InvalidInput, match="not a category; one of: driver-oom"):
        parse_category("cosmic rays")


def test_every_category_has_an_alert_with_its_pattern_label() -> None:
    labels = {rule["labels"]["pattern"] for rule in pattern_alerts()}
    assert labels == {name for key, name in CATEGORIES.items() if key != "other"}


@pytest.mark.parametrize("rule", pattern_alerts(), ids=lambda rule: rule["alert"])
def test_an_alert_of_a_runbook_pattern_lands_in_that_category(rule: dict[str, Any]) -> None:
    # What PIRA sees: the alertname, and the summary as the incident's title (its
    # template fields filled in).
    title = re.sub(r"\{\{[^}]*\}\}", "spark", rule["annotations"]["summary"])
    assert categorize_seen(title, rule["alert"]) == parse_category(rule["labels"]["pattern"])


@pytest.mark.parametrize(
    ("title", "alertname", "category"),
    [
        ("Spark Connect down in spark: no replica available, connection refused",
         "SparkConnectDown", "network-timeout"),  # from the title
        ("PVC spark-data Pending in spark", "SparkPVCNotBound", "storage-issue"),
        ("Volume spark-shuffle 3% free in spark", "SparkVolumeAlmostFull", "storage-issue"),
        ("Network timeout: metastore:9083 does not answer", "SparkNetworkTimeout",
         "network-timeout"),
        ("Spark jobs 3.0x slower than baseline in spark", "SparkJobsSlow", "other"),
    ],
)  # fmt: skip
def test_what_an_alert_saw_is_categorized_by_its_alertname_then_its_title(
    title: str, alertname: str, category: str
) -> None:
    assert categorize_seen(title, alertname) == category
