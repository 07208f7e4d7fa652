"""Alertmanager's API v2, for silences (``PIRA_ALERTMANAGER_URL``): create, list the
active ones, expire. https://github.com/prometheus/alertmanager/blob/main/api/v2/openapi.yaml"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

TIMEOUT = aiohttp.ClientTimeout(total=10)
_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")


class AlertmanagerAPIError(Exception):
    """Alertmanager could not be asked, or refused: ``str()`` is for the chat."""


@dataclass(frozen=True)
class Matcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    @property
    def op(self) -> str:
        return {(False, True): "=", (False, False): "!=", (True, True): "=~"}.get(
            (self.is_regex, self.is_equal), "!~"
        )

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"

    def json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "isRegex": self.is_regex,
            "isEqual": self.is_equal,
        }


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    created_by: str
    comment: str
    starts_at: datetime
    ends_at: datetime
    state: str


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _silence(raw: dict[str, Any]) -> Silence:
    return Silence(
        id=str(raw["id"]),
        matchers=tuple(
            Matcher(
                str(m["name"]),
                str(m["value"]),
                bool(m.get("isRegex", False)),
                bool(m.get("isEqual", True)),
            )
            for m in raw.get("matchers", [])
        ),
        created_by=str(raw.get("createdBy", "")),
        comment=str(raw.get("comment", "")),
        starts_at=_time(raw["startsAt"]),
        ends_at=_time(raw["endsAt"]),
        state=str((raw.get("status") or {}).get("state", "")),
    )


class AlertmanagerAPI:
    def __init__(self, url: str) -> None:
        self.base = url.rstrip("/") + "/api/v2"

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            async with (
                aiohttp.ClientSession(timeout=TIMEOUT) as http,
                http.request(method, self.base + path, json=body) as answer,
            ):
                text = await answer.text()
                if answer.status == 404:
                    raise AlertmanagerAPIError("Alertmanager knows no such silence")
                if answer.status >= 400:
                    detail = text.strip().strip('"')[:200] or answer.reason
                    raise AlertmanagerAPIError(f"Alertmanager refused ({answer.status}): {detail}")
                try:
                    return json.loads(text) if text.strip() else None
                except ValueError:
                    raise AlertmanagerAPIError(
                        f"the answer of {self.base} is not JSON: is it Alertmanager?"
                    ) from None
        except aiohttp.ClientError as exc:
            raise AlertmanagerAPIError(
                f"cannot reach Alertmanager at {self.base}: {type(exc).__name__}"
            ) from None
        except TimeoutError:
            raise AlertmanagerAPIError("Alertmanager did not answer within 10 s") from None

    async def create(
        self,
        matchers: list[Matcher],
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        comment: str,
    ) -> str:
        answer = await self._call(
            "POST",
            "/silences",
            {
                "matchers": [m.json() for m in matchers],
                "startsAt": starts_at.isoformat(),
                "endsAt": ends_at.isoformat(),
                "createdBy": created_by,
                "comment": comment,
            },
        )
        if not isinstance(answer, dict) or "silenceID" not in answer:
            raise AlertmanagerAPIError("Alertmanager's answer named no silence")
        return str(answer["silenceID"])

    async def active(self) -> list[Silence]:
        answer = await self._call("GET", "/silences")
        try:
            if not isinstance(answer, list | None):
                raise TypeError("not a list")
            found = [_silence(raw) for raw in answer or [] if isinstance(raw, dict)]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise AlertmanagerAPIError("Alertmanager's answer is not a list of silences") from None
        return sorted((s for s in found if s.state == "active"), key=lambda s: s.ends_at)

    async def expire(self, silence_id: str) -> None:
        check_id(silence_id)
        await self._call("DELETE", f"/silence/{silence_id}")


def check_id(silence_id: str) -> None:
    if not _ID.match(silence_id):
        raise AlertmanagerAPIError(f"{silence_id!r} is not a silence id")
