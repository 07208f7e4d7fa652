"""Whether Telegram can message a person (``/escalation verify``): ``getChat`` on the
person's user id. A bot can only write to a user who opened it (sent it /start):
for anyone else the Bot API answers 400 "Bad Request: chat not found"."""

from __future__ import annotations

from telegram import Bot
from telegram.error import BadRequest, Forbidden, TelegramError

from bot.logs import scrub_tokens
from bot.outbox import CheckFailed

NEVER_STARTED = "chat not found — they never opened the bot (send /start to it)"


async def unreachable(bot: Bot, user_id: int) -> str | None:
    """Why the bot cannot message ``user_id`` (None: it can); raises CheckFailed when
    Telegram's answer is not about the person (a bad token, a 5xx, …)."""
    try:
        await bot.get_chat(user_id)
    except BadRequest as exc:
        if "chat not found" in exc.message.lower():
            return NEVER_STARTED
        return exc.message
    except Forbidden as exc:  # blocked by the user, a deactivated account
        return exc.message
    except TelegramError as exc:
        raise CheckFailed(scrub_tokens(f"{type(exc).__name__}: {exc.message}")[:200]) from None
    return None
