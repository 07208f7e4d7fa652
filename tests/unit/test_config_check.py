"""``pira config check`` finds every mistake at once; ``pira config init`` starts a file."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from bot.settings import Config, ConfigError, load_config
from tests.support.travel import pira_command

ROOT = Path(__file__).resolve().parents[2]

# Ten mistakes of different kinds: schema, unknown keys, cross-field, references.
TEN = """\
timezone: Mars/Olympus
severities:
  P7: {}
  P1:
    update_every: 30
    escalate:
      - {after: 1h, to: ceo}
oncall:
  rotation: {members: [alice, bob, mallory]}
  chain:
    - {role: primary}
    - {role: janitor}
people:
  alice: {name: Alice, slack: U0ALICE, roles: [responder]}
  bob: {name: Bob, slack: U0BOB, roles: [wizard]}
roles: {team_lead: zed}
cluster:
  executors: {min: 10, max: 5}
business:
  days: mon
"""

EXPECTED = [
    "timezone: unknown time zone 'Mars/Olympus'",
    "severities.P7: unknown severity (use P0, P1, P2 or P3)",
    "severities.P1.update_every: not a duration: 30",
    "people.bob.roles: unknown role(s) ['wizard']",
    "business.days: write a list, e.g. [a, b] (not 'mon')",
    "cluster.executors.min: 10 is above cluster.executors.max (5)",
    "oncall.chain.1.role: 'janitor' is neither a role (primary, secondary, team_lead,",
    "severities.P1.escalate.0.to: 'ceo' is neither a role",
    "oncall.rotation.members.2: 'mallory' is not in people (people: alice, bob)",
    "roles.team_lead: 'zed' is not in people (people: alice, bob)",
]


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pira_command(*args), capture_output=True, text=True, cwd=cwd or ROOT, timeout=60
    )


def test_ten_mistakes_in_one_run_with_key_paths(tmp_path: Path) -> None:
    path = tmp_path / "ten.yaml"
    path.write_text(TEN)
    done = _run("config", "check", "--config", str(path))
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("  - ")]
    assert len(lines) == 10, done.stderr
    for expected in EXPECTED:
        assert sum(expected in line for line in lines) == 1, (expected, done.stderr)
    assert "did you mean 'cto'?" in done.stderr
    assert "Input should be" not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "text, error",
    [
        ("oncall: {chain: [{role: primary}], rotation: {members: 3}}", "write a list"),
        ("cluster: {executors: {min: lots}}", "cluster.executors.min: write a whole number"),
        ("alertmanager: {allow_unauthenticated: maybe}", "write true or false"),
        ("channels: {incidnets: {slack: C1}}", "unknown key — did you mean 'incidents'?"),
        ("oncall: {chain: [{respond_within: {P0: 5m}}]}", "oncall.chain.0.role: missing"),
        ("alertmanager: {default_severity: P9}", "unknown severity 'P9'"),
        ("pir: {rest: 3d}", "pir.rest: must be shorter than pir.within"),
        ("business: {holidays: {subdivision: BY}}", "a subdivision needs its country"),
        ("roles: {primary: alice}\npeople: {alice: {slack: U1}}", "comes from oncall.rotation"),
    ],
)
def test_each_kind_of_mistake_says_what_to_write(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    errors = "\n".join(info.value.errors)
    assert error in errors
    assert "Input should be" not in errors


def test_an_unreachable_person_is_a_warning_and_strict_makes_it_an_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "oncall: {rotation: {members: [alice, bob]}}\n"
        "people: {alice: {slack: U1}, bob: {name: Bob}, erin: {}}\n"
        "roles: {cto: erin}\n"
    )
    warnings: list[str] = []
    load_config(path, warnings=warnings)
    assert len(warnings) == 2
    assert "people.bob: on the rotation but has neither a slack nor a telegram id" in warnings[0]
    assert warnings[1].startswith("people.erin: paged as cto (")
    done = _run("config", "check", "--config", str(path))
    assert done.returncode == 0
    assert "pira: warning: people.bob" in done.stderr
    assert "with 2 warning(s)" in done.stdout
    strict = _run("config", "check", "--strict", "--config", str(path))
    assert strict.returncode == 2
    assert "people.bob: on the rotation" in strict.stderr and "--strict" in strict.stderr


def test_the_readme_example_passes_strictly(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Configuration\n", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block is not None
    path = tmp_path / "readme.yaml"
    path.write_text(block.group(1))
    warnings: list[str] = []
    config = load_config(path, warnings=warnings, strict=True)
    assert warnings == []
    assert config.roles["cto"] == "erin" and "erin" in config.people


def test_init_writes_every_default_and_refuses_to_overwrite(tmp_path: Path) -> None:
    done = _run("config", "init", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = tmp_path / "pira.yaml"
    assert written.read_text().count("\n# ") >= 10
    warnings: list[str] = []
    assert load_config(written, warnings=warnings, strict=True) == Config()
    assert warnings == []
    check = _run("config", "check", "--strict", "--config", str(written))
    assert check.returncode == 0 and check.stderr == ""
    assert check.stdout.startswith("Configuration is valid.\n")
    written.write_text("timezone: UTC\n")
    again = _run("config", "init", cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr
    assert written.read_text() == "timezone: UTC\n"
    other = tmp_path / "other.yaml"
    assert _run("config", "init", "--out", str(other)).returncode == 0
    assert _run("config", "init", "--force", cwd=tmp_path).returncode == 0
    assert written.read_text() == other.read_text()


def test_no_file_says_the_defaults_are_in_force_and_a_broken_pipe_is_quiet(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        f"{' '.join(pira_command('config', 'check'))} | head -2",
        shell=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert "the runbook's defaults are in force" in done.stdout
    assert "pira config init" in done.stdout
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
