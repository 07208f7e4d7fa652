"""`pira run` as a real process with the Slack variables pointing at the fake Slack (in a
thread of the test process); slash commands and clicks over real HTTP, signed as Slack does."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from bot.store import Store
from bot.store.models import Incident
from tests.fakes.payloads import (
    slack_block_actions,
    slack_interactive_body,
    slack_signed_headers,
    slack_slash_command_body,
    slack_view_submission,
)
from tests.fakes.slack_api import FakeSlack, RecordedCall
from tests.support.travel import pira_command

SECRET = "e2e-signing-secret-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, body: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    try:
        # Slack gives up after 3 s: the bot must have answered by then.
        with urllib.request.urlopen(request, timeout=3) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack.in_thread() as slack:
        yield slack


@pytest.fixture
def bot(fake: FakeSlack, db_url: str, tmp_path: Path) -> Iterator[str]:
    config = tmp_path / "pira.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "people": {
                    "alice": {"name": "Alice", "slack": "U0ALICE", "roles": ["responder"]},
                    "bob": {"name": "Bob", "slack": "U0BOB", "roles": ["responder"]},
                },
                "channels": {"incidents": {"slack": "C0INCIDENTS"}},
            }
        )
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIRA_", "SLACK_"))}
    env.update(
        PIRA_CONFIG=str(config),
        PIRA_DATABASE_URL=db_url,
        PIRA_HTTP_PORT=str(port),
        PIRA_SLACK_BOT_TOKEN=fake.bot_token,
        PIRA_SLACK_SIGNING_SECRET=SECRET,
        PIRA_SLACK_API_URL=fake.url,
        PYTHONUNBUFFERED="1",
    )
    log = (tmp_path / "pira.log").open("w")
    proc = subprocess.Popen(
        pira_command("run"),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=1) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    "pira run did not become ready:\n" + (tmp_path / "pira.log").read_text()
                )
            time.sleep(0.1)
        yield f"{base}/slack/events"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(15) == 0, (tmp_path / "pira.log").read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
    text = (tmp_path / "pira.log").read_text()
    assert fake.bot_token not in text and SECRET not in text  # no secret in the logs


def reply_to(fake: FakeSlack, url: str) -> RecordedCall:
    path = url.removeprefix(fake.root_url)
    return fake.wait_for_sync("response_url", lambda c: c.path == path, timeout=15)


def incidents(db_url: str) -> list[Incident]:
    store = Store(db_url)
    try:
        with store.read() as s:
            return list(s.scalars(select(Incident)))
    finally:
        store.dispose()


@pytest.mark.slow
def test_slack_flow_over_real_http(fake: FakeSlack, bot: str, db_url: str) -> None:
    # Forged and stale requests first: refused, nothing stored, nothing posted.
    body = slack_slash_command_body(command="/incident", text="p1 forged")
    assert post(bot, body, slack_signed_headers("wrong-secret", body)) == 401
    old = int(time.time()) - 10 * 60
    assert post(bot, body, slack_signed_headers(SECRET, body, timestamp=old)) == 401

    url = fake.response_url()
    body = slack_slash_command_body(
        command="/incident", text="p1 Spark jobs failing on prod", response_url=url
    )
    assert post(bot, body, slack_signed_headers(SECRET, body)) == 200
    assert "#1" in reply_to(fake, url).params["text"]

    announce = fake.wait_for_sync(
        "chat.postMessage",
        lambda c: c.delivered and c.params.get("channel") == "C0INCIDENTS",
        timeout=15,
    )
    assert "Incident: Spark jobs failing on prod" in announce.params["text"]
    assert announce.response is not None
    message: dict[str, Any] = announce.response["message"]
    (actions,) = [b for b in message["blocks"] if b["type"] == "actions"]
    button, *others = actions["elements"]
    assert (button["text"]["text"], button["value"]) == ("Acknowledge", "/ack #1")
    assert [b["text"]["text"] for b in others] == ["Post update", "Resolve"]

    created = fake.wait_for_sync("conversations.create", timeout=15)
    assert created.params["name"] == "incident-1" and created.delivered
    channel = created.response["channel"]["id"] if created.response else None
    fake.wait_for_sync("chat.postMessage", lambda c: c.params.get("channel") == channel, timeout=15)

    click_url = fake.response_url("actions")
    payload = slack_block_actions(
        button["action_id"],
        button["value"],
        block_id=actions.get("block_id", "pira-actions"),
        user_id="U0BOB",
        user_name="bob",
        message_ts=message["ts"],
        message=message,
        response_url=click_url,
        button_text="Acknowledge",
    )
    ibody = slack_interactive_body(payload)
    assert post(bot, ibody, slack_signed_headers(SECRET, ibody)) == 200
    assert "acknowledged by bob" in reply_to(fake, click_url).params["text"]
    update = fake.wait_for_sync(
        "chat.update", lambda c: c.params.get("ts") == message["ts"], timeout=15
    )
    assert "Acknowledged by bob" in update.params["text"]
    (left,) = [b for b in update.params["blocks"] if b["type"] == "actions"]
    assert [b["text"]["text"] for b in left["elements"]] == ["Post update", "Resolve"]

    # "Post update": a modal asks for the text; its submission posts the Update.
    payload = slack_block_actions(
        others[0]["action_id"],
        others[0]["value"],
        block_id="pira-actions",
        user_id="U0BOB",
        user_name="bob",
        message_ts=message["ts"],
        message=message,
        button_text="Post update",
    )
    ibody = slack_interactive_body(payload)
    assert post(bot, ibody, slack_signed_headers(SECRET, ibody)) == 200
    view = fake.wait_for_sync("views.open", timeout=15).response["view"]
    submitted = slack_view_submission(
        view, {"pira_text": {"text": "executors recovering"}}, user_id="U0BOB", user_name="bob"
    )
    ibody = slack_interactive_body(submitted)
    assert post(bot, ibody, slack_signed_headers(SECRET, ibody)) == 200
    fake.wait_for_sync(
        "chat.postMessage",
        lambda c: c.delivered and "*Update:* executors recovering" in str(c.params.get("text")),
        timeout=15,
    )
    told = fake.wait_for_sync("chat.postEphemeral", timeout=15)
    assert told.params["user"] == "U0BOB" and "Update for #1 posted" in told.params["text"]

    (incident,) = incidents(db_url)
    assert incident.acknowledged_by == "bob" and incident.title == "Spark jobs failing on prod"
    assert json.dumps(fake.messages("C0INCIDENTS")).count("Spark jobs failing on prod") >= 1
    # Nothing from the refused requests.
    assert "forged" not in json.dumps(fake.messages("C0INCIDENTS"))
