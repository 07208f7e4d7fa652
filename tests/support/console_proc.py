"""Run ``pira console`` as a real process: write commands, read tagged posts as they come."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.travel import pira_command

_TAG = re.compile(r"^\[([^\]]+)\] (.*)$")


@dataclass(frozen=True)
class Printed:
    tag: str
    text: str
    at: float  # monotonic seconds since the process started


class ConsoleProc:
    def __init__(
        self,
        *,
        db_url: str,
        config: Path | None = None,
        as_user: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIRA_")}
        # The console's log and files: a folder of the process's own, never the tree.
        self.folder = Path(tempfile.mkdtemp(prefix="pira-console-"))
        env.update(
            PIRA_DATABASE_URL=db_url,
            PYTHONUNBUFFERED="1",
            PIRA_LOG_FILE=str(self.folder / "console.log"),
            PIRA_FILES_DIR=str(self.folder / "files"),
            **(extra_env or {}),
        )
        if config is not None:
            env["PIRA_CONFIG"] = str(config)
        args = pira_command("console")
        if as_user:
            args += ["--as", as_user]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=Path(__file__).resolve().parents[2],
        )
        self.printed: list[Printed] = []
        self.stderr: list[str] = []
        self._lock = threading.Condition()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        # A post is visible from its first line on; later lines extend it in place.
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            m = _TAG.match(line)
            with self._lock:
                if m:
                    at = time.monotonic() - self.started
                    self.printed.append(Printed(m.group(1), m.group(2), at))
                elif self.printed:
                    last = self.printed[-1]
                    self.printed[-1] = Printed(last.tag, f"{last.text}\n{line}".strip(), last.at)
                self._lock.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait_for(self, tag: str, needle: str, timeout: float = 15, count: int = 1) -> Printed:
        """The ``count``-th post with this tag containing ``needle``. A block is complete
        once the next one starts, so the text of the newest post may still grow."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [p for p in self.printed if p.tag == tag and needle in p.text]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    shown = "\n".join(f"[{p.tag}] {p.text[:80]}" for p in self.printed[-15:])
                    raise AssertionError(
                        f"no [{tag}] with {needle!r} after {timeout}s:\n"
                        f"{shown}\nstderr: {''.join(self.stderr)[-2000:]}"
                    )
                self._lock.wait(min(left, 0.2))

    def matching(self, tag: str, needle: str) -> list[Printed]:
        with self._lock:
            return [p for p in self.printed if p.tag == tag and needle in p.text]

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def finish(self, timeout: float = 20) -> int:
        """Close stdin (end of input) and wait for a clean exit."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=timeout)
        time.sleep(0.1)  # let the reader threads drain the pipes
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
