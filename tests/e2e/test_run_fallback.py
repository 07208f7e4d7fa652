"""The README's run command: `pira run` with no chat credentials and a terminal on
stdin is the console."""

from __future__ import annotations

import os
import pty
import re
import select
import socket
import subprocess
import time
from pathlib import Path

from tests.support.travel import pira_command


def read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
    return seen


def test_pira_run_on_a_terminal_is_the_console(db_url: str, tmp_path: Path) -> None:
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIRA_")}
    env.update(
        PIRA_DATABASE_URL=db_url,
        PYTHONUNBUFFERED="1",
        PIRA_LOG_FILE=str(tmp_path / "console.log"),
        PIRA_FILES_DIR=str(tmp_path / "files"),
    )
    proc = subprocess.Popen(
        pira_command("run"),
        stdin=slave,
        stdout=slave,
        stderr=subprocess.PIPE,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    os.close(slave)
    try:
        os.write(master, b"/incident p1 Spark jobs failing on prod\n")
        out = read_until(master, b"Follow along in #incident-1", timeout=20)
        shown = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", out)  # the terminal's colours
        assert "[#incidents] 🚨 [P1] Incident: Spark jobs failing on prod".encode() in shown
        assert b"PIRA \xe2\x80\x94 the incident-response runbook" in shown  # the banner
        # Ctrl-D at the prompt (typed between prompts, the terminal's line discipline
        # would take it): the prompt comes back once the command's posts are out.
        after = out.split(b"Follow along in #incident-1", 1)[1]
        if b"pira>" not in after:
            read_until(master, b"pira>", timeout=20)
        os.write(master, b"\x04")  # end of input on a terminal
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_pira_run_warns_when_a_platform_has_no_incidents_channel(db_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIRA_")}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env.update(
        PIRA_DATABASE_URL=db_url,
        PIRA_SLACK_BOT_TOKEN="xoxb-test-token",
        PIRA_SLACK_SIGNING_SECRET="secret",
        PIRA_HTTP_PORT=str(port),
        PIRA_SLACK_API_URL="http://127.0.0.1:9/api/",
    )
    proc = subprocess.Popen(
        pira_command("run"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "slack is configured but channels.incidents.slack is not set" in line
    finally:
        proc.terminate()
        proc.wait(timeout=20)
