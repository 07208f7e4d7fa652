"""Many Slack rooms with many posts pending at once: the load of the lanes test
(tests/integration/test_slack_delivery.py) and its benchmark
(benchmarks/bench_slack_lanes.py)."""

from __future__ import annotations

from bot.adapters.slack import SlackAdapter
from bot.app import App
from bot.messages import Destination
from bot.outbox import enqueue
from tests.fakes.slack_api import FakeSlack


async def fill_rooms(app: App, slack: FakeSlack, rooms: int, posts: int) -> dict[str, list[str]]:
    """``rooms`` incident channels in the fake, each the room of incident N, with
    ``posts`` posts stored for each; the texts each channel must show, in order."""
    adapter = app.adapters["slack"]
    assert isinstance(adapter, SlackAdapter)
    expected: dict[str, list[str]] = {}
    with app.store.transaction() as s:
        for n in range(1, rooms + 1):
            channel = slack.add_channel(f"incident-{n}").id
            expected[channel] = [f"room {n} post {i:03d}" for i in range(posts)]
            for i, text in enumerate(expected[channel]):
                enqueue(
                    s,
                    adapters=app.adapters.values(),
                    destination=Destination.incident(n),
                    template="text",
                    data={"text": text},
                    key=f"room{n}:{i}",
                    now=app.clock.now(),
                )
    for n, channel in enumerate(expected, start=1):
        await adapter.sender.save_room(n, channel, None)
    return expected
