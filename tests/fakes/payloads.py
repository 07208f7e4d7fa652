"""Builders for inbound Slack and Telegram payloads with the platforms' real shapes.

Templates live in ``tests/fixtures/{slack,telegram}/*.json``; builders deep-copy a template and
override fields. Default ``response_url`` values point at a closed loopback port so that a bot
under test never contacts Slack; pass ``FakeSlack.response_url()`` to have them recorded.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import secrets
import time
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

JSONDict = dict[str, Any]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

_ids = itertools.count(1)
_update_ids = itertools.count(200_000_001)
_message_ids = itertools.count(1_001)


@cache
def _load(name: str) -> JSONDict:
    with (FIXTURES / name).open(encoding="utf-8") as f:
        data: JSONDict = json.load(f)
    return data


def fixture(name: str) -> JSONDict:
    """A fresh copy of ``tests/fixtures/<name>`` (e.g. ``"slack/block_actions.json"``)."""
    return copy.deepcopy(_load(name))


# --------------------------------------------------------------------------------------------
# Slack
# --------------------------------------------------------------------------------------------


def slack_signature(signing_secret: str, timestamp: str | int, body: str | bytes) -> str:
    """``v0=`` + hex HMAC-SHA256 of ``v0:{timestamp}:{body}`` keyed by the signing secret."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    base = f"v0:{timestamp}:".encode() + raw
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


