"""The floors of ``make bench``: the least a program must do for the same request,
each a process of its own, started by the driver (benchmarks/procs.py, Background).

    python -m benchmarks.floors bolt PORT SLACK_API_URL SIGNING_SECRET   # B1
    python -m benchmarks.floors drop PORT                                # B3
    python -m benchmarks.floors ptb TELEGRAM_URL TOKEN                   # B2

- ``bolt``: a bare slack-bolt ``AsyncApp`` that only acks every slash command, on the
  same server as PIRA's (aiohttp, ``POST /slack/events``), signature checked by Bolt.
- ``drop``: a bare aiohttp endpoint, ``POST /alertmanager``, that parses the JSON
  body and drops it.
- ``ptb``: a python-telegram-bot ``Application`` (long polling, updates handled
  concurrently) answering ``/oncall``, ``/incident``, ``/help`` from a dict.

Each answers ``GET /readyz`` (the HTTP ones) so the driver knows when it listens.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

from aiohttp import web

LOOPBACK = "127.0.0.1"

ANSWERS = {
    "oncall": "Primary: @alice, secondary: @bob, until Monday 09:00 UTC.",
    "incident": "#1 P2 Storm alert: open, commander @alice, 2 updates.",
    "help": "Commands: /incident, /ack, /update, /resolve, /oncall, /help.",
}


async def ready(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def serve(app: web.Application, port: int) -> None:
    app.router.add_get("/readyz", ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, port).start()
    await asyncio.Event().wait()  # until SIGTERM


def bolt(port: int, api_url: str, secret: str) -> None:
    from slack_bolt.adapter.aiohttp import to_aiohttp_response
    from slack_bolt.app.async_app import AsyncApp
    from slack_bolt.authorization import AuthorizeResult
    from slack_bolt.request.async_request import AsyncBoltRequest
    from slack_sdk.web.async_client import AsyncWebClient

    async def authorize(
        enterprise_id: str | None, team_id: str | None, user_id: str | None
    ) -> AuthorizeResult:
        return AuthorizeResult(
            enterprise_id=enterprise_id,
            team_id=team_id,
            user_id=user_id,
            bot_token="xoxb-bench",
            bot_user_id="U0PIRABOT",
        )

    async def main() -> None:
        app = AsyncApp(
            client=AsyncWebClient(base_url=api_url),
            authorize=authorize,
            signing_secret=secret,
            process_before_response=False,
        )

        async def only_ack(ack: Any) -> None:
            await ack()

        for name in ("oncall", "incident", "help", "status", "health", "incidents"):
            app.command(f"/{name}")(only_ack)

        async def events(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            bolt_request = AsyncBoltRequest(
                body=body.decode("utf-8"),
                query=request.query_string,
                headers=request.headers,  # type: ignore[arg-type]
            )
            return await to_aiohttp_response(await app.async_dispatch(bolt_request))

        server = web.Application()
        server.router.add_post("/slack/events", events)
        await serve(server, port)

    asyncio.run(main())


def drop(port: int) -> None:
    async def alertmanager(request: web.Request) -> web.Response:
        payload = json.loads(await request.read())
        if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
            return web.Response(status=400, text="not an Alertmanager notification")
        return web.Response(text="ok")

    server = web.Application(client_max_size=5 * 1024 * 1024)
    server.router.add_post("/alertmanager", alertmanager)
    asyncio.run(serve(server, port))


def ptb(url: str, token: str) -> None:
    from telegram import Update
    from telegram.ext import ApplicationBuilder, CommandHandler, ContextTypes

    async def answer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or not message.text:
            return
        name = message.text.split()[0].lstrip("/").split("@")[0]
        await message.reply_text(ANSWERS.get(name, ANSWERS["help"]))

    app = (
        ApplicationBuilder()
        .token(token)
        .base_url(f"{url.rstrip('/')}/bot")
        .concurrent_updates(True)
        .build()
    )
    app.add_handler(CommandHandler(list(ANSWERS), answer))
    app.run_polling(poll_interval=0.0, timeout=1, drop_pending_updates=False)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    kind, *rest = sys.argv[1:]
    if kind == "bolt":
        bolt(int(rest[0]), rest[1], rest[2])
    elif kind == "drop":
        drop(int(rest[0]))
    elif kind == "ptb":
        ptb(rest[0], rest[1])
    else:
        raise SystemExit(f"unknown floor {kind!r}")
