"""Configuration: runbook defaults, durations, validation errors with key paths."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bot.cli import main
from bot.domain.durations import format_duration, parse_duration
from bot.settings import ConfigError, Env, load_config


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("30s", 30),
        ("15m", 900),
        ("2h", 7200),
        ("1d", 86400),
        ("1w", 604800),
        ("1h30m", 5400),
        ("0m", 0),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert parse_duration(format_duration(timedelta(seconds=seconds))).total_seconds() == seconds


@pytest.mark.parametrize("bad", ["30", "m", "5x", "-5m", "", "1.5h"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_defaults_are_the_runbooks_tables() -> None:
    config = load_config(None)
    p0, p1, p2, p3 = (config.policy(s) for s in ("P0", "P1", "P2", "P3"))
    assert (p0.page_after, p0.respond_within) == (timedelta(0), timedelta(minutes=15))
    assert [(t.after, t.to) for t in p0.escalate] == [
        (timedelta(minutes=30), "engineering_manager"),
        (timedelta(hours=1), "cto"),
    ]
    assert [(t.after, t.to) for t in p1.escalate] == [
        (timedelta(hours=2), "engineering_manager"),
        (timedelta(hours=4), "cto"),
    ]
    assert [(t.after, t.to) for t in p2.escalate] == [(timedelta(days=1), "team_lead")]
    assert [(t.after, t.to) for t in p3.escalate] == [(timedelta(weeks=1), "team_lead")]
    assert p0.update_every == p1.update_every == timedelta(minutes=30)
    assert p1.respond_within == timedelta(hours=1)
    assert p3.page_after is None  # "next business day": no page
    assert "Complete platform outage" in p0.definition
    assert [step.role for step in config.oncall.chain] == [
        "primary",
        "secondary",
        "team_lead",
        "engineering_manager",
        "cto",
    ]


def test_a_partial_severity_keeps_the_other_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("severities:\n  p0:\n    update_every: 10m\n")
    config = load_config(path)
    assert config.policy("P0").update_every == timedelta(minutes=10)
    assert config.policy("P0").respond_within == timedelta(minutes=15)
    assert config.policy("P1").update_every == timedelta(minutes=30)


def test_every_error_is_listed_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(
        "timezone: Mars/Olympus\n"
        "severities:\n  P9: {}\n  P0:\n    update_every: 30\n    escalate: [{after: soon}]\n"
        "people:\n  alice: {roles: [wizard]}\n"
        "cluster:\n  executors: {min: 10, max: 5}\n"
        "surprise: 1\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    errors = "\n".join(info.value.errors)
    assert "timezone: unknown time zone 'Mars/Olympus'" in errors
    assert "severities.P9: unknown severity (use P0, P1, P2 or P3)" in errors
    assert "severities.P0.update_every: not a duration: 30" in errors
    assert "cluster.executors.min: 10 is above cluster.executors.max (5)" in errors
    assert "surprise: unknown key" in errors
    assert "people.alice.roles: unknown role(s) ['wizard']" in errors


def test_config_check_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check"]) == 0
    out = capsys.readouterr().out
    assert (
        "P0 Critical: page after 0m, respond within 15m, update every 30m; escalate: "
        "30m → engineering_manager, 1h → cto" in out
    )
    assert "P1 High: page after 15m, respond within 1h" in out
    assert "1. primary" in out and "5. cto" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("severities:\n  P1:\n    update_every: often\noncall: [1]\n")
    assert main(["--config", str(bad), "config", "check"]) == 2
    err = capsys.readouterr().err
    assert "severities.P1.update_every: not a duration: 'often'" in err
    assert "oncall:" in err
    assert "Traceback" not in err
    bad.write_text("a: [unclosed\n")
    assert main(["--config", str(bad), "config", "check"]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_env_never_shows_secrets() -> None:
    env = Env.from_environ(
        {
            "PIRA_DATABASE_URL": "postgresql+psycopg://pira:hunter2@db/pira",
            "PIRA_SLACK_BOT_TOKEN": "xoxb-secret-token",
        }
    )
    assert "hunter2" not in repr(env) and "xoxb" not in repr(env)
    with pytest.raises(ConfigError):
        Env.from_environ({"PIRA_HTTP_PORT": "eighty"})
