"""The audit log's rows, and a command as one transaction.

The router opens a draft for every audited command (who, whence, what). The first
change the command commits — an incident verb, an action's timeline line, a
confirmation asked for — carries the audit row in its own transaction, so the
change and its audit are one commit: neither is ever stored without the other.
A command that changes nothing (a read, a refusal, a failure) gets its row from the
router, alone.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import event
from sqlalchemy.orm import Session

from bot.domain.incident import clean
from bot.store.models import AuditEntry

log = logging.getLogger("pira.router")


@dataclass
class Draft:
    """An audited command, until its row is committed."""

    actor: str
    source: str
    action: str
    committed: bool = False
    outcome: str = ""

    def row(self, at: datetime, outcome: str, detail: str) -> AuditEntry:
        return AuditEntry(
            at=at,
            actor=clean(self.actor)[:100],
            source=self.source,
            action=clean(self.action)[:100],
            outcome=outcome,
            detail=clean(detail)[:2000],
        )

    def logged(self, outcome: str) -> None:
        log.info(
            "audit",
            extra={
                "actor": self.actor,
                "source": self.source,
                "action": self.action[:100],
                "outcome": outcome,
            },
        )


# The command being handled (set by the router; Store.run carries it to the database
# threads with the rest of the context).
COMMAND: ContextVar[Draft | None] = ContextVar("pira_command_audit", default=None)


def join(session: Session, at: datetime, outcome: str, detail: str) -> None:
    """Inside a change's transaction: the current command's audit row joins it (once
    per command; a transaction rolled back leaves the next one to carry it)."""
    draft = COMMAND.get()
    if draft is None or draft.committed or session.info.get("pira_audit"):
        return
    session.add(draft.row(at, outcome, detail))
    session.info["pira_audit"] = True

    def committed(_s: Session) -> None:
        draft.committed = True
        draft.outcome = outcome

    event.listen(session, "after_commit", committed, once=True)
