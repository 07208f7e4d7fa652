"""The room store (bot/rooms.py), shared by Slack and Telegram: what one process records
another finds (a restart, a second replica), and the first room recorded wins."""

from __future__ import annotations

from collections.abc import Callable

from bot.app import App
from bot.people import Actor
from bot.rooms import Place


async def test_what_one_process_records_another_finds(make_app: Callable[..., App]) -> None:
    first, second = make_app(), make_app()
    await first.start(scheduler=False)
    await second.start(scheduler=False)
    try:
        alice = Actor(key="alice", name="Alice", roles=frozenset({"responder"}), known=True)
        incident = await first.store.run(
            first.incidents.declare, severity="P1", title="Spark down", by=alice, source="test"
        )
        one, other = first.rooms, second.rooms

        # Messages posted for the incident: a reply to any of them is about it.
        await one.remember("telegram", "-100", ["41", "42"], incident.id)
        await one.remember("telegram", "-100", ["42"], incident.id)  # delivered again
        assert await other.incident_of_message("telegram", "-100", "42") == incident.number
        assert await other.incident_of_message("telegram", "-100", "43") is None
        assert await other.incident_of_message("telegram", "-200", "41") is None

        # Two replicas record a room for #1 at once: the first one recorded is the room.
        mine = await one.save("slack", incident.number, Place("C1", None))
        theirs = await other.save("slack", incident.number, Place("C2", None))
        assert mine == theirs == Place("C1", None)
        assert await other.incident_at("slack", Place("C1", None)) == incident.number
        assert await other.incident_at("slack", Place("C1", "1700000000.1")) is None
        assert await other.of("telegram", incident.number) is None

        # A button too long for Telegram's payload: its code resolves after a restart.
        await one.keep_button("h:abc", "/impact #1 " + "x" * 80, "Which jobs fail?")
        assert await other.button("h:abc") == ("/impact #1 " + "x" * 80, "Which jobs fail?")
        assert await other.button("h:unknown") is None

        facts = await other.facts(incident.number)
        assert facts is not None and facts.title == "Spark down"
        assert "/ack #1" in facts.offered
        assert await other.facts(99) is None
        assert first.store.calls_on_loop == [] and second.store.calls_on_loop == []
    finally:
        await first.stop()
        await second.stop()
