"""Slack delivery at the platform's limit (run by hand; prints numbers, asserts nothing).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_slack_lanes.py [--rooms 20] [--posts 30]

``rooms`` incident channels with ``posts`` posts each, all pending at once, delivered
by the real outbox worker and Slack adapter to the fake Slack enforcing Slack's
1 message/s per channel (429 + Retry-After beyond it). Prints the rate against the
limit (``rooms`` messages/s), the 429s received, and whether every room's posts
arrived once and in order.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bot.adapters.slack import SlackAdapter
from bot.app import App
from bot.clock import FakeClock
from bot.settings import Channel, Channels, Config, Env
from tests.fakes.slack_api import FakeSlack
from tests.support.slack_rooms import fill_rooms


async def main(rooms: int, posts: int) -> None:
    async with FakeSlack(rate_limits=True) as slack:
        with tempfile.TemporaryDirectory() as folder:
            env = Env.from_environ(
                {
                    "PIRA_DATABASE_URL": f"sqlite:///{Path(folder) / 'bench.db'}",
                    "PIRA_SLACK_BOT_TOKEN": slack.bot_token,
                    "PIRA_SLACK_API_URL": slack.url,
                }
            )
            config = Config(channels=Channels(incidents=Channel(slack="C0INCIDENTS")))
            app = App(config=config, env=env, clock=FakeClock())
            adapter = SlackAdapter(app.chat_deps())
            app.add_adapter(adapter)
            await app.store.run(app.store.migrate)
            expected = await fill_rooms(app, slack, rooms, posts)
            started = time.monotonic()
            delivered = await app.outbox.deliver_due()
            took = time.monotonic() - started
            in_order = all(
                [m["text"] for m in slack.messages(c)] == texts for c, texts in expected.items()
            )
            limited = [c for c in slack.calls("chat.postMessage") if c.outcome == "ratelimited"]
            app.store.dispose()
    # n posts in a room need (n - 1) s at 1/s: the limit's best is (posts - 1) s.
    best = posts - 1
    rate = delivered / took
    print(f"rooms {rooms} × posts {posts}: {delivered} delivered in {took:.1f} s")
    print(f"rate {rate:.2f} msg/s against a limit of {rooms} msg/s per second of run")
    print(f"fraction of the limit: {best / took:.3f} (best possible {best} s for {posts} posts)")
    print(f"429s received: {len(limited)}; every room once and in order: {in_order}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--posts", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(main(args.rooms, args.posts))
