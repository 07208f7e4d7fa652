"""The report's arithmetic (bot/report.py) on incidents written out by hand: the edge
cases of issue 12 (no incidents, only unknown starts, a repeat across a month's end)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.cli import main
from bot.domain.incident import InvalidInput
from bot.report import Facts, MonthReport, compute, parse_month, percent, previous_month, span

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 12, 15, 12, 0, tzinfo=UTC)
NOVEMBER = parse_month("2026-11", now=NOW, tz=BERLIN)


def incident(
    number: int,
    detected: datetime,
    *,
    severity: str = "P1",
    started: datetime | None = None,
    resolved: datetime | None = None,
    category: str | None = None,
) -> Facts:
    return Facts(
        number=number,
        severity=severity,
        started_at=started or detected,
        detected_at=detected,
        resolved_at=resolved,
        category=category,
        start_known=started is not None,
    )


def table(report: MonthReport) -> dict[str, tuple[str, str, str | None]]:
    return {x.name: (x.value, x.mark, x.note) for x in report.lines()}


def test_no_incidents_no_data_but_counts_on_target() -> None:
    report = compute([], NOVEMBER)
    rows = table(report)
    assert rows["MTTD"] == ("—", "", "no incident with a known start")
    assert rows["MTTR P0"] == ("—", "", "no P0 resolved")
    assert rows["MTTR P1"] == ("—", "", "no P1 resolved")
    assert rows["P0 count"] == ("0", "✅", None) and rows["P1 count"] == ("0", "✅", None)
    assert rows["Repeat incidents"] == ("—", "", "no incident with a root-cause category")
    assert report.start_unknown == 0
    # November 2026 starts on a Sunday: weeks from Nov 1 (cut), 2, 9, 16, 23, 30.
    assert [label for label, _ in report.weeks] == [
        "11-01",
        "11-02",
        "11-09",
        "11-16",
        "11-23",
        "11-30",
    ]


def test_start_unknown_only_is_left_out_of_mttd_never_zero() -> None:
    d = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
    report = compute(
        [
            incident(1, d, severity="P0", resolved=d + timedelta(minutes=20)),
            incident(2, d + timedelta(days=1), severity="P0"),  # still open
        ],
        NOVEMBER,
    )
    assert report.mttd is None and report.start_unknown == 2
    rows = table(report)
    assert rows["MTTD"][0:2] == ("—", "")
    assert rows["MTTR P0"] == ("20 min", "✅", None)  # only the resolved one
    assert rows["P0 count"] == ("2", "✅", None)
    assert report.weeks[2][1]["P0"] == 2  # the week from Monday Nov 9


def test_mttd_mean_of_known_starts_and_targets_are_strict() -> None:
    d = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
    five, three = timedelta(minutes=5), timedelta(minutes=3)
    report = compute(
        [
            incident(1, d, started=d - five),
            incident(2, d + timedelta(days=1), started=d + timedelta(days=1) - five),
            incident(3, d + timedelta(days=2)),
        ],
        NOVEMBER,
    )
    assert report.mttd == (five + five) / 2 and report.start_unknown == 1
    assert table(report)["MTTD"] == ("5 min", "❌", None)  # < 5 min: 5 min misses it
    quick = compute([incident(1, d, started=d - three)], NOVEMBER)
    assert table(quick)["MTTD"] == ("3 min", "✅", None)
    many = [incident(n, d + timedelta(hours=n), severity="P0") for n in range(1, 6)]
    assert table(compute(many, NOVEMBER))["P0 count"] == ("5", "❌", None)  # < 5


def test_repeat_across_the_month_boundary_and_its_window() -> None:
    oct_resolved = datetime(2026, 10, 20, 11, 0, tzinfo=UTC)
    earlier = [
        incident(
            1, oct_resolved - timedelta(hours=1), resolved=oct_resolved, category="driver-oom"
        ),
        incident(
            2,
            datetime(2026, 9, 1, tzinfo=UTC),
            resolved=datetime(2026, 9, 1, 1, tzinfo=UTC),
            category="high-load",
        ),
    ]
    nov = [
        # 29 days after #1 resolved: a repeat.
        incident(3, oct_resolved + timedelta(days=29), category="driver-oom"),
        # 61+ days after #2: not one.
        incident(4, datetime(2026, 11, 2, tzinfo=UTC), category="high-load"),
        # "other" is never a repeat, even of another "other".
        incident(
            5,
            datetime(2026, 11, 5, tzinfo=UTC),
            resolved=datetime(2026, 11, 5, 1, tzinfo=UTC),
            category="other",
        ),
        incident(6, datetime(2026, 11, 6, tzinfo=UTC), category="other"),
        # no category (still open): not counted either way.
        incident(7, datetime(2026, 11, 7, tzinfo=UTC)),
    ]
    report = compute([*earlier, *nov], NOVEMBER)
    assert report.repeats == [3] and report.categorized == 4
    assert table(report)["Repeat incidents"] == ("25 % (1 of 4)", "❌", None)
    # 31 days after: outside the 30-day window.
    late = incident(3, oct_resolved + timedelta(days=31), category="driver-oom")
    assert compute([*earlier, late], NOVEMBER).repeats == []
    # Two overlapping incidents of one category: neither was resolved before the other
    # was detected, so neither repeats the other.
    a = incident(
        8,
        datetime(2026, 11, 10, tzinfo=UTC),
        resolved=datetime(2026, 11, 12, tzinfo=UTC),
        category="storage-issue",
    )
    b = incident(
        9,
        datetime(2026, 11, 11, tzinfo=UTC),
        resolved=datetime(2026, 11, 11, 2, tzinfo=UTC),
        category="storage-issue",
    )
    assert compute([a, b], NOVEMBER).repeats == []
    c = incident(10, datetime(2026, 11, 12, 1, 0, tzinfo=UTC), category="storage-issue")
    assert compute([a, b, c], NOVEMBER).repeats == [10]  # after both were resolved


def test_month_bounds_in_the_configured_zone() -> None:
    # Berlin's November: Oct 31 23:00 UTC to Nov 30 23:00 UTC.
    assert NOVEMBER.start == datetime(2026, 10, 31, 23, 0, tzinfo=UTC)
    assert NOVEMBER.end == datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
    assert not NOVEMBER.so_far
    inside = incident(1, datetime(2026, 10, 31, 23, 30, tzinfo=UTC), severity="P0")
    outside = incident(2, datetime(2026, 11, 30, 23, 0, tzinfo=UTC), severity="P0")
    assert compute([inside, outside], NOVEMBER).counts["P0"] == 1
    december = parse_month(None, now=NOW, tz=BERLIN)
    assert (december.label, december.so_far) == ("2026-12", True)
    assert december.end == datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    assert previous_month(datetime(2027, 1, 1, 8, 0, tzinfo=UTC), BERLIN).label == "2026-12"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("2026-13", "'2026-13' is not a month"),
        ("11-2026", "'11-2026' is not a month"),
        ("2026-1", "'2026-1' is not a month"),
        ("0000-01", "'0000-01' is not a month"),
        ("2027-01", "2027-01 is still to come"),
    ],
)
def test_bad_months(text: str, error: str) -> None:
    with pytest.raises(InvalidInput, match=error):
        parse_month(text, now=NOW, tz=BERLIN)


def test_value_forms() -> None:
    assert span(timedelta(seconds=40)) == "40 s"
    assert span(timedelta(minutes=6, seconds=40)) == "6 min 40 s"
    assert span(timedelta(hours=2)) == "2 h"
    assert span(timedelta(hours=1, minutes=5, seconds=29)) == "1 h 05 min"
    assert percent(0.1) == "10 %" and percent(1 / 3) == "33.3 %"


def test_cli_config_after_the_subcommand_and_a_bad_month(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIRA_DATABASE_URL", f"sqlite:///{tmp_path / 'pira.db'}")
    monkeypatch.delenv("PIRA_CONFIG", raising=False)
    out = tmp_path / "x.png"
    bad = tmp_path / "bad.yaml"
    bad.write_text("timezone: Mars/Olympus\n")
    for argv in (
        ["report", "--out", str(out), "--config", str(bad)],
        ["--config", str(bad), "report", "--out", str(out)],
        ["config", "check", "--config", str(bad)],
    ):
        assert main(argv) == 2, argv
        assert "the configuration" in capsys.readouterr().err
    assert main(["report", "--month", "2026-00", "--out", str(out)]) == 2
    assert "pira: --month: '2026-00' is not a month" in capsys.readouterr().err
    assert not out.exists()
