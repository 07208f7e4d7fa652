"""Whether Slack can message a person (``/escalation verify``): ``users.info`` on the
person's configured user id. Slack answers ``user_not_found`` for an id not in the
workspace and ``deleted: true`` for a deactivated account."""

from __future__ import annotations

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.outbox import CheckFailed
from bot.people import Directory

# Answers of users.info that are about the person, not about the request.
_ABOUT_THE_USER = {
    "user_not_found": "user_not_found (no such user in this workspace: check people.{key}.slack)",
    "user_not_visible": "user_not_visible (the bot cannot see this user)",
    "account_inactive": "account_inactive (the account is deactivated)",
}


class SlackContacts:
    def __init__(self, client: AsyncWebClient, directory: Directory) -> None:
        self.client = client
        self.directory = directory

    async def unreachable(self, person: str) -> str | None:
        """Why Slack cannot message ``person`` (None: it can); raises CheckFailed when
        Slack's answer is not about the person (missing scope, invalid auth, …)."""
        user_id = self.directory.platform_id(person, "slack")
        if user_id is None:
            return "no slack id"
        try:
            answer = await self.client.users_info(user=user_id)
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "error")
            if error in _ABOUT_THE_USER:
                return _ABOUT_THE_USER[error].format(key=person)
            needed = exc.response.get("needed")
            raise CheckFailed(f"{error} (needs {needed})" if needed else error) from None
        user = answer.get("user") or {}
        if user.get("deleted"):
            return "the account is deactivated"
        if user.get("is_bot"):
            return f"{user_id} is a bot, not a person (check people.{person}.slack)"
        return None
