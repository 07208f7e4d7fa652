"""Telegram sending under Telegram's limits, against the fake Bot API (run by hand).

    .venv/bin/python benchmarks/bench_telegram_rate.py
    .venv/bin/python benchmarks/bench_telegram_rate.py --chats 100 --group-posts 25
    .venv/bin/python benchmarks/bench_telegram_rate.py --chat-burst 1   # a stricter Telegram

The fake (tests/fakes/telegram_api.py, on its own event loop in a thread, as Telegram
is another machine) enforces Telegram's documented limits with 429 + ``retry_after``:
30 messages/s for the bot, 20/min per group, and per chat about 1/s with a short burst
tolerated (a bucket: ``--chat-burst`` at once, then one a second; Telegram does not
document the burst). The bot runs whole: long polling, router, SQLite (or ``--database-url``),
the outbox worker, the Telegram adapter.

Scenarios:
1. private burst: ``--chats`` people each send one command; the bot answers each.
2. private pacing: ``--paced-chats`` people each send ``--per-chat`` commands at once.
3. group + private: ``--group-posts`` outbox posts to the incidents group, and again
   ``--chats`` private answers, at the same time (takes a minute and more: 20/min).

Printed per scenario: messages/s overall (and the most in any 1 s window), per private
chat, per group (the most in any 60 s window), answer latency, 429s received. Nothing
here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry
from sqlalchemy import select

from bot.adapters.telegram import TelegramAdapter
from bot.app import App
from bot.messages import Destination
from bot.outbox import enqueue
from bot.settings import Config, Env
from bot.store.models import OutboxMessage
from bot.web import WebServer
from tests.fakes.payloads import tg_command_update, tg_user
from tests.fakes.telegram_api import FakeTelegram, RecordedCall

GROUP_ID = -1001111111111
FIRST_USER = 2_000_001


def most_in_window(times: Iterable[float], span: float) -> int:
    """The most events in any window of ``span`` seconds."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - span:
            start += 1
        best = max(best, end - start + 1)
    return best


def sustained(times: list[float], limit: int) -> float:
    """``limit`` over the median time from a message to the ``limit``-th after it: the
    rate a window of ``limit`` lets through, whether messages go evenly or in bursts."""
    ordered = sorted(times)
    spans = [b - a for a, b in zip(ordered, ordered[limit:], strict=False)]
    return limit / statistics.median(spans) if spans else float("nan")