def slack_signed_headers(
    signing_secret: str,
    body: str | bytes,
    *,
    timestamp: int | None = None,
    content_type: str = "application/x-www-form-urlencoded",
) -> dict[str, str]:
    """Headers Slack sends with an HTTP request: signature, timestamp, content type."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": slack_signature(signing_secret, ts, body),
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
    }


def _trigger_id() -> str:
    n = next(_ids)
    return f"{1000000000 + n}.{1000000001}.{secrets.token_hex(16)}"


def slack_slash_command(
    command: str = "/incident",
    text: str = "",
    *,
    user_id: str = "U0ALICE",
    user_name: str = "alice",
    channel_id: str = "C0INCIDENTS",
    channel_name: str = "incidents",
    team_id: str = "T0PIRA001",
    team_domain: str = "pira-test",
    api_app_id: str = "A0PIRA001",
    response_url: str | None = None,
    trigger_id: str | None = None,
    verification_token: str | None = None,
) -> JSONDict:
    """A slash command payload (the form fields; also the Socket Mode ``payload``)."""
    p = fixture("slack/slash_command.json")
    p.update(
        command=command,
        text=text,
        user_id=user_id,
        user_name=user_name,
        channel_id=channel_id,
        channel_name=channel_name,
        team_id=team_id,
        team_domain=team_domain,
        api_app_id=api_app_id,
        trigger_id=trigger_id or _trigger_id(),
    )
    if response_url is not None:
        p["response_url"] = response_url
    else:
        p["response_url"] = p["response_url"].replace("placeholder", secrets.token_hex(8))
    if verification_token is not None:
        p["token"] = verification_token
    return p


def slack_slash_command_body(payload: JSONDict | None = None, **kwargs: Any) -> str:
    """Form-encoded body of a slash command request (as Slack POSTs it)."""
    return urlencode(payload if payload is not None else slack_slash_command(**kwargs))


def slack_block_actions(
    action_id: str = "confirm",
    value: str = "c-1234",
    *,
    block_id: str = "confirm-actions",
    user_id: str = "U0ALICE",
    user_name: str = "alice",
    channel_id: str = "C0INCIDENTS",
    channel_name: str = "incidents",
    message_ts: str = "1764410000.000100",
    message: JSONDict | None = None,
    thread_ts: str | None = None,
    team_id: str = "T0PIRA001",
    api_app_id: str = "A0PIRA001",
    response_url: str | None = None,
    trigger_id: str | None = None,
    button_text: str = "Confirm",
) -> JSONDict:
    """A ``block_actions`` interactivity payload for a button click on a bot message."""
    p = fixture("slack/block_actions.json")
    p["user"].update(id=user_id, username=user_name, name=user_name, team_id=team_id)
    p["api_app_id"] = api_app_id
    p["team"]["id"] = team_id
    p["container"].update(message_ts=message_ts, channel_id=channel_id)
    p["channel"] = {"id": channel_id, "name": channel_name}
    if message is not None:
        p["message"] = copy.deepcopy(message)
    p["message"]["ts"] = message_ts
    if thread_ts:
        p["container"]["thread_ts"] = thread_ts
        p["message"]["thread_ts"] = thread_ts
    p["trigger_id"] = trigger_id or _trigger_id()
    if response_url is not None:
        p["response_url"] = response_url
    else:
        p["response_url"] = p["response_url"].replace("placeholder", secrets.token_hex(8))
    action = p["actions"][0]
    action.update(
        action_id=action_id,
        block_id=block_id,
        value=value,
        action_ts=f"{time.time():.6f}",
    )
    action["text"]["text"] = button_text
    return p


def slack_view_submission(
    view: JSONDict | None = None,
    values: dict[str, dict[str, str | None]] | None = None,
    *,
    callback_id: str | None = None,
    private_metadata: str | None = None,
    user_id: str = "U0ALICE",
    user_name: str = "alice",
    team_id: str = "T0PIRA001",
    api_app_id: str = "A0PIRA001",
) -> JSONDict:
    """A ``view_submission`` payload: someone pressed Submit on a modal. ``view`` is the view
    as opened (e.g. ``FakeSlack.views[-1]``); ``values`` maps block_id → action_id → typed
    text (``None``: left empty) for ``plain_text_input`` elements."""
    v: JSONDict = copy.deepcopy(view) if view is not None else {}
    v.setdefault("id", f"V{next(_ids):010d}")
    v.setdefault("team_id", team_id)
    v.setdefault("type", "modal")
    v.setdefault("blocks", [])
    v.setdefault("title", {"type": "plain_text", "text": "PIRA", "emoji": True})
    v.setdefault("private_metadata", "")
    v.setdefault("callback_id", "")
    v.setdefault("hash", f"{int(time.time())}.{secrets.token_hex(4)}")
    v.setdefault("clear_on_close", False)
    v.setdefault("notify_on_close", False)
    v.setdefault("previous_view_id", None)
    v.setdefault("root_view_id", v["id"])
    v.setdefault("app_id", api_app_id)
    v.setdefault("external_id", "")
    v.setdefault("app_installed_team_id", team_id)
    v.setdefault("bot_id", "B0PIRABOT")
    if callback_id is not None:
        v["callback_id"] = callback_id
    if private_metadata is not None:
        v["private_metadata"] = private_metadata
    v["state"] = {
        "values": {
            block: {
                action: {"type": "plain_text_input", "value": text}
                for action, text in actions.items()
            }
            for block, actions in (values or {}).items()
        }
    }
    return {
        "type": "view_submission",
        "team": {"id": team_id, "domain": "pira-test"},
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "api_app_id": api_app_id,
        "token": "gIkuvaNzQIHg97ATvDxqgjtO",
        "trigger_id": _trigger_id(),
        "view": v,
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def slack_interactive_body(payload: JSONDict) -> str:
    """Form-encoded body of an interactivity request: ``payload=<url-encoded JSON>``."""
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))})


def slack_socket_envelope(
    type: str,
    payload: JSONDict,
    *,
    envelope_id: str | None = None,
    accepts_response_payload: bool = True,
) -> JSONDict:
    """A Socket Mode envelope as Slack sends it over the websocket."""
    return {
        "envelope_id": envelope_id or secrets.token_hex(16),
        "payload": payload,
        "type": type,
        "accepts_response_payload": accepts_response_payload,
    }


# --------------------------------------------------------------------------------------------
# Telegram
# --------------------------------------------------------------------------------------------


def tg_user(
    user_id: int = 1001,
    first_name: str = "Alice",
    username: str | None = "alice",
    *,
    is_bot: bool = False,
    language_code: str | None = "en",
) -> JSONDict:
    u: JSONDict = {"id": user_id, "is_bot": is_bot, "first_name": first_name}
    if username:
        u["username"] = username
    if language_code:
        u["language_code"] = language_code
    return u


def tg_private_chat(user: JSONDict | None = None) -> JSONDict:
    user = user or tg_user()
    chat: JSONDict = {"id": user["id"], "first_name": user["first_name"], "type": "private"}
    if user.get("username"):
        chat["username"] = user["username"]
    return chat


def tg_group_chat(chat_id: int = -4012345678, title: str = "Platform on-call") -> JSONDict:
    return {
        "id": chat_id,
        "title": title,
        "type": "group",
        "all_members_are_administrators": True,
    }


def tg_supergroup_chat(
    chat_id: int = -1001234567890, title: str = "Incidents", *, is_forum: bool = True
) -> JSONDict:
    chat: JSONDict = {"id": chat_id, "title": title, "type": "supergroup"}
    if is_forum:
        chat["is_forum"] = True
    return chat


def tg_command_message(
    text: str = "/oncall",
    *,
    chat: JSONDict | None = None,
    from_user: JSONDict | None = None,
    message_id: int | None = None,
    date: int | None = None,
    message_thread_id: int | None = None,
    bot_username: str | None = None,
    reply_to_message: JSONDict | None = None,
) -> JSONDict:
    """A ``Message`` carrying a command. ``bot_username`` turns ``/cmd args`` into
    ``/cmd@bot args``. In a forum supergroup with ``message_thread_id`` the message is a topic
    message (``is_topic_message`` + ``reply_to_message`` = the topic's creation message)."""
    from_user = from_user or tg_user()
    chat = chat or tg_private_chat(from_user)
    cmd, _, rest = text.partition(" ")
    if not cmd.startswith("/"):
        raise ValueError("a command message must start with '/'")
    if bot_username and "@" not in cmd:
        cmd = f"{cmd}@{bot_username}"
    full = f"{cmd} {rest}" if rest else cmd
    msg: JSONDict = {
        "message_id": message_id if message_id is not None else next(_message_ids),
        "from": from_user,
        "chat": chat,
        "date": date if date is not None else int(time.time()),
        "text": full,
        # entity offsets/lengths count UTF-16 code units
        "entities": [
            {"offset": 0, "length": len(cmd.encode("utf-16-le")) // 2, "type": "bot_command"}
        ],
    }
    if message_thread_id is not None:
        msg["message_thread_id"] = message_thread_id
        if chat.get("is_forum"):
            msg["is_topic_message"] = True
            if reply_to_message is None:
                reply_to_message = {
                    "message_id": message_thread_id,
                    "message_thread_id": message_thread_id,
                    "from": tg_user(
                        123456789, "PIRA", "pira_test_bot", is_bot=True, language_code=None
                    ),
                    "chat": chat,
                    "date": msg["date"] - 60,
                    "forum_topic_created": {"name": "incident", "icon_color": 16478047},
                    "is_topic_message": True,
                }
    if reply_to_message is not None:
        msg["reply_to_message"] = reply_to_message
    return msg


def tg_update(update_id: int | None = None, **content: JSONDict) -> JSONDict:
    """``{"update_id": ..., <kind>: <object>}``, e.g. ``tg_update(message=msg)``."""
    if len(content) != 1:
        raise ValueError("an Update carries exactly one object")
    return {"update_id": update_id if update_id is not None else next(_update_ids), **content}


def tg_command_update(text: str = "/oncall", **kwargs: Any) -> JSONDict:
    """Update with a command message; kwargs as :func:`tg_command_message`."""
    return tg_update(message=tg_command_message(text, **kwargs))


def tg_callback_query_update(
    data: str = "confirm:c-1234",
    *,
    message: JSONDict | None = None,
    from_user: JSONDict | None = None,
    query_id: str | None = None,
    chat_instance: str = "-8123456789012345678",
) -> JSONDict:
    """Update with a ``callback_query`` for a button on ``message`` (the bot's message dict,
    e.g. the ``result`` of a recorded sendMessage)."""
    tpl = fixture("telegram/callback_query.json")["callback_query"]
    tpl["id"] = query_id or str(4_382_737_428_574_329_817 + next(_ids))
    if from_user is not None:
        tpl["from"] = from_user
    if message is not None:
        tpl["message"] = copy.deepcopy(message)
    tpl["chat_instance"] = chat_instance
    tpl["data"] = data
    return tg_update(callback_query=tpl)


def tg_reply_message(
    text: str | None,
    *,
    reply_to: JSONDict,
    from_user: JSONDict | None = None,
    message_id: int | None = None,
    date: int | None = None,
) -> JSONDict:
    """A person's message answering ``reply_to`` (a message dict, e.g. the ``result`` of a
    recorded sendMessage: the bot as ``from``), in its chat and forum topic. ``text=None``
    gives a photo without caption: a reply that carries no text."""
    from_user = from_user or tg_user()
    msg: JSONDict = {
        "message_id": message_id if message_id is not None else next(_message_ids),
        "from": from_user,
        "chat": copy.deepcopy(reply_to["chat"]),
        "date": date if date is not None else int(time.time()),
    }
    if text is None:
        msg["photo"] = [
            {
                "file_id": "AgACAgIAAxkBAAIBZ2pira",
                "file_unique_id": "AQADpira",
                "width": 90,
                "height": 90,
                "file_size": 1234,
            }
        ]
    else:
        msg["text"] = text
    if reply_to.get("message_thread_id") is not None:
        msg["message_thread_id"] = reply_to["message_thread_id"]
        if reply_to.get("is_topic_message"):
            msg["is_topic_message"] = True
    replied = copy.deepcopy(reply_to)
    replied.pop("reply_to_message", None)  # Telegram nests one level only
    msg["reply_to_message"] = replied
    return msg


def tg_reply_update(text: str | None, **kwargs: Any) -> JSONDict:
    """Update with a reply message; kwargs as :func:`tg_reply_message`."""
    return tg_update(message=tg_reply_message(text, **kwargs))
