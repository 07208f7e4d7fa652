"""/postmortem and the stakeholders channel (issue 12, parts 2.3 and 2.5), on a driven
clock: the draft is filled from the record, stored, posted as a file; publishing
reaches the stakeholders channel, which hears of P0/P1 incidents in plain language
and of nothing else."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.app import App
from bot.clock import FakeClock
from bot.settings import Config
from bot.store.models import Incident, OutboxMessage, StoredFile
from tests.support.driver import Driver, Post

pytestmark = pytest.mark.clock

CONFIG = {
    "timezone": "Europe/Berlin",
    "people": {
        "alice": {"name": "Alice", "roles": ["responder", "operator"]},
        "bob": {"name": "Bob", "roles": ["responder"]},
        "dave": {"name": "Dave"},
    },
    "oncall": {"rotation": {"members": ["alice", "bob"], "start": "2026-11-30"}},
    "roles": {"team_lead": "bob", "engineering_manager": "dave", "cto": "dave"},
}
START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # Monday 10:00 in Berlin


@pytest.fixture
async def world(make_app: Callable[..., App]) -> AsyncIterator[tuple[App, Driver, FakeClock]]:
    clock = FakeClock(START)
    app = make_app(config=Config.model_validate(CONFIG), clock=clock)
    driver = Driver(app)
    await app.start(scheduler=False)
    yield app, driver, clock
    await app.stop()


def postmortems(app: App, number: int) -> list[str]:
    with app.store.read() as s:
        rows = s.scalars(
            select(StoredFile)
            .join(Incident, Incident.id == StoredFile.incident_id)
            .where(StoredFile.kind == "postmortem", Incident.number == number)
            .order_by(StoredFile.id)
        )
        return [r.content.decode() for r in rows]


def section(text: str, heading: str) -> str:
    """The body of one ``## heading`` of the Markdown."""
    match = re.search(rf"^## {re.escape(heading)}\n\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match is not None, f"no section {heading!r} in:\n{text}"
    return match.group(1).strip()


def stakeholder_posts(posts: list[Post]) -> list[str]:
    return [p.text for p in posts if p.tag == "#stakeholders"]


async def test_postmortem_is_drafted_from_the_whole_record(
    world: tuple[App, Driver, FakeClock],
) -> None:
    app, d, clock = world
    await d.say("/incident p1 Spark Connect driver keeps dying", "alice")
    clock.advance(timedelta(minutes=3))
    await d.say("/started #1 09:52", "alice")  # Berlin time: 08:52 UTC
    await d.say("/ack #1", "bob")
    clock.advance(timedelta(minutes=5))
    await d.say("/impact #1 nightly ETL of the finance team delayed", "bob")
    await d.say("/affected #1 finance and marketing jobs", "bob")
    await d.say("/update #1 driver OOMKilled every 10 minutes", "bob")
    await d.say("/action add #1 alert on driver memory @alice 2026-12-07", "bob")
    clock.advance(timedelta(minutes=40))
    resolved = await d.say(
        "/resolve #1 driver out of memory on large broadcast -- raised driver memory to 8g",
        "bob",
    )
    assert resolved.ok, d.text(resolved)
    await d.posts()

    reply = await d.say("/postmortem #1", "alice")
    assert reply.ok, d.text(reply)
    assert "draft 1" in d.text(reply)
    [text] = postmortems(app, 1)
    assert text.startswith("# Postmortem: #1 Spark Connect driver keeps dying\n")
    summary = section(text, "Summary")
    assert "| Severity | P1 (High) |" in summary
    assert "| Detected | 2026-11-30 10:00 CET |" in summary  # the configured zone
    assert "| Started | 2026-11-30 09:52 CET |" in summary  # as /started said, local time
    assert "| Acknowledged | 2026-11-30 10:03 CET by @bob |" in summary
    assert "| Resolved | 2026-11-30 10:48 CET |" in summary
    assert "| Category | Driver OOM |" in summary
    assert section(text, "Impact").startswith("nightly ETL of the finance team delayed")
    assert "**Affected:** finance and marketing jobs" in section(text, "Impact")
    detection = section(text, "Detection and resolution")
    # Started 09:52, detected 10:00: 8 minutes against the runbook's < 5 min.
    assert "Time to detect: 8 min (target < 5m) ❌" in detection
    # Detected 10:00, resolved 10:48: 48 minutes against P1's < 2 h.
    assert "Time to resolve: 48 min (target < 2h) ✅" in detection
    timeline = section(text, "Timeline")
    for said in ("declared [P1]", "acknowledged", "driver OOMKilled every 10 minutes"):
        assert said in timeline, said
    assert "resolved: driver out of memory" in timeline
    assert section(text, "Root cause") == (
        "driver out of memory on large broadcast\n\n**Category:** Driver OOM"
    )
    assert section(text, "Resolution") == "raised driver memory to 8g"
    assert section(text, "Action items") == (
        "- [ ] 1. alert on driver memory — @alice, due 2026-12-07"
    )
    for heading in ("What went well", "What didn't go well", "Lessons learned"):
        assert section(text, heading) == "_To be filled in at the post-incident review._"

    # Stored and posted as a file in the incident's room, once.
    with app.store.read() as s:
        rows = list(
            s.scalars(select(OutboxMessage).where(OutboxMessage.key.like("inc1:postmortem:%")))
        )
    assert [(r.destination, r.platform) for r in rows] == [("incident:1", "console")]
    assert rows[0].body["file"] is not None

    # Drafted again on request: a new version, the record as it is now.
    await d.say("/action done 1", "alice")
    again = await d.say("/postmortem #1", "alice")
    assert "draft 2" in d.text(again)
    latest = postmortems(app, 1)[-1]
    assert "- [x] 1. alert on driver memory" in section(latest, "Action items")
    incident = await app.store.run(app.incidents.get, 1)
    assert [e.text for e in incident.timeline if e.kind == "postmortem"] == [
        "postmortem draft 1",
        "postmortem draft 2",
    ]


async def test_stakeholders_hear_p0_p1_in_plain_language_and_the_published_postmortem(
    world: tuple[App, Driver, FakeClock],
) -> None:
    app, d, clock = world
    await d.say("/incident p2 one team's jobs are slow", "alice")
    await d.say("/incident p1 half of the jobs fail", "alice")
    posts = await d.posts()
    [announced] = stakeholder_posts(posts)  # the P1, not the P2
    assert "half of the jobs fail" in announced and "serious degradation" in announced
    assert "2026-11-30 10:00 CET" in announced
    await d.say("/update #2 executors lost on two nodes", "bob")
    await d.say("/update #1 still slow", "bob")
    clock.advance(timedelta(minutes=30))
    await d.say("/resolve #1 cache too small", "bob")
    await d.say("/resolve #2 nodes drained -- moved executors", "bob")
    posts = await d.posts()
    [resolved] = stakeholder_posts(posts)  # updates and the P2's resolution stay inside
    assert resolved.startswith("✅ **Resolved: half of the jobs fail**")
    assert "duration 30 min" in resolved
    for post in (announced, resolved):
        # No commands, no room names, no handles, nothing of the room's internals.
        assert not re.search(r"(^|\s)/[a-z]|#incident|@\w|nodes drained", post), post

    refused = await d.say("/postmortem publish #1", "dave")
    assert not refused.ok  # responders only
    published = await d.say("/postmortem publish #2", "alice")
    assert published.ok, d.text(published)
    posts = await d.posts()
    [note] = stakeholder_posts(posts)
    assert note.startswith("📄 **Postmortem: half of the jobs fail**")
    with app.store.read() as s:
        row = s.scalar(
            select(OutboxMessage).where(OutboxMessage.key.like("inc2:postmortem-published:%"))
        )
        assert row is not None and row.destination == "stakeholders"
        stored = s.get(StoredFile, row.body["file"])
        assert stored is not None and stored.name == "postmortem-2.md"
        assert stored.content.decode().startswith("# Postmortem: #2 half of the jobs fail")

    still_open = await d.say("/incident p3 docs typo", "alice")
    assert still_open.ok
    early = await d.say("/postmortem #3", "alice")
    assert not early.ok and "still open" in d.text(early)
    assert postmortems(app, 3) == []
