"""The Slack adapter in-process: a real App with its HTTP server (or Socket Mode) against the
fake Slack (tests/fakes/slack_api.py); requests are signed like Slack signs them."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from sqlalchemy import select

from bot.adapters.slack import SlackAdapter
from bot.app import App
from bot.settings import Channel, Channels, Config, Person
from bot.store.models import AuditEntry, Incident, OutboxMessage
from bot.store.models import Room as RoomRow
from tests.fakes.payloads import (
    slack_block_actions,
    slack_interactive_body,
    slack_signed_headers,
    slack_slash_command,
    slack_slash_command_body,
    slack_view_submission,
)
from tests.fakes.slack_api import FakeSlack, RecordedCall
from tests.support.http import wait_healthy

SECRET = "0123456789abcdef0123456789abcdef"
CONFIG = Config(
    people={
        "alice": Person(name="Alice", slack="U0ALICE", roles=("responder",)),
        "bob": Person(name="Bob", slack="U0BOB", roles=("responder",)),
    },
    channels=Channels(incidents=Channel(slack="C0INCIDENTS")),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Bot:
    def __init__(self, app: App, adapter: SlackAdapter, port: int, slack: FakeSlack) -> None:
        self.app, self.adapter, self.slack = app, adapter, slack
        self.url = f"http://127.0.0.1:{port}/slack/events"

    async def post(
        self, body: str, *, secret: str = SECRET, timestamp: int | None = None
    ) -> tuple[int, str]:
        headers = slack_signed_headers(secret, body, timestamp=timestamp)
        # Slack gives up after 3 s: the bot must have answered by then.
        timeout = aiohttp.ClientTimeout(total=3)
        async with (
            aiohttp.ClientSession(timeout=timeout) as s,
            s.post(self.url, data=body.encode(), headers=headers) as r,
        ):
            return r.status, await r.text()

    async def command(self, command: str, text: str, user: str = "U0ALICE", **kw: Any) -> str:
        """Send a slash command; returns its response_url (where the reply will go)."""
        url = self.slack.response_url()
        name = {"U0ALICE": "alice", "U0BOB": "bob"}.get(user, "someone")
        body = slack_slash_command_body(
            command=command, text=text, user_id=user, user_name=name, response_url=url, **kw
        )
        status, _ = await self.post(body)
        assert status == 200
        return url

    async def click(
        self,
        message: dict[str, Any],
        channel: str,
        user: str,
        *,
        ephemeral: bool = False,
        label: str | None = None,
        **kw: Any,
    ) -> str:
        """Click the first button (or the one labelled ``label``) of a message the bot posted."""
        elements = next(b for b in message["blocks"] if b["type"] == "actions")["elements"]
        button = next(e for e in elements if label in (None, e["text"]["text"]))
        url = self.slack.response_url("actions")
        payload = slack_block_actions(
            button["action_id"],
            button["value"],
            block_id="pira-actions",
            user_id=user,
            user_name={"U0ALICE": "alice", "U0BOB": "bob"}[user],
            channel_id=channel,
            message_ts=message["ts"],
            message=message,
            response_url=url,
            button_text=button["text"]["text"],
            **kw,
        )
        if ephemeral:
            payload["container"]["is_ephemeral"] = True
        body = slack_interactive_body(payload)
        status, _ = await self.post(body)
        assert status == 200
        return url

    async def submit(
        self, view: dict[str, Any], text: str | None, user: str = "U0ALICE"
    ) -> tuple[int, str]:
        """Press Submit on a modal the bot opened, with ``text`` typed in its input."""
        (block,) = view["blocks"]
        payload = slack_view_submission(
            view,
            {block["block_id"]: {block["element"]["action_id"]: text}},
            user_id=user,
            user_name={"U0ALICE": "alice", "U0BOB": "bob"}.get(user, "carol"),
        )
        return await self.post(slack_interactive_body(payload))

    async def reply(self, url: str) -> RecordedCall:
        path = url.removeprefix(self.slack.root_url)
        return await self.slack.wait_for("response_url", lambda c: c.path == path, timeout=10)

    def incidents(self) -> list[Incident]:
        with self.app.store.read() as s:
            return list(s.scalars(select(Incident)))


@asynccontextmanager
async def running(
    make_app: Callable[..., App],
    slack: FakeSlack,
    *,
    socket_mode: bool = False,
    config: Config = CONFIG,
    **extra_env: str,
) -> AsyncIterator[Bot]:
    port = free_port()
    env = {
        "PIRA_SLACK_BOT_TOKEN": slack.bot_token,
        "PIRA_SLACK_SIGNING_SECRET": SECRET,
        "PIRA_SLACK_API_URL": slack.url,
        "PIRA_HTTP_PORT": str(port),
        **extra_env,
    }
    if socket_mode:
        env["PIRA_SLACK_APP_TOKEN"] = slack.app_token
    app = make_app(config=config, env=env)
    (adapter,) = app.chat_adapters()
    assert isinstance(adapter, SlackAdapter)
    app.add_adapter(adapter)
    await app.start(scheduler=False)
    stop = asyncio.Event()
    serve = asyncio.create_task(app.serve_forever(stop))
    try:
        await wait_healthy(f"http://127.0.0.1:{port}")
        yield Bot(app, adapter, port, slack)
    finally:
        stop.set()
        await serve
        await app.stop()


def posted(slack: FakeSlack, channel: str, contains: str) -> Callable[[RecordedCall], bool]:
    def match(c: RecordedCall) -> bool:
        return bool(
            c.delivered
            and c.response
            and c.response.get("channel") == channel
            and contains in str(c.params.get("text", ""))
        )

    return match


def message_of(call: RecordedCall) -> dict[str, Any]:
    assert call.response is not None
    return dict(call.response["message"])


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for b in message.get("blocks", []) if b["type"] == "actions" for e in b["elements"]]


async def test_incident_command_announces_opens_channel_and_ack_click_updates(
    make_app: Callable[..., App], slack: FakeSlack
) -> None:
    async with running(make_app, slack) as bot:
        # The reply path hangs: the ack must not wait for it (nor for the work).
        slack.hang("response_url")
        # Typed "<!channel>", as Slack sends it (should_escape: & < > arrive escaped).
        url = await bot.command("/incident", "p1 Spark &lt;!channel&gt; down &amp; out")
        announce = await slack.wait_for(
            "chat.postMessage", posted(slack, "C0INCIDENTS", "Incident"), timeout=10
        )
        slack.release("response_url")
        reply = await bot.reply(url)
        assert reply.params["response_type"] == "ephemeral"
        assert "#1" in reply.params["text"]

        text = announce.params["text"]
        assert "&lt;!channel&gt;" in text and "<!channel>" not in text
        assert "&amp; out" in text and "&amp;amp;" not in text
        assert announce.params["blocks"][0]["text"]["type"] == "mrkdwn"
        ack, update_button, resolve_button = buttons(message_of(announce))
        assert ack["value"] == "/ack #1" and ack["style"] == "primary"
        assert [update_button["text"]["text"], resolve_button["text"]["text"]] == [
            "Post update",
            "Resolve",
        ]
        assert announce.params["metadata"]["event_payload"]["key"] == "inc1:announce@slack"

        created = await slack.wait_for("conversations.create", timeout=10)
        assert created.params["name"] == "incident-1"
        channel = created.response["channel"]["id"]
        invite = await slack.wait_for("conversations.invite", timeout=10)
        assert set(invite.params["users"].split(",")) == {"U0ALICE", "U0BOB"}
        ticket = await slack.wait_for(
            "chat.postMessage", posted(slack, channel, "Incident"), timeout=10
        )
        assert "thread_ts" not in ticket.params
        with bot.app.store.read() as s:
            room = s.scalar(select(RoomRow).where(RoomRow.platform == "slack"))
            assert room is not None and (room.chat_id, room.thread_id) == (channel, None)
        (incident,) = bot.incidents()
        assert incident.title == "Spark <!channel> down & out" and incident.reporter == "alice"

        # Bob clicks Acknowledge on the announcement.
        click_url = await bot.click(message_of(announce), "C0INCIDENTS", "U0BOB")
        answer = await bot.reply(click_url)
        assert "acknowledged by bob" in answer.params["text"]
        assert answer.params["replace_original"] is False
        update = await slack.wait_for("chat.update", timeout=10)
        assert update.params["channel"] == "C0INCIDENTS"
        assert update.params["ts"] == announce.response["ts"]
        assert "Acknowledged by bob" in update.params["text"]
        # No Acknowledge on an acknowledged incident; Post update and Resolve stay.
        assert [b["text"]["text"] for b in buttons(update.params)] == ["Post update", "Resolve"]
        (incident,) = bot.incidents()
        assert incident.acknowledged_by == "bob" and incident.commander == "bob"
        (message,) = [m for m in slack.messages("C0INCIDENTS") if m["ts"] == update.params["ts"]]
        assert "Acknowledged by bob" in message["text"]

        # A command in the incident's channel needs no #N.
        url = await bot.command("/update", "executors back", channel_id=channel)
        assert "Update for #1 posted" in (await bot.reply(url)).params["text"]


async def test_forged_and_stale_signatures_are_refused(
    make_app: Callable[..., App], slack: FakeSlack
) -> None:
    async with running(make_app, slack) as bot:
        url = slack.response_url()
        body = slack_slash_command_body(command="/incident", text="p0 forged", response_url=url)
        assert (await bot.post(body, secret="not-the-secret"))[0] == 401
        stale = int(time.time()) - 6 * 60
        assert (await bot.post(body, timestamp=stale))[0] == 401
        click = slack_interactive_body(slack_block_actions("pira:0", "/incident p0 x"))
        assert (await bot.post(click, secret="nope"))[0] == 401
        # unsigned
        async with aiohttp.ClientSession() as http, http.post(bot.url, data=body) as r:
            assert r.status == 401
        # The same body correctly signed is accepted: the refusals were the signature's.
        await asyncio.sleep(0.2)
        assert bot.incidents() == []
        with bot.app.store.read() as s:
            assert s.scalars(select(OutboxMessage)).all() == []
            assert s.scalars(select(AuditEntry)).all() == []
        assert slack.calls("response_url") == [] and slack.calls("chat.postMessage") == []
        assert (await bot.post(body))[0] == 200
        await bot.reply(url)
        assert len(bot.incidents()) == 1


async def test_usage_error_is_short_and_ephemeral(
    make_app: Callable[..., App], slack: FakeSlack
) -> None:
    async with running(make_app, slack) as bot:
        url = await bot.command("/incident", "p9 what")
        reply = await bot.reply(url)
        assert reply.params["response_type"] == "ephemeral"
        assert "Usage: /incident" in reply.params["text"]
        assert "Traceback" not in reply.params["text"]
        url = await bot.command("/pira", "oncall")  # the catch-all command
        assert "Unknown command" not in (await bot.reply(url)).params["text"]
        assert bot.incidents() == []


async def test_socket_mode_round_trip(make_app: Callable[..., App], slack: FakeSlack) -> None:
    async with running(make_app, slack, socket_mode=True) as bot:
        await slack.wait_for_socket(timeout=10)
        url = slack.response_url()
        eid = slack.push_envelope(
            "slash_commands", slack_slash_command("/incident", "p2 disk full", response_url=url)
        )
        ack = await slack.wait_for_ack(eid, timeout=5)
        assert ack.payload in (None, {}, {"text": ""}) or "text" not in (ack.payload or {})
        assert "#1" in (await bot.reply(url)).params["text"]
        announce = await slack.wait_for(
            "chat.postMessage", posted(slack, "C0INCIDENTS", "disk full"), timeout=10
        )
        message = message_of(announce)
        button = buttons(message)[0]
        assert button["value"] == "/ack #1"
        click_url = slack.response_url("actions")
        payload = slack_block_actions(
            button["action_id"],
            button["value"],
            user_id="U0ALICE",
            message_ts=message["ts"],
            message=message,
            response_url=click_url,
        )
        eid = slack.push_envelope("interactive", payload)
        await slack.wait_for_ack(eid, timeout=5)
        await bot.reply(click_url)
        await slack.wait_for("chat.update", timeout=10)
        assert bot.incidents()[0].acknowledged_by == "alice"
        # Socket Mode needs no HTTP route: nothing listens on /slack/events.
        body = slack_slash_command_body(command="/incident", text="p1 x")
        assert (await bot.post(body))[0] == 404


async def test_missing_scope_falls_back_to_a_thread(
    make_app: Callable[..., App], slack: FakeSlack
) -> None:
    slack.missing_scopes.add("conversations.create")
    async with running(make_app, slack) as bot:
        await bot.command("/incident", "p2 slow queries")
        announce = await slack.wait_for(
            "chat.postMessage", posted(slack, "C0INCIDENTS", "slow queries"), timeout=10
        )
        root = announce.response["ts"]
        ticket = await slack.wait_for(
            "chat.postMessage", lambda c: c.params.get("thread_ts") == root, timeout=10
        )
        assert ticket.delivered and ticket.params["channel"] == "C0INCIDENTS"
        with bot.app.store.read() as s:
            room = s.scalar(select(RoomRow))
            assert room is not None and (room.chat_id, room.thread_id) == ("C0INCIDENTS", root)
        assert len(slack.channels) == 2  # no channel was created

        # Acknowledge on the ticket, inside the thread: the clicked ticket loses its button.
        ticket_msg = message_of(ticket)
        assert buttons(ticket_msg)
        url = await bot.click(ticket_msg, "C0INCIDENTS", "U0ALICE", thread_ts=root)
        assert "acknowledged by alice" in (await bot.reply(url)).params["text"]
        marked = await slack.wait_for(
            "chat.update", lambda c: c.params["ts"] == ticket.response["ts"], timeout=10
        )
        # Acknowledge goes; what the incident still offers stays under the "who clicked" line.
        assert [b["text"]["text"] for b in buttons(marked.params)] == ["Post update", "Resolve"]
        assert "<@U0ALICE>" in str(marked.params["blocks"][-2])
        # Later posts of the incident's room go to the same thread.
        await slack.wait_for(
            "chat.postMessage",
            lambda c: c.params.get("thread_ts") == root and "acknowledged" in c.params["text"],
            timeout=10,
        )
        assert len(slack.calls("conversations.create")) == 1


async def test_name_taken_reuses_pira_channel_from_before_a_crash(
    make_app: Callable[..., App], slack: FakeSlack
) -> None:
    # PIRA created incident-1 and crashed before it stored the room (and then left it).
    earlier = slack.add_channel("incident-1", "C0EARLIER", bot_is_member=False)
    async with running(make_app, slack) as bot:
        await bot.command("/incident", "p1 first")
        ticket = await slack.wait_for(
            "chat.postMessage", posted(slack, "C0EARLIER", "first"), timeout=10
        )
        assert ticket.delivered
        assert slack.calls("conversations.join")[0].params["channel"] == earlier.id
        assert {"U0ALICE", "U0BOB"} <= earlier.members
        with bot.app.store.read() as s:
            room = s.scalar(select(RoomRow))
            assert room is not None and room.chat_id == "C0EARLIER"


async def test_name_taken_by_an_old_channel_uses_a_thread(
    make_app: Callable[..., App], slack: FakeSlack
) -> None:
    old = slack.add_channel("incident-1", "C0OLD")
    old.created = int(time.time()) - 30 * 86400  # from an earlier database, not this incident
    async with running(make_app, slack) as bot:
        await bot.command("/incident", "p1 again")
        announce = await slack.wait_for(
            "chat.postMessage", posted(slack, "C0INCIDENTS", "again"), timeout=10
        )
        await slack.wait_for(
            "chat.postMessage",
            lambda c: c.params.get("thread_ts") == announce.response["ts"],
            timeout=10,
        )
        assert slack.messages("C0OLD") == []


async def test_page_dm_acknowledge_click(make_app: Callable[..., App], slack: FakeSlack) -> None:
    async with running(make_app, slack) as bot:
        await bot.command("/incident", "p3 flaky job")
        await slack.wait_for("chat.postMessage", posted(slack, "C0INCIDENTS", "flaky"), timeout=10)
        url = await bot.command("/page", "@bob #1 please look")
        await bot.reply(url)
        page = await slack.wait_for(
            "chat.postMessage", lambda c: c.params.get("channel") == "U0BOB", timeout=10
        )
        assert page.delivered
        dm = page.response["channel"]
        assert dm.startswith("D")
        message = message_of(page)
        (ack,) = buttons(message)
        assert ack["value"] == "/ack #1"
        url = await bot.click(message, dm, "U0BOB")
        assert "acknowledged by bob" in (await bot.reply(url)).params["text"]
        marked = await slack.wait_for(
            "chat.update", lambda c: c.params["channel"] == dm, timeout=10
        )
        assert buttons(marked.params) == []
        assert bot.incidents()[0].acknowledged_by == "bob"


async def test_confirmation_buttons_replace_the_prompt(
    make_app: Callable[..., App], slack: FakeSlack, tmp_path: Path
) -> None:
    # A cluster that does not answer: the prompt says "state unknown"; Cancel never calls it.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    config = CONFIG.model_copy(
        update={
            "people": {
                **CONFIG.people,
                "alice": Person(name="Alice", slack="U0ALICE", roles=("responder", "operator")),
            }
        }
    )
    async with running(make_app, slack, config=config, KUBECONFIG=str(kubeconfig)) as bot:
        url = await bot.command("/restart", "spark-connect")
        prompt = await bot.reply(url)
        elements = [
            e for b in prompt.params["blocks"] if b["type"] == "actions" for e in b["elements"]
        ]
        assert [e["text"]["text"] for e in elements] == ["Confirm", "Cancel"]
        assert elements[0]["value"].startswith("/confirm ")
        # Bob may not confirm Alice's action.
        message = {
            "ts": "1764410000.000100",
            "text": prompt.params["text"],
            "blocks": prompt.params["blocks"],
        }
        cancel = dict(message, blocks=[{"type": "actions", "elements": [elements[1]]}])
        url = await bot.click(cancel, "C0INCIDENTS", "U0BOB", ephemeral=True)
        refused = await bot.reply(url)
        assert "Only the person who asked" in refused.params["text"]
        url = await bot.click(cancel, "C0INCIDENTS", "U0ALICE", ephemeral=True)
        done = await bot.reply(url)
        assert done.params["text"].startswith("Cancelled")
        assert done.params["replace_original"] is True  # the prompt makes way for the outcome
        assert slack.calls("chat.update") == []


async def test_mention_in_a_thread_runs_a_command(
    make_app: Callable[..., App], slack: FakeSlack
) -> None:
    """Slash commands cannot be typed in threads; ``@pira /cmd`` can."""
    async with running(make_app, slack) as bot:
        event = {
            "token": "unused",
            "team_id": FakeSlack.TEAM_ID,
            "api_app_id": FakeSlack.APP_ID,
            "type": "event_callback",
            "event_id": "Ev0PIRA0001",
            "event_time": int(time.time()),
            "event": {
                "type": "app_mention",
                "user": "U0ALICE",
                "text": f"<@{FakeSlack.BOT_USER_ID}> /incident p3 from a thread",
                "channel": "C0INCIDENTS",
                "ts": "1764410001.000200",
                "thread_ts": "1764410000.000100",
                "event_ts": "1764410001.000200",
            },
        }
        body = json.dumps(event)
        headers = slack_signed_headers(SECRET, body, content_type="application/json")
        async with (
            aiohttp.ClientSession() as s,
            s.post(bot.url, data=body.encode(), headers=headers) as r,
        ):
            assert r.status == 200
        answer = await slack.wait_for("chat.postEphemeral", timeout=10)
        assert answer.params["user"] == "U0ALICE"
        assert answer.params["thread_ts"] == "1764410000.000100"
        assert "#1" in answer.params["text"]
        assert bot.incidents()[0].title == "from a thread"


def ephemeral_to(user: str, contains: str) -> Callable[[RecordedCall], bool]:
    def match(c: RecordedCall) -> bool:
        return bool(
            c.delivered and c.params.get("user") == user and contains in str(c.params.get("text"))
        )

    return match


async def declared(bot: Bot, title: str) -> dict[str, Any]:
    """Declare an incident by slash command; the announcement as Slack holds it."""
    await bot.command("/incident", f"p2 {title}")
    announce = await bot.slack.wait_for(
        "chat.postMessage", posted(bot.slack, "C0INCIDENTS", title), timeout=10
    )
    return message_of(announce)


async def test_post_update_button_asks_in_a_modal_and_posts_the_update(
    make_app: Callable[..., App], slack: FakeSlack
) -> None:
    async with running(make_app, slack) as bot:
        announcement = await declared(bot, "executors lost")
        url = await bot.click(announcement, "C0INCIDENTS", "U0BOB", label="Post update")
        opened = await slack.wait_for("views.open", timeout=10)
        assert opened.delivered
        view = opened.response["view"]
        (block,) = view["blocks"]
        assert block["label"]["text"] == "What's new on #1?"
        assert block["element"]["type"] == "plain_text_input" and block["element"]["multiline"]
        assert view["callback_id"] == "pira_prompt"
        meta = json.loads(view["private_metadata"])
        assert meta["command"] == "/update #1" and meta["channel"] == "C0INCIDENTS"
        # The click itself answers nothing: the modal asks.
        assert url.removeprefix(slack.root_url) not in [c.path for c in slack.response_posts]

        # An empty answer is refused in the modal and changes nothing.
        status, text = await bot.submit(view, "   ", user="U0BOB")
        assert status == 200
        refused = json.loads(text)
        assert refused["response_action"] == "errors"
        assert refused["errors"]["pira_text"]
        status, text = await bot.submit(view, None, user="U0BOB")
        assert status == 200 and json.loads(text)["response_action"] == "errors"

        status, text = await bot.submit(view, "executors recovering", user="U0BOB")
        assert status == 200 and "errors" not in text
        update = await slack.wait_for(
            "chat.postMessage", posted(slack, "C0INCIDENTS", "executors recovering"), timeout=10
        )
        assert "*Update:* executors recovering" in update.params["text"]
        told = await slack.wait_for(
            "chat.postEphemeral", ephemeral_to("U0BOB", "Update for #1 posted"), timeout=10
        )
        assert told.params["channel"] == "C0INCIDENTS" and not told.params.get("thread_ts")
        # Once: the refused submissions posted nothing.
        updates = [
            c
            for c in slack.calls("chat.postMessage", delivered=True)
            if "*Update:*" in str(c.params.get("text"))
        ]
        assert len(updates) == 1
        assert len(slack.calls("chat.postEphemeral")) == 1
        (incident,) = bot.incidents()
        assert incident.commander is None  # posting an update does not take command


async def test_resolve_button_resolves_with_root_cause_and_resolution(
    make_app: Callable[..., App], slack: FakeSlack
) -> None:
    async with running(make_app, slack) as bot:
        announcement = await declared(bot, "driver crashloop")
        await bot.click(announcement, "C0INCIDENTS", "U0ALICE", label="Resolve")
        opened = await slack.wait_for("views.open", timeout=10)
        view = opened.response["view"]
        assert view["blocks"][0]["label"]["text"].startswith("Root cause of #1")
        await bot.submit(view, "driver OOM -- raised memory", user="U0ALICE")

        resolution = await slack.wait_for(
            "chat.postMessage", posted(slack, "C0INCIDENTS", "Resolved"), timeout=10
        )
        assert "driver OOM" in resolution.params["text"]
        assert "raised memory" in resolution.params["text"]
        edited = await slack.wait_for(
            "chat.update", lambda c: c.params["ts"] == announcement["ts"], timeout=10
        )
        assert buttons(edited.params) == []  # nothing to click on a resolved incident
        await slack.wait_for("chat.postEphemeral", ephemeral_to("U0ALICE", "#1"), timeout=10)
        (incident,) = bot.incidents()
        assert incident.status == "resolved"
        assert incident.root_cause == "driver OOM" and incident.resolution == "raised memory"


async def test_prompted_action_needs_the_role_and_is_audited(
    make_app: Callable[..., App], slack: FakeSlack
) -> None:
    slack.add_user("U0CAROL", "carol", "Carol Example")
    async with running(make_app, slack) as bot:
        announcement = await declared(bot, "queue stuck")
        await bot.click(announcement, "C0INCIDENTS", "U0ALICE", label="Resolve")
        view = (await slack.wait_for("views.open", timeout=10)).response["view"]
        await bot.submit(view, "it fixed itself", user="U0CAROL")
        told = await slack.wait_for("chat.postEphemeral", timeout=10)
        assert told.params["user"] == "U0CAROL"
        assert "needs the responder role" in told.params["text"]
        (incident,) = bot.incidents()
        assert incident.status != "resolved" and incident.root_cause is None
        with bot.app.store.read() as s:
            entries = list(s.scalars(select(AuditEntry).where(AuditEntry.outcome == "refused")))
        assert [(e.actor, e.action) for e in entries] == [("carol", "/resolve #1 it fixed itself")]
        assert slack.calls("chat.update") == []


async def test_prompt_in_socket_mode(make_app: Callable[..., App], slack: FakeSlack) -> None:
    async with running(make_app, slack, socket_mode=True):
        await slack.wait_for_socket(timeout=10)
        slack.push_envelope("slash_commands", slack_slash_command("/incident", "p2 slow reads"))
        announce = await slack.wait_for(
            "chat.postMessage", posted(slack, "C0INCIDENTS", "slow reads"), timeout=10
        )
        message = message_of(announce)
        button = next(b for b in buttons(message) if b["text"]["text"] == "Post update")
        payload = slack_block_actions(
            button["action_id"],
            button["value"],
            user_id="U0ALICE",
            message_ts=message["ts"],
            message=message,
            button_text="Post update",
        )
        await slack.wait_for_ack(slack.push_envelope("interactive", payload), timeout=5)
        opened = await slack.wait_for("views.open", timeout=10)
        assert opened.params["trigger_id"] == payload["trigger_id"]
        view = opened.response["view"]
        empty = slack_view_submission(view, {"pira_text": {"text": " "}})
        ack = await slack.wait_for_ack(slack.push_envelope("interactive", empty), timeout=5)
        assert (ack.payload or {}).get("response_action") == "errors"
        typed = slack_view_submission(view, {"pira_text": {"text": "reads fast again"}})
        ack = await slack.wait_for_ack(slack.push_envelope("interactive", typed), timeout=5)
        assert not (ack.payload or {}).get("response_action")
        update = await slack.wait_for(
            "chat.postMessage", posted(slack, "C0INCIDENTS", "reads fast again"), timeout=10
        )
        assert "*Update:* reads fast again" in update.params["text"]
        await slack.wait_for("chat.postEphemeral", ephemeral_to("U0ALICE", "Update"), timeout=10)


async def test_views_open_refuses_an_unknown_or_used_trigger(slack: FakeSlack) -> None:
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    from bot.adapters import slack_format as fmt

    client = AsyncWebClient(token=slack.bot_token, base_url=slack.url)
    view = fmt.prompt_view("Post update", "What's new?", {"command": "/update #1"})
    for trigger in ("", "not-a-trigger"):
        with pytest.raises(SlackApiError) as err:
            await client.views_open(trigger_id=trigger, view=view)
        assert err.value.response["error"] == "invalid_trigger_id"
    trigger = slack_block_actions()["trigger_id"]
    assert (await client.views_open(trigger_id=trigger, view=view))["view"]["id"]
    with pytest.raises(SlackApiError) as err:
        await client.views_open(trigger_id=trigger, view=view)
    assert err.value.response["error"] == "exchanged_trigger_id"
