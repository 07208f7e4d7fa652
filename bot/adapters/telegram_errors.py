"""Bot API errors mapped to the outbox's retry policy, and the question a lost answer
raises: did the request ever reach Telegram?"""

from __future__ import annotations

import warnings
from datetime import timedelta

import httpx
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from bot.logs import scrub_tokens
from bot.outbox import DeliveryError


def retry_after_seconds(exc: RetryAfter) -> float:
    value = getattr(exc, "_retry_after", None)  # PTB 22 stores a timedelta here
    if value is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = exc.retry_after
    if isinstance(value, timedelta):
        return max(1.0, value.total_seconds())
    return max(1.0, float(value))


def not_sent(exc: TelegramError) -> bool:
    """The request certainly never reached Telegram (safe to send again)."""
    cause = exc.__cause__
    if isinstance(exc, TimedOut):
        return isinstance(cause, httpx.ConnectTimeout | httpx.PoolTimeout) or (
            "Pool timeout" in str(exc)
        )
    if isinstance(exc, BadRequest):
        return True  # Telegram answered: it did not take the message
    # A NetworkError without an httpx cause is an HTTP error status Telegram answered
    # (5xx: not processed); a connect error never sent anything.
    return cause is None or isinstance(cause, httpx.ConnectError)


def as_delivery_error(exc: TelegramError, what: str) -> DeliveryError:
    """Map a Bot API error to the outbox's retry policy. The reason is scrubbed of
    secrets: it is stored in the outbox row and logged."""
    reason = scrub_tokens(f"{what}: {type(exc).__name__}: {exc}")[:300]  # stored in the outbox row
    if isinstance(exc, RetryAfter):
        return DeliveryError(reason, retry_after=retry_after_seconds(exc))
    if isinstance(exc, ChatMigrated):
        return DeliveryError(
            f"{reason} (the group became a supergroup {exc.new_chat_id}: "
            "update channels.incidents.telegram)",
            permanent=True,
        )
    if isinstance(exc, InvalidToken):
        # The token is wrong or revoked: nothing will work until an operator fixes it;
        # keep the posts and try again later rather than dropping them.
        return DeliveryError(reason, retry_after=300)
    if isinstance(exc, Forbidden):
        return DeliveryError(reason, permanent=True)  # not in the chat / blocked by the user
    if isinstance(exc, BadRequest):
        return DeliveryError(reason, permanent=True)  # chat not found, bad markup, …
    return DeliveryError(reason)  # network, timeouts, 5xx: retried with backoff


def is_not_modified(exc: BaseException) -> bool:
    return isinstance(exc, BadRequest) and "not modified" in str(exc).lower()
