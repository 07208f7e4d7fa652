"""Who is on call, and paging them.

A page is a direct message on every platform where the person has an id
(console: ``[DM @alice]``) plus a mention in the incident's room. A page that
cannot go out (nobody in the role, no reachable id) is said plainly in the
room: a page is never silently dropped.

Its own service: the timers and the incident verbs call it; it calls nothing
above it (it posts through the outbox's poster, in the caller's transaction).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.action_items import listed
from bot.clock import Clock
from bot.contacts import Verification, confirm
from bot.domain.durations import humanize
from bot.domain.incident import STATUS_LABELS, InvalidInput
from bot.domain.rotation import RotationPlan
from bot.handoff_test import TestAck, acknowledge
from bot.messages import Button, Destination
from bot.notify import Notify
from bot.people import Actor, Directory
from bot.settings import Config
from bot.store import Store
from bot.store.models import Incident, Override
from bot.views import IncidentViews

if TYPE_CHECKING:
    from bot.outbox import Contacts, Poster

MAX_OVERRIDE = timedelta(days=31)


@dataclass(frozen=True)
class OnCallNow:
    primary: str | None
    secondary: str | None
    until: datetime | None
    override_until: datetime | None


class OnCall:
    def __init__(
        self,
        *,
        store: Store,
        config: Config,
        directory: Directory,
        clock: Clock,
        poster: Poster,
        views: IncidentViews,
        contacts: Callable[[], Sequence[Contacts]] = list,
    ) -> None:
        self.store = store
        self.contacts = contacts  # the running platforms that can check a contact
        self.config = config
        self.directory = directory
        self.clock = clock
        self.poster = poster
        self.views = views
        # Where a page goes besides chat (bot/notify.py); the App sets the real one.
        self.notify: Notify = Notify(config=config, clock=clock, poster=poster)
        rotation = config.oncall.rotation
        self.plan = (
            RotationPlan(
                members=rotation.members,
                every=rotation.every,
                handoff=rotation.handoff,
                start=rotation.start,
                tz=config.tz,
            )
            if rotation is not None
            else None
        )

    # ---- who ---------------------------------------------------------------

    def now(self, at: datetime | None = None, *, session: Session | None = None) -> OnCallNow:
        """Who is on call at ``at`` (``session``: read in the caller's transaction)."""
        at = at or self.clock.now()
        if session is not None:
            override = _override_in(session, at)
        else:
            with self.store.read() as s:
                override = s.scalar(
                    select(Override)
                    .where(Override.starts_at <= at, Override.ends_at > at)
                    .order_by(Override.id.desc())
                    .limit(1)
                )
        shift = self.plan.at(at) if self.plan is not None else None
        primary = shift.primary if shift else None
        secondary = shift.secondary if shift else None
        if override is not None:
            if secondary == override.person:
                secondary = primary
            primary = override.person
        return OnCallNow(
            primary=primary,
            secondary=secondary,
            until=shift.ends if shift else None,
            override_until=override.ends_at if override else None,
        )

    def who(
        self, role: str, at: datetime | None = None, *, session: Session | None = None
    ) -> str | None:
        """A chain role (primary, secondary, team_lead, …) or a person → a person key."""
        if role == "primary":
            return self.now(at, session=session).primary
        if role == "secondary":
            return self.now(at, session=session).secondary
        return self.directory.resolve_role(role)

    def unpageable(self) -> str | None:
        """Why a page to the chain's first step would reach nobody now (None: it would
        reach someone): said when an incident is declared, instead of a promise."""
        chain = self.config.oncall.chain
        if not chain:
            return "the on-call chain is empty (oncall.chain)"
        role = chain[0].role
        if self.who(role) is not None:
            return None
        if role in ("primary", "secondary") and self.plan is None:
            return "no on-call rotation is configured (oncall.rotation)"
        return f"nobody is configured as {role} (roles.{role})"

    def override(self, *, person: str, duration: timedelta, by: Actor) -> OnCallNow:
        if duration <= timedelta(0) or duration > MAX_OVERRIDE:
            raise InvalidInput("an override lasts between 1 minute and 31 days")
        now = self.clock.now()
        with self.store.transaction() as s:
            s.add(
                Override(person=person, starts_at=now, ends_at=now + duration, created_by=by.handle)
            )
        return self.now(now)

    # ---- paging ------------------------------------------------------------

    def page(
        self,
        s: Session,
        *,
        incident: Incident,
        target: str,
        reason: str,
        key: str,
        late: str | None = None,
        once: bool = False,
    ) -> str | None:
        """Page ``target`` (role or person) for the incident in the caller's transaction.

        Returns the person paged, or None when nobody could be reached (said in the room).
        ``once``: skip a person this incident already paged (the ack chain reaching
        someone an escalation trigger paged already), saying so in the room.
        """
        person = self.who(target, session=s)
        room = Destination.incident(incident.number)
        suffix = f" ({late})" if late else ""
        if person is None:
            hint = (
                "no on-call rotation is configured (oncall.rotation)"
                if target in ("primary", "secondary")
                else f"nobody is configured for it (roles.{target})"
            )
            self.poster.post(
                s,
                incident.id,
                room,
                "text",
                {"text": f"⚠️ Could not page {target}: {hint}.{suffix}"},
                f"{key}:unreachable",
            )
            return None
        role = "" if target == person else f" ({target})"
        paged: dict[str, str] = dict((incident.details or {}).get("paged", {}))
        if once and person in paged:
            self.poster.post(
                s,
                incident.id,
                room,
                "text",
                {
                    "text": f"@{person}{role} was already paged for "
                    f"#{incident.number}; not paging again.{suffix}"
                },
                f"{key}:already",
            )
            return person
        data = self.views.post_data(incident, self.clock.now())
        data.update(reason=reason, late=late, person=person)
        ack = (Button("Acknowledge", f"/ack #{incident.number}", "primary"),)
        # A chat DM unless their ``notify`` leaves chat out; phones too (bot/notify.py).
        phones = self.notify.page(s, incident=incident, person=person, data=data, key=key)
        platforms = phones
        if self.notify.wants_chat(person, incident.severity) or not phones:
            platforms = platforms + self.poster.post(
                s, incident.id, Destination.dm(person), "page", data, f"{key}:dm", ack
            )
        if not platforms:
            self.poster.post(
                s,
                incident.id,
                room,
                "text",
                {
                    "text": f"⚠️ Could not page @{person}{role}: no chat id of theirs is "
                    f"configured on this bot's platforms (people.{person}).{suffix}"
                },
                f"{key}:unreachable",
            )
            return None
        self.poster.post(
            s,
            incident.id,
            room,
            "paged",
            {"person": person, "role": role, "reason": reason, "late": late},
            f"{key}:room",
        )
        paged[person] = self.clock.now().isoformat()
        incident.details = {**(incident.details or {}), "paged": paged}
        return person

    # ---- reports -----------------------------------------------------------

    def verify(self) -> Verification:
        """Every role and person the chain, the triggers and the rotation name must
        resolve to a person with at least one reachable platform id."""
        config = self.config
        names: dict[str, str] = {}
        for step in config.oncall.chain:
            names.setdefault(step.role, "the ack chain")
        for sev, policy in config.severities.items():
            for trigger in policy.escalate:
                names.setdefault(trigger.to, f"{sev} escalation")
        gaps: list[str] = []
        checked: list[str] = []
        people: dict[str, str] = {}
        pageable: dict[str, str] = {}
        for name, where in names.items():
            if name in ("primary", "secondary"):
                if self.plan is None:
                    gaps.append(f"{name} ({where}): no oncall.rotation is configured")
                continue
            person = self.directory.resolve_role(name)
            if person is None:
                gaps.append(f"{name} ({where}): nobody is set in roles.{name}")
            else:
                people.setdefault(person, f"{name} ({where})")
        if self.plan is not None:
            for member in self.plan.members:
                people.setdefault(member, "the rotation")
        active = [p for p in self.poster.platforms() if p != "console"]
        for person, where in people.items():
            configured = config.people.get(person)
            if configured is None:
                gaps.append(f"@{person} ({where}): not in people")
                continue
            ids = [p for p in ("slack", "telegram") if getattr(configured, p) is not None]
            if not ids:
                gaps.append(f"@{person} ({where}): no slack or telegram id")
            elif active and not any(p in active for p in ids):
                gaps.append(
                    f"@{person} ({where}): no id on the running platforms ({', '.join(active)})"
                )
            else:
                checked.append(f"@{person} ({where}): {', '.join(ids)}")
                pageable[person] = where
        return Verification(gaps=gaps, reachable=checked, people=pageable)

    async def confirm_contacts(self, found: Verification) -> Verification:
        """``found`` (:meth:`verify`) checked with the running platforms (bot/contacts.py)."""
        timeout = self.config.oncall.contact_timeout.total_seconds()
        return await confirm(found, self.contacts(), timeout=timeout)

    def ack_test_page(self, person: str) -> TestAck:
        """``/escalation ack``: ``person``'s pending handoff test page, acknowledged."""
        return acknowledge(self.store, self.poster, person=person, now=self.clock.now())

    def handoff_data(self, now: datetime, boundary: datetime | None = None) -> dict[str, Any]:
        """The handoff document: who hands over to whom at ``boundary`` (default: the
        next handoff), open incidents, last week's incidents, open action items."""
        current = self.now(now)
        incoming = outgoing = None
        if self.plan is not None:
            at = boundary or self.plan.next_handoff(now)
            nxt = self.plan.at(at)
            previous = self.plan.at(at - timedelta(seconds=1))
            incoming = {
                "primary": nxt.primary,
                "secondary": nxt.secondary,
                "starts": nxt.starts.isoformat(),
                "until": nxt.ends.isoformat(),
            }
            outgoing = {"primary": previous.primary, "secondary": previous.secondary}
        week_ago = now - timedelta(days=7)
        with self.store.read() as s:
            open_rows = list(
                s.scalars(
                    select(Incident).where(Incident.status != "resolved").order_by(Incident.number)
                )
            )
            last_week = list(
                s.scalars(
                    select(Incident)
                    .where(Incident.detected_at >= week_ago)
                    .order_by(Incident.number)
                )
            )
            items = [{**asdict(i), "due": i.due.isoformat() if i.due else None} for i in listed(s)]

        def row(i: Incident) -> dict[str, Any]:
            end = i.resolved_at or now
            return {
                "number": i.number,
                "severity": i.severity,
                "title": i.title,
                "status_label": STATUS_LABELS[i.status],
                "duration": humanize(end - i.started_at),
            }

        return {
            "now": now.isoformat(),
            "current": {
                "primary": current.primary,
                "secondary": current.secondary,
                "until": current.until.isoformat() if current.until else None,
            },
            "incoming": incoming,
            "outgoing": outgoing,
            "open": [row(i) for i in open_rows],
            "last_week": [row(i) for i in last_week],
            "items": items,
        }


_OVERRIDES = "pira_overrides"


def _override_in(session: Session, at: datetime) -> Override | None:
    """The override in force at ``at``, read once per transaction (a batch of timers
    asks for each of its moments, which only move forward): the overrides not over
    by the first moment asked, kept on the session. Overrides are written by their own
    command's transaction, never by one that asks this."""
    cached: tuple[datetime, list[Override]] | None = session.info.get(_OVERRIDES)
    if cached is None or cached[0] > at:
        with session.no_autoflush:
            rows = list(
                session.scalars(
                    select(Override).where(Override.ends_at > at).order_by(Override.id.desc())
                )
            )
        cached = (at, rows)
        session.info[_OVERRIDES] = cached
    return next((o for o in cached[1] if o.starts_at <= at < o.ends_at), None)
