"""The composition root: builds every service once and wires them; no globals elsewhere."""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CollectorRegistry

from bot.ack_back import AckBack
from bot.action_items import REMINDER_KIND, ActionItems
from bot.action_watch import OutcomeWatch
from bot.adapters.deps import ChatDeps
from bot.adapters.notifiers import notifiers
from bot.alert_mapping import AUTO_RESOLVE
from bot.alerts import AlertIngest
from bot.arrival import Arrival
from bot.clock import Clock, SystemClock
from bot.cluster_actions import ClusterActions
from bot.cluster_reads import ClusterReads
from bot.delivery import OutboxWorker
from bot.diagnostics import Diagnostics
from bot.handoff_test import KIND as HANDOFF_TEST
from bot.incidents import Incidents
from bot.leader import Fence, Leadership
from bot.logs import Secrets
from bot.maintenance import MaintenanceWindows
from bot.metrics import BotMetrics
from bot.notify import Notify, PlanAndNotify
from bot.oncall import OnCall
from bot.outbox import Adapter, ChatAdapter, Contacts, Poster
from bot.people import Directory
from bot.postmortems import Postmortems
from bot.render import Renderer
from bot.report import Reports
from bot.reviews import REMINDER as REVIEW_REMINDER
from bot.reviews import Reviews
from bot.rooms import Rooms
from bot.router import Router, Services
from bot.settings import Config, Env
from bot.silences import Silences
from bot.store import Store
from bot.timers import Timers
from bot.views import IncidentViews
from bot.watchdog import KIND as WATCHDOG_KIND
from bot.watchdog import WatchdogTimer
from handlers import all_commands

log = logging.getLogger("pira.app")