def rate(value: float) -> str:
    return "n/a (too few)" if math.isnan(value) else f"{value:.1f} msg/s"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Bench:
    def __init__(self, tg: FakeTelegram, app: App, adapter: TelegramAdapter) -> None:
        self.tg = tg
        self.app = app
        self.adapter = adapter
        self.posts = 0

    def reset(self) -> None:
        self.tg.clear_calls()
        self.tg.enable_rate_limits()  # fresh windows on Telegram's side

    def ask(self, chats: range, per_chat: int) -> dict[int, list[float]]:
        """Every chat sends ``per_chat`` commands now; returns when each was pushed."""
        pushed: dict[int, list[float]] = defaultdict(list)
        for _ in range(per_chat):
            for uid in chats:
                user = tg_user(uid, f"User{uid}", f"user{uid}")
                pushed[uid].append(time.time())
                self.tg.push_update(tg_command_update("/help help", from_user=user))
        return pushed

    def post_to_group(self, count: int) -> None:
        with self.app.store.transaction() as s:
            for _ in range(count):
                self.posts += 1
                enqueue(
                    s,
                    adapters=list(self.app.adapters.values()),
                    destination=Destination.incidents(),
                    template="text",
                    data={"text": f"group post {self.posts}"},
                    key=f"bench:{self.posts}",
                    now=self.app.clock.now(),
                )
        self.app.outbox.notify()

    def delivered(self) -> list[RecordedCall]:
        return [c for c in self.tg.calls("sendMessage") if c.delivered]

    async def until(self, private: int, group: int, timeout: float) -> float:
        """Wait until ``private`` answers and ``group`` posts were delivered."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            sent = self.delivered()
            to_group = sum(1 for c in sent if c.params["chat_id"] == GROUP_ID)
            if len(sent) - to_group >= private and to_group >= group:
                return time.monotonic() - start
            await asyncio.sleep(0.02)
        print(f"  !! timed out after {timeout:.0f} s")
        return time.monotonic() - start

    def report(self, name: str, pushed: dict[int, list[float]], started: float) -> None:
        sends = self.tg.calls("sendMessage")
        sent = [c for c in sends if c.delivered]
        private = [c for c in sent if c.params["chat_id"] != GROUP_ID]
        group = [c for c in sent if c.params["chat_id"] == GROUP_ID]
        limited = [c for c in sends if c.outcome == "ratelimited"]
        limited_group = sum(1 for c in limited if c.params.get("chat_id") == GROUP_ID)
        print(f"\n== {name}")
        if sent:
            times = [c.time for c in sent]
            span = max(times) - started
            print(
                f"  overall  {len(sent)} messages in {span:.2f} s from the first command: "
                f"{len(sent) / span:.1f} msg/s; sustained {rate(sustained(times, 30))}; "
                f"most in any 1 s: {most_in_window(times, 1.0)}"
            )
        if private:
            by_chat: dict[int, list[float]] = defaultdict(list)
            for c in private:
                by_chat[int(c.params["chat_id"])].append(c.time)
            times = [c.time for c in private]
            print(
                f"  private  {len(private)} answers to {len(by_chat)} chats, "
                f"first→last {max(times) - min(times):.2f} s: sustained "
                f"{rate(sustained(times, 30))}"
            )
            multi = {k: sorted(v) for k, v in by_chat.items() if len(v) > 3}
            if multi:
                rates = [sustained(v, 3) for v in multi.values()]
                bursts = [most_in_window(v, 1.0) for v in multi.values()]
                gaps = [b - a for v in multi.values() for a, b in itertools.pairwise(v)]
                print(
                    f"  per chat {statistics.median(rates):.2f} msg/s sustained, median "
                    f"(max {max(rates):.2f}); most in any 1 s in one chat: {max(bursts)}; "
                    f"gap between a chat's messages min {min(gaps) * 1000:.0f} ms, "
                    f"median {statistics.median(gaps) * 1000:.0f} ms"
                )
            latency = []
            for uid, asked in pushed.items():
                answered = sorted(by_chat.get(uid, []))
                latency += [b - a for a, b in zip(asked, answered, strict=False)]
            print(
                f"  latency  command → answer p50 {pct(latency, 0.5):.2f} s, "
                f"p99 {pct(latency, 0.99):.2f} s, max {max(latency, default=0):.2f} s"
            )
        if group:
            times = sorted(c.time for c in group)
            span = times[-1] - times[0]
            per_min = (len(times) - 1) / span * 60 if span > 0 else float("inf")
            print(
                f"  group    {len(group)} posts, first→last {span:.1f} s: {per_min:.1f} msg/min; "
                f"most in any 60 s: {most_in_window(times, 60.0)}; "
                f"most in any 1 s: {most_in_window(times, 1.0)}"
            )
        print(
            f"  429s     {len(limited)} received ({limited_group} in the group); "
            f"{len(sends)} sendMessage requests for {len(sent)} messages"
        )

    async def outbox_state(self) -> str:
        """Rows by status, once none is pending (or after 5 s)."""
        for _ in range(100):
            with self.app.store.read() as s:
                rows = list(s.scalars(select(OutboxMessage)))
            if all(r.status != "pending" for r in rows):
                break
            await asyncio.sleep(0.05)
        counts: dict[str, int] = defaultdict(int)
        for r in rows:
            counts[r.status] += 1
        return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


async def run(args: argparse.Namespace) -> None:
    burst = args.chat_burst
    fake = FakeTelegram(rate_limits=True, chat_limit=(burst, 1.0), latency=args.latency)
    if args.fake_in_loop:  # as the tests run it: Telegram shares the bot's event loop
        async with fake:
            await scenarios(args, fake)
    else:
        with fake.threaded():
            await scenarios(args, fake)


async def scenarios(args: argparse.Namespace, tg: FakeTelegram) -> None:
    url = args.database_url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    burst = args.chat_burst
    if True:
        tg.add_supergroup(GROUP_ID, "Incidents")
        config = Config.model_validate({"channels": {"incidents": {"telegram": GROUP_ID}}})
        env = Env.from_environ(
            {
                "PIRA_DATABASE_URL": url,
                "PIRA_TELEGRAM_TOKEN": tg.token,
                "PIRA_TELEGRAM_API_URL": tg.url,
            }
        )
        app = App(config=config, env=env)
        adapter = TelegramAdapter(app.chat_deps(), poll_timeout=1)
        app.add_adapter(adapter)
        await app.start(scheduler=False)
        await adapter.start(WebServer(CollectorRegistry(), ping=app.store.reachable))
        bench = Bench(tg, app, adapter)
        print(
            f"fake Telegram: 30 msg/s overall, 20/min per group, per chat 1/s with bursts "
            f"of {burst}, {tg.latency * 1000:.0f} ms network round trip; "
            f"database {url.split(':', 1)[0]}"
        )
        try:
            chats = range(FIRST_USER, FIRST_USER + args.chats)
            bench.reset()
            started = time.time()
            pushed = bench.ask(chats, 1)
            await bench.until(args.chats, 0, timeout=120)
            bench.report(f"1. private burst: {args.chats} chats x 1 answer", pushed, started)

            if args.paced_chats and args.per_chat:
                await asyncio.sleep(3)  # every chat's window empty again
                paced = range(FIRST_USER, FIRST_USER + args.paced_chats)
                bench.reset()
                started = time.time()
                pushed = bench.ask(paced, args.per_chat)
                await bench.until(args.paced_chats * args.per_chat, 0, timeout=120)
                bench.report(
                    f"2. private pacing: {args.paced_chats} chats x {args.per_chat} answers",
                    pushed,
                    started,
                )

            if args.group_posts:
                await asyncio.sleep(3)
                bench.reset()
                started = time.time()
                bench.post_to_group(args.group_posts)
                pushed = bench.ask(chats, 1)
                await bench.until(args.chats, args.group_posts, timeout=240)
                bench.report(
                    f"3. group + private: {args.group_posts} group posts (outbox) "
                    f"and {args.chats} private answers at once",
                    pushed,
                    started,
                )
                print(f"  outbox   {await bench.outbox_state()}")
        finally:
            await adapter.stop()
            await app.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", type=int, default=100)
    parser.add_argument("--paced-chats", type=int, default=3)
    parser.add_argument("--per-chat", type=int, default=8)
    parser.add_argument("--group-posts", type=int, default=25)
    parser.add_argument(
        "--chat-burst", type=int, default=3, help="messages at once in a quiet chat (then 1/s)"
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=0.1,
        help="seconds a request spends on the network (there and back) to the fake",
    )
    parser.add_argument("--database-url", default=None)
    parser.add_argument(
        "--fake-in-loop",
        action="store_true",
        help="run the fake on the bot's event loop (as the tests do) instead of a thread",
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
