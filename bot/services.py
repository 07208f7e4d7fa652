"""What handlers may call (:class:`Services`), and how they call a service's database
work off the event loop (:class:`Runner`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ParamSpec, Protocol, TypeVar

if TYPE_CHECKING:
    from bot.action_items import ActionItems
    from bot.clock import Clock
    from bot.cluster_actions import ClusterActions
    from bot.cluster_reads import ClusterReads
    from bot.diagnostics import Diagnostics
    from bot.incidents import Incidents
    from bot.maintenance import MaintenanceWindows
    from bot.oncall import OnCall
    from bot.people import Directory
    from bot.postmortems import Postmortems
    from bot.report import Reports
    from bot.reviews import Reviews
    from bot.settings import Config
    from bot.silences import Silences

P = ParamSpec("P")
T = TypeVar("T")


class Runner(Protocol):
    """Runs a service's synchronous (database) method off the event loop: Store.run."""

    def __call__(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Awaitable[T]: ...


@dataclass(frozen=True)
class Services:
    """What handlers may call: the services, the configuration, the clock, the people.
    Nothing else of the bot (no store, no adapters, no clients) reaches a handler."""

    config: Config
    clock: Clock
    directory: Directory
    incidents: Incidents
    oncall: OnCall
    diagnostics: Diagnostics
    actions: ClusterActions
    reads: ClusterReads
    action_items: ActionItems
    reports: Reports
    postmortems: Postmortems
    reviews: Reviews
    maintenance: MaintenanceWindows
    silences: Silences
    run: Runner  # every service method that touches the database is called through it