class App:
    def __init__(
        self,
        *,
        config: Config,
        env: Env,
        clock: Clock | None = None,
        store: Store | None = None,
        secrets: Secrets | None = None,
    ) -> None:
        self.config = config
        self.env = env
        self.clock: Clock = clock or SystemClock()
        self.secrets = secrets or Secrets()
        self.store = store or Store(env.database_url)
        self.directory = Directory(config)
        self.renderer = Renderer(tz=config.tz, mention=self.directory.mention)
        self.adapters: dict[str, Adapter] = {}
        self.outbox = OutboxWorker(
            store=self.store,
            adapters=self.adapters,
            renderer=self.renderer,
            clock=self.clock,
            fence=self._fence,
        )
        self.views = IncidentViews(config)
        self.rooms = Rooms(store=self.store, clock=self.clock)
        self.poster = Poster(adapters=lambda: list(self.adapters.values()), clock=self.clock)
        self.oncall = OnCall(
            store=self.store,
            config=config,
            directory=self.directory,
            clock=self.clock,
            poster=self.poster,
            views=self.views,
            contacts=lambda: [a for a in self.adapters.values() if isinstance(a, Contacts)],
        )
        # Pages beyond chat (bot/notify.py): each notifier set in the environment is an
        # outbox adapter; acknowledgements come back over HTTP (bot/ack_back.py).
        self.notify = Notify(config=config, clock=self.clock, poster=self.poster)
        self.oncall.notify = self.notify
        for notifier in notifiers(config, env):
            self.add_adapter(notifier)
        self.action_items = ActionItems(
            store=self.store, clock=self.clock, config=config, poster=self.poster
        )
        self.reviews = Reviews(
            store=self.store,
            config=config,
            clock=self.clock,
            poster=self.poster,
            notify=self.outbox.notify,
        )
        self.timers = Timers(
            store=self.store,
            config=config,
            clock=self.clock,
            oncall=self.oncall,
            poster=self.poster,
            views=self.views,
            notify=self.outbox.notify,
            firing=self.outbox.firing,
            fence=self._fence,
            aftermath={
                REMINDER_KIND: self.action_items.remind,
                REVIEW_REMINDER: self.reviews.remind,
            },
        )
        self.incidents = Incidents(
            store=self.store,
            config=config,
            directory=self.directory,
            clock=self.clock,
            poster=self.poster,
            views=self.views,
            timers=PlanAndNotify(self.timers.plan, self.notify),
            pager=self.oncall,
            notify=self.outbox.notify,
        )
        self.diagnostics = Diagnostics(config=config, env=env, clock=self.clock)
        self.reads = ClusterReads(self.diagnostics)
        self.actions = ClusterActions(
            diagnostics=self.diagnostics,
            incidents=self.incidents,
            clock=self.clock,
            run=self.store.run,
            watch=OutcomeWatch(
                store=self.store,
                incidents=self.incidents,
                poster=self.poster,
                clock=self.clock,
                limit=config.cluster.watch_outcome,
                notify=self.outbox.notify,
            ),
        )
        self.maintenance = MaintenanceWindows(
            store=self.store, config=config, clock=self.clock, poster=self.poster
        )
        watchdog = WatchdogTimer(
            config=config,
            clock=self.clock,
            incidents=self.incidents,
            poster=self.poster,
            maintenance=self.maintenance,
        )
        # Incidents declared from alerts get /health for the alert's labels (bot/arrival.py).
        self.arrival = Arrival(
            store=self.store,
            diagnostics=self.diagnostics,
            incidents=self.incidents,
            poster=self.poster,
            clock=self.clock,
            notify=self.outbox.notify,
        )
        self.alerts = AlertIngest(
            store=self.store,
            config=config,
            token=env.alertmanager_token,
            clock=self.clock,
            incidents=self.incidents,
            poster=self.poster,
            maintenance=self.maintenance,
            watchdog=watchdog,
            notify=self.outbox.notify,
            declared=self.arrival.declared,
        )
        # Acknowledgements from phones: POST /ntfy/ack, POST /pagerduty (bot/ack_back.py).
        self.ack_back = AckBack(
            store=self.store,
            config=config,
            env=env,
            clock=self.clock,
            incidents=self.incidents,
            directory=self.directory,
        )
        self.timers.aftermath[WATCHDOG_KIND] = watchdog.fire
        self.timers.aftermath[AUTO_RESOLVE] = self.alerts.mapping.fire_auto_resolve
        self.timers.aftermath[HANDOFF_TEST] = self.timers.calendar.handoff_test.expire
        self.silences = Silences(
            url=env.alertmanager_url,
            clock=self.clock,
            incidents=self.incidents,
            alertname=config.alerts.watchdog.alertname if config.alerts.watchdog else None,
        )
        commands = all_commands()
        # One registry for every series of GET /metrics (the web server's, the alerts').
        self.registry = CollectorRegistry()
        self.metrics = BotMetrics(
            registry=self.registry,
            store=self.store,
            config=config,
            leading=lambda: self.leading,
            platforms=self.poster.platforms,
            commands=[c.name for c in commands],
        )
        self.router = Router(
            store=self.store,
            services=Services(
                config=config,
                clock=self.clock,
                directory=self.directory,
                incidents=self.incidents,
                oncall=self.oncall,
                diagnostics=self.diagnostics,
                actions=self.actions,
                reads=self.reads,
                action_items=self.action_items,
                reports=Reports(
                    store=self.store,
                    config=config,
                    clock=self.clock,
                    poster=self.poster,
                    notify=self.outbox.notify,
                ),
                postmortems=Postmortems(
                    store=self.store, clock=self.clock, config=config, poster=self.poster
                ),
                reviews=self.reviews,
                maintenance=self.maintenance,
                silences=self.silences,
                run=self.store.run,
            ),
            commands=commands,
            observe=self.metrics.observe_command,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._outbox_task: asyncio.Task[None] | None = None
        self.leadership: Leadership | None = None

    def _fence(self) -> Fence | None:
        """The lease the leader's work runs under (None without leadership)."""
        return self.leadership.fence if self.leadership is not None else None

    def add_adapter(self, adapter: Adapter) -> None:
        self.adapters[adapter.name] = adapter

    def chat_deps(self) -> ChatDeps:
        """What a chat adapter is given (and nothing more of the bot)."""
        return ChatDeps(
            env=self.env,
            config=self.config,
            router=self.router,
            directory=self.directory,
            renderer=self.renderer,
            rooms=self.rooms,
            leading=lambda: self.leadership is None or self.leading,
            secrets=self.secrets,
        )

    def chat_adapters(self) -> list[ChatAdapter]:
        """The chat platforms whose credentials are set in the environment."""
        found: list[ChatAdapter] = []
        if self.env.slack_bot_token:
            from bot.adapters.slack import SlackAdapter

            found.append(SlackAdapter(self.chat_deps()))
        if self.env.telegram_token:
            from bot.adapters.telegram import TelegramAdapter

            found.append(TelegramAdapter(self.chat_deps()))
        return found

    async def start(self, *, scheduler: bool = True) -> None:
        """Migrate, then compete for leadership: the leader runs the timers and the
        outbox worker. ``scheduler=False`` (tests that drive timers by hand): no
        scheduler, no leadership, the outbox worker runs."""
        await self.store.run(self.store.migrate)
        if not scheduler:
            self._outbox_task = asyncio.create_task(self.outbox.run(), name="outbox")
            return
        self.leadership = Leadership(
            store=self.store,
            clock=self.clock,
            ttl=self.config.leader_lease,
            on_gain=self._lead,
            on_lose=self._follow,
        )
        if not await self.leadership.step():
            log.warning("another replica leads: standing by")
        self._tasks.append(asyncio.create_task(self.leadership.run(), name="leadership"))

    @property
    def leading(self) -> bool:
        """Whether this replica runs the leader's duties (scheduler, outbox, polling)."""
        return self.leadership is not None and self.leadership.leading

    async def _lead(self) -> None:
        self._outbox_task = asyncio.create_task(self.outbox.run(), name="outbox")
        await self.timers.start()

    async def _follow(self) -> None:
        await self.timers.stop()
        if self._outbox_task is not None:
            self._outbox_task.cancel()
            await asyncio.gather(self._outbox_task, return_exceptions=True)
            self._outbox_task = None

    async def serve_forever(self, stop: asyncio.Event) -> None:
        """The HTTP server (and, when configured, the chat platforms) until ``stop``."""
        from bot.web import WebServer

        server = WebServer(
            self.registry,
            ping=self.store.reachable,
            render_metrics=self.metrics.render,
            leading=lambda: self.leading,
        )
        self.alerts.register(server)
        self.ack_back.register(server)
        chats = [a for a in self.adapters.values() if isinstance(a, ChatAdapter)]
        for chat in chats:
            await chat.start(server)
        await server.start(self.env.http_host, self.env.http_port)
        try:
            await stop.wait()
        finally:
            for chat in chats:
                await chat.stop()
            await server.stop()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.actions.watch.stop()
        await self.arrival.stop()
        self.diagnostics.close()
        if self.leadership is not None:
            await self.leadership.stop()
        else:
            await self._follow()
        self.store.dispose()
