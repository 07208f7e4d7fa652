"""The runbook's targets ("Incident Metrics"): what the report and the postmortem
measure detection, resolution, counts and repeats against."""

from __future__ import annotations

from datetime import timedelta

# Mean time to detect: start → detection.
MTTD_TARGET = timedelta(minutes=5)
# Mean time to resolve, detection → resolution, per severity the runbook gives one for.
MTTR_TARGETS: dict[str, timedelta] = {"P0": timedelta(minutes=30), "P1": timedelta(hours=2)}
# At most this many incidents a month (strictly fewer is on target).
COUNT_TARGETS: dict[str, int] = {"P0": 5, "P1": 10}
# Repeat incidents (same root-cause category within REPEAT_WINDOW): below this share.
REPEAT_TARGET = 0.10
REPEAT_WINDOW = timedelta(days=30)
