"""The console on a real terminal (issue 14, part 1), driven through tmux: the banner,
the prompt, completion, a timer's post arriving while a line is half typed — the
line intact afterwards — and Ctrl-D ending it with exit code 0."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


class Tmux:
    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", *args], capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout

    def keys(self, *keys: str, literal: bool = False) -> None:
        self.run("send-keys", "-t", self.name, *(["-l"] if literal else []), *keys)

    def screen(self) -> str:
        """Everything the terminal shows and scrolled by (its colours left out)."""
        return self.run("capture-pane", "-p", "-t", self.name, "-S", "-500")

    def visible(self) -> list[str]:
        lines = self.run("capture-pane", "-p", "-t", self.name).splitlines()
        return [line for line in lines if line.strip()]

    def wait(self, what: str, test: Callable[[str], bool], timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while True:
            shown = self.screen()
            if test(shown):
                return shown
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} after {timeout}s; the terminal shows:\n{shown}")
            time.sleep(0.1)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        if os.environ.get("CI"):
            pytest.fail("tmux is needed for the terminal tests (Debian package tmux)")
        pytest.skip("tmux is not installed")
    session = Tmux(f"pira-{uuid.uuid4().hex[:8]}")
    yield session
    subprocess.run(["tmux", "kill-session", "-t", session.name], capture_output=True)


def test_the_console_on_a_terminal(tmux: Tmux, db_url: str, tmp_path: Path) -> None:
    config = tmp_path / "pira.yaml"
    config.write_text("severities:\n  P0: {update_every: 3s}\n")
    env = {
        "PIRA_DATABASE_URL": db_url,
        "PIRA_CONFIG": str(config),
        "PIRA_LOG_FILE": str(tmp_path / "console.log"),
        "PIRA_FILES_DIR": str(tmp_path / "files"),
        "PIRA_STRICT_EVENT_LOOP": "1",
    }
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    command = (
        f"cd {shlex.quote(str(ROOT))} && env $(env | grep -o '^PIRA_[A-Z_]*' | sed 's/^/-u /')"
        f" {assignments} {shlex.quote(sys.executable)} -m bot console; echo EXIT=$?; sleep 30"
    )
    tmux.run("new-session", "-d", "-s", tmux.name, "-x", "160", "-y", "50", command)

    shown = tmux.wait("the banner and the prompt", lambda s: "pira>" in s)
    assert "PIRA — the incident-response runbook" in shown
    assert f"configuration:  {config}" in shown
    assert "you act as:     the console (admin, operator, responder)" in shown
    assert f"log:            {tmp_path / 'console.log'}" in shown
    assert '"level"' not in shown  # no JSON log line on the terminal

    tmux.keys("/inc", literal=True)
    tmux.keys("Tab")
    tmux.wait("the completed command", lambda s: "pira> /incident" in s)
    tmux.keys("C-u")
    tmux.keys("/incident p0 all jobs failing", literal=True)
    tmux.keys("Enter")
    shown = tmux.wait("the announcement", lambda s: "[#incidents] 🚨 [P0] Incident" in s)
    assert "**" not in shown  # bold on the terminal, not Markdown
    announce = next(line for line in shown.splitlines() if "🚨 [P0] Incident" in line)
    assert announce.startswith("[#incidents]")  # the tag first, nothing before it

    # Half a line typed; the next-update reminder (3 s) arrives meanwhile.
    tmux.keys("/update half typ", literal=True)
    tmux.wait("the reminder", lambda s: "next update for #1 is due" in s, timeout=30)
    assert tmux.visible()[-1] == "pira> /update half typ"  # the line intact, last
    tmux.keys("ed", literal=True)
    tmux.keys("Enter")
    tmux.wait("the update", lambda s: "Update: half typed" in s)

    tmux.keys("C-d")
    tmux.wait("the exit", lambda s: "EXIT=" in s)
    assert "EXIT=0" in tmux.screen()
    assert '"event"' in (tmp_path / "console.log").read_text()  # the JSON log went here
