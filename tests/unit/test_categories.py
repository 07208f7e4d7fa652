"""Root-cause categories: the runbook's patterns matched from the root-cause text."""

from __future__ import annotations

import pytest

from bot.domain.categories import CATEGORIES, categorize, parse_category
from bot.domain.incident import InvalidInput


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
