"""The real slack_sdk / slack_bolt clients against the fake Slack (tests/fakes/slack_api.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import pytest
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.payloads import (
    slack_block_actions,
    slack_interactive_body,
    slack_signature,
    slack_signed_headers,
    slack_slash_command,
    slack_slash_command_body,
)
from tests.fakes.slack_api import FakeSlack

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def signed(secret: str, body: str) -> dict[str, str | Sequence[str]]:
    return dict(slack_signed_headers(secret, body))


def client(fake: FakeSlack, **kw: Any) -> AsyncWebClient:
    return AsyncWebClient(token=fake.bot_token, base_url=fake.url, **kw)


async def test_url_is_loopback_and_auth_test(slack: FakeSlack) -> None:
    assert slack.url.startswith("http://127.0.0.1:") and slack.url.endswith("/api/")
    resp = await client(slack).auth_test()
    assert resp["user_id"] == FakeSlack.BOT_USER_ID
    assert resp["team_id"] == FakeSlack.TEAM_ID
    (call,) = slack.calls("auth.test")
    assert call.token == slack.bot_token
    assert call.headers["Authorization"] == f"Bearer {slack.bot_token}"
    assert call.delivered and call.status == 200


async def test_wrong_token_is_invalid_auth(slack: FakeSlack) -> None:
    bad = AsyncWebClient(token="xoxb-wrong", base_url=slack.url)
    with pytest.raises(SlackApiError) as exc:
        await bad.chat_postMessage(channel="C0INCIDENTS", text="x")
    assert exc.value.response["error"] == "invalid_auth"
    assert slack.messages("C0INCIDENTS") == []
    assert not slack.calls("chat.postMessage")[0].delivered


async def test_post_thread_update_history(slack: FakeSlack) -> None:
    c = client(slack)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*P1* Spark down"}}]
    meta = {"event_type": "pira_incident", "event_payload": {"incident": 3}}
    root = await c.chat_postMessage(
        channel="#incidents", text="P1 Spark down", blocks=blocks, metadata=meta
    )
    assert root["channel"] == "C0INCIDENTS"
    assert root["message"]["blocks"] == blocks
    reply = await c.chat_postMessage(channel="C0INCIDENTS", text="update", thread_ts=root["ts"])
    assert reply["message"]["thread_ts"] == root["ts"]
    assert float(reply["ts"]) > float(root["ts"])

    call = await slack.wait_for("chat.postMessage", lambda c: c.params.get("thread_ts"))
    assert call.params["text"] == "update"
    first = slack.calls("chat.postMessage")[0]
    assert first.params["metadata"] == meta and first.params["blocks"] == blocks

    upd = await c.chat_update(channel="C0INCIDENTS", ts=root["ts"], text="P1 Spark down (ack)")
    assert upd["message"]["text"] == "P1 Spark down (ack)"
    with pytest.raises(SlackApiError) as exc:
        await c.chat_update(channel="C0INCIDENTS", ts="1.000000", text="x")
    assert exc.value.response["error"] == "message_not_found"

    hist = await c.conversations_history(channel="C0INCIDENTS", limit=10)
    texts = [m["text"] for m in hist["messages"]]
    assert texts == ["P1 Spark down (ack)"]  # thread replies are not top-level history
    assert hist["messages"][0]["metadata"]["event_payload"] == {"incident": 3}
    replies = await c.conversations_replies(channel="C0INCIDENTS", ts=root["ts"])
    assert [m["text"] for m in replies["messages"]] == ["P1 Spark down (ack)", "update"]

    with pytest.raises(SlackApiError) as exc:
        await c.chat_postMessage(channel="C0NOPE", text="x")
    assert exc.value.response["error"] == "channel_not_found"
    with pytest.raises(SlackApiError) as exc:
        await c.chat_postMessage(channel="C0INCIDENTS", text="x", thread_ts="2.000000")
    assert exc.value.response["error"] == "thread_not_found"


async def test_channels_users_ephemeral(slack: FakeSlack) -> None:
    c = client(slack)
    created = await c.conversations_create(name="incident-3")
    cid = created["channel"]["id"]
    assert created["channel"]["name"] == "incident-3" and created["channel"]["is_member"]
    with pytest.raises(SlackApiError) as exc:
        await c.conversations_create(name="incident-3")
    assert exc.value.response["error"] == "name_taken"
    with pytest.raises(SlackApiError) as exc:
        await c.conversations_create(name="Bad Name!")
    assert exc.value.response["error"] == "invalid_name_specials"

    inv = await c.conversations_invite(channel=cid, users=["U0ALICE", "U0BOB"])
    assert inv["ok"]
    assert {"U0ALICE", "U0BOB"} <= slack.channels[cid].members
    assert slack.calls("conversations.invite")[0].params["users"] == "U0ALICE,U0BOB"
    with pytest.raises(SlackApiError) as exc:
        await c.conversations_invite(channel=cid, users="U0ALICE")
    assert exc.value.response["error"] == "already_in_channel"

    slack.add_channel("sre", "C0SRE", bot_is_member=False)
    with pytest.raises(SlackApiError) as exc:
        await c.chat_postMessage(channel="C0SRE", text="x")
    assert exc.value.response["error"] == "not_in_channel"
    joined = await c.conversations_join(channel="C0SRE")
    assert joined["channel"]["is_member"] and "warning" not in joined.data
    again = await c.conversations_join(channel="C0SRE")
    assert again["warning"] == "already_in_channel"
    await c.chat_postMessage(channel="C0SRE", text="now ok")

    slack.missing_scopes.add("conversations.create")
    with pytest.raises(SlackApiError) as exc:
        await c.conversations_create(name="incident-4")
    assert exc.value.response["error"] == "missing_scope"
    assert exc.value.response["needed"] == "channels:manage"

    user = await c.users_info(user="U0ALICE")
    assert user["user"]["name"] == "alice" and user["user"]["tz"]
    with pytest.raises(SlackApiError) as exc:
        await c.users_info(user="U0NOBODY")
    assert exc.value.response["error"] == "user_not_found"

    eph = await c.chat_postEphemeral(channel="C0INCIDENTS", user="U0ALICE", text="only you")
    assert eph["message_ts"]
    assert slack.ephemeral[0]["user"] == "U0ALICE"
    assert slack.messages("C0INCIDENTS") == []  # ephemeral messages are not in history

    dm = await c.chat_postMessage(channel="U0BOB", text="you are paged")
    assert dm["channel"].startswith("D")


async def test_injected_429_raises_with_retry_after(slack: FakeSlack) -> None:
    slack.rate_limit("chat.postMessage", retry_after=7)
    with pytest.raises(SlackApiError) as exc:
        await client(slack).chat_postMessage(channel="C0INCIDENTS", text="x")
    assert exc.value.response.status_code == 429
    assert exc.value.response["error"] == "ratelimited"
    assert exc.value.response.headers["Retry-After"] == "7"
    assert slack.messages("C0INCIDENTS") == []
    assert slack.calls("chat.postMessage")[0].outcome == "ratelimited"


async def test_429_retry_handler_retries(slack: FakeSlack) -> None:
    slack.rate_limit("chat.postMessage", retry_after=1)
    c = client(slack, retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)])
    t0 = time.monotonic()
    resp = await c.chat_postMessage(channel="C0INCIDENTS", text="after retry")
    assert time.monotonic() - t0 >= 1.0
    assert resp["ok"]
    outcomes = [x.outcome for x in slack.calls("chat.postMessage")]
    assert outcomes == ["ratelimited", "ok"]
    assert [m["text"] for m in slack.messages("C0INCIDENTS")] == ["after retry"]


async def test_500_raises(slack: FakeSlack) -> None:
    slack.fail("chat.update", status=500, times=1)
    with pytest.raises(SlackApiError) as exc:
        await client(slack).chat_update(channel="C0INCIDENTS", ts="1.0", text="x")
    assert exc.value.response.status_code == 500


async def test_hang_times_out_then_release(slack: FakeSlack) -> None:
    slack.hang("chat.postMessage")
    with pytest.raises(asyncio.TimeoutError):
        await client(slack, timeout=1).chat_postMessage(channel="C0INCIDENTS", text="lost")
    call = await slack.wait_for("chat.postMessage", lambda c: c.outcome == "hung", timeout=1)
    assert not call.delivered
    assert slack.messages("C0INCIDENTS") == []
    slack.release(process=False)
    await slack.wait_for("chat.postMessage", lambda c: c.outcome == "aborted", timeout=2)
    assert slack.messages("C0INCIDENTS") == []
    # the next call goes through
    await client(slack).chat_postMessage(channel="C0INCIDENTS", text="ok")
    assert [m["text"] for m in slack.messages("C0INCIDENTS")] == ["ok"]


async def test_answer_after_client_gave_up_still_delivers(slack: FakeSlack) -> None:
    slack.respond_late("chat.postMessage", delay=3)
    c = client(slack, timeout=1)
    with pytest.raises(asyncio.TimeoutError):
        await c.chat_postMessage(channel="C0INCIDENTS", text="dup?")
    # the client can see that its message did arrive and must not post it again
    hist = await c.conversations_history(channel="C0INCIDENTS")
    assert [m["text"] for m in hist["messages"]] == ["dup?"]
    (call,) = slack.calls("chat.postMessage")
    assert call.delivered and call.outcome == "late"


async def test_rate_limit_enforcer_per_channel(slack: FakeSlack) -> None:
    slack.enable_rate_limits()
    c = client(slack)
    await c.chat_postMessage(channel="C0INCIDENTS", text="1")
    with pytest.raises(SlackApiError) as exc:
        await c.chat_postMessage(channel="C0INCIDENTS", text="2")
    assert exc.value.response.status_code == 429
    assert exc.value.response.headers["Retry-After"] == "1"
    await c.chat_postMessage(channel="C0GENERAL", text="other channel is fine")
    await asyncio.sleep(1.05)
    await c.chat_postMessage(channel="C0INCIDENTS", text="3")
    assert [m["text"] for m in slack.messages("C0INCIDENTS")] == ["1", "3"]


async def test_socket_mode_handshake_and_ack(slack: FakeSlack) -> None:
    web = client(slack)
    sm = SocketModeClient(app_token=slack.app_token, web_client=web, ping_interval=1)
    received: list[SocketModeRequest] = []

    async def listener(c: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
        received.append(req)
        await c.send_socket_mode_response(
            SocketModeResponse(envelope_id=req.envelope_id, payload={"text": "ack'd"})
        )

    sm.socket_mode_request_listeners.append(listener)
    try:
        await sm.connect()
        await slack.wait_for_socket(timeout=5)
        assert (await slack.wait_for("apps.connections.open")).token == slack.app_token
        payload = slack_slash_command("/ack", "#3", response_url=slack.response_url())
        eid = slack.push_envelope("slash_commands", payload)
        ack = await slack.wait_for_ack(eid, timeout=5)
        assert ack.payload == {"text": "ack'd"}
        assert received[0].type == "slash_commands"
        assert received[0].payload["command"] == "/ack"
        assert await sm.is_connected()
    finally:
        await sm.close()
        await web.session.close() if web.session else None


async def test_apps_connections_open_needs_app_token(slack: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as exc:
        await client(slack).apps_connections_open(app_token=slack.bot_token)
    assert exc.value.response["error"] == "not_allowed_token_type"


async def test_response_url_recorded(slack: FakeSlack) -> None:
    url = slack.response_url()
    assert url.startswith(slack.root_url + "/response/")
    async with aiohttp.ClientSession() as s, s.post(url, json={"text": "done"}) as r:
        assert r.status == 200
    call = await slack.wait_for("response_url")
    assert call.params == {"text": "done"}
    assert slack.response_posts[0].path == url.removeprefix(slack.root_url)


def test_signature_builder_verified_by_slack_sdk() -> None:
    body = slack_slash_command_body(command="/health", text="")
    headers = slack_signed_headers(SECRET, body)
    verifier = SignatureVerifier(SECRET)
    ts, sig = headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    assert verifier.is_valid(body, ts, sig)
    assert verifier.is_valid_request(body, headers)
    assert not verifier.is_valid(body + "&x=1", ts, sig)
    assert not SignatureVerifier("other-secret").is_valid(body, ts, sig)
    old = str(int(time.time()) - 600)
    assert not verifier.is_valid(body, old, slack_signature(SECRET, old, body))


async def test_builders_parsed_by_real_bolt(slack: FakeSlack) -> None:
    """The signed slash-command and block_actions bodies are accepted and parsed by a real
    AsyncApp; its respond() posts to the fake's response_url."""
    app = AsyncApp(
        signing_secret=SECRET,
        client=client(slack),
        request_verification_enabled=True,
    )
    seen: dict[str, Any] = {}

    @app.command("/incident")
    async def incident(ack: Any, command: dict[str, Any], respond: Any) -> None:
        await ack()
        seen["command"] = command
        await respond(text="declared")

    @app.action("confirm")
    async def confirm(ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        seen["action"] = body
        await respond(text="confirmed", replace_original=True)

    url = slack.response_url()
    body = slack_slash_command_body(command="/incident", text="p1 spark down", response_url=url)
    resp = await app.async_dispatch(AsyncBoltRequest(body=body, headers=signed(SECRET, body)))
    assert resp.status == 200
    assert seen["command"]["text"] == "p1 spark down"
    post = await slack.wait_for("response_url", lambda c: c.path.endswith(url.rsplit("/", 1)[1]))
    assert post.params["text"] == "declared"

    url2 = slack.response_url("actions")
    ibody = slack_interactive_body(slack_block_actions("confirm", "c-9", response_url=url2))
    resp = await app.async_dispatch(AsyncBoltRequest(body=ibody, headers=signed(SECRET, ibody)))
    assert resp.status == 200
    assert seen["action"]["actions"][0]["value"] == "c-9"
    post = await slack.wait_for("response_url", lambda c: c.params.get("text") == "confirmed")
    assert post.params["replace_original"] is True

    bad = await app.async_dispatch(
        AsyncBoltRequest(body=body, headers=signed("wrong-secret", body))
    )
    assert bad.status == 401


async def test_bolt_socket_mode_end_to_end(slack: FakeSlack) -> None:
    """A real AsyncApp over Socket Mode: slash command and button envelopes are acked with the
    handler's payload; the handler's chat.postMessage reaches the fake."""
    app = AsyncApp(client=client(slack))

    @app.command("/health")
    async def health(ack: Any, command: dict[str, Any], client: AsyncWebClient) -> None:
        await ack(text="checking…")
        await client.chat_postMessage(channel=command["channel_id"], text="all green")

    @app.action("confirm")
    async def confirm(ack: Any, body: dict[str, Any]) -> None:
        await ack()

    handler = AsyncSocketModeHandler(app, slack.app_token)
    await handler.connect_async()
    try:
        await slack.wait_for_socket(timeout=5)
        eid = slack.push_envelope("slash_commands", slack_slash_command("/health"))
        ack = await slack.wait_for_ack(eid, timeout=5)
        assert ack.payload == {"text": "checking…"}
        post = await slack.wait_for("chat.postMessage", timeout=5)
        assert post.params["channel"] == "C0INCIDENTS" and post.params["text"] == "all green"
        assert post.token == slack.bot_token
        eid2 = slack.push_envelope("interactive", slack_block_actions("confirm", "c-1"))
        ack2 = await slack.wait_for_ack(eid2, timeout=5)
        assert ack2.raw == {"envelope_id": eid2}
    finally:
        await handler.close_async()


def test_in_thread_with_sync_client() -> None:
    with FakeSlack.in_thread() as fake:
        web = WebClient(token=fake.bot_token, base_url=fake.url)
        web.chat_postMessage(channel="C0INCIDENTS", text="from a thread")
        call = fake.wait_for_sync("chat.postMessage", lambda c: c.delivered, timeout=2)
        assert call.params["text"] == "from a thread"
        with pytest.raises(TimeoutError):
            fake.wait_for_sync("chat.update", timeout=0.2)
        fake.hang("auth.test")
        with pytest.raises(TimeoutError):
            WebClient(token=fake.bot_token, base_url=fake.url, timeout=1).auth_test()
        url = fake.url
    # the server is gone afterwards
    with pytest.raises(Exception):  # noqa: B017 - any connection error
        WebClient(token="xoxb-x", base_url=url, timeout=1).auth_test()


def test_block_actions_payload_shape() -> None:
    p = slack_block_actions("cancel", "c-1", message_ts="1764410099.000200", thread_ts="1.0")
    assert p["type"] == "block_actions"
    assert p["actions"][0]["action_id"] == "cancel"
    assert p["container"]["message_ts"] == p["message"]["ts"] == "1764410099.000200"
    decoded = json.loads(
        __import__("urllib.parse").parse.parse_qs(slack_interactive_body(p))["payload"][0]
    )
    assert decoded == p


async def test_upload_flow_of_the_real_client_and_sharing_by_permalink(slack: FakeSlack) -> None:
    """slack_sdk's files_upload_v2 (getUploadURLExternal → POST to the URL → complete into
    a channel) against the fake; then an unshared upload shared by a message's link."""
    web = client(slack)
    done = await web.files_upload_v2(
        channel="C0GENERAL", content=b"report bytes", filename="r.txt", title="Report"
    )
    (shared_file,) = done["files"]
    assert slack.files[shared_file["id"]].content == b"report bytes"
    (upload,) = slack.calls("upload")
    assert upload.body == b"report bytes" and upload.path == f"/upload/{shared_file['id']}"
    (posted,) = slack.messages("C0GENERAL")
    assert posted["files"][0]["id"] == shared_file["id"]
    assert slack.shared(shared_file["id"]) == [("C0GENERAL", posted["ts"])]

    got = await web.files_getUploadURLExternal(filename="pm.md", length=3)
    assert got["upload_url"] == f"{slack.root_url}/upload/{got['file_id']}"
    with pytest.raises(SlackApiError) as exc:  # completed before its bytes arrived
        await web.files_completeUploadExternal(files=[{"id": got["file_id"]}])
    assert exc.value.response["error"] == "file_not_found"
    async with aiohttp.ClientSession() as http, http.post(got["upload_url"], data=b"abc") as r:
        assert r.status == 200
    completed = await web.files_completeUploadExternal(
        files=[{"id": got["file_id"], "title": "PM"}]
    )
    (private,) = completed["files"]
    assert private["title"] == "PM" and private["shares"] == {} and not private["is_public"]
    assert slack.shared(got["file_id"]) == []
    message = await web.chat_postMessage(channel="C0INCIDENTS", text=f"<{private['permalink']}|pm>")
    assert slack.shared(got["file_id"]) == [("C0INCIDENTS", message["ts"])]
    with pytest.raises(SlackApiError) as exc:
        await web.files_completeUploadExternal(files=[{"id": "F0UNKNOWN"}])
    assert exc.value.response["error"] == "file_not_found"
