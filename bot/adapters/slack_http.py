"""The HTTP session of Slack's Web API client: kept-alive connections, and the lease
of the post being sent checked at the last moment before its bytes leave.

aiohttp holds a request's headers back and writes them with its body, in a task of
their own; the check runs there (and when a connection is ready), so a replica frozen
after every earlier check (SIGSTOP, a stalled VM) wakes up and sends nothing — the
leader that took over has sent it, or will.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from bot.outbox import still_leading


async def _still_leading(*_: Any) -> None:
    still_leading()


class _FencedRequest(aiohttp.ClientRequest):
    async def write_bytes(self, writer: Any, conn: Any, *args: Any, **kwargs: Any) -> None:
        still_leading()
        await super().write_bytes(writer, conn, *args, **kwargs)


def fenced_session(timeout: float) -> aiohttp.ClientSession:
    """A session for AsyncWebClient (create it inside the running event loop)."""
    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(_still_leading)
    trace.on_connection_reuseconn.append(_still_leading)
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout),
        trace_configs=[trace],
        request_class=_FencedRequest,
    )
