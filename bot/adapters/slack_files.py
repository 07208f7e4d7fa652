"""Files posted on Slack (a postmortem, an invite, a chart), by Slack's upload flow:
``files.getUploadURLExternal`` → the bytes POSTed to the URL Slack returned →
``files.completeUploadExternal`` with no channel. The file is then private to the bot
(uploaded, shared nowhere); the post that goes with it carries its permalink
(``<permalink|name>``), and that message shares it.

Why not complete the upload into the channel: Slack posts a message of its own then,
with no metadata, so a lost answer could not be told from a post that never arrived
and a retry would show the file twice. Shared by our own ``chat.postMessage``, the
file falls under the post's "look in the channel before sending again" (the outbox
key in the message metadata): it becomes visible once, with that one message.

An upload whose answer is lost, or one made by a process that died before posting,
leaves an orphan: a private, unshared file in the bot's files, visible to nobody.
Accepted (nothing shows twice); the permalink of a finished upload is kept per outbox
key in this process, so a retry here posts that one instead of uploading again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from bot.outbox import Attachment, DeliveryError

# Room kept in the last part of a post for the file's link line (a permalink is about
# a hundred characters; the name shown is cut to NAME_SHOWN).
LINK_ROOM = 400
NAME_SHOWN = 120
_UNSAFE = re.compile(r"[<>&|]")


@dataclass(frozen=True)
class Uploaded:
    file_id: str
    permalink: str
    name: str

    def link(self) -> str:
        """The line that shares the file: ``📎 <permalink|name>``."""
        shown = _UNSAFE.sub("_", self.name)[:NAME_SHOWN] or "file"
        return f"📎 <{self.permalink}|{shown}>"


class SlackFiles:
    """Uploads of one bot token; remembers what this process uploaded per outbox key."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self._uploaded: dict[str, Uploaded] = {}

    def known(self, key: str) -> Uploaded | None:
        return self._uploaded.get(key)

    def forget(self, key: str) -> None:
        """The post is out: its upload is no longer needed here."""
        self._uploaded.pop(key, None)

    async def upload(self, key: str, file: Attachment) -> Uploaded:
        """The file of post ``key``, uploaded unshared (once per key in this process).
        Slack's errors propagate as ``SlackApiError`` (the sender maps them); a refused
        byte upload is a :class:`DeliveryError` (retried)."""
        done = self._uploaded.get(key)
        if done is not None:
            return done
        got = await self.client.files_getUploadURLExternal(
            filename=file.name, length=len(file.content)
        )
        file_id, url = str(got["file_id"]), str(got["upload_url"])
        await self._put(url, file)
        completed = await self.client.files_completeUploadExternal(
            files=[{"id": file_id, "title": file.name}]
        )
        listed = completed.get("files") or []
        links = [
            str(f["permalink"]) for f in listed if f.get("id") == file_id and f.get("permalink")
        ]
        permalink = links[0] if links else None
        if permalink is None:
            raise DeliveryError(f"slack completed upload {file_id} without a permalink")
        done = self._uploaded[key] = Uploaded(file_id, permalink, file.name)
        return done

    async def _put(self, url: str, file: Attachment) -> None:
        """POST the bytes to the upload URL (the client's session: kept-alive and fenced,
        bot/adapters/slack_http.py; a session of its own when the client has none)."""
        timeout = aiohttp.ClientTimeout(total=float(self.client.timeout))
        headers = {"Content-Type": "application/octet-stream"}
        session = self.client.session
        try:
            if session is not None and not session.closed:
                async with session.post(url, data=file.content, headers=headers) as answer:
                    status = answer.status
                    await answer.read()
            else:
                async with (
                    aiohttp.ClientSession(timeout=timeout) as own,
                    own.post(url, data=file.content, headers=headers) as answer,
                ):
                    status = answer.status
                    await answer.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"slack file upload failed: {type(exc).__name__}") from exc
        if status == 429:
            raise DeliveryError("slack file upload rate limited", retry_after=1)
        if status != 200:
            raise DeliveryError(f"slack file upload answered {status}")
