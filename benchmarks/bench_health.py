"""/health against a distant API server (issue 13, B7), run by hand:

    PYTHONPATH=. .venv/bin/python benchmarks/bench_health.py [--latency 0.03] [--runs 10]

The fake Kubernetes API (tests/fakes/kube_api.py, real HTTP through a kubeconfig,
seeded with the test platform) answers every request ``--latency`` seconds late.
Measured in the same run: the floor — one pod-list call through the same client —
and /health through the router; printed: min / median / max of each and the ratio
of the medians (target: /health at most 2 × the floor). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bot.app import App
from bot.messages import Message, Room
from bot.settings import Config, Env
from tests.fakes.kube_api import FakeKubeApi, seed_spark_platform
from tests.support.cluster_app import cluster_config


def spread(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"min {min(ms):.1f} ms, median {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms"


async def main(latency: float, runs: int) -> None:
    with FakeKubeApi() as api, tempfile.TemporaryDirectory() as tmp:
        seed_spark_platform(api)
        folder = Path(tmp)
        env = Env.from_environ(
            {
                "PIRA_DATABASE_URL": f"sqlite:///{folder / 'pira.db'}",
                "KUBECONFIG": str(api.write_kubeconfig(folder / "kubeconfig")),
            }
        )
        config: Config = cluster_config()
        app = App(config=config, env=env)
        await app.start(scheduler=False)
        try:
            actor = app.directory.person_actor("bob")
            message = Message("console", "bob", "/health", Room("console", "tty"))
            cluster = await app.diagnostics.cluster()
            await cluster.pods()  # connections opened, models loaded
            await app.router.handle(message, actor)
            api.latency = latency
            floor, health = [], []
            for _ in range(runs):
                started = time.perf_counter()
                await cluster.pods()
                floor.append(time.perf_counter() - started)
                started = time.perf_counter()
                reply = await app.router.handle(message, actor)
                health.append(time.perf_counter() - started)
                assert reply.ok
            ratio = statistics.median(health) / statistics.median(floor)
            print(f"latency {latency * 1000:.0f} ms a request, {runs} runs")
            print(f"floor (one pod list): {spread(floor)}")
            print(f"/health:              {spread(health)}")
            print(f"ratio of medians:     {ratio:.2f} (target <= 2)")
        finally:
            await app.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.03)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.latency, args.runs))
