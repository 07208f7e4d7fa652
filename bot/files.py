"""Files PIRA posts (a postmortem, a review's invite, a report's chart): stored in the
transaction that posts them, so a post's file is never missing, and kept, so a
postmortem can be sent again or published later."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.store.models import StoredFile

MAX_BYTES = 10 * 1024 * 1024  # far above any postmortem or chart; a bound all the same


def keep(
    s: Session,
    *,
    incident_id: int | None,
    kind: str,
    name: str,
    mime: str,
    content: bytes,
    by: str,
    now: datetime,
) -> StoredFile:
    """Store a file in the caller's transaction; its id goes into the post (``file=``)."""
    if len(content) > MAX_BYTES:
        raise ValueError(f"{name} is {len(content)} bytes, above the limit of {MAX_BYTES}")
    stored = StoredFile(
        incident_id=incident_id,
        kind=kind,
        name=name,
        mime=mime,
        content=content,
        created_at=now,
        created_by=by,
    )
    s.add(stored)
    s.flush()
    return stored


def latest(s: Session, *, incident_id: int, kind: str) -> StoredFile | None:
    """The newest file of a kind for an incident (the postmortem as last drafted)."""
    return s.scalar(
        select(StoredFile)
        .where(StoredFile.incident_id == incident_id, StoredFile.kind == kind)
        .order_by(StoredFile.id.desc())
        .limit(1)
    )
