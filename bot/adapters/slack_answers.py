"""Answers to a person on Slack and the clicked message's update: a command runs
(its room's incident looked up first), the reply goes back ephemeral (by
``response_url``, else ``chat.postEphemeral``, else a DM), and a clicked page loses its
buttons and says who clicked (the announcement and ticket are the incident service's
to edit)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters import slack_format as fmt
from bot.adapters.deps import ChatDeps
from bot.messages import Message, Reply
from bot.rooms import Place

log = logging.getLogger("pira.slack")


class SlackAnswers:
    def __init__(self, deps: ChatDeps, client: AsyncWebClient) -> None:
        self.router = deps.router
        self.directory = deps.directory
        self.renderer = deps.renderer
        self.rooms = deps.rooms
        self.client = client

    async def tell(self, message: Message) -> None:
        """Run ``message`` and answer the person only: ephemeral where they clicked, a DM
        if that cannot be (a channel the bot left)."""
        reply = await self.run(message)
        body = self.reply_body(reply)
        room, user = message.room, message.user_id
        try:
            await self.client.chat_postEphemeral(
                channel=room.chat_id, user=user, thread_ts=room.thread_id, **body
            )
        except Exception as exc:
            log.warning("slack ephemeral failed", extra={"error": str(exc)[:120]})
            with contextlib.suppress(Exception):
                await self.client.chat_postMessage(channel=user, **body)

    async def run(self, message: Message) -> Reply:
        try:
            room = message.room
            incident = await self.rooms.incident_at("slack", Place(room.chat_id, room.thread_id))
            message = dataclasses.replace(
                message, room=dataclasses.replace(room, incident=incident)
            )
            actor = self.directory.actor("slack", message.user_id, message.user_name)
            return await self.router.handle(message, actor)
        except Exception:
            log.exception("slack command failed", extra={"command": message.text[:40]})
            return Reply.error("PIRA could not handle that; nothing was done. See the bot's log.")

    def reply_body(self, reply: Reply) -> dict[str, Any]:
        text = self.renderer.render("slack", reply.template, reply.data)
        return {"text": fmt.truncate(text), "blocks": fmt.blocks(text, reply.buttons)}

    async def answer(
        self,
        message: Message,
        respond: Any,
        *,
        replace: bool,
        mark: tuple[dict[str, Any], str] | None = None,
    ) -> None:
        reply = await self.run(message)
        body = self.reply_body(reply)
        try:
            await respond(response_type="ephemeral", replace_original=replace, **body)
        except Exception as exc:
            log.warning("slack reply failed", extra={"error": type(exc).__name__})
            with contextlib.suppress(Exception):
                await self.client.chat_postEphemeral(
                    channel=message.room.chat_id, user=message.user_id, **body
                )
        if mark is not None and reply.ok:
            await self._mark_clicked(message, *mark)

    async def _mark_clicked(self, message: Message, original: dict[str, Any], label: str) -> None:
        """Take the buttons off a clicked page and say who clicked. The announcement and
        the ticket are left alone: the incident service edits them (outbox edits)."""
        clicked = message.clicked or {}
        if not clicked.get("ts") or await self._is_announcement(message.text, clicked):
            return
        kept = [b for b in original.get("blocks") or [] if b.get("type") != "actions"]
        who = f"<@{message.user_id}>" if message.user_id else "someone"
        done = fmt._unescape(label).replace("&", "&amp;").replace("<", "&lt;")
        kept.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"✓ {done} — {who}"}]}
        )
        still = await self._still_offered(message.text, original)
        if still:  # a ticket acknowledged keeps Post update and Resolve
            kept.append({"type": "actions", "block_id": "pira-actions", "elements": still})
        try:
            await self.client.chat_update(
                channel=clicked["channel"],
                ts=clicked["ts"],
                text=str(original.get("text") or label),
                blocks=kept,
            )
        except Exception as exc:
            log.warning("slack: clicked message not updated", extra={"error": str(exc)[:120]})

    async def _still_offered(self, command: str, original: dict[str, Any]) -> list[dict[str, Any]]:
        """The clicked message's buttons that the incident still offers in its new state."""
        m = re.search(r"#(\d+)", command)
        if m is None:
            return []
        facts = await self.rooms.facts(int(m.group(1)))
        offered = facts.offered if facts is not None else frozenset()
        out = []
        for block in original.get("blocks") or []:
            for element in block.get("elements") or [] if block.get("type") == "actions" else []:
                value = str(element.get("value", ""))
                asked = fmt.asked(value)
                if (asked[0] if asked else value) in offered:
                    out.append(element)
        return out

    async def _is_announcement(self, command: str, clicked: dict[str, Any]) -> bool:
        """The clicked message is incident N's announcement or ticket: the incident
        service edits those itself (outbox edits), so the adapter leaves them alone."""
        m = re.search(r"#(\d+)", command)
        if m is None:
            return False
        for post in ("announce", "ticket"):
            posted = await self.rooms.posted("slack", int(m.group(1)), post)
            ref = posted.ref if posted is not None else None
            if isinstance(ref, dict) and ref.get("ts") == clicked.get("ts"):
                return True
        return False
