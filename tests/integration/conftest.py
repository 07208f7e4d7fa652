"""Kubernetes fixtures of the cluster tests (test_actions, test_diagnostics, test_kube_client,
test_rbac, test_fakes_kube): the fake API server seeded with the Spark platform, a kubeconfig
pointing at it, a :class:`Cluster` and a chat with an App built against it.

A module changes a setting by overriding its fixture: ``cluster_timeout`` (seconds per Cluster
call), ``app_config`` (the App's configuration), ``clock``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from bot.app import App
from bot.clock import FakeClock
from bot.integrations.kube import Cluster
from bot.settings import Config
from tests.fakes.kube_api import FakeKubeApi, seed_spark_platform
from tests.fakes.slack_api import FakeSlack
from tests.support.alert_bot import start_bot as _start_bot
from tests.support.cluster_app import Chat, build_app, cluster_config


@pytest.fixture
def kube_api() -> Iterator[FakeKubeApi]:
    """The fake API server, running, with :func:`seed_spark_platform`'s objects."""
    with FakeKubeApi() as api:
        seed_spark_platform(api)
        yield api


@pytest.fixture
def kubeconfig(kube_api: FakeKubeApi, tmp_path: Path) -> Path:
    return kube_api.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def cluster_timeout() -> float:
    return 5.0


@pytest.fixture
async def cluster(kubeconfig: Path, cluster_timeout: float) -> AsyncIterator[Cluster]:
    cluster = Cluster.from_environment(kubeconfig=kubeconfig, timeout=cluster_timeout)
    yield cluster
    cluster.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app_config() -> Config:
    return cluster_config()


@pytest.fixture
async def chat(
    make_app: Callable[..., App],
    kube_api: FakeKubeApi,
    tmp_path: Path,
    clock: FakeClock,
    app_config: Config,
) -> AsyncIterator[Chat]:
    """An App (no scheduler) against ``kube_api`` with ``app_config`` and ``clock``."""
    app = build_app(make_app, kube_api, tmp_path, config=app_config, clock=clock)
    await app.start(scheduler=False)
    yield Chat(app)
    await app.stop()


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    """The fake Slack Web API on a loopback port (tests/fakes/slack_api.py)."""
    async with FakeSlack() as fake:
        yield fake


start_bot = pytest.fixture(_start_bot, name="start_bot")
