"""The protocol fakes (tests/fakes) as processes of their own, for ``make bench``.

    python -m benchmarks.fakes slack [--rate-limits] [--rooms N]
    python -m benchmarks.fakes telegram
    python -m benchmarks.fakes kube [--latency 0.03]

A fake in a process of its own is another machine to the bot: it takes none of the
bot's CPU time slices or event loop. The launcher prints one JSON line on stdout,
``{"url": ..., "token": ..., "control": ...}``, and then serves a small control API
on loopback for the driver (:class:`FakeProcess` is its client):

- ``GET /calls?method=M&since=N``: the calls recorded from the N-th on (method, time,
  outcome, delivered, channel or chat id, the text (its first 5,000 characters), the path);
- ``POST /push`` (Telegram): a JSON list of updates queued for getUpdates;
- ``POST /latency`` (Kubernetes): ``{"latency": seconds}`` added to every answer;
- ``POST /clear``: forget the calls recorded so far.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

ROOT = Path(__file__).resolve().parents[1]


def _summary(call: Any) -> dict[str, Any]:
    params = call.params if isinstance(call.params, dict) else {}
    text = params.get("text")
    return {
        "method": call.method,
        "time": call.time,
        "outcome": call.outcome,
        "delivered": call.delivered,
        "channel": params.get("channel"),
        "chat_id": params.get("chat_id"),
        "text": text[:5000] if isinstance(text, str) else None,  # a fold of pages whole
        "path": call.path,
    }


class _Control(BaseHTTPRequestHandler):
    fake: Any = None  # set on the subclass made by serve()
    kind = ""

    def log_message(self, *_: object) -> None:  # quiet
        pass

    def _answer(self, body: Any, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path != "/calls":
            self._answer({"error": "not found"}, 404)
            return
        query = parse_qs(url.query)
        since = int(query.get("since", ["0"])[0])
        method = query.get("method", [None])[0]
        if self.kind == "kube":
            requests = list(self.fake.requests)[since:]
            calls = [{"method": r.method, "path": r.path} for r in requests]
            self._answer({"calls": calls, "next": since + len(requests)})
            return
        everything = self.fake.calls()
        chosen = [_summary(c) for c in everything[since:] if method in (None, c.method)]
        self._answer({"calls": chosen, "next": len(everything)})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        if self.path == "/push" and self.kind == "telegram":
            for update in body:
                self.fake.push_update(update)
            self._answer({"pushed": len(body)})
        elif self.path == "/latency" and self.kind == "kube":
            self.fake.latency = float(body["latency"])
            self._answer({"latency": self.fake.latency})
        elif self.path == "/clear":
            if self.kind == "kube":
                self.fake.requests.clear()
            else:
                self.fake.clear_calls()
            self._answer({"cleared": True})
        else:
            self._answer({"error": "not found"}, 404)


def serve(kind: str, args: argparse.Namespace) -> None:
    """Run the fake of ``kind`` until stdin closes (the driver ended) or SIGTERM."""
    sys.path.insert(0, str(ROOT))
    with ExitStack() as stack:
        info: dict[str, Any] = {}
        fake: Any
        if kind == "slack":
            from tests.fakes.slack_api import FakeSlack

            fake = stack.enter_context(FakeSlack(rate_limits=args.rate_limits).threaded())
            rooms = [fake.add_channel(f"incident-{n}").id for n in range(1, args.rooms + 1)]
            info.update(url=fake.url, token=fake.bot_token, root=fake.root_url, rooms=rooms)
        elif kind == "telegram":
            from tests.fakes.telegram_api import FakeTelegram

            fake = stack.enter_context(FakeTelegram(rate_limits=args.rate_limits).threaded())
            info.update(url=fake.url, token=fake.token)
        elif kind == "kube":
            from tests.fakes.kube_api import FakeKubeApi, seed_spark_platform

            fake = stack.enter_context(FakeKubeApi())
            seed_spark_platform(fake)
            fake.latency = args.latency
            kubeconfig = fake.write_kubeconfig(Path(args.folder) / "kubeconfig")
            info.update(url=fake.url, kubeconfig=str(kubeconfig))
        else:
            raise SystemExit(f"unknown fake {kind!r}")
        handler = type("Control", (_Control,), {"fake": fake, "kind": kind})
        control = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        control.daemon_threads = True
        threading.Thread(target=control.serve_forever, daemon=True).start()
        info["control"] = f"http://127.0.0.1:{control.server_address[1]}"
        print(json.dumps(info), flush=True)
        sys.stdin.read()  # until the driver closes our stdin (or dies)
        control.shutdown()


class FakeProcess:
    """The driver's side: a fake started with ``python -m benchmarks.fakes`` and its
    control API. ``info``: what it printed (url, token, control, …)."""

    def __init__(self, kind: str, *options: str, folder: Path | None = None) -> None:
        self.kind = kind
        extra = ["--folder", str(folder)] if folder is not None else []
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fakes", kind, *options, *extra],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fake {kind} did not start (exit {self.proc.wait()})")
        self.info: dict[str, Any] = json.loads(line)
        self.url: str = self.info["url"]
        self.control: str = self.info["control"]

    def _request(self, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.control + path, data=data, method="GET" if data is None else "POST"
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def calls(self, method: str | None = None, since: int = 0) -> tuple[list[dict[str, Any]], int]:
        """The calls recorded from the ``since``-th; and where the next look starts."""
        query = f"?since={since}" + (f"&method={method}" if method else "")
        found = self._request(f"/calls{query}")
        return found["calls"], found["next"]

    def wait_calls(
        self,
        method: str,
        count: int,
        *,
        since: int = 0,
        timeout: float = 60,
        match: Any = None,
    ) -> list[dict[str, Any]]:
        """Wait until ``count`` delivered calls of ``method`` (matching ``match``) were
        recorded from the ``since``-th; them, or fewer when ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        cursor = since
        while True:
            calls, cursor = self.calls(method, cursor)
            seen += [c for c in calls if c["delivered"] and (match is None or match(c))]
            if len(seen) >= count or time.monotonic() > deadline:
                return seen
            time.sleep(0.02)

    def mark(self) -> int:
        """How many calls were recorded so far (a ``since`` for a later look)."""
        return int(self._request("/calls?since=1000000000")["next"])

    def push(self, updates: list[dict[str, Any]]) -> None:
        self._request("/push", updates)

    def set_latency(self, seconds: float) -> None:
        self._request("/latency", {"latency": seconds})

    def clear(self) -> None:
        self._request("/clear", {})

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def fake_process(kind: str, *options: str, folder: Path | None = None) -> Iterator[FakeProcess]:
    fake = FakeProcess(kind, *options, folder=folder)
    try:
        yield fake
    finally:
        fake.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["slack", "telegram", "kube"])
    parser.add_argument("--rate-limits", action="store_true", help="the platform's limits")
    parser.add_argument("--rooms", type=int, default=0, help="Slack: incident-N channels")
    parser.add_argument("--latency", type=float, default=0.0, help="Kubernetes: s an answer")
    parser.add_argument("--folder", default=".", help="Kubernetes: where the kubeconfig goes")
    parsed = parser.parse_args()
    serve(parsed.kind, parsed)
