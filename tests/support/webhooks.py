"""An App serving all three webhooks (Slack, Telegram in webhook mode, Alertmanager) on
a WebServer of the test's own, against the fake Slack and Telegram: what the hostile
HTTP tests and the generated-request test both attack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CollectorRegistry

from bot.app import App
from bot.outbox import ChatAdapter
from bot.web import WebServer
from tests.fakes.slack_api import FakeSlack
from tests.fakes.telegram_api import FakeTelegram

LOOPBACK = "127.0.0.1"


def webhook_env(
    slack: FakeSlack,
    tg: FakeTelegram,
    port: int,
    *,
    am_token: str,
    slack_secret: str,
    tg_secret: str,
) -> dict[str, str]:
    """The environment of a bot taking every webhook on ``port``."""
    return {
        "PIRA_ALERTMANAGER_TOKEN": am_token,
        "PIRA_SLACK_BOT_TOKEN": slack.bot_token,
        "PIRA_SLACK_SIGNING_SECRET": slack_secret,
        "PIRA_SLACK_API_URL": slack.url,
        "PIRA_TELEGRAM_TOKEN": tg.token,
        "PIRA_TELEGRAM_API_URL": tg.url,
        "PIRA_TELEGRAM_WEBHOOK_URL": f"http://{LOOPBACK}:{port}/telegram",
        "PIRA_TELEGRAM_WEBHOOK_SECRET": tg_secret,
    }


@asynccontextmanager
async def serving_webhooks(
    app: App, port: int, **limits: Any
) -> AsyncIterator[tuple[WebServer, list[ChatAdapter]]]:
    """Start ``app`` (no scheduler) and its webhooks on ``port``; ``limits``: the
    WebServer's options (the production ones when none are given). Stops all after."""
    chats = app.chat_adapters()
    for chat in chats:
        app.add_adapter(chat)
    await app.start(scheduler=False)
    server = WebServer(CollectorRegistry(), ping=app.store.reachable, **limits)
    app.alerts.register(server)
    app.ack_back.register(server)
    for chat in chats:
        await chat.start(server)
    await server.start(LOOPBACK, port)
    try:
        yield server, chats
    finally:
        for chat in chats:
            await chat.stop()
        await server.stop()
        await app.stop()
