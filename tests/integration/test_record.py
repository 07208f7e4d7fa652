"""Issue 12, part 1: the record tells the truth. Every ticket field follows the
incident, and the timeline holds every event with its actor — a person, a timer —
on a driven clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.app import App
from bot.clock import FakeClock
from tests.integration.test_timers import run_until, world  # noqa: F401  (world: a fixture)
from tests.support.driver import Driver

pytestmark = pytest.mark.clock


async def test_the_ticket_follows_the_incident_and_the_timeline_holds_every_event(
    world: tuple[App, Driver, FakeClock],  # noqa: F811
) -> None:
    app, d, clock = world
    await d.say("/incident p0 all jobs failing", "carol")
    await app.timers.fire_due()  # the primary is paged at once (page_after 0s)
    ticket = d.text(await d.say("/incident #1", "carol"))
    assert "**Affected:** Being assessed" in ticket
    assert "Investigating" in ticket and "None recorded yet" in ticket

    await d.say("/impact #1 every nightly batch job fails", "carol")
    await d.say("/affected #1 the data team, 40 pipelines", "carol")
    await d.say("/page @bob #1 need storage eyes", "carol")
    clock.advance(timedelta(seconds=1))
    await d.say("/update #1 executors lost on node pool B", "carol")
    await run_until(app, d, clock, 7)  # secondary page at 3 s, EM escalation at 6 s

    ticket = d.text(await d.say("/incident #1", "carol"))
    assert "**Affected:** the data team, 40 pipelines" in ticket
    assert "every nightly batch job fails" in ticket
    assert "executors lost on node pool B" in ticket  # Current Status: the last update
    assert "paged @bob by hand" in ticket  # Initial Actions: what was done
    assert "None recorded yet" not in ticket

    await d.say("/resolve #1 node pool B exhausted", "carol")
    ticket = d.text(await d.say("/incident #1", "carol"))
    assert "Resolved" in ticket and "Resolved: node pool B exhausted" in ticket
    assert "executors lost on node pool B" not in ticket  # no stale Current Status

    incident = await app.store.run(app.incidents.get, 1)
    events = [(e.actor, e.kind, e.text) for e in incident.timeline]
    kinds = [kind for _, kind, _ in events]
    by_timer = [(kind, text) for actor, kind, text in events if actor == "timer"]
    # The people's steps, with who did them ...
    assert events[0][:2] == ("carol", "declared")
    assert {"impact", "affected", "page", "update", "resolved"} <= set(kinds)
    # ... and what the timers did, with the timer as the actor.
    assert by_timer[0] == ("paged", "paged @alice (primary)")
    assert ("paged", "paged @bob (secondary)") in by_timer
    assert ("escalated", "escalated to @dave (engineering_manager)") in by_timer
    assert any(kind == "overdue" and "update overdue by" in text for kind, text in by_timer)
    # In the order it happened.
    ats = [e.at for e in incident.timeline]
    assert ats == sorted(ats)
    timeline = d.text(await d.say("/timeline #1", "carol"))
    assert "escalated to @dave" in timeline and "paged @alice (primary)" in timeline


async def test_the_root_cause_category_is_matched_shown_and_changeable(
    world: tuple[App, Driver, FakeClock],  # noqa: F811
) -> None:
    app, d, _clock = world
    await d.say("/incident p2 nightly batch failed", "carol")
    await d.posts()
    await d.say("/resolve #1 driver pod OOMKilled on the big join", "carol")
    resolution = [p.text for p in await d.posts() if "Incident Resolved" in p.text]
    assert resolution and "(category: Driver OOM)" in resolution[0]
    assert (await app.store.run(app.incidents.get, 1)).category == "driver-oom"

    wrong = await d.say("/category #1 cosmic rays", "carol")
    assert not wrong.ok and "one of: driver-oom" in d.text(wrong)
    assert (await app.store.run(app.incidents.get, 1)).category == "driver-oom"  # unchanged
    changed = await d.say("/category #1 storage issue", "carol")  # after the resolution
    assert changed.ok and "Storage Issue" in d.text(changed)
    incident = await app.store.run(app.incidents.get, 1)
    assert incident.category == "storage-issue"
    assert incident.timeline[-1].text == "category: Driver OOM → Storage Issue"
    refused = await d.say("/category #1 other", "dave")  # no responder role
    assert not refused.ok


async def test_started_sets_when_the_incident_began_never_after_its_detection(
    world: tuple[App, Driver, FakeClock],  # noqa: F811
) -> None:
    app, d, clock = world
    await d.say("/incident p1 metastore slow", "carol")
    detected = (await app.store.run(app.incidents.get, 1)).detected_at
    clock.advance(timedelta(minutes=30))
    later = await d.say("/started #1 5m ago", "carol")  # after the detection
    assert not later.ok and "cannot have started after that" in d.text(later)
    assert (await app.store.run(app.incidents.get, 1)).started_at == detected  # unchanged
    done = await d.say("/started #1 45m ago", "carol")
    assert done.ok
    incident = await app.store.run(app.incidents.get, 1)
    assert incident.started_at == detected - timedelta(minutes=15)
    assert (incident.details or {}).get("start_known") is True
    assert incident.timeline[-1].kind == "started"
    wrong = await d.say("/started #1 yesterday-ish", "carol")
    assert not wrong.ok and "Not a time" in d.text(wrong)
