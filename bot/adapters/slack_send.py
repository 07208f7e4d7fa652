"""Slack delivery for the outbox: Block Kit posts paced per channel, edits in place,
incident rooms (``incident-N`` or a thread), and "delivered once" when an answer is lost.

Each post carries its outbox key in the message metadata; a post whose fate is
unknown (timeout, 5xx) is looked up in the channel before it is sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters import slack_format as fmt
from bot.adapters.slack_files import LINK_ROOM, SlackFiles
from bot.outbox import DeliveryError, Outbound
from bot.rooms import Place

if TYPE_CHECKING:
    from bot.adapters.deps import ChatDeps

log = logging.getLogger("pira.slack")

# Slack allows about one message a second per channel; waits longer than MAX_WAIT
# go back to the outbox (retry_after) instead of holding the lane.
PER_CHANNEL_INTERVAL = 1.0
MAX_WAIT = 5.0
FILES = "files"  # the pacer of uploads (Slack's files.* methods), apart from the channels'
# Errors that a retry cannot fix: the row is marked failed instead of retried forever.
PERMANENT = frozenset(
    {
        "msg_too_long",
        "no_text",
        "invalid_blocks",
        "invalid_blocks_format",
        "invalid_arguments",
        "invalid_metadata_format",
        "message_not_found",
        "cant_update_message",
        "edit_window_closed",
        "is_archived",
        "user_not_found",
        "cannot_dm_bot",
    }
)


class _Pacer:
    """One channel's send slot: posts go one at a time, ``interval`` apart."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.next_at = 0.0


class _UseThread(Exception):
    pass


def _error(exc: SlackApiError) -> str:
    data = exc.response.data if exc.response is not None else None
    return str(data.get("error", "")) if isinstance(data, dict) else ""


def _header(exc: SlackApiError, name: str) -> str | None:
    headers = exc.response.headers if exc.response is not None else {}
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return str(value[0] if isinstance(value, list) else value)
    return None


