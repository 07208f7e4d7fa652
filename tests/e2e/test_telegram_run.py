"""``pira run`` as a real process against the fake Telegram Bot API: long polling and
webhook, announcement with buttons, acknowledge by button, forum topics, command menu."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.fakes.payloads import (
    tg_callback_query_update,
    tg_command_update,
    tg_reply_update,
    tg_supergroup_chat,
    tg_user,
)
from tests.fakes.telegram_api import FakeTelegram
from tests.support.travel import pira_command, traveling

ALICE = tg_user(1001, "Alice", "alice")
GROUP = tg_supergroup_chat(-1001234567890, "Incidents", is_forum=False)
FORUM = tg_supergroup_chat(-1009876543210, "Incidents forum", is_forum=True)
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(path: Path, chat_id: int) -> Path:
    path.write_text(
        f"""
channels:
  incidents: {{telegram: {chat_id}}}
people:
  alice: {{name: Alice, telegram: 1001, roles: [responder]}}
  bob: {{name: Bob, telegram: 1002, roles: [responder]}}
"""
    )
    return path


@contextmanager
def pira_run(env_extra: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIRA_")}
    env.update(PYTHONUNBUFFERED="1", **env_extra)
    pira = Path(sys.executable).with_name("pira")
    # The installed entry point, unless the run moves the clock (then through the traveller).
    args = [str(pira), "run"] if pira.exists() and not traveling() else pira_command("run")
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung shutdown is a failure
            proc.kill()
            proc.wait()
            pytest.fail("pira run did not stop on SIGTERM")


def wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} never answered")
        time.sleep(0.1)


def test_pira_run_long_polling(tmp_path: Path, db_url: str) -> None:
    with FakeTelegram.in_thread() as tg:
        tg.add_chat(GROUP)
        tg.add_private_chat(1001, "alice")
        env = {
            "PIRA_DATABASE_URL": db_url,
            "PIRA_CONFIG": str(write_config(tmp_path / "pira.yaml", GROUP["id"])),
            "PIRA_TELEGRAM_TOKEN": tg.token,
            "PIRA_TELEGRAM_API_URL": tg.url,
            "PIRA_HTTP_HOST": "127.0.0.1",
            "PIRA_HTTP_PORT": str(free_port()),
        }
        with pira_run(env) as proc:
            tg.wait_for_sync("getUpdates", timeout=30)
            names = {c["command"] for c in tg.commands_for()}
            assert {"incident", "ack", "status", "resolve", "confirm", "cancel"} <= names
            tg.push_update(
                tg_command_update(
                    "/incident p1 Spark Connect down",
                    chat=GROUP,
                    from_user=ALICE,
                    bot_username=tg.username,
                )
            )
            announce = tg.wait_for_sync(
                "sendMessage",
                lambda c: c.delivered and "Incident:" in c.params.get("text", ""),
                timeout=30,
            )
            assert announce.params["chat_id"] == GROUP["id"]
            assert "<b>[P1] Incident: Spark Connect down</b>" in announce.params["text"]
            buttons = announce.params["reply_markup"]["inline_keyboard"][0]
            assert [(b["text"], b["callback_data"]) for b in buttons] == [
                ("Acknowledge", "/ack #1"),
                ("Post update", "p:/update #1"),
                ("Resolve", "p:/resolve #1"),
            ]
            cq = tg.push_update(
                tg_callback_query_update(
                    "/ack #1", message=announce.response["result"], from_user=ALICE
                )
            )
            edit = tg.wait_for_sync(
                "editMessageText",
                lambda c: c.delivered and "Acknowledged by alice" in c.params["text"],
                timeout=30,
            )
            assert edit.params["message_id"] == announce.response["result"]["message_id"]
            # Acknowledge is gone once acknowledged; Post update and Resolve stay
            kept = edit.params["reply_markup"]["inline_keyboard"][0]
            assert [b["callback_data"] for b in kept] == ["p:/update #1", "p:/resolve #1"]
            tg.wait_for_sync("answerCallbackQuery", timeout=10)
            assert cq["callback_query"]["id"] in tg.answered_callbacks
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err[-2000:]
        assert tg.token not in err


def test_pira_run_webhook_forum(tmp_path: Path, db_url: str) -> None:
    with FakeTelegram.in_thread() as tg:
        tg.add_chat(FORUM)
        port = free_port()
        hook = f"http://127.0.0.1:{port}/telegram"
        env = {
            "PIRA_DATABASE_URL": db_url,
            "PIRA_CONFIG": str(write_config(tmp_path / "pira.yaml", FORUM["id"])),
            "PIRA_TELEGRAM_TOKEN": tg.token,
            "PIRA_TELEGRAM_API_URL": tg.url,
            "PIRA_TELEGRAM_WEBHOOK_URL": hook,
            "PIRA_TELEGRAM_WEBHOOK_SECRET": "e2e-Secret_42",
            "PIRA_HTTP_HOST": "127.0.0.1",
            "PIRA_HTTP_PORT": str(port),
        }
        with pira_run(env) as proc:
            tg.wait_for_sync("setWebhook", lambda c: c.delivered, timeout=30)
            wait_http(f"http://127.0.0.1:{port}/healthz")
            forged = tg_command_update("/incident p1 Forged", chat=FORUM, from_user=ALICE)
            assert tg.deliver_webhook_sync(forged, secret_token="nope")[0] == 403
            good = tg_command_update("/incident p1 Driver OOM", chat=FORUM, from_user=ALICE)
            assert tg.deliver_webhook_sync(good)[0] == 200
            topic = tg.wait_for_sync("createForumTopic", lambda c: c.delivered, timeout=30)
            assert topic.params["name"] == "incident-1 Driver OOM"
            thread = topic.response["result"]["message_thread_id"]
            ticket = tg.wait_for_sync(
                "sendMessage",
                lambda c: c.delivered and c.params.get("message_thread_id") == thread,
                timeout=30,
            )
            # the ticket's Post update button asks in the topic; the reply posts the update
            click = tg_callback_query_update(
                "p:/update #1", message=ticket.response["result"], from_user=ALICE
            )
            assert tg.deliver_webhook_sync(click)[0] == 200
            ask = tg.wait_for_sync(
                "sendMessage",
                lambda c: c.delivered and "force_reply" in c.params.get("reply_markup", {}),
                timeout=30,
            )
            assert ask.params["message_thread_id"] == thread
            assert click["callback_query"]["id"] in tg.answered_callbacks
            answer = tg_reply_update(
                "driver restarted", reply_to=ask.response["result"], from_user=ALICE
            )
            assert tg.deliver_webhook_sync(answer)[0] == 200
            update = tg.wait_for_sync(
                "sendMessage",
                lambda c: c.delivered and "Incident Update: Driver OOM" in c.params["text"],
                timeout=30,
            )
            assert "driver restarted" in update.params["text"]
            texts = [m["text"] for m in tg.sent_messages(FORUM["id"])]
            assert not any("Forged" in t for t in texts)
            assert not tg.calls("getUpdates")
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err[-2000:]
        assert "e2e-Secret_42" not in err and tg.token not in err
