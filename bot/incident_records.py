"""Reading incidents: the queries every surface asks (which incident a command
means, one incident with its timeline, the open ones). No posting, no timers."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.domain.incident import InvalidInput
from bot.store import Store
from bot.store.models import Incident


class NotFound(InvalidInput):
    pass


class IncidentRecords:
    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, number: int) -> Incident:
        """One incident, its timeline loaded (usable after the session closed)."""
        with self.store.read() as session:
            incident = self.load(session, number)
            _ = list(incident.timeline)
            return incident

    def list_incidents(self, *, open_only: bool = True, limit: int = 50) -> list[Incident]:
        with self.store.read() as session:
            query = select(Incident).order_by(Incident.number.desc()).limit(limit)
            if open_only:
                query = query.where(Incident.status != "resolved")
            return list(session.scalars(query))

    def open_numbers(self) -> list[int]:
        with self.store.read() as session:
            return list(
                session.scalars(
                    select(Incident.number)
                    .where(Incident.status != "resolved")
                    .order_by(Incident.number)
                )
            )

    def pick(self, number: int | None, room_incident: int | None, *, reading: bool = False) -> int:
        """The incident a command means: ``#N``, else the room's, else the only open one;
        for ``reading`` (e.g. /timeline) with none open, the most recent one."""
        if number is not None:
            return number
        if room_incident is not None:
            return room_incident
        numbers = self.open_numbers()
        if len(numbers) == 1:
            return numbers[0]
        if not numbers:
            if reading:
                with self.store.read() as session:
                    latest = session.scalar(select(func.max(Incident.number)))
                if latest is not None:
                    return latest
                raise InvalidInput("there are no incidents yet")
            raise InvalidInput("no incident is open")
        shown = ", ".join(f"#{n}" for n in numbers[:10])
        raise InvalidInput(f"{len(numbers)} incidents are open ({shown}): say which with #N")

    @staticmethod
    def load(s: Session, number: int) -> Incident:
        incident = s.scalar(select(Incident).where(Incident.number == number))
        if incident is None:
            raise NotFound(f"there is no incident #{number}")
        return incident

    @classmethod
    def load_open(cls, s: Session, number: int) -> Incident:
        incident = cls.load(s, number)
        if not incident.is_open:
            raise InvalidInput(f"#{number} is already resolved")
        return incident