class SlackSender:
    """Posts, edits and incident rooms on Slack for one bot token."""

    def __init__(self, deps: ChatDeps, client: AsyncWebClient) -> None:
        self.config = deps.config
        self.directory = deps.directory
        self.rooms = deps.rooms
        self.client = client
        self.interval = PER_CHANNEL_INTERVAL
        self.incidents_channel = deps.config.channels.incidents.slack
        self.stakeholders_channel = deps.config.channels.stakeholders.slack
        self.files = SlackFiles(client)
        self.bot_user_id: str | None = None  # from auth.test, for recognising our channels
        self._pacers: dict[str, _Pacer] = {}
        self._uncertain: dict[str, float] = {}  # outbox key → when its fate became unknown
        self._dm_channels: dict[str, str] = {}  # user id → DM channel id
        self._threaded: set[int] = set()  # incidents whose channel could not be created

    async def deliver(self, message: Outbound) -> dict[str, Any] | None:
        if message.edit_of is not None:
            return await self._edit(message)
        channel, thread = await self._target(message)
        # A file's link goes at the end of the last part (slack_files: it shares the file).
        parts = fmt.split_message(message.text, fmt.LIMIT - (LINK_ROOM if message.file else 0))
        done: dict[int, str] = {}
        # A post whose fate is unknown — an answer lost in this process, or an attempt
        # recorded by a process killed since (or a leader paused past its lease) — is
        # looked for in the channel before it is sent again.
        since = self._uncertain.get(message.key)
        if since is None and message.attempted_at is not None:
            since = message.attempted_at.timestamp()
        if since is not None:
            done = await self._find_posted(message.key, channel, thread, since)
        if message.file is not None and len(parts) - 1 not in done:
            async with self._paced(FILES):
                try:
                    uploaded = await self.files.upload(message.key, message.file)
                except Exception as exc:
                    raise self._failure(exc, FILES, None) from exc
            parts[-1] = f"{parts[-1]}\n{uploaded.link()}"
        admitted = message.admitted
        refs: list[str] = []
        posted_in = self._dm_channels.get(channel, channel)
        for i, part in enumerate(parts):
            if i in done:
                refs.append(done[i])
                continue
            buttons = message.buttons if i == len(parts) - 1 else ()
            async with self._paced(channel):
                if admitted is not None:  # recorded before the first request (Fenced: stop)
                    await admitted()
                    admitted = None
                try:
                    found = await self.client.chat_postMessage(
                        channel=channel,
                        thread_ts=thread,
                        text=part,
                        blocks=fmt.blocks(part, buttons),
                        metadata=fmt.post_metadata(message.key, i),
                        unfurl_links=False,
                        unfurl_media=False,
                    )
                except SlackApiError as exc:
                    if _error(exc) == "not_in_channel" and channel.startswith("C"):
                        await self._join(channel)
                        raise DeliveryError("joined the channel", retry_after=1) from exc
                    raise self._failure(exc, channel, message.key) from exc
                except Exception as exc:
                    raise self._failure(exc, channel, message.key) from exc
            posted_in = str(found.get("channel") or channel)
            if channel != posted_in:
                self._dm_channels[channel] = posted_in
            refs.append(str(found["ts"]))
        self._uncertain.pop(message.key, None)
        self.files.forget(message.key)
        return {"channel": posted_in, "ts": refs[0], "thread_ts": thread, "parts": refs}

    async def _join(self, channel: str) -> None:
        try:
            await self.client.conversations_join(channel=channel)
            log.info("slack: joined a channel to post there", extra={"channel": channel})
        except Exception as exc:
            raise self._failure(exc, channel, None) from exc

    async def _edit(self, message: Outbound) -> dict[str, Any] | None:
        ref = message.original_ref
        if not ref or not ref.get("ts"):
            return None  # the original left no reference: nothing to edit in place
        text = fmt.truncate(message.text)
        async with self._paced(ref["channel"]):
            try:
                await self.client.chat_update(
                    channel=ref["channel"],
                    ts=ref["ts"],
                    text=text,
                    blocks=fmt.blocks(text, message.buttons),
                )
            except Exception as exc:
                raise self._failure(exc, ref["channel"], None) from exc
        return dict(ref)

    @contextlib.asynccontextmanager
    async def _paced(self, channel: str) -> AsyncIterator[None]:
        pacer = self._pacers.setdefault(channel, _Pacer())
        async with pacer.lock:
            wait = pacer.next_at - time.monotonic()
            if wait > MAX_WAIT:
                raise DeliveryError("slack channel rate limit", retry_after=wait)
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                yield
            finally:
                # Counted from the answer: the request arrived before it.
                pacer.next_at = max(pacer.next_at, time.monotonic() + self.interval)

    def _failure(self, exc: Exception, channel: str, key: str | None) -> DeliveryError:
        if isinstance(exc, DeliveryError):
            return exc
        if isinstance(exc, SlackApiError):
            status = exc.response.status_code if exc.response is not None else 0
            error = _error(exc)
            if status == 429 or error == "ratelimited":
                try:
                    retry = float(_header(exc, "Retry-After") or 1)
                except ValueError:
                    retry = 1.0
                pacer = self._pacers.setdefault(channel, _Pacer())
                pacer.next_at = max(pacer.next_at, time.monotonic() + retry)
                return DeliveryError("slack rate limit (429)", retry_after=retry)
            if status < 500:
                return DeliveryError(f"slack refused: {error}", permanent=error in PERMANENT)
            reason = f"slack answered {status}"
        else:
            reason = f"slack unreachable: {type(exc).__name__}"
        # 5xx, timeout, lost connection: the post may have arrived; look before resending.
        if key is not None:
            self._uncertain.setdefault(key, time.time())
        return DeliveryError(reason)

    async def _find_posted(
        self, key: str, channel: str, thread: str | None, since: float
    ) -> dict[int, str]:
        """Parts of ``key`` already in the channel (or thread), by the metadata key."""
        since -= 120
        cid = self._dm_channels.get(channel, channel)
        if cid.startswith("U"):  # a page by DM: its channel (after a restart, unknown here)
            try:
                opened = await self.client.conversations_open(users=cid)
                cid = self._dm_channels[channel] = str(opened["channel"]["id"])
            except Exception as exc:  # a page must go out: sent, at the risk of a double
                log.warning("slack: cannot open the DM to look", extra={"error": str(exc)[:120]})
                return {}
        found: dict[int, str] = {}
        cursor = None
        try:
            for _ in range(10):
                if thread:
                    page = await self.client.conversations_replies(
                        channel=cid, ts=thread, limit=200, include_all_metadata=True, cursor=cursor
                    )
                else:
                    page = await self.client.conversations_history(
                        channel=cid,
                        oldest=f"{since:.6f}",
                        limit=200,
                        include_all_metadata=True,
                        cursor=cursor,
                    )
                for msg in page.get("messages") or []:
                    mark = fmt.metadata_key(msg)
                    if mark is not None and mark[0] == key:
                        found[mark[1]] = str(msg["ts"])
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    break
        except SlackApiError as exc:
            if _error(exc) in ("missing_scope", "not_in_channel", "channel_not_found"):
                log.warning("slack: cannot check for an earlier copy", extra={"key": key})
                return {}
            raise self._failure(exc, channel, None) from exc
        except Exception as exc:
            raise self._failure(exc, channel, None) from exc
        if found:
            log.info("slack post had arrived already", extra={"key": key, "parts": len(found)})
        return found

    # ---- rooms -----------------------------------------------------------

    async def _target(self, message: Outbound) -> tuple[str, str | None]:
        dest = message.destination
        if dest.kind == "dm":
            user = self.directory.platform_id(dest.arg, "slack")
            if user is None:
                raise DeliveryError(f"no slack id for {dest.arg}", permanent=True)
            return user, None
        if dest.kind == "stakeholders":  # its own channel, never an incident room
            if not self.stakeholders_channel:
                raise DeliveryError("channels.stakeholders.slack is not configured", permanent=True)
            return self.stakeholders_channel, None
        if not self.incidents_channel:
            raise DeliveryError("channels.incidents.slack is not configured", permanent=True)
        if dest.kind != "incident":
            return self.incidents_channel, None
        number = int(dest.arg)
        room = await self.rooms.of("slack", number)
        if room is not None:
            return room.chat_id, room.thread_id
        return await self._open_room(number)

    async def _open_room(self, number: int) -> tuple[str, str | None]:
        """``incident-N`` if the bot may create channels, else a thread under the
        announcement. Stored in ``rooms`` so every later post goes to the same place."""
        name = f"incident-{number}"
        try:
            if number in self._threaded:
                raise _UseThread
            created = await self.client.conversations_create(name=name)
            cid = str(created["channel"]["id"])
            await self._invite(cid, number)
            return await self.save_room(number, cid, None)
        except SlackApiError as exc:
            error, status = _error(exc), exc.response.status_code
            if status == 429 or status >= 500:
                raise self._failure(exc, "conversations.create", None) from exc
            if error == "name_taken":
                found = await self._reclaim(name, number)
                if found is not None:
                    return await self.save_room(number, found, None)
            else:
                log.info("slack: incident thread instead of channel", extra={"error": error})
        except _UseThread:
            pass
        except Exception as exc:  # a timeout: the channel may exist; name_taken next time
            raise self._failure(exc, "conversations.create", None) from exc
        announce = await self.rooms.posted("slack", number, "announce")
        status = announce.status if announce is not None else None
        ref = announce.ref if announce is not None else None
        self._threaded.add(number)  # asked once; a retry only waits for the announcement
        if status == "pending":
            raise DeliveryError("waiting for the announcement to thread under", retry_after=1)
        if status != "sent" or not isinstance(ref, dict) or not ref.get("ts"):
            return self.incidents_channel or "", None  # no announcement: post in the channel
        return await self.save_room(number, str(ref["channel"]), str(ref["ts"]))

    async def _reclaim(self, name: str, number: int) -> str | None:
        """``incident-N`` exists: PIRA's own from before a crash (created by the bot, after
        the incident started) is used; anyone else's is not."""
        facts = await self.rooms.facts(number)
        started = facts.detected_at if facts is not None else None
        cursor = None
        try:
            for _ in range(50):
                page = await self.client.conversations_list(
                    types="public_channel", exclude_archived=True, limit=1000, cursor=cursor
                )
                for ch in page.get("channels") or []:
                    if ch.get("name") != name:
                        continue
                    ours = self.bot_user_id is not None and ch.get("creator") == self.bot_user_id
                    fresh = started is not None and float(ch.get("created") or 0) >= (
                        (started - timedelta(minutes=5)).timestamp()
                    )
                    if not (ours and fresh):
                        log.warning("slack: #%s exists and is not PIRA's; using a thread", name)
                        return None
                    if not ch.get("is_member"):
                        await self.client.conversations_join(channel=ch["id"])
                    await self._invite(str(ch["id"]), number)
                    return str(ch["id"])
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    break
        except SlackApiError as exc:
            log.warning("slack: cannot look up #%s", name, extra={"error": _error(exc)})
        return None

    async def _invite(self, cid: str, number: int) -> None:
        """Responders (and the incident's commander) into the new channel; best effort."""
        config = self.config
        facts = await self.rooms.facts(number)
        involved = facts.involved if facts is not None else frozenset()
        users = []
        for key, person in config.people.items():
            roles = {*person.roles, *([config.default_role] if config.default_role else [])}
            if person.slack and (roles & {"responder", "admin"} or key in involved):
                users.append(person.slack)
        users = [u for u in dict.fromkeys(users) if u != self.bot_user_id]
        if not users:
            return
        try:
            await self.client.conversations_invite(channel=cid, users=users)
        except SlackApiError:
            for user in users:  # one bad or present user fails the batch
                with contextlib.suppress(SlackApiError):
                    await self.client.conversations_invite(channel=cid, users=[user])

    async def save_room(
        self, number: int, chat_id: str, thread: str | None
    ) -> tuple[str, str | None]:
        """Record incident N's room (the one recorded first, by any replica, wins)."""
        room = await self.rooms.save("slack", number, Place(chat_id, thread))
        return room.chat_id, room.thread_id
